"""The collection pipeline's bound on the event log: refuse early, never half-store.

A log whose appends wait on a gate stands for a log that cannot keep up (a slow disk, a
NATS server that went away). Time is a movable clock; nothing here measures durations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from segue.core.events import Event
from segue.core.model import NewRecord
from segue.errors import Overloaded
from segue.ingest.backlog import LogBacklog
from segue.ingest.pipeline import IngestService
from segue.ingest.validate import Limits
from segue.storage.memory import MemoryEventLog, MemoryQuarantine


class Clock:
    def __init__(self) -> None:
        self.t = 1_714_557_600.0

    def now(self) -> float:
        return self.t


class GatedLog(MemoryEventLog):
    """Appends wait until the gate opens, like a log that is behind."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0

    async def append(self, records: Sequence[NewRecord]) -> list[int | None]:
        self.waiting += 1
        await self.gate.wait()
        self.waiting -= 1
        return await super().append(records)


def batch(ids: list[str]) -> bytes:
    return msgspec.json.encode(
        {"batch": [{"type": "track", "userId": "u1", "event": "E", "messageId": m} for m in ids]}
    )


def test_backlog_refuses_past_its_bound_but_always_admits_into_an_empty_pipeline():
    backlog = LogBacklog(Clock(), max_records=10, stall_s=5.0, retry_after=2)
    with backlog.admit(25):  # larger than the bound, but nothing else is waiting
        assert backlog.records == 25
        with pytest.raises(Overloaded) as refused, backlog.admit(1):
            pytest.fail("admitted past the bound")
    assert refused.value.reason == "log_backlog"
    assert refused.value.retry_after == 2
    with backlog.admit(6), backlog.admit(4):
        assert backlog.records == 10
    assert backlog.records == 0


def test_a_stalled_log_refuses_new_writes_until_the_stuck_one_ends():
    clock = Clock()
    backlog = LogBacklog(clock, max_records=1000, stall_s=2.0, retry_after=1)
    with backlog.admit(1):
        clock.t += 1.0
        with backlog.admit(1):  # the oldest has waited 1 s of 2: still admitted
            pass
        clock.t += 1.5
        with pytest.raises(Overloaded) as refused, backlog.admit(1):
            pytest.fail("admitted while the log is stalled")
        assert refused.value.reason == "log_stalled"
    with backlog.admit(1):  # the stuck write ended: the next one probes the log
        assert backlog.records == 1


def test_a_refused_request_writes_nothing_and_an_admitted_one_is_acknowledged_once_durable():
    async def scenario() -> None:
        clock = Clock()
        log, quarantine = GatedLog(), MemoryQuarantine()
        await log.open()
        await quarantine.open()
        ingest = IngestService(
            log,
            quarantine,
            clock,
            Limits(),
            backlog=LogBacklog(clock, max_records=3, stall_s=10.0, retry_after=1),
        )
        screened: list[str] = []

        async def screen(
            source: str, prepared: list[tuple[dict[str, Any], Event]], gpc: bool
        ) -> list[int]:
            screened.extend(str(message["messageId"]) for message, _ in prepared)
            return []

        ingest.screen = screen
        first = asyncio.create_task(
            ingest.collect("default", ingest.parse(batch(["a", "b"]), None))
        )
        while log.waiting == 0:
            await asyncio.sleep(0)
        assert not first.done()  # not acknowledged while the log has not stored it
        with pytest.raises(Overloaded):
            await ingest.collect("default", ingest.parse(batch(["c", "d"]), None))
        assert screened == ["a", "b"]  # refused before the consent step ran
        log.gate.set()
        result = await first
        assert result.stored == 2
        assert [r.message_id for r in await log.read(0, 10)] == ["a", "b"]
        assert ingest.counters.received == 2  # the refused request was never received
        retried = await ingest.collect("default", ingest.parse(batch(["c", "d"]), None))
        assert retried.stored == 2
        assert [r.message_id for r in await log.read(0, 10)] == ["a", "b", "c", "d"]

    asyncio.run(scenario())


def test_a_failed_append_gives_its_places_back():
    class DownLog(MemoryEventLog):
        async def append(self, records: Sequence[NewRecord]) -> list[int | None]:
            raise Overloaded("down", reason="log_backlog")

    async def scenario() -> None:
        clock = Clock()
        backlog = LogBacklog(clock, max_records=5, stall_s=10.0, retry_after=1)
        ingest = IngestService(DownLog(), MemoryQuarantine(), clock, Limits(), backlog=backlog)
        for _ in range(3):
            with pytest.raises(Overloaded):
                await ingest.collect("default", ingest.parse(batch(["x", "y"]), None))
        assert backlog.records == 0

    asyncio.run(scenario())
