"""The in-process layer of the two-layer cache: LRU with TTL, stale-while-revalidate and
request coalescing.

The second layer is the state store itself (SQLite embedded, Redis at scale). Costly derived
data (popularity lists, neighbour lists) is served stale while one background refresh runs;
a thousand concurrent misses on one key cause one load; a changed profile or consent is
invalidated at once, so a revocation is never answered from the cache.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Cache", "CacheStats"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CacheStats:
    __slots__ = ("coalesced", "hits", "loads", "misses", "stale")

    def __init__(self) -> None:
        self.hits = self.misses = self.stale = self.loads = self.coalesced = 0


class _Entry(Generic[V]):
    __slots__ = ("fresh_until", "stale_until", "value")

    def __init__(self, value: V, fresh_until: float, stale_until: float) -> None:
        self.value = value
        self.fresh_until = fresh_until
        self.stale_until = stale_until


class Cache(Generic[K, V]):
    """An asyncio cache.

    Args:
        maxsize: entries kept; the least recently used go first.
        ttl: seconds an entry is fresh.
        stale: further seconds a stale entry may be served while one refresh runs
            (0 disables stale-while-revalidate: every expiry waits for the load).
        clock: monotonic seconds (injected for tests).
    """

    def __init__(
        self,
        maxsize: int,
        ttl: float,
        stale: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self.stale_for = stale
        self._clock = clock
        self._data: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._loading: dict[K, asyncio.Future[V]] = {}
        #: the invalidation count at each key's last invalidation (recent keys only)
        self._versions: dict[K, int] = {}
        self._counter = 0
        #: the invalidation count when versions were last pruned: a key without a version
        #: may have been invalidated at any count up to here
        self._pruned_at = 0
        self._refreshing: set[asyncio.Task[None]] = set()
        self.stats = CacheStats()
        #: load every time and keep nothing (while changes by others cannot be heard)
        self.bypass = False

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or the result of ``load`` (shared by concurrent callers)."""
        if self.bypass:
            self.stats.misses += 1
            return await load()
        entry = self._data.get(key)
        now = self._clock()
        if entry is not None:
            if now < entry.fresh_until:
                self._data.move_to_end(key)
                self.stats.hits += 1
                return entry.value
            if now < entry.stale_until:
                self.stats.stale += 1
                if key not in self._loading:
                    task = asyncio.ensure_future(self._refresh(key, load))
                    self._refreshing.add(task)
                    task.add_done_callback(self._refreshing.discard)
                return entry.value
        self.stats.misses += 1
        return await self._load(key, load)

    async def _refresh(self, key: K, load: Callable[[], Awaitable[V]]) -> None:
        try:
            await self._load(key, load)
        except Exception:  # a failed background refresh keeps serving the stale value
            return

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        pending = self._loading.get(key)
        if pending is not None:
            self.stats.coalesced += 1
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        started = self._counter
        try:
            self.stats.loads += 1
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            if self._loading.get(key) is future:
                del self._loading[key]
        if not self._invalidated_since(key, started):
            now = self._clock()
            self._data[key] = _Entry(value, now + self.ttl, now + self.ttl + self.stale_for)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        future.set_result(value)
        return value

    def _invalidated_since(self, key: K, count: int) -> bool:
        """Whether ``key`` may have been invalidated after the invalidation count ``count``.

        A pruned key's version is unknown, so the prune count stands in for it: a load that
        spans a prune is not stored unless its key's version survived, which costs one
        reload at worst, never a value read before a revocation.
        """
        return self._versions.get(key, self._pruned_at) > count

    def invalidate(self, key: K) -> None:
        """Forget a key now; a load already running for it will not be stored."""
        self._data.pop(key, None)
        # a caller arriving from now on must not join a load that began before: it could
        # read what was true before the change (a revoked consent, say). That detached load
        # still runs, and only the versions keep it from being stored.
        self._loading.pop(key, None)
        self._counter += 1
        self._versions[key] = self._counter
        if len(self._versions) > 4 * self.maxsize:
            # keep the memory bounded; the keys of coalesced loads in flight keep their
            # versions so their loads can still be stored, and _pruned_at covers the rest,
            # detached loads included
            self._versions = {k: v for k, v in self._versions.items() if k in self._loading}
            self._pruned_at = self._counter

    def clear(self) -> None:
        for key in list(self._data):
            self.invalidate(key)

    def __len__(self) -> int:
        return len(self._data)
