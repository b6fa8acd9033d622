"""The change feed contract, on the file feed and on Redis: what one process publishes the
others receive (a process ignores its own notes by origin, above the feed), a confirmed
publish waits until the others applied it, an erasure leaves no note behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from segue.core.changes import Change, decode_change, encode_change
from segue.core.ports import ChangeFeed
from segue.storage.redis_changes import RedisChangeFeed, split_prefix
from segue.storage.sqlite_changes import SqliteChangeFeed
from tests.tcp_relay import TcpRelay


@pytest.fixture(params=["sqlite", "redis"])
def make_feed(request, tmp_path: Path) -> Callable[[], ChangeFeed]:
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_url")
        return lambda: RedisChangeFeed(f"{url}?prefix={prefix}")
    return lambda: SqliteChangeFeed(tmp_path)


async def _opened(make: Callable[[], ChangeFeed], n: int) -> list[ChangeFeed]:
    feeds = [make() for _ in range(n)]
    for k, feed in enumerate(feeds):
        await feed.open(f"p{k}")
    return feeds


async def _closed(feeds: list[ChangeFeed]) -> None:
    for feed in feeds:
        await feed.aclose()


async def _drain(feed: ChangeFeed, want: int, timeout: float = 5.0) -> list[Change]:
    got: list[Change] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        for note in await feed.receive(0.1):
            change = decode_change(note)
            assert change is not None
            got.append(change)
    return got


def test_a_note_reaches_every_other_process(make_feed):
    async def scenario() -> None:
        a, b, c = feeds = await _opened(make_feed, 3)
        note = Change(origin="p0", identifiers=["email:a@b.c"], profiles=["p_1"])
        await a.publish(encode_change(note))
        for other in (b, c):
            assert await _drain(other, 1) == [note]
        assert all(f.live for f in feeds)
        await _closed(feeds)

    asyncio.run(scenario())


async def _follow(feed: ChangeFeed, applied: list[float]) -> None:
    got = await _drain(feed, 1)
    await asyncio.sleep(0.05)  # applying takes a while
    assert got[0].consent == ["user_id:1"]
    applied.append(time.monotonic())
    await feed.applied()


def test_a_confirmed_publish_returns_after_the_others_applied_it(make_feed):
    async def scenario() -> None:
        a, b = feeds = await _opened(make_feed, 2)
        applied: list[float] = []
        task = asyncio.create_task(_follow(b, applied))
        await asyncio.sleep(0.05)
        await a.publish(encode_change(Change(origin="p0", consent=["user_id:1"])), confirm=True)
        returned = time.monotonic()
        await task
        assert applied
        assert applied[0] <= returned
        await _closed(feeds)

    asyncio.run(scenario())


def test_a_confirmed_publish_does_not_wait_for_a_process_that_is_gone(make_feed):
    async def scenario() -> None:
        a, b = feeds = await _opened(make_feed, 2)
        await b.aclose()  # it said goodbye: nobody waits for it
        started = time.monotonic()
        await a.publish(encode_change(Change(origin="p0", flush=True)), confirm=True)
        assert time.monotonic() - started < 0.4
        await _closed([a])
        assert feeds

    asyncio.run(scenario())


def test_erasure_leaves_no_note_and_a_late_reader_flushes(tmp_path):
    async def scenario() -> None:
        a, b = SqliteChangeFeed(tmp_path), SqliteChangeFeed(tmp_path)
        await a.open("p0")
        await b.open("p1")
        secret = b"person-to-forget@example.org"
        await a.publish(encode_change(Change(origin="p0", consent=[secret.decode()])))
        assert await a.erase() == 1
        got = await _drain(b, 1)
        assert got
        assert got[0].flush  # it missed notes: it must drop its caches
        await a.aclose()
        await b.aclose()
        for path in tmp_path.iterdir():
            assert secret not in path.read_bytes(), path.name

    asyncio.run(scenario())


def test_a_redis_url_carries_its_key_prefix():
    assert split_prefix("redis://127.0.0.1:6379/0?prefix=shop1:") == (
        "redis://127.0.0.1:6379/0",
        "shop1:",
    )
    assert split_prefix("redis://h/1") == ("redis://h/1", "")


def _relayed(relay: TcpRelay, url: str, prefix: str) -> RedisChangeFeed:
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    return RedisChangeFeed(
        url.replace(host_port, f"127.0.0.1:{relay.port}", 1) + f"?prefix={prefix}"
    )


def test_a_publisher_that_lost_redis_makes_the_others_flush_once_back(redis_url):
    """Only the publisher is cut off: the others still hear the channel and trust their
    caches, so the note it could not send must turn into a flush once it is back."""
    url, prefix = redis_url

    async def scenario(relay: TcpRelay) -> None:
        cut_off = _relayed(relay, url, prefix)
        other = RedisChangeFeed(f"{url}?prefix={prefix}")
        await cut_off.open("p0")
        await other.open("p1")
        relay.down()
        await cut_off.publish(encode_change(Change(origin="p0", consent=["user_id:u1"])))
        assert not cut_off.live
        assert await other.receive(0.2) == []
        assert other.live  # it heard nothing wrong
        relay.up()
        local = await _drain(cut_off, 1)
        assert local
        assert local[0].flush
        assert cut_off.live
        heard = await _drain(other, 1)
        assert heard
        assert heard[0].flush
        await cut_off.aclose()
        await other.aclose()

    with TcpRelay(*_host_port(url)) as relay:
        asyncio.run(scenario(relay))


def test_a_silently_dead_subscription_counts_as_down(redis_url):
    """A partition that resets nothing: no error ever arrives, only silence."""
    url, prefix = redis_url

    async def scenario(relay: TcpRelay) -> None:
        feed = _relayed(relay, url, prefix)
        await feed.open("p0")
        assert await feed.receive(0.1) == []
        assert feed.live
        relay.freeze()
        notes: list[bytes] = []
        for _ in range(100):  # 10 s at most; the silence limit is 3 s
            notes = await feed.receive(0.1)
            if not feed.live:
                break
        assert not feed.live
        assert [c.flush for c in map(decode_change, notes) if c is not None] == [True]
        relay.down()
        relay.up()
        for _ in range(50):
            await feed.receive(0.1)
            if feed.live:
                break
        assert feed.live
        await feed.aclose()

    with TcpRelay(*_host_port(url)) as relay:
        asyncio.run(scenario(relay))


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)
