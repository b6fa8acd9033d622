"""Batch sizes follow the lag: live traffic is folded in short batches (each event becomes
visible when its batch commits), a backlog in full ones (cheaper per event); the reports
consumer keeps its batches short while the processor folds live traffic."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from segue.core.model import LogRecord, NewRecord
from segue.metrics.attribution import Attribution
from segue.metrics.consumer import ReportsConsumer
from segue.processor.service import Processor
from segue.storage.memory import MemoryEventLog, MemoryProfileStore
from segue.storage.memory_reports import MemoryReportStore


class Clock:
    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


def records(n: int, received_at: float, prefix: str = "m") -> list[NewRecord]:
    out = []
    for k in range(n):
        message = {
            "type": "track",
            "event": "Product Viewed",
            "messageId": f"{prefix}{k}",
            "anonymousId": f"a{k % 50}",
            "properties": {"product_id": "p1"},
        }
        out.append(
            NewRecord("default", f"{prefix}{k}", received_at, f"a{k % 50}", orjson.dumps(message))
        )
    return out


async def steps(processor: Processor) -> list[int]:
    sizes = []
    while n := await processor.step():
        sizes.append(n)
    return sizes


def fold(lag: float, n: int = 100) -> list[int]:
    """The batch sizes that fold ``n`` records received ``lag`` seconds ago."""

    async def run() -> list[int]:
        clock = Clock(1_767_225_600.0)
        log = MemoryEventLog()
        await log.append(records(n, clock.t - lag))
        processor = Processor(
            log, MemoryProfileStore(), clock, b"secret", batch_size=40, matching=False
        )
        processor.live_batch, processor.catch_up_after = 10, 1.0
        await processor.start()
        return await steps(processor)

    return asyncio.run(run())


def test_live_traffic_is_folded_in_live_batches() -> None:
    assert fold(lag=0.2) == [10] * 10


def test_a_backlog_is_folded_in_full_batches_after_the_first() -> None:
    # the first batch cannot know the lag yet; once a full one shows records older than
    # ``catch_up_after``, the batches are full
    assert fold(lag=5.0) == [10, 40, 40, 10]


def test_a_processor_that_catches_up_goes_back_to_live_batches() -> None:
    async def run() -> list[int]:
        clock = Clock(1_767_225_600.0)
        log = MemoryEventLog()
        processor = Processor(
            log, MemoryProfileStore(), clock, b"secret", batch_size=40, matching=False
        )
        processor.live_batch = 10
        await processor.start()
        await log.append(records(90, clock.t - 5.0))
        backlog = await steps(processor)
        await log.append(records(30, clock.t, prefix="live"))
        return [*backlog, 0, *await steps(processor)]

    assert asyncio.run(run()) == [10, 40, 40, 0, 10, 10, 10]


def test_a_batch_size_below_the_live_one_is_kept() -> None:
    async def run() -> list[int]:
        clock = Clock(1_767_225_600.0)
        log = MemoryEventLog()
        await log.append(records(12, clock.t))
        processor = Processor(log, MemoryProfileStore(), clock, b"secret", batch_size=5)
        await processor.start()
        return await steps(processor)

    assert asyncio.run(run()) == [5, 5, 2]


def test_reports_take_short_batches_while_the_processor_folds_live_traffic() -> None:
    async def run() -> list[int]:
        clock = Clock(1_767_225_600.0)
        log = MemoryEventLog()
        store = MemoryProfileStore()
        await log.append(records(100, clock.t))
        processor = Processor(log, store, clock, b"secret", batch_size=1000, matching=False)
        await processor.start()
        await steps(processor)  # the reports consumer never reads past the processor
        reports = ReportsConsumer(
            log,
            MemoryReportStore(),
            store,
            lambda ids: _no_decisions(),
            processor.folder.wanted,
            clock,
            Attribution({}),
            batch_size=40,
        )
        reports.live_batch = 15
        live = [True]
        reports.processor_live = lambda: live[0]
        await reports.start()
        sizes = [await reports.step(), await reports.step()]
        live[0] = False
        while n := await reports.step():
            sizes.append(n)
        return sizes

    assert asyncio.run(run()) == [15, 15, 40, 30]


async def _no_decisions() -> dict[str, object]:
    return {}


def test_a_failed_live_batch_is_retried_record_by_record_for_its_own_length() -> None:
    async def run() -> tuple[int, list[int], list[int]]:
        clock = Clock(1_767_225_600.0)
        log = MemoryEventLog()
        await log.append(records(30, clock.t))
        store = MemoryProfileStore()
        processor = Processor(log, store, clock, b"secret", batch_size=40, matching=False)
        processor.live_batch = 10
        await processor.start()
        apply = processor.folder.apply

        def poisoned(ws: Any, record: LogRecord, *args: Any, **kwargs: Any) -> str | None:
            if record.offset == 3:
                raise ValueError("poison")
            return apply(ws, record, *args, **kwargs)

        processor.folder.apply = poisoned  # type: ignore[method-assign]
        quarantined: list[int] = []

        async def on_poison(record: LogRecord, error: Exception) -> None:
            quarantined.append(record.offset)

        with pytest.raises(ValueError, match="poison"):
            await processor.step()  # the batch of 10 holding the poison record fails
        await processor._isolate(on_poison)
        return processor.position, quarantined, await steps(processor)

    position, quarantined, after = asyncio.run(run())
    assert quarantined == [3]
    assert position == 10  # one at a time only through the batch that failed
    assert after == [10, 10]
