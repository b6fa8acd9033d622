"""kill -9 durability: an acknowledged event survives, and nothing is processed twice.

Several writer threads POST ``/v1/batch`` (100 unique events each, raw HTTP with Basic auth)
while segue is SIGKILLed at a random moment. After a restart on the same data folder:

* every messageId of every batch that got a 200 is in the event log exactly once
  (an ack means durable);
* once the processor caught up, every profile's ``event_count`` equals the number of
  distinct events in its timeline, the timeline has no event twice, and it holds exactly the
  stored events of that person (a processor that re-applies work after the crash, or skips
  it, breaks one of these);
* a client that re-sends every batch it ever tried (acked or not) ends with each event
  stored once: messageId dedupe holds across restarts.

The seed is printed in every failure message; set ``SEGUE_DURABILITY_SEED`` to replay one.
"""

from __future__ import annotations

import base64
import os
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import audit
from tests.e2e.server import CLUSTER, WRITE_KEY, SegueServer

pytestmark = pytest.mark.e2e

WRITERS = 3
USERS = 16
BATCH = 100
ROUNDS = 3
MAX_BATCHES_PER_WRITER = 400  # a safety bound; the kill comes long before it
KILL_AFTER = (0.02, 0.4)  # seconds after the first acknowledged batch of a round
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


class Person:
    def __init__(self, tag: str, k: int) -> None:
        self.user_id = f"{tag}-u{k}"
        self.anonymous_id = f"{tag}-a{k}"

    def owns(self, message: dict[str, Any]) -> bool:
        return (
            message.get("userId") == self.user_id or message.get("anonymousId") == self.anonymous_id
        )


class Load:
    """What the writers sent and what segue acknowledged, shared across threads."""

    def __init__(self, tag: str, people: list[Person], seed: int) -> None:
        self.tag = tag
        self.people = people
        self.seed = seed
        self.lock = threading.Lock()
        self.attempted: list[list[dict[str, Any]]] = []
        self.acked: set[str] = set()
        self.unexpected: list[str] = []

    def batch(self, rng: random.Random) -> list[dict[str, Any]]:
        messages = []
        for _ in range(BATCH):
            person = rng.choice(self.people)
            roll = rng.random()
            message: dict[str, Any] = {"messageId": f"{self.tag}-{uuid.uuid4().hex}"}
            if roll < 0.1:
                message.update(
                    type="identify", userId=person.user_id, traits={"score": rng.randrange(1000)}
                )
            elif roll < 0.25:
                message.update(
                    type="track",
                    anonymousId=person.anonymous_id,
                    event="Product Viewed",
                    properties={"sku": rng.randrange(50)},
                )
            elif roll < 0.35:
                message.update(
                    type="page", userId=person.user_id, anonymousId=person.anonymous_id, name="Home"
                )
            else:
                message.update(
                    type="track",
                    userId=person.user_id,
                    event="Order Completed",
                    properties={
                        "total": rng.randrange(10_000) / 100,
                        "products": [{"product_id": "p1", "quantity": 1}],
                    },
                )
            messages.append(message)
        return messages

    def write(self, url: str, writer: int, stop: threading.Event) -> None:
        rng = random.Random(f"{self.seed}-{writer}-{url}-{len(self.attempted)}")
        with httpx.Client(base_url=url, headers=AUTH, timeout=10.0) as client:
            for _ in range(MAX_BATCHES_PER_WRITER):
                if stop.is_set():
                    return
                batch = self.batch(rng)
                with self.lock:
                    self.attempted.append(batch)
                try:
                    response = client.post("/v1/batch", json={"batch": batch})
                except httpx.HTTPError:
                    return  # segue died under us: this batch is not acknowledged
                if response.status_code == 200 and response.json() == {"success": True}:
                    with self.lock:
                        self.acked.update(m["messageId"] for m in batch)
                else:
                    with self.lock:
                        self.unexpected.append(f"{response.status_code} {response.text[:300]}")
                    return


def _link_people(srv: SegueServer, people: list[Person]) -> list[str]:
    """One identify per person tying user id and anonymous id, before any crash."""
    batch = [
        {
            "type": "identify",
            "messageId": f"link-{p.user_id}",
            "userId": p.user_id,
            "anonymousId": p.anonymous_id,
            "traits": {"linked": True},
        }
        for p in people
    ]
    with srv.writer() as client:
        response = client.post("/v1/batch", json={"batch": batch})
    assert response.status_code == 200, response.text
    return [m["messageId"] for m in batch]


def _check_profiles(
    srv: SegueServer, people: list[Person], records: list[dict[str, Any]], why: str
) -> None:
    messages = [audit.message_of(r) for r in records if r["source"] == audit.SOURCE]
    for person in people:
        expected = {m["messageId"] for m in messages if person.owns(m)}
        timeline = audit.timeline_ids(srv, f"user_id:{person.user_id}")
        assert len(timeline) == len(set(timeline)), (
            f"{why}: {person.user_id}: an event is in the timeline twice"
        )
        assert set(timeline) == expected, (
            f"{why}: {person.user_id}: timeline has {len(timeline)} events, log has "
            f"{len(expected)}; missing {len(expected - set(timeline))}, "
            f"foreign {len(set(timeline) - expected)}"
        )
        found = audit.profile(srv, f"user_id:{person.user_id}")
        assert found is not None, f"{why}: {person.user_id}: no profile"
        assert found["event_count"] == len(expected), (
            f"{why}: {person.user_id}: event_count {found['event_count']} but "
            f"{len(expected)} distinct events (double or missed processing after kill -9)"
        )
        via_anon = audit.profile(srv, f"anonymous_id:{person.anonymous_id}")
        assert via_anon is not None, why
        assert via_anon["profile_id"] == found["profile_id"], why
    stats = srv.stats()
    assert stats["profiles"] == len(people), f"{why}: {stats}"
    assert stats["identities"] == 2 * len(people), f"{why}: {stats}"


def test_kill9_keeps_every_acknowledged_event_exactly_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("SEGUE_DURABILITY_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    tag = f"k9{seed}"
    people = [Person(tag, k) for k in range(USERS)]
    load = Load(tag, people, seed)
    data = tmp_path / "data"
    srv = SegueServer(data).start()
    port = srv.port
    linked = _link_people(srv, people)
    try:
        for round_no in range(1, ROUNDS + 1):
            why = f"seed {seed}, round {round_no}"
            stop = threading.Event()
            writers = [
                threading.Thread(target=load.write, args=(srv.url, w, stop)) for w in range(WRITERS)
            ]
            for thread in writers:
                thread.start()
            acked_before = len(load.acked)
            audit.wait_until(lambda n=acked_before: len(load.acked) > n, 10, f"{why}: a first ack")
            time.sleep(rng.uniform(*KILL_AFTER))  # scheduling the crash, not an assertion
            assert all(t.is_alive() for t in writers), f"{why}: writers ran out before the kill"
            srv.kill9()
            stop.set()
            for thread in writers:
                thread.join(30)
            assert not any(t.is_alive() for t in writers), why
            assert load.unexpected == [], (why, load.unexpected[:3])
            assert load.acked, f"{why}: no batch was acknowledged before the kill"

            srv = SegueServer(data, port=port).start()
            records = audit.log_records(srv)  # before processing caught up: the log alone
            audit.assert_stored_exactly_once(records, load.acked | set(linked))
            srv.wait_processed(timeout=30)
            _check_profiles(srv, people, audit.log_records(srv), why)

        # a client re-sends everything it ever tried, acknowledged or not
        why = f"seed {seed}, resend"
        stored = set(audit.id_counts(audit.log_records(srv)))
        attempted_ids = {m["messageId"] for batch in load.attempted for m in batch}
        before = srv.wait_processed()
        with srv.writer() as client:
            for batch in load.attempted:
                response = client.post("/v1/batch", json={"batch": batch})
                assert response.status_code == 200, (why, response.text)
        after = srv.wait_processed(timeout=30)
        already = len(attempted_ids & stored)
        if not CLUSTER:  # a per-process counter: the API processes of a cluster each count
            assert after["events_duplicate"] - before["events_duplicate"] == already, why
        assert (
            after["events_processed"] - before["events_processed"] == len(attempted_ids) - already
        ), why
        records = audit.log_records(srv)
        audit.assert_stored_exactly_once(records, attempted_ids | set(linked))
        assert len(records) == len(attempted_ids) + len(linked), why
        _check_profiles(srv, people, records, why)
    finally:
        srv.stop()
