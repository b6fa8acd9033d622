"""Collection paused while the processor folds a batch: only when a command turned pauses
on, never when collection was already off, nested across processors, and always resumed."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import orjson
import pytest

from segue.cli.gc_tuning import tune_gc
from segue.core.model import Changeset, NewRecord
from segue.processor import collector
from segue.processor.collector import batch_pause, pause_during_batches
from segue.processor.service import Processor
from segue.runtime import SystemClock
from segue.storage.memory import MemoryEventLog, MemoryProfileStore


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    thresholds, was_enabled = gc.get_threshold(), gc.isenabled()
    yield
    pause_during_batches(False)
    gc.set_threshold(*thresholds)
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def test_off_leaves_collection_alone() -> None:
    pause_during_batches(False)
    gc.enable()
    with batch_pause():
        assert gc.isenabled()


@pytest.fixture
def pausing() -> None:
    """Pauses on, as ``tune_gc`` turns them on, and collection running."""
    pause_during_batches()
    gc.enable()


@pytest.mark.usefixtures("pausing")
def test_paused_inside_and_resumed_after_also_on_error() -> None:
    with batch_pause():
        assert not gc.isenabled()
    assert gc.isenabled()

    def failing_batch() -> None:
        with batch_pause():
            assert not gc.isenabled()
            raise RuntimeError("batch failed")

    with pytest.raises(RuntimeError):
        failing_batch()
    assert gc.isenabled()
    assert collector._depth == 0


@pytest.mark.usefixtures("pausing")
def test_pauses_nest() -> None:
    with batch_pause():
        with batch_pause():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer batch is still folding
    assert gc.isenabled()


@pytest.mark.usefixtures("pausing")
def test_collection_switched_off_by_the_application_stays_off() -> None:
    gc.disable()
    with batch_pause():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_tune_gc_turns_pauses_on() -> None:
    tune_gc()
    gc.enable()
    with batch_pause():
        assert not gc.isenabled()


class WatchingStore(MemoryProfileStore):
    """Notes whether automatic collection was on when each batch was committed."""

    def __init__(self) -> None:
        super().__init__()
        self.collecting: list[bool] = []

    async def commit(
        self, changes: Changeset, consumer: str, offset: int, *, expected: int | None = None
    ) -> None:
        self.collecting.append(gc.isenabled())
        await super().commit(changes, consumer, offset, expected=expected)


@pytest.mark.usefixtures("pausing")
def test_processor_batches_run_paused_and_collection_resumes() -> None:
    async def run() -> list[bool]:
        log, store = MemoryEventLog(), WatchingStore()
        body = {"type": "track", "messageId": "m1", "anonymousId": "a1", "event": "Viewed"}
        await log.append([NewRecord("default", "m1", 1.0, "a1", orjson.dumps(body))])
        processor = Processor(log, store, SystemClock(), b"secret")
        await processor.start()
        assert await processor.step() == 1
        return store.collecting

    assert asyncio.run(run()) == [False]
    assert gc.isenabled()
