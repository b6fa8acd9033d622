"""Admission control: bounded concurrency, a bounded queue, CoDel-style waits, counted sheds.

Time is a movable clock for the standing-queue decision; the waits themselves are real but
chosen far apart (a tiny target, a huge interval), so every assertion is about outcomes and
counts, never about how long something took.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from segue.api.admission import AdmissionControl, Budget, budget_of
from segue.errors import BackendUnavailable, Overloaded
from segue.settings import BudgetSettings, OverloadSettings

TINY = 0.005  # the longest wait once the queue is standing
HUGE = 60.0  # the longest wait otherwise (never reached in these tests)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def budget(clock: Clock, in_flight: int = 2, queue: int = 2) -> Budget:
    return Budget(
        "collect",
        BudgetSettings(max_in_flight=in_flight, max_queue=queue),
        target_s=TINY,
        interval_s=HUGE,
        retry_after=3,
        clock=clock,
    )


class Holder:
    """Runs ``async with budget`` in a task and keeps the slot until released."""

    def __init__(self, b: Budget) -> None:
        self.entered = asyncio.Event()
        self.leave = asyncio.Event()
        self.task = asyncio.create_task(self._run(b))

    async def _run(self, b: Budget) -> None:
        async with b:
            self.entered.set()
            await self.leave.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_within_the_limit_requests_run_at_once_and_give_their_slot_back():
    async def scenario() -> None:
        b = budget(Clock())
        holders = [Holder(b) for _ in range(2)]
        await settle()
        assert all(h.entered.is_set() for h in holders)
        assert (b.in_flight, b.waiting, b.admitted, b.queued) == (2, 0, 2, 0)
        for h in holders:
            h.leave.set()
        await asyncio.gather(*(h.task for h in holders))
        assert b.in_flight == 0
        assert sum(b.shed.values()) == 0

    asyncio.run(scenario())


def test_a_burst_waits_for_slots_in_arrival_order():
    async def scenario() -> None:
        b = budget(Clock())
        running = [Holder(b) for _ in range(2)]
        await settle()
        waiting = [Holder(b) for _ in range(2)]
        await settle()
        assert b.waiting == 2
        assert not any(h.entered.is_set() for h in waiting)
        running[0].leave.set()
        await settle()
        assert waiting[0].entered.is_set()
        assert not waiting[1].entered.is_set()  # FIFO: the second waits for the next slot
        assert b.in_flight == 2  # the slot changed hands
        running[1].leave.set()
        await settle()
        assert waiting[1].entered.is_set()
        for h in waiting:
            h.leave.set()
        await asyncio.gather(*(h.task for h in running + waiting))
        assert (b.in_flight, b.waiting, b.admitted, b.queued) == (0, 0, 4, 2)
        assert sum(b.shed.values()) == 0

    asyncio.run(scenario())


def test_a_full_queue_refuses_at_once_with_retry_after():
    async def scenario() -> None:
        b = budget(Clock(), in_flight=1, queue=1)
        holders = [Holder(b) for _ in range(2)]
        await settle()
        with pytest.raises(Overloaded) as refused:
            async with b:
                pytest.fail("admitted past a full queue")
        assert refused.value.reason == "queue_full"
        assert refused.value.retry_after == 3
        assert refused.value.code == "overloaded"
        assert isinstance(refused.value, BackendUnavailable)  # every retry path knows it
        assert b.shed == {"queue_full": 1}
        for h in holders:
            h.leave.set()
        await asyncio.gather(*(h.task for h in holders))
        assert (b.in_flight, b.waiting) == (0, 0)

    asyncio.run(scenario())


def test_a_standing_queue_sheds_new_arrivals_after_the_short_target():
    async def scenario() -> None:
        clock = Clock()
        b = budget(clock, in_flight=1, queue=10)
        runner = Holder(b)
        await settle()
        first = Holder(b)  # the queue was empty: a burst, it may wait the long interval
        await settle()
        clock.t += HUGE + 1  # the queue has not been empty for a whole interval: standing
        with pytest.raises(Overloaded) as refused:
            async with b:
                pytest.fail("admitted from a standing queue")
        assert refused.value.reason == "queue_timeout"
        assert b.shed == {"queue_timeout": 1}
        assert not first.task.done()  # the earlier one still waits: only arrivals are cut
        runner.leave.set()
        await settle()
        assert first.entered.is_set()
        first.leave.set()
        await asyncio.gather(runner.task, first.task)
        assert (b.in_flight, b.waiting, b.queued) == (0, 0, 1)

    asyncio.run(scenario())


def test_once_the_queue_drains_bursts_may_wait_again():
    async def scenario() -> None:
        clock = Clock()
        b = budget(clock, in_flight=1, queue=10)
        runner = Holder(b)
        await settle()
        waiter = Holder(b)
        await settle()
        clock.t += HUGE + 1
        runner.leave.set()  # the queue empties now
        await settle()
        assert waiter.entered.is_set()
        late = Holder(b)  # arrives to an empty queue: it may wait the long interval
        await settle()
        clock.t += 1.0
        await asyncio.sleep(TINY * 4)
        assert not late.task.done()
        waiter.leave.set()
        await settle()
        assert late.entered.is_set()
        late.leave.set()
        await asyncio.gather(runner.task, waiter.task, late.task)
        assert sum(b.shed.values()) == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_the_queue_and_a_cancelled_holder_its_slot():
    async def scenario() -> None:
        b = budget(Clock(), in_flight=1, queue=5)
        runner = Holder(b)
        await settle()
        gone = Holder(b)
        await settle()
        assert b.waiting == 1
        gone.task.cancel()
        await settle()
        assert b.waiting == 0
        handed = Holder(b)
        await settle()
        runner.leave.set()
        # the slot is handed over, and the new holder is cancelled before it ever runs
        await asyncio.sleep(0)
        handed.task.cancel()
        await asyncio.gather(runner.task, gone.task, handed.task, return_exceptions=True)
        assert (b.in_flight, b.waiting) == (0, 0)
        after = Holder(b)  # the slot is really free
        await settle()
        assert after.entered.is_set()
        after.leave.set()
        await after.task

    asyncio.run(scenario())


def test_a_refusal_from_inside_is_counted_under_its_reason_and_frees_the_slot():
    async def scenario() -> None:
        b = budget(Clock())
        with pytest.raises(Overloaded):
            async with b:
                raise Overloaded("the log is behind", reason="log_backlog")
        assert b.shed == {"log_backlog": 1}
        assert b.in_flight == 0

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/batch", "collect"),
        ("/v1/track", "collect"),
        ("/v1/import", "collect"),
        *((f"/v1/{short}", "collect") for short in "btipsga"),
        ("/v1/sources/{source}/import", "collect"),
        ("/v1/sources/{source}/webhook", "collect"),
        ("/v1/decide", "decide"),
        ("/v1/rank", "decide"),
        ("/v1/rank/{event_id}/reward", "decide"),
        ("/healthz", "ops"),
        ("/readyz", "ops"),
        ("/metrics", "ops"),
        ("/v1/stats", "admin"),
        ("/v1/profiles/{ref}", "admin"),
        ("/v1/catalog/items", "admin"),
        ("/v1/ranking-report", "admin"),
    ],
)
def test_routes_fall_into_budgets(path: str, expected: str):
    assert budget_of(path) == expected


def test_budgets_are_separate_and_reported_to_prometheus():
    registry = CollectorRegistry()

    async def scenario() -> AdmissionControl:
        settings = OverloadSettings(collect=BudgetSettings(max_in_flight=1, max_queue=0))
        control = AdmissionControl(settings, registry)
        registry.register(control)
        collect = control.budget("/v1/batch")
        assert control.budget("/v1/track") is collect
        async with collect:
            with pytest.raises(Overloaded):
                async with control.budget("/v1/page"):
                    pass
            async with control.budget("/healthz"), control.budget("/v1/decide"):
                pass  # other budgets are not affected by a full collect budget
        return control

    control = asyncio.run(scenario())
    assert control.budgets["collect"].admitted == 1
    assert control.budgets["ops"].admitted == 1

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("segue_shed_requests_total", budget="collect", reason="queue_full") == 1
    assert sample("segue_shed_requests_total", budget="decide", reason="queue_full") == 0
    assert sample("segue_shed_requests_total", budget="ops", reason="queue_timeout") == 0
    assert sample("segue_queued_requests_total", budget="collect") == 0
    assert sample("segue_in_flight_requests", budget="collect") == 0
    assert sample("segue_waiting_requests", budget="decide") == 0


def test_turned_off_nothing_is_refused():
    async def scenario() -> None:
        control = AdmissionControl(
            OverloadSettings(enabled=False, collect=BudgetSettings(max_in_flight=1, max_queue=0)),
            CollectorRegistry(),
        )
        b = control.budget("/v1/batch")
        async with b, b, b:
            pass

    asyncio.run(scenario())
