"""Read back what a live segue stored, through its admin API only (no peeking at files).

Shared by the SDK, retry and durability end-to-end tests: page through the event log, page
through a profile's timeline, and compare what a client sent with what the server kept.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from tests.e2e.server import SegueServer

SOURCE = "default"  # the source that owns SEGUE_WRITE_KEY


def log_records(server: SegueServer, page: int = 1000) -> list[dict[str, Any]]:
    """Every record of the event log, oldest first, by following ``next`` until it is null."""
    records: list[dict[str, Any]] = []
    after = 0
    with server.admin() as admin:
        for _ in range(100_000):
            response = admin.get("/v1/admin/log", params={"after": after, "limit": page})
            assert response.status_code == 200, response.text
            body = response.json()
            chunk = body["records"]
            records.extend(chunk)
            nxt = body["next"]
            if nxt is None or not chunk:
                break
            assert nxt > after, f"log paging does not advance: after={after} next={nxt}"
            after = nxt
    offsets = [r["offset"] for r in records]
    assert offsets == sorted(offsets), "log records are not in offset order"
    assert len(set(offsets)) == len(offsets), "the log returned one offset twice"
    return records


def message_of(record: dict[str, Any]) -> dict[str, Any]:
    """The stored message of a log record (tolerates it being serialised as a JSON string)."""
    message = record["message"]
    if isinstance(message, str):
        message = json.loads(message)
    assert isinstance(message, dict), record
    return message


def id_counts(records: Iterable[dict[str, Any]], source: str = SOURCE) -> Counter[str]:
    """How many log records each messageId of ``source`` has (exactly-once means all 1)."""
    return Counter(r["message_id"] for r in records if r["source"] == source)


def assert_stored_exactly_once(
    records: list[dict[str, Any]], expected: Iterable[str], source: str = SOURCE
) -> None:
    """Every id in ``expected`` is in the log exactly once, and no id of the source twice."""
    counts = id_counts(records, source)
    wanted = set(expected)
    missing = sorted(wanted - counts.keys())
    doubled = sorted(mid for mid, n in counts.items() if n > 1)
    assert not missing, f"{len(missing)} of {len(wanted)} messageIds lost, e.g. {missing[:5]}"
    assert not doubled, f"{len(doubled)} messageIds stored more than once, e.g. {doubled[:5]}"
    for record in records:
        if record["source"] == source:
            assert message_of(record)["messageId"] == record["message_id"], record


def profile(server: SegueServer, identifier: str) -> dict[str, Any] | None:
    """``GET /v1/profiles/{type}:{value}``; None on 404."""
    with server.admin() as admin:
        response = admin.get(f"/v1/profiles/{quote(identifier, safe=':')}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, (identifier, response.status_code, response.text)
    return dict(response.json())


def profile_events(server: SegueServer, identifier: str, page: int = 500) -> list[dict[str, Any]]:
    """The whole timeline of the profile behind ``identifier``, following ``next_cursor``."""
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    seen_cursors: set[str] = set()
    with server.admin() as admin:
        while True:
            params: dict[str, Any] = {"limit": page}
            if cursor is not None:
                params["cursor"] = cursor
            response = admin.get(
                f"/v1/profiles/{quote(identifier, safe=':')}/events", params=params
            )
            assert response.status_code == 200, (identifier, response.status_code, response.text)
            body = response.json()
            events.extend(body["events"])
            cursor = body["next_cursor"]
            if cursor is None or not body["events"]:
                return events
            assert cursor not in seen_cursors, f"timeline paging loops at cursor {cursor!r}"
            seen_cursors.add(cursor)


def timeline_ids(server: SegueServer, identifier: str) -> list[str]:
    return [str(event["messageId"]) for event in profile_events(server, identifier)]


def json_roundtrip(message: dict[str, Any]) -> dict[str, Any]:
    """What an SDK message looks like on the wire (tuples become lists, and so on)."""
    return dict(json.loads(json.dumps(message, default=str)))


def assert_same_as_sent(stored: dict[str, Any], sent: dict[str, Any]) -> None:
    """Every field the client sent comes back unchanged (the server may only add fields)."""
    wire = json_roundtrip(sent)
    for key, value in wire.items():
        assert key in stored, f"{wire['messageId']}: field {key!r} missing from stored message"
        assert stored[key] == value, (
            f"{wire['messageId']}: field {key!r} changed: sent {value!r}, stored {stored[key]!r}"
        )
    assert "receivedAt" in stored, stored


def batch_message_ids(headers: dict[str, str], body: bytes) -> list[str]:
    """The messageIds inside one raw ``/v1/batch`` request body (gzip or not)."""
    if headers.get("content-encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    return [str(message["messageId"]) for message in json.loads(body)["batch"]]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
