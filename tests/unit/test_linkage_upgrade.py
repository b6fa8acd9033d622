"""Profiles stored before 2026-12-07 hold block keys that records no longer get (the date of
birth alone, either name with day and month); a new record is still looked up under them,
so those profiles keep being found (``probe_keys``)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from segue.core.model import Changeset, Identifier, NewRecord
from segue.processor.service import Processor
from segue.storage.memory import MemoryEventLog, MemoryProfileStore

TRAITS = {
    "firstName": "Katherine",
    "lastName": "Oduya",
    "birthday": "1984-03-11",
    "address": {"street": "12 Tullaroop Street", "city": "Box Hill", "postalCode": "3128"},
}


class FixedClock:
    def now(self) -> float:
        return 1_767_230_000.0


def _identify(k: int) -> NewRecord:
    message = {
        "type": "identify",
        "messageId": f"m{k}",
        "anonymousId": f"crm-{k}",
        "traits": TRAITS,
    }
    return NewRecord("crm", f"m{k}", 1_767_225_600.0 + k, f"crm-{k}", orjson.dumps(message))


async def _second_arrival_links(stored_keys: list[str]) -> bool:
    """Fold one person, replace the block keys stored for them, fold them again: linked?"""
    log, store = MemoryEventLog(), MemoryProfileStore()
    processor = Processor(log, store, FixedClock(), b"secret", batch_size=10)
    await processor.start()
    await log.append([_identify(0)])
    while await processor.step():
        pass
    first = (await store.lookup([Identifier("anonymous_id", "crm-0")]))[
        Identifier("anonymous_id", "crm-0")
    ]
    offset, version = await store.position("profiles")
    # what an older version stored, or a key nobody looks up
    await store.commit(
        Changeset(block_keys={first: stored_keys}), "profiles", offset, expected=version
    )
    processor.version = version + 1
    if processor.cache is not None:
        processor.cache.clear()
    await log.append([_identify(1)])
    while await processor.step():
        pass
    links: dict[Any, str] = await store.lookup(
        [Identifier("anonymous_id", "crm-0"), Identifier("anonymous_id", "crm-1")]
    )
    return len(set(links.values())) == 1


def test_a_profile_stored_with_the_date_of_birth_alone_is_still_found() -> None:
    assert asyncio.run(_second_arrival_links(["dob:1984:3:11"]))
    # the control: under a key no record is looked up by, the same person is not found
    assert not asyncio.run(_second_arrival_links(["nothing:here"]))


def test_a_profile_stored_with_either_name_and_day_and_month_is_still_found() -> None:
    assert asyncio.run(_second_arrival_links(["fn_md:K0RN:3:11"]))
    assert asyncio.run(_second_arrival_links(["ln_md:OTY:3:11"]))
