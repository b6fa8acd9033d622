"""The reports consumer: a record the stores cannot take is skipped, not a wedge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import orjson
import pytest

from segue.core.events import Event
from segue.core.model import Identifier, LogRecord, NewRecord
from segue.errors import BackendUnavailable, InvalidInput
from segue.metrics.attribution import Attribution
from segue.metrics.consumer import ReportsConsumer
from segue.runtime import SystemClock
from segue.storage.memory import MemoryEventLog, MemoryProfileStore
from segue.storage.memory_reports import MemoryReportStore


class PickyProfiles(MemoryProfileStore):
    """The processor has folded everything; a lookup naming ``poison`` fails as PostgreSQL
    fails on a NUL; ``down`` makes every lookup fail as an unreachable server does."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def checkpoint(self, consumer: str) -> int:
        return 10**9

    async def lookup(self, identifiers: Iterable[Identifier]) -> dict[Identifier, str]:
        wanted = list(identifiers)
        if self.down:
            raise BackendUnavailable("postgresql profiles: connection refused")
        if any(i.value == "poison" for i in wanted):
            raise InvalidInput("postgresql profiles: text fields cannot contain NUL")
        return {i: f"p_{i.value}" for i in wanted}


def record(n: int, user: str) -> NewRecord:
    body = {"type": "track", "messageId": f"m{n}", "userId": user, "event": "Product Viewed"}
    body["timestamp"] = body["receivedAt"] = "2026-12-01T10:00:00Z"
    return NewRecord("default", f"m{n}", time.time(), user, orjson.dumps(body))


def user_ids(event: Event) -> list[Identifier]:
    return [Identifier("user_id", event.uid)] if event.uid else []


async def no_decisions(ids: list[str]) -> dict[str, object]:
    return {}


async def consumer_over(
    users: list[str],
) -> tuple[ReportsConsumer, PickyProfiles, MemoryReportStore]:
    log = MemoryEventLog()
    await log.append([record(n, u) for n, u in enumerate(users, 1)])
    profiles, reports = PickyProfiles(), MemoryReportStore()
    consumer = ReportsConsumer(
        log, reports, profiles, no_decisions, user_ids, SystemClock(), Attribution({})
    )
    await consumer.start()
    return consumer, profiles, reports


def test_a_record_that_fails_alone_is_skipped_and_the_rest_folded() -> None:
    asyncio.run(_skipped())


def test_a_backend_outage_is_not_poison() -> None:
    asyncio.run(_outage())


async def _skipped() -> None:
    consumer, _, reports = await consumer_over(["ann", "poison", "bob"])
    with pytest.raises(InvalidInput):
        await consumer.step()
    assert consumer.position == 0

    assert await consumer.isolate() == 3
    assert consumer.poison == {2}
    assert consumer.position == 3
    assert set(await reports.people(["p_ann", "p_bob", "p_poison"])) == {"p_ann", "p_bob"}
    assert await reports.checkpoint("reports") == 3


async def _outage() -> None:
    consumer, profiles, _ = await consumer_over(["ann", "bob"])
    profiles.down = True
    with pytest.raises(BackendUnavailable):
        await consumer.isolate()
    assert consumer.poison == set()
    assert consumer.position == 0
    profiles.down = False
    assert await consumer.step() == 2


class ManualClock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def now(self) -> float:
        return self.t


def test_reports_wait_for_a_processor_with_a_backlog_but_not_for_ever() -> None:
    asyncio.run(_deferred())


async def _deferred() -> None:
    log = MemoryEventLog()
    await log.append([record(n, u) for n, u in enumerate(["ann", "bob"], 1)])
    clock = ManualClock()
    consumer = ReportsConsumer(
        log, MemoryReportStore(), PickyProfiles(), no_decisions, user_ids, clock, Attribution({})
    )
    behind = True
    consumer.processor_behind = lambda: behind
    task = asyncio.create_task(consumer.run())

    async def folded(n: int) -> None:
        for _ in range(500):
            if consumer.position == n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"position {consumer.position}, expected {n}")

    await folded(2)  # the first batch is never held back
    await log.append([record(3, "cid")])
    for _ in range(20):  # the clock stands still: the processor keeps the core
        await asyncio.sleep(0.01)
        assert consumer.deferring()
    assert consumer.position == 2
    clock.t += consumer.max_defer  # waited long enough: one batch goes
    await folded(3)
    assert consumer.deferring()
    await log.append([record(4, "dee")])
    behind = False  # the processor caught up: reports follow at once
    await folded(4)
    consumer.stop()
    await task


class CountingLog(MemoryEventLog):
    """Counts the records each read hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.handed = 0

    async def read(self, after: int, limit: int) -> list[LogRecord]:
        records = await super().read(after, limit)
        self.handed += len(records)
        return records


class TrailingProfiles(PickyProfiles):
    """A processor that has folded ``folded`` records so far."""

    def __init__(self) -> None:
        super().__init__()
        self.folded = 0

    async def checkpoint(self, consumer: str) -> int:
        return self.folded


def test_reports_read_no_further_than_the_processor() -> None:
    """A record past the processor would be read and opened twice: now and at the next
    step (a live processor folds a few hundred records a step; the reports' batch is
    thousands)."""

    async def scenario() -> None:
        log = CountingLog()
        await log.append([record(n, f"u{n}") for n in range(1, 1001)])
        profiles = TrailingProfiles()
        consumer = ReportsConsumer(
            log,
            MemoryReportStore(),
            profiles,
            no_decisions,
            user_ids,
            SystemClock(),
            Attribution({}),
            batch_size=400,
        )
        await consumer.start()
        steps = 0
        while consumer.position < 1000:
            profiles.folded = min(1000, profiles.folded + 150)
            while await consumer.step():
                steps += 1
        assert consumer.position == 1000
        assert log.handed == 1000  # each record read once
        assert steps == 7  # 150 at a time, as the processor went

    asyncio.run(scenario())
