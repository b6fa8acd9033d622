"""Group commit: concurrent appends share one transaction and one fsync.

While a transaction is being written, new appends queue up; when it finishes, everything
queued goes into the next one. Under load this turns N fsyncs into one without adding any
delay when idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class GroupCommitter(Generic[In, Out]):
    """Batches calls of ``write(list of groups) -> list of results per group``."""

    def __init__(self, write: Callable[[list[Sequence[In]]], Awaitable[list[list[Out]]]]) -> None:
        self._write = write
        self._pending: list[tuple[Sequence[In], asyncio.Future[list[Out]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[In]) -> list[Out]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Out]] = loop.create_future()
        self._pending.append((items, future))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await self._write([items for items, _ in batch])
                except Exception as exc:  # every caller of the batch gets it; none waits forever
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._task = None

    async def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        while self._task is not None:
            await asyncio.sleep(0.001)
