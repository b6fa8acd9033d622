import asyncio
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.decide.cache import Cache


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_a_thousand_concurrent_misses_cause_one_load():
    calls = 0

    async def load():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return "v"

    async def scenario():
        cache = Cache(10, ttl=5)
        values = await asyncio.gather(*(cache.get("k", load) for _ in range(1000)))
        return cache, values

    cache, values = run(scenario())
    assert calls == 1
    assert set(values) == {"v"}
    assert cache.stats.coalesced == 999


def test_stale_while_revalidate_serves_old_value_and_refreshes_once():
    clock = Clock()
    version = 0

    async def load():
        nonlocal version
        version += 1
        await asyncio.sleep(0)
        return version

    async def scenario():
        cache = Cache(10, ttl=1, stale=10, clock=clock)
        assert await cache.get("k", load) == 1
        clock.now = 2.0  # stale, within the stale window
        assert await asyncio.gather(*(cache.get("k", load) for _ in range(50))) == [1] * 50
        await asyncio.sleep(0.01)  # the single background refresh lands
        assert await cache.get("k", load) == 2
        clock.now = 100.0  # past the stale window: wait for a fresh load
        assert await cache.get("k", load) == 3
        return cache

    cache = run(scenario())
    assert version == 3
    assert cache.stats.stale == 50


def test_invalidation_during_a_load_is_not_undone_by_it():
    async def scenario():
        cache = Cache(10, ttl=100)
        gate = asyncio.Event()

        async def slow():
            await gate.wait()
            return "old"

        task = asyncio.ensure_future(cache.get("k", slow))
        await asyncio.sleep(0)
        cache.invalidate("k")  # e.g. consent revoked while the profile was being read
        gate.set()
        assert await task == "old"  # that caller gets what it asked for …

        async def fresh():
            return "new"

        return await cache.get("k", fresh)  # … but the cache did not keep it

    assert run(scenario()) == "new"


def test_lru_bound_and_failed_loads_are_not_cached():
    async def scenario():
        cache = Cache(3, ttl=100)
        for i in range(10):
            await cache.get(i, lambda i=i: asyncio.sleep(0, result=i))
        assert len(cache) == 3

        async def boom():
            raise RuntimeError("store down")

        with pytest.raises(RuntimeError):
            await cache.get("x", boom)
        assert await cache.get("x", lambda: asyncio.sleep(0, result="ok")) == "ok"

    run(scenario())


def test_a_caller_after_invalidation_never_joins_a_load_that_began_before():
    """Revocation then decide: the decide must not be answered by a read started earlier."""

    async def scenario() -> tuple[str, str, int]:
        cache: Cache[str, str] = Cache(maxsize=10, ttl=60)
        state = {"consent": "granted"}
        release = asyncio.Event()
        loads = 0

        async def load() -> str:
            nonlocal loads
            loads += 1
            seen = state["consent"]
            if loads == 1:
                await release.wait()  # the first read is slow and saw the old state
            return seen

        before = asyncio.ensure_future(cache.get("p1", load))
        await asyncio.sleep(0)
        state["consent"] = "revoked"
        cache.invalidate("p1")
        after = await cache.get("p1", load)
        release.set()
        return await before, after, loads

    before, after, loads = asyncio.run(scenario())
    assert (before, after, loads) == ("granted", "revoked", 2)


def test_a_load_invalidated_while_running_is_not_stored_even_after_pruning():
    """Pruning versions once 4 * maxsize keys were invalidated must not forget the one key
    whose detached load (started before its revocation) is still running."""

    async def scenario() -> tuple[str, str]:
        cache: Cache[str, str] = Cache(maxsize=2, ttl=60)
        state = {"consent": "granted"}
        started, release = asyncio.Event(), asyncio.Event()

        async def slow() -> str:
            seen = state["consent"]
            started.set()
            await release.wait()
            return seen

        before = asyncio.ensure_future(cache.get("alice", slow))
        await started.wait()
        state["consent"] = "revoked"
        cache.invalidate("alice")
        for i in range(4 * cache.maxsize + 1):  # past the prune threshold
            cache.invalidate(f"other-{i}")
        release.set()
        stale = await before

        async def fresh() -> str:
            return state["consent"]

        return stale, await cache.get("alice", fresh)

    assert asyncio.run(scenario()) == ("granted", "revoked")


@settings(max_examples=300, deadline=None)
@given(
    maxsize=st.integers(min_value=1, max_value=4),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["get", "invalidate", "finish", "churn"]),
            st.integers(min_value=0, max_value=5),
        ),
        max_size=60,
    ),
)
def test_no_value_read_before_an_invalidation_is_served_after_it(
    maxsize: int, steps: list[tuple[str, int]]
) -> None:
    """Any interleaving of gets, slow loads and invalidations (each one changes the truth):
    a get never answers with a value older than the truth when it was called. ``churn``
    invalidates other keys, enough to make the cache prune its versions."""

    async def scenario() -> None:
        cache: Cache[int, int] = Cache(maxsize=maxsize, ttl=1e9)
        truth = dict.fromkeys(range(6), 0)
        gates: dict[int, list[asyncio.Event]] = {k: [] for k in range(6)}
        calls: list[tuple[int, int, asyncio.Future[int]]] = []
        churned = 0

        def loader(key: int) -> Callable[[], Awaitable[int]]:
            async def load() -> int:
                seen = truth[key]
                gate = asyncio.Event()
                gates[key].append(gate)
                await gate.wait()  # slow: invalidations can happen meanwhile
                return seen

            return load

        async def settle() -> None:
            for _ in range(4):
                await asyncio.sleep(0)

        for op, key in steps:
            if op == "get":
                calls.append((key, truth[key], asyncio.ensure_future(cache.get(key, loader(key)))))
                await settle()
            elif op == "invalidate":
                truth[key] += 1
                cache.invalidate(key)
            elif op == "churn":
                for _ in range(4 * maxsize + 1):
                    churned += 1
                    cache.invalidate(-churned)
            else:
                for gate in gates[key]:
                    gate.set()
                gates[key].clear()
                await settle()
        while any(gates.values()):
            for pending in gates.values():
                for gate in pending:
                    gate.set()
                pending.clear()
            await settle()
        for key, at_call, call in calls:
            assert await call >= at_call, f"key {key} answered from before an invalidation"
        for key, value in truth.items():

            async def now(value: int = value) -> int:
                return value

            assert await cache.get(key, now) == value

    asyncio.run(scenario())
