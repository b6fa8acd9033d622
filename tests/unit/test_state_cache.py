"""The processor's state cache is invisible: the same log folds into the same state with it
and without it, when commits fail and are retried, and when another writer takes a turn."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson

from segue.core.model import Changeset, Identifier, NewRecord, Profile
from segue.errors import BackendUnavailable, StaleState
from segue.processor.service import Processor
from segue.processor.state_cache import StateCache
from segue.runtime import SystemClock
from segue.storage.memory import MemoryEventLog, MemoryProfileStore


def messages(n: int, seed: int) -> list[dict[str, Any]]:
    """Anonymous browsing, sign-ups with an email, logins from new devices, aliases, and
    people who share an email (merges): the paths that move links and drop profiles."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for k in range(n):
        person = rng.randrange(40)
        device = f"anon-{person}-{rng.randrange(3)}"
        roll = rng.random()
        msg: dict[str, Any] = {"messageId": f"m{k}", "anonymousId": device}
        if roll < 0.5:
            msg.update(type="track", event="Product Viewed", properties={"product_id": "p1"})
        elif roll < 0.8:
            msg.update(
                type="identify",
                userId=f"user-{person}",
                traits={"email": f"p{person % 30}@example.org", "plan": f"plan-{k % 4}"},
            )
        elif roll < 0.9:
            msg.update(type="alias", userId=f"user-{person}", previousId=device)
        else:
            msg.update(type="page", name="Home")
        out.append(msg)
    return out


def records(batch: list[dict[str, Any]]) -> list[NewRecord]:
    now = 1_767_225_600.0  # one receive time for every run, so their profiles can be compared
    return [
        NewRecord("default", m["messageId"], now + k, m["anonymousId"], orjson.dumps(m))
        for k, m in enumerate(batch)
    ]


class FlakyStore(MemoryProfileStore):
    """Fails one commit in ``every`` as a dropped connection would: before applying it, or
    (``lost_ack``) after, so the caller cannot tell whether it landed."""

    def __init__(self, every: int, lost_ack: bool = False) -> None:
        super().__init__()
        self.every = every
        self.lost_ack = lost_ack
        self.commits = 0

    async def commit(
        self, changes: Changeset, consumer: str, offset: int, *, expected: int | None = None
    ) -> None:
        self.commits += 1
        failing = bool(self.every and self.commits % self.every == 0)
        if failing and not self.lost_ack:
            raise BackendUnavailable("connection lost")
        await super().commit(changes, consumer, offset, expected=expected)
        if failing:
            raise BackendUnavailable("connection lost before the acknowledgement")


async def fold(
    batch: list[dict[str, Any]],
    *,
    cache: int,
    every: int = 0,
    lost_ack: bool = False,
    meddle: bool = False,
) -> tuple[dict[Identifier, str], dict[str, Profile], Processor]:
    log, store = MemoryEventLog(), FlakyStore(every, lost_ack)
    await log.append(records(batch))
    processor = Processor(
        log, store, SystemClock(), b"secret", batch_size=7, matching=False, state_cache=cache
    )
    await processor.start()
    steps = 0
    while True:
        try:
            if not await processor.step():
                break
        except BackendUnavailable:
            continue  # what ``run`` does after its pause
        except StaleState:  # the commit had landed after all: ``run`` reloads the same way
            processor.position, processor.version = await store.position("profiles")
            continue
        steps += 1
        if meddle and steps % 5 == 0:
            # another writer's turn (an admin operation): it moves the version on
            async with processor.lock:
                offset, version = await store.position("profiles")
                await store.commit(Changeset(), "profiles", offset, expected=version)
                processor.version = version + 1
    links = await store.lookup(
        Identifier(kind, value)
        for m in batch
        for kind, value in (("anonymous_id", m["anonymousId"]), ("user_id", m.get("userId")))
        if value
    )
    profiles = await store.profiles(set(links.values()))
    return links, profiles, processor


def test_the_cache_changes_nothing_about_the_state() -> None:
    async def scenario() -> None:
        batch = messages(600, seed=5)
        plain_links, plain_profiles, _ = await fold(batch, cache=0)
        links, profiles, processor = await fold(batch, cache=1000)
        assert links == plain_links
        assert profiles == plain_profiles
        assert processor.cache.hits > processor.cache.misses  # it was used
        # a cache too small for everyone evicts, and still changes nothing
        links, profiles, _ = await fold(batch, cache=5)
        assert (links, profiles) == (plain_links, plain_profiles)

    asyncio.run(scenario())


def test_failed_commits_and_other_writers_leave_no_stale_state() -> None:
    async def scenario() -> None:
        batch = messages(600, seed=9)
        plain_links, plain_profiles, _ = await fold(batch, cache=0)
        links, profiles, _ = await fold(batch, cache=1000, every=4)
        assert (links, profiles) == (plain_links, plain_profiles)
        links, profiles, _ = await fold(batch, cache=1000, every=4, lost_ack=True)
        assert (links, profiles) == (plain_links, plain_profiles)
        links, profiles, processor = await fold(batch, cache=1000, every=3, meddle=True)
        assert (links, profiles) == (plain_links, plain_profiles)
        async with processor.lock:
            assert processor.cache.profiles == {}

    asyncio.run(scenario())


def test_eviction_drops_the_oldest_first() -> None:
    cache = StateCache(profiles=2)
    mk = {
        pid: Profile(profile_id=pid, created_at=0, updated_at=0, first_seen=0, last_seen=0)
        for pid in ("a", "b", "c")
    }
    for pid in ("a", "b", "c"):
        cache.committed(Changeset(), {Identifier("user_id", pid): pid}, {pid: mk[pid]})
    assert list(cache.profiles) == ["b", "c"]
    found, missing = cache.split_profiles(["a", "c"])
    assert list(found) == ["c"]
    assert missing == ["a"]
    assert "c" not in cache.profiles  # taken out: the fold changes it in place


class FrozenClock:
    """Merge records carry the clock's time: one time for every run, so they compare."""

    def now(self) -> float:
        return 1_767_225_600.0


class CountingStore(MemoryProfileStore):
    """Counts the match records asked of the store."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    async def match_records(self, profile_ids: Any) -> dict[str, bytes]:
        wanted = list(profile_ids)
        self.asked += len(wanted)
        return await super().match_records(wanted)


def people(n: int, seed: int) -> list[dict[str, Any]]:
    """Sign-ups with names and addresses from different devices, a third of them people
    seen before with a typo: what probabilistic matching scores."""
    rng = random.Random(seed)
    firsts = ["ada", "grace", "alan", "edsger", "barbara", "donald", "john", "frances"]
    lasts = ["lovelace", "hopper", "turing", "dijkstra", "liskov", "knuth", "backus", "allen"]
    base = [
        {
            "firstName": rng.choice(firsts),
            "lastName": rng.choice(lasts),
            "birthday": f"19{rng.randrange(50, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(9)}",
            "address": {"street": f"{rng.randrange(1, 90)} main street", "postalCode": "2000"},
        }
        for _ in range(n)
    ]
    out: list[dict[str, Any]] = []
    for k in range(n * 2):
        traits = dict(base[k % n] if k >= n and rng.random() < 0.7 else base[rng.randrange(n)])
        if k >= n:
            traits["firstName"] = traits["firstName"][:-1] + "x"
        out.append(
            {"messageId": f"s{k}", "anonymousId": f"dev-{k}", "type": "identify", "traits": traits}
        )
    return out


def test_match_records_of_candidates_come_from_the_cache_and_change_nothing() -> None:
    async def scenario(cache: int) -> tuple[dict[str, Profile], int]:
        batch = people(60, seed=3)
        log, store = MemoryEventLog(), CountingStore()
        await log.append(records(batch))
        processor = Processor(log, store, FrozenClock(), b"secret", batch_size=5, state_cache=cache)
        await processor.start()
        while await processor.step():
            pass
        assert processor.linker is not None
        links = await store.lookup(Identifier("anonymous_id", m["anonymousId"]) for m in batch)
        merged = len(links) - len(set(links.values()))
        assert merged > 10  # matching merged people: candidates were scored
        return await store.profiles(set(links.values())), store.asked

    plain, asked_plain = asyncio.run(scenario(0))
    cached, asked_cached = asyncio.run(scenario(1000))
    assert cached == plain
    # every candidate's record was written through this processor: none is read back
    assert asked_plain > 100
    assert asked_cached == 0


def test_match_records_follow_commits_redirects_drops_and_clear() -> None:
    cache = StateCache(profiles=10)
    cache.keep_records({"a": b"ra", "b": b"rb", "c": b"rc"})
    cache.committed(
        Changeset(match_records={"a": b"ra2", "d": b"rd", "c": b""}, redirects={"b": "a"}), {}, {}
    )
    assert cache.records == {"a": b"ra2", "d": b"rd"}
    found, missing = cache.split_records(["a", "b", "x"])
    assert (found, missing) == ({"a": b"ra2"}, ["b", "x"])
    cache.committed(Changeset(drop_profiles=["d"]), {}, {})
    assert cache.records == {"a": b"ra2"}
    cache.clear()
    assert cache.records == {}
