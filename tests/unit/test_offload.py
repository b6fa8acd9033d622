"""Small batches are folded on the event loop (a thread hand-off costs more than the work);
large ones still go to a worker thread, so requests are answered while they fold."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from segue.core.model import NewRecord
from segue.processor.service import Processor
from segue.runtime import SystemClock
from segue.storage.memory import MemoryEventLog, MemoryProfileStore


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(1)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def hand_offs(batch: int) -> tuple[int, int]:
    """Thread hand-offs of one step over ``batch`` identify events, and events folded."""

    async def run() -> tuple[int, int]:
        executor = CountingExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        log, store = MemoryEventLog(), MemoryProfileStore()
        bodies = [
            {
                "type": "identify",
                "messageId": f"m{k}",
                "anonymousId": f"a{k}",
                "traits": {
                    "firstName": "Ann",
                    "lastName": f"Lee{k}",
                    "birthday": "1990-01-0" + str(k % 9 + 1),
                },
            }
            for k in range(batch)
        ]
        await log.append(
            [
                NewRecord("default", b["messageId"], 1.0, b["anonymousId"], orjson.dumps(b))
                for b in bodies
            ]
        )
        processor = Processor(log, store, SystemClock(), b"secret")
        assert processor.linker is not None  # probabilistic matching on: scoring runs too
        await processor.start()
        folded = await processor.step()
        return executor.submitted, folded

    return asyncio.run(run())


def test_one_event_is_folded_and_matched_without_a_thread_hand_off() -> None:
    assert hand_offs(1) == (0, 1)


def test_a_large_batch_is_folded_on_worker_threads() -> None:
    submitted, folded = hand_offs(50)
    assert folded == 50
    assert submitted >= 2  # decoding and folding at least
