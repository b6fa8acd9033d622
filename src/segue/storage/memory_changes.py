"""The change feed of a single process: nobody else to tell.

A process with memory stores is alone by construction (its state is in its own memory),
so its notes have no reader; it applies its own changes directly.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["MemoryChangeFeed"]


class MemoryChangeFeed:
    """Publishes to no one; receives nothing (after waiting, like a quiet feed)."""

    def __init__(self) -> None:
        self.published = 0
        self.live = True
        self._closed = asyncio.Event()

    async def open(self, origin: str) -> None:
        return None

    async def publish(self, note: bytes, *, confirm: bool = False) -> None:
        self.published += 1

    async def applied(self) -> None:
        return None

    async def receive(self, timeout: float) -> list[bytes]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), timeout)
        return []

    async def erase(self) -> int:
        return 0

    async def aclose(self) -> None:
        self._closed.set()
