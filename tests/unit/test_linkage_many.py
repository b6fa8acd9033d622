"""A batch's pairs weighed all at once (``Linker._score_many``) link exactly as weighing them
one by one (``Linker._score``): the same merges with the same explanations, the same possible
matches, the same profiles."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson

from segue.core.model import Identifier, NewRecord, PossibleMatch, Profile
from segue.processor.service import Processor
from segue.storage.memory import MemoryEventLog, MemoryProfileStore

FIRST = ("anna", "james", "thomas", "li", "katherine", "maria", "john", "o", "lee", "mary")
LAST = ("lee", "garcia", "oduya", "smith", "li", "nguyen", "brown", "tan", "jones", "kim")
STREETS = ("tullaroop street", "elm road", "main street", "park avenue")


def person(rng: random.Random) -> dict[str, Any]:
    return {
        "firstName": rng.choice(FIRST),
        "lastName": rng.choice(LAST),
        "birthday": f"{rng.randint(1960, 1964)}-{rng.randint(1, 4):02d}-{rng.randint(1, 4):02d}",
        "address": {
            "street": f"{rng.randint(1, 30)} {rng.choice(STREETS)}",
            "city": rng.choice(("box hill", "perth")),
            "postalCode": rng.choice(("3128", "6000")),
        },
        **({"email": f"{rng.choice(FIRST)}@example.org"} if rng.random() < 0.2 else {}),
    }


def noisy(traits: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The same person again: a typo, swapped names, an initial, day and month swapped, or
    a missing date of birth."""
    out = orjson.loads(orjson.dumps(traits))
    change = rng.choice(("typo", "swap", "initial", "dob", "drop", "none"))
    if change == "typo":
        name = out["lastName"]
        out["lastName"] = name[:-1] + "x" if len(name) > 2 else name
    elif change == "swap":
        out["firstName"], out["lastName"] = out["lastName"], out["firstName"]
    elif change == "initial":
        out["firstName"] = out["firstName"][0]
    elif change == "dob":
        y, m, d = out["birthday"].split("-")
        out["birthday"] = f"{y}-{d}-{m}"
    elif change == "drop":
        del out["birthday"]
    return out


def messages(n: int, seed: int) -> list[dict[str, Any]]:
    """CRM rows in a small world: many share a name, a birthday or a street, and about a
    third are someone seen before (often in the same batch)."""
    rng = random.Random(seed)
    people: list[dict[str, Any]] = []
    out = []
    for k in range(n):
        if people and rng.random() < 0.35:
            traits = noisy(rng.choice(people), rng)
        else:
            traits = person(rng)
            people.append(traits)
        out.append(
            {"type": "identify", "messageId": f"m{k}", "anonymousId": f"crm-{k}", "traits": traits}
        )
    return out


class FixedClock:
    """Merges and possible matches are stamped with the clock: one instant for both runs."""

    def now(self) -> float:
        return 1_767_230_000.0


async def link(batch: list[dict[str, Any]], many_from: int) -> tuple[Any, ...]:
    log, store = MemoryEventLog(), MemoryProfileStore()
    now = 1_767_225_600.0
    await log.append(
        [
            NewRecord("crm", m["messageId"], now + k, m["anonymousId"], orjson.dumps(m))
            for k, m in enumerate(batch)
        ]
    )
    processor = Processor(log, store, FixedClock(), b"secret", batch_size=150)
    linker = processor.linker
    assert linker is not None
    linker.many_from = many_from
    linker.tf.min_total = 50  # term frequencies weigh from the second batch on
    calls = {"one": 0, "many": 0}
    for name, key in (("_score", "one"), ("_score_many", "many")):
        method = getattr(linker, name)

        def counted(*args: Any, _method: Any = method, _key: str = key) -> Any:
            calls[_key] += 1
            return _method(*args)

        setattr(linker, name, counted)
    await processor.start()
    while await processor.step():
        pass
    links = await store.lookup(Identifier("anonymous_id", m["anonymousId"]) for m in batch)
    profiles: dict[str, Profile] = await store.profiles(set(links.values()))
    possible: list[PossibleMatch] = []
    for pid in sorted(profiles):
        possible += await store.possible_matches(pid, None, 0, 1000)
    return links, profiles, possible, calls


def test_weighing_a_batch_at_once_links_as_one_pair_at_a_time() -> None:
    async def scenario() -> None:
        batch = messages(900, seed=11)
        links, profiles, possible, calls = await link(batch, many_from=10**9)
        assert calls == {"one": 6, "many": 0}
        many = await link(batch, many_from=1)
        assert many[3] == {"one": 0, "many": 6}
        assert many[0] == links
        assert many[1] == profiles
        assert many[2] == possible
        # the batch exercised what matters: merges explained field by field, grey-zone pairs
        merges = [m for p in profiles.values() for m in p.merges if m.reason == "match"]
        assert len(merges) > 100
        assert possible

    asyncio.run(scenario())
