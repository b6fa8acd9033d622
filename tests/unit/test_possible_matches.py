"""Deciding a possible match through the processor (``Processor.decide_match``), on the
memory backends: the rules that keep events' profiles apart hold for an accept too."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from segue.core.model import Identifier, NewRecord, PossibleMatch
from segue.processor.service import Processor
from segue.storage.memory import MemoryEventLog, MemoryProfileStore

NOW = 1_767_225_600.0


class FixedClock:
    def now(self) -> float:
        return NOW


async def fold(processor: Processor, log: MemoryEventLog, *messages: dict[str, Any]) -> None:
    start = await log.last_offset()
    records = []
    for k, message in enumerate(messages, start):
        body = orjson.dumps({**message, "messageId": f"m{k}"})
        records.append(NewRecord("web", f"m{k}", NOW + k, "k", body))
    await log.append(records)
    while await processor.step():
        pass


def ann(anonymous_id: str, postcode: str) -> dict[str, Any]:
    traits = {"firstName": "Ann", "lastName": "Roe", "address": {"postalCode": postcode}}
    return {"type": "identify", "anonymousId": anonymous_id, "traits": traits}


async def grey_pair() -> tuple[Processor, MemoryEventLog, MemoryProfileStore, PossibleMatch]:
    log, store = MemoryEventLog(), MemoryProfileStore()
    processor = Processor(log, store, FixedClock(), b"secret")
    await processor.start()
    await fold(processor, log, ann("j1", "62704"), ann("j2", "62705"))
    (match,) = await store.possible_matches(None, "open", 0, 10)
    return processor, log, store, match


def test_reestimation_dismisses_a_match_the_user_id_limit_forbids_by_now() -> None:
    async def scenario() -> None:
        processor, log, store, match = await grey_pair()
        await fold(
            processor,
            log,
            {"type": "identify", "userId": "100", "anonymousId": "j1"},
            {"type": "identify", "userId": "200", "anonymousId": "j2"},
        )
        decided = await processor.decide_match(match.id, True, reason="match")
        assert decided.status == "dismissed"
        links = await store.lookup([Identifier("user_id", "100"), Identifier("user_id", "200")])
        assert len(set(links.values())) == 2

    asyncio.run(scenario())


def test_reestimation_still_merges_a_match_the_rules_allow() -> None:
    async def scenario() -> None:
        processor, _, store, match = await grey_pair()
        decided = await processor.decide_match(match.id, True, reason="match")
        assert decided.status == "accepted"
        links = await store.lookup(
            [Identifier("anonymous_id", "j1"), Identifier("anonymous_id", "j2")]
        )
        assert len(set(links.values())) == 1

    asyncio.run(scenario())
