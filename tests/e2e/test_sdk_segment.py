"""The real ``segment-analytics-python`` SDK, unchanged, pointed at segue with ``host=``.

What the SDK does on the wire (segment/analytics/request.py, consumer.py, 2.4.0):
* ``POST {host}/v1/batch`` with ``{"batch": [...], "sentAt", "writeKey"}``; the write key goes
  both in the body and as HTTP Basic ``writeKey:``;
* plain JSON by default, gzip (``Content-Encoding: gzip``) when ``gzip=True``;
* one consumer thread, batches of up to 100 messages / 475 KB, 32 KB per message;
* any 2xx is success; retries network errors and 408/410/429/460/5xx (not 501/505) with
  backoff (first retry immediate, sends ``X-Retry-Count``); other 4xx go to ``on_error``
  with an ``APIError`` built from the ``code``/``message`` of segue's JSON error body.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from segment.analytics import Client
from segment.analytics.request import APIError

from tests.e2e import audit
from tests.e2e.sdk_workload import (
    ErrorSink,
    assert_workload_delivered,
    build_workload,
    send_all,
)
from tests.e2e.server import WRITE_KEY, SegueServer

pytestmark = pytest.mark.e2e

TOTAL = 3000


@pytest.fixture
def errors() -> ErrorSink:
    return ErrorSink()


@pytest.fixture
def client(server: SegueServer, errors: ErrorSink) -> Iterator[Client]:
    """An asynchronous Segment client with the SDK's defaults (no gzip, batches of 100)."""
    sdk = Client(write_key=WRITE_KEY, host=server.url, on_error=errors)
    try:
        yield sdk
    finally:
        sdk.join()


def _delta(after: dict[str, int], before: dict[str, int], key: str) -> int:
    return after[key] - before[key]


def test_thousands_of_mixed_events_are_stored_exactly_once(
    server: SegueServer, client: Client, errors: ErrorSink
) -> None:
    before = server.wait_processed()
    workload = build_workload(TOTAL, seed=11, prefix="seg")
    assert len(workload.calls) == TOTAL
    assert {c.method for c in workload.calls} == {
        "track",
        "identify",
        "page",
        "screen",
        "group",
        "alias",
    }

    messages = send_all(client, workload.calls)
    client.flush()

    assert errors.failures == [], errors.summary()
    after = server.wait_processed(at_least=before["events_processed"] + TOTAL)
    assert _delta(after, before, "events_received") == TOTAL
    assert _delta(after, before, "events_processed") == TOTAL
    assert _delta(after, before, "events_duplicate") == 0
    assert _delta(after, before, "events_rejected") == 0
    assert after["lag_events"] == 0
    assert_workload_delivered(server, workload, messages)


def test_gzip_sync_mode_sends_each_call_and_stores_it_once(server: SegueServer) -> None:
    """``sync_mode`` posts every call as its own gzip batch and raises on any failure."""
    sdk = Client(write_key=WRITE_KEY, host=server.url, sync_mode=True, gzip=True)
    workload = build_workload(30, n_users=3, n_visitors=2, seed=12, prefix="segz")
    messages = send_all(sdk, workload.calls)  # would raise APIError on a non-2xx
    server.wait_processed()
    assert_workload_delivered(server, workload, messages)


def test_wrong_write_key_is_a_non_retryable_401(server: SegueServer) -> None:
    sync = Client(write_key="not-a-key", host=server.url, sync_mode=True)
    with pytest.raises(APIError) as caught:
        sync.track(user_id="intruder", event="Sneaked In")
    assert caught.value.status == 401
    assert caught.value.code == "unauthorized"

    failures = ErrorSink()
    sdk = Client(write_key="not-a-key", host=server.url, on_error=failures, max_retries=3)
    try:
        _, message = sdk.track(user_id="intruder", event="Sneaked In Again")
        sdk.flush()
    finally:
        sdk.join()
    # 401 is not retryable: reported once through on_error, with the batch
    assert len(failures.failures) == 1, failures.summary()
    error, batch = failures.failures[0]
    assert isinstance(error, APIError)
    assert (error.status, error.code) == (401, "unauthorized")
    assert [m["messageId"] for m in batch] == [message["messageId"]]
    counts = audit.id_counts(audit.log_records(server))
    assert counts[message["messageId"]] == 0


@pytest.mark.embedded("counts rejections on one API process's counters")
def test_one_bad_message_is_quarantined_and_the_rest_of_the_batch_stored(
    server: SegueServer, client: Client, errors: ErrorSink
) -> None:
    """segue answers 200 with ``rejected``; the SDK counts it a success and moves on."""
    before = server.wait_processed()
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    messages = []
    for i in range(60):
        # the SDK accepts any string as event name; segue rejects a blank one ($.event)
        name = "   " if i == 30 else f"Item {i}"
        queued, message = client.track(
            user_id=f"segq-{run}", event=name, properties={"i": i}, timestamp=now
        )
        assert queued
        messages.append(message)
    client.flush()
    assert errors.failures == [], errors.summary()

    bad = messages[30]["messageId"]
    good = [m["messageId"] for i, m in enumerate(messages) if i != 30]
    after = server.wait_processed(at_least=before["events_processed"] + len(good))
    assert _delta(after, before, "events_rejected") == 1
    assert _delta(after, before, "quarantined") == 1
    records = audit.log_records(server)
    audit.assert_stored_exactly_once(records, good)
    assert audit.id_counts(records)[bad] == 0
    assert sorted(audit.timeline_ids(server, f"user_id:segq-{run}")) == sorted(good)

    with server.admin() as admin:
        response = admin.get("/v1/admin/quarantine", params={"source": "default", "limit": 1000})
    assert response.status_code == 200, response.text
    entries = [
        e for e in response.json()["entries"] if _as_dict(e["message"]).get("messageId") == bad
    ]
    assert len(entries) == 1, response.json()
    assert entries[0]["field"] == "$.event"
    assert entries[0]["source"] == "default"


def _as_dict(message: object) -> dict[str, object]:
    if isinstance(message, str):
        return dict(json.loads(message))
    assert isinstance(message, dict)
    return message
