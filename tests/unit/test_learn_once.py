"""A batch whose commit fails is folded again from the same offsets; the shared models it
taught in memory on the first attempt (item popularity, the match model's term
frequencies) must count its events once, as a run without the failure does."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from segue.core.model import Changeset, NewRecord
from segue.errors import BackendUnavailable, StaleState
from segue.features.items import ItemModels
from segue.processor.behaviour import BehaviourStage
from segue.processor.service import Processor
from segue.storage.memory import MemoryEventLog, MemoryProfileStore

NOW = 1_767_225_600.0


class Clock:
    def now(self) -> float:
        return NOW


class FailingOnce(MemoryProfileStore):
    """The real in-memory store, whose first commit raises ``error`` (a backend away, or
    another process having committed first)."""

    def __init__(self, error: Exception | None) -> None:
        super().__init__()
        self.error = error

    async def commit(self, changes: Changeset, *args: Any, **kwargs: Any) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        await super().commit(changes, *args, **kwargs)


def messages() -> list[NewRecord]:
    out = []
    for k in range(10):
        views = {
            "type": "track",
            "event": "Product Viewed",
            "messageId": f"v{k}",
            "userId": f"u{k}",
            "properties": {"product_id": "sku-1"},
        }
        who = {
            "type": "identify",
            "messageId": f"i{k}",
            "userId": f"u{k}",
            "traits": {"firstName": "Zebedee", "lastName": f"Last{k}", "city": "Leeds"},
        }
        for m in (views, who):
            out.append(NewRecord("default", m["messageId"], NOW, f"user_id:u{k}", orjson.dumps(m)))
    return out


def fold(error: Exception | None) -> tuple[float, int]:
    """Item popularity of sku-1 and the term count of the first name, after folding."""

    async def run() -> tuple[float, int]:
        log = MemoryEventLog()
        await log.append(messages())
        models = ItemModels()
        processor = Processor(
            log, FailingOnce(error), Clock(), b"secret", behaviour=BehaviourStage(models)
        )
        await processor.start()
        for _ in range(5):
            try:
                if await processor.step() == 0:
                    break
            except StaleState:  # as Processor.run does: read the position again
                processor.position, processor.version = await processor._store.position("profiles")
            except BackendUnavailable:
                continue
        assert processor.linker is not None
        names = processor.linker.tf.counts.get("first_name", {})
        return models.popularity("sku-1", NOW), sum(names.values())

    return asyncio.run(run())


@pytest.mark.parametrize("error", [BackendUnavailable("down"), StaleState("moved")])
def test_a_batch_folded_again_after_a_failed_commit_teaches_the_models_once(error):
    clean = fold(None)
    assert clean[0] > 0
    assert clean[1] == 10
    assert fold(error) == clean
