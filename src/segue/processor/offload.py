"""A batch's CPU work: on a worker thread, unless the batch is small.

Decoding, folding and scoring run off the event loop, so that requests are answered while
a batch of thousands is folded. But handing work to a thread and back costs ~130 µs on this
machine (p99 ~230 µs; an ``asyncio`` executor round trip of a function that does nothing),
more than decoding and folding one event takes. A processor that keeps up takes events one
or a few at a time, and each step handed its CPU work over four times (decode, fold, score,
apply): ~0.5 ms of a one-event step's ~5 ms. Small batches now run that work on the loop
itself; it holds the loop for less time than one hand-off would have.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["off_loop"]

T = TypeVar("T")


async def off_loop(inline: bool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the default executor, or right here when ``inline``."""
    if inline:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
