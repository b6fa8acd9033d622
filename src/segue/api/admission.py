"""Admission control: under overload a process refuses work with ``503`` + ``Retry-After``.

Without a bound, an asyncio server that gets more requests than it can serve keeps
accepting them: every request becomes a task, all of them share the one core, each takes
longer, clients time out and retry, and the process serves nothing in time (congestion
collapse). segue bounds the work it takes on instead, and says no early and cheaply, in a
way the SDKs understand: ``503`` with ``Retry-After`` (Segment's SDK waits that long and
re-queues the batch without spending a retry; RudderStack's retries 5xx with exponential
backoff).

Budgets
    Requests are split into classes, each with its own budget, so a flood of one class never
    starves another: ``collect`` (the Segment collection API, imports, webhooks), ``decide``
    (decide and Rank/Reward), ``ops`` (``/healthz``, ``/readyz``, ``/metrics``: a load
    balancer and Prometheus must still get answers from an overloaded process) and ``admin``
    (everything else: the admin API, profiles, catalog, consent, privacy, reports).

    A budget runs at most ``max_in_flight`` requests at once. One more waits in the budget's
    FIFO queue for a slot; when the queue holds ``max_queue`` requests, the next is refused
    at once (``queue_full``).

Queueing delay (CoDel, as adapted for server queues)
    A queue that empties now and then is absorbing bursts, which is what it is for; a queue
    that never empties is a standing queue, which only adds delay to every request. So a
    request waits for its slot at most ``interval`` (100 ms by default) while the queue has
    been empty at some moment of the last ``interval``, and at most ``target`` (10 ms) once
    it has not: then new arrivals are shed quickly (``queue_timeout``) and the requests that
    are admitted are served with a bounded delay. The bound is on waiting, never on running:
    an admitted request always completes.

Nothing is half done
    A refused request did nothing: it is refused before its body is read. The collection
    pipeline's own bound on the event log (``ingest.backlog``) also refuses before anything
    is written, and raises the same :class:`~segue.errors.Overloaded`, which is counted here
    under its reason (``log_backlog``, ``log_stalled``). A ``200`` is only ever sent for
    events that are durable.

Metrics (Prometheus)
    ``segue_shed_requests_total{budget,reason}`` and ``segue_queued_requests_total{budget}``
    (admitted after waiting) are counted as they happen, never on the fast path, and summed
    over the API processes of ``serve --workers``; ``segue_in_flight_requests{budget}`` and
    ``segue_waiting_requests{budget}`` are read at scrape time, from the process that answers
    the scrape.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from segue.errors import Overloaded
from segue.settings import BudgetSettings, OverloadSettings

__all__ = ["BUDGETS", "AdmissionControl", "Budget", "budget_of"]

#: the classes of requests, each with its own budget
BUDGETS = ("collect", "decide", "admin", "ops")

_OPS = frozenset({"/healthz", "/readyz", "/metrics"})
_COLLECT = frozenset(
    {
        "/v1/batch",
        "/v1/import",
        "/v1/track",
        "/v1/identify",
        "/v1/page",
        "/v1/screen",
        "/v1/group",
        "/v1/alias",
        *("/v1/b", "/v1/t", "/v1/i", "/v1/p", "/v1/s", "/v1/g", "/v1/a"),  # the SDKs' short paths
    }
)


def budget_of(path: str) -> str:
    """The budget of a route, by its path template (``/v1/rank/{event_id}/reward``)."""
    if path in _OPS:
        return "ops"
    if path in _COLLECT or path.startswith("/v1/sources/"):
        return "collect"
    if path == "/v1/decide" or path == "/v1/rank" or path.startswith("/v1/rank/"):
        return "decide"
    return "admin"


class Budget:
    """One class's bound on concurrent requests and on the time they queue for a slot.

    Used as ``async with budget:`` around a request's work; entering raises
    :class:`Overloaded` when the request is shed. One instance serves every request of its
    class (entering and leaving keep no per-request state on it).

    Args:
        name: the class (a label in metrics and messages).
        limits: ``max_in_flight`` and the queue length.
        target_s: the longest wait once the queue is standing.
        interval_s: the longest wait otherwise, and how long the queue must stay non-empty
            to count as standing.
        retry_after: the ``Retry-After`` of a refusal, in whole seconds.
        clock: monotonic seconds (injected by tests).
        on_shed: called with the reason of each refusal (metrics).
        on_queued: called for each request admitted after waiting (metrics).
    """

    def __init__(
        self,
        name: str,
        limits: BudgetSettings,
        *,
        target_s: float,
        interval_s: float,
        retry_after: int,
        clock: Callable[[], float] = time.monotonic,
        on_shed: Callable[[str], None] | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.max_in_flight = limits.max_in_flight
        self.max_queue = limits.queue
        self.target_s = target_s
        self.interval_s = interval_s
        self.retry_after = retry_after
        self._clock = clock
        self._on_shed = on_shed
        self._on_queued = on_queued
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        #: the last moment the queue was seen empty
        self._last_empty = clock()
        self.admitted = 0
        self.queued = 0
        self.shed: collections.Counter[str] = collections.Counter()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _count_shed(self, reason: str) -> None:
        self.shed[reason] += 1
        if self._on_shed is not None:
            self._on_shed(reason)

    def _refuse(self, reason: str, message: str) -> Overloaded:
        self._count_shed(reason)
        return Overloaded(message, reason=reason, retry_after=self.retry_after)

    async def __aenter__(self) -> None:
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            self.admitted += 1
            return
        now = self._clock()
        if len(self._waiters) >= self.max_queue:
            raise self._refuse(
                "queue_full", f"overloaded: {self.name} requests are queued to capacity"
            )
        if not self._waiters:
            self._last_empty = now
        standing = now - self._last_empty > self.interval_s
        wait = self.target_s if standing else self.interval_s
        loop = asyncio.get_running_loop()
        slot: asyncio.Future[None] = loop.create_future()
        self._waiters.append(slot)
        timer = loop.call_later(wait, self._expire, slot)
        try:
            await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():  # handed a slot, then cancelled
                self._release()
            else:
                self._forget(slot)
            raise
        finally:
            timer.cancel()
        self.admitted += 1
        self.queued += 1
        if self._on_queued is not None:
            self._on_queued()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()
        if isinstance(exc, Overloaded):  # refused further in (the event log's bound)
            self._count_shed(exc.reason)

    def _expire(self, slot: asyncio.Future[None]) -> None:
        if slot.done():
            return
        self._forget(slot)
        slot.set_exception(
            self._refuse(
                "queue_timeout", f"overloaded: {self.name} requests waited too long for a slot"
            )
        )

    def _forget(self, slot: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(slot)
        except ValueError:
            return
        if not self._waiters:
            self._last_empty = self._clock()

    def _release(self) -> None:
        """Hand the slot to the oldest waiter still waiting, or give it back."""
        while self._waiters:
            slot = self._waiters.popleft()
            if not self._waiters:
                self._last_empty = self._clock()
            if not slot.done():
                slot.set_result(None)  # the slot changes hands: in_flight stays the same
                return
        self.in_flight -= 1


class _Unbounded:
    """The budget of every request when load shedding is turned off."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _per_reason(counter: Counter, budget: str) -> Callable[[str], None]:
    def count(reason: str) -> None:
        counter.labels(budget, reason).inc()

    return count


class AdmissionControl:
    """Every budget of one process, and their Prometheus metrics.

    Register it in a ``CollectorRegistry`` too: its :meth:`collect` reports the gauges at
    scrape time.

    Args:
        settings: the ``overload`` section of the configuration.
        registry: where the counters go; None in Prometheus multiprocess mode, where they
            are written to the shared files and summed at scrape time.
        clock: monotonic seconds (injected by tests).
    """

    def __init__(
        self,
        settings: OverloadSettings,
        registry: CollectorRegistry | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = settings.enabled
        shed = Counter(
            "segue_shed_requests",
            "Requests refused with 503 because a load bound was exceeded",
            ["budget", "reason"],
            registry=registry,
        )
        queued = Counter(
            "segue_queued_requests",
            "Requests admitted after waiting for a slot",
            ["budget"],
            registry=registry,
        )
        self.budgets: dict[str, Budget] = {}
        for name in BUDGETS:
            for reason in ("queue_full", "queue_timeout"):
                shed.labels(name, reason)  # reported as 0 before the first refusal
            self.budgets[name] = Budget(
                name,
                getattr(settings, name),
                target_s=settings.queue_target_ms / 1000.0,
                interval_s=settings.queue_interval_ms / 1000.0,
                retry_after=settings.retry_after_s,
                clock=clock,
                on_shed=_per_reason(shed, name),
                on_queued=queued.labels(name).inc,
            )
        self._unbounded = _Unbounded()
        self._by_path: dict[str, Budget] = {}

    def budget(self, path: str) -> Budget | _Unbounded:
        """The budget that admits requests of the route with this path template."""
        if not self.enabled:
            return self._unbounded
        found = self._by_path.get(path)
        if found is None:
            found = self._by_path[path] = self.budgets[budget_of(path)]
        return found

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "segue_in_flight_requests", "Requests running now, in this process", labels=["budget"]
        )
        waiting = GaugeMetricFamily(
            "segue_waiting_requests",
            "Requests waiting for a slot now, in this process",
            labels=["budget"],
        )
        for name, budget in self.budgets.items():
            in_flight.add_metric([name], budget.in_flight)
            waiting.add_metric([name], budget.waiting)
        yield in_flight
        yield waiting
