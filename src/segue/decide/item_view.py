"""A thread-safe, cached read view of the item models for the decision hot path.

The processor updates the item models in a worker thread while requests read them on the
event loop. Reads copy what they need under a short lock (one neighbour row), and popularity
lists — a sort over every item — are kept as snapshots refreshed in the background
(stale-while-revalidate): a request never sorts the catalog and never waits for a refresh
once a first snapshot exists.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["ItemView"]


class _Models(Protocol):
    def top(
        self,
        n: int,
        category: str | None = None,
        region: str | None = None,
        now: float | None = None,
    ) -> list[tuple[str, float]]: ...

    def neighbours(
        self, item_id: str, kind: str, n: int = 10, now: float | None = None
    ) -> list[tuple[str, float]]: ...

    def fresh(self, n: int, now: float) -> list[tuple[str, float]]: ...


class ItemView:
    """Implements ``decide.signals.ItemSignals`` over live item models.

    Args:
        models: the item models (mutated by the processor under ``lock``).
        lock: held by the processor while it applies one event.
        ttl: seconds a popularity snapshot is fresh; after that it is served while one
            background refresh runs.
        depth: how many items each snapshot keeps.
    """

    def __init__(
        self,
        models: _Models,
        lock: threading.Lock,
        ttl: float = 2.0,
        depth: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.models = models
        self.lock = lock
        self.ttl = ttl
        self.depth = depth
        self._clock = clock
        self._snapshots: dict[
            tuple[str | None, str | None], tuple[float, list[tuple[str, float]]]
        ] = {}
        self._refreshing: set[tuple[str | None, str | None]] = set()

    def _compute(self, key: tuple[str | None, str | None]) -> list[tuple[str, float]]:
        with self.lock:
            return self.models.top(self.depth, category=key[0], region=key[1])

    def top(
        self,
        n: int,
        category: str | None = None,
        region: str | None = None,
        now: float | None = None,
    ) -> list[tuple[str, float]]:
        key = (category, region)
        found = self._snapshots.get(key)
        moment = self._clock()
        if found is None:
            ranked = self._compute(key)
            self._snapshots[key] = (moment, ranked)
            return ranked[:n]
        taken, ranked = found
        if moment - taken > self.ttl and key not in self._refreshing:
            self._refresh(key)
        return ranked[:n]

    def _refresh(self, key: tuple[str | None, str | None]) -> None:
        self._refreshing.add(key)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a script, a test): refresh inline
            self._snapshots[key] = (self._clock(), self._compute(key))
            self._refreshing.discard(key)
            return

        def done(future: asyncio.Future[list[tuple[str, float]]]) -> None:
            self._refreshing.discard(key)
            if not future.cancelled() and future.exception() is None:
                self._snapshots[key] = (self._clock(), future.result())

        loop.run_in_executor(None, self._compute, key).add_done_callback(done)

    def neighbours(self, item_id: str, kind: str, n: int) -> list[tuple[str, float]]:
        with self.lock:
            return self.models.neighbours(item_id, kind, n)

    def fresh(self, n: int, now: float) -> list[tuple[str, float]]:
        key = ("$fresh", None)
        found = self._snapshots.get(key)
        moment = self._clock()
        if found is None or moment - found[0] > self.ttl:
            with self.lock:
                ranked = self.models.fresh(self.depth, now)
            self._snapshots[key] = (moment, ranked)
            return ranked[:n]
        return found[1][:n]

    def invalidate(self) -> None:
        """Drop every snapshot (e.g. after the models were replaced)."""
        self._snapshots.clear()
