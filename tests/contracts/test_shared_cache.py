"""The shared second cache layer on a real Redis: a copy is kept and found, an
invalidation voids a load in flight (the stale-write race), a reset makes every copy
unreachable, and a Redis that is down is a miss, never an error."""

from __future__ import annotations

import asyncio

from segue.storage.redis_cache import RedisSharedCache

SECRET = b"installation-secret"


def test_a_copy_is_found_until_it_is_invalidated(redis_url):
    url, prefix = redis_url

    async def scenario() -> None:
        a = RedisSharedCache(f"{url}?prefix={prefix}", SECRET)
        b = RedisSharedCache(f"{url}?prefix={prefix}", SECRET)
        value, token = await a.get("sig:p1")
        assert value is None
        await a.put("sig:p1", b"signals-v1", token)
        assert (await b.get("sig:p1"))[0] == b"signals-v1"  # another process finds it
        assert await b.invalidate(["sig:p1", "facts:p1"])
        assert (await a.get("sig:p1"))[0] is None
        await a.aclose()
        await b.aclose()

    asyncio.run(scenario())


def test_a_load_that_began_before_an_invalidation_is_not_stored(redis_url):
    url, prefix = redis_url

    async def scenario() -> None:
        reader = RedisSharedCache(f"{url}?prefix={prefix}", SECRET)
        writer = RedisSharedCache(f"{url}?prefix={prefix}", SECRET)
        _, token = await reader.get("facts:p2")  # miss: the reader goes to the store…
        assert await writer.invalidate(["facts:p2"])  # …while the worker commits a change
        await reader.put("facts:p2", b"the state before the change", token)
        assert (await reader.get("facts:p2"))[0] is None  # the stale copy was refused
        _, token = await reader.get("facts:p2")
        await reader.put("facts:p2", b"the state after", token)
        assert (await writer.get("facts:p2"))[0] == b"the state after"
        await reader.aclose()
        await writer.aclose()

    asyncio.run(scenario())


def test_a_reset_makes_every_copy_unreachable_and_voids_loads_in_flight(redis_url):
    url, prefix = redis_url

    async def scenario() -> None:
        cache = RedisSharedCache(f"{url}?prefix={prefix}", SECRET)
        _, token = await cache.get("id:user_id:1")
        await cache.put("id:user_id:1", b"p_1", token)
        _, late = await cache.get("id:user_id:2")
        await cache.reset()
        assert (await cache.get("id:user_id:1"))[0] is None
        await cache.put("id:user_id:2", b"p_2", late)  # read in the old epoch
        assert (await cache.get("id:user_id:2"))[0] is None
        await cache.aclose()

    asyncio.run(scenario())


def test_a_redis_that_is_down_is_a_miss_not_an_error():
    async def scenario() -> None:
        cache = RedisSharedCache("redis://127.0.0.1:1/0", SECRET)  # nothing listens there
        value, token = await cache.get("sig:p1")
        assert (value, token) == (None, b"")
        await cache.put("sig:p1", b"x", token)
        assert await cache.invalidate(["sig:p1"]) is False
        await cache.reset()
        assert cache.errors >= 2
        await cache.aclose()

    asyncio.run(scenario())


def test_keys_are_stored_only_as_keyed_hashes(redis_url):
    """Key names are identifiers: Redis lists them to anyone who can scan it, and the
    generations an invalidation writes (an erasure's too) outlive the values by an hour."""
    import redis

    url, prefix = redis_url
    key = "id:email:ann.secret@example.com"

    async def scenario() -> None:
        cache = RedisSharedCache(f"{url}?prefix={prefix}", SECRET)
        _, token = await cache.get(key)
        await cache.put(key, b"p_1", token)
        other = RedisSharedCache(f"{url}?prefix={prefix}", b"another installation")
        assert (await other.get(key))[0] is None  # the name depends on the secret
        same = RedisSharedCache(f"{url}?prefix={prefix}", SECRET)
        assert (await same.get(key))[0] == b"p_1"  # … and is the same for every process
        assert await cache.invalidate([key, "facts:p_1"])
        for c in (cache, other, same):
            await c.aclose()

    asyncio.run(scenario())
    client = redis.Redis.from_url(url)
    names = [n.decode() for n in client.scan_iter(match=prefix + "*")]
    client.close()
    assert any(n.startswith(prefix + "g:") for n in names)
    for name in names:
        assert "ann" not in name
        assert "email" not in name
        assert "p_1" not in name
