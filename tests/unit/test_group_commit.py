"""Group commit: a failed transaction fails every caller that shared it, whatever the error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from segue.errors import BackendUnavailable, InvalidInput
from segue.storage._group_commit import GroupCommitter


@pytest.mark.parametrize("error", [BackendUnavailable("down"), InvalidInput("NUL in text")])
def test_a_failed_write_reaches_every_caller_and_the_next_write_still_runs(error: Exception):
    calls: list[list[Sequence[int]]] = []

    async def write(groups: list[Sequence[int]]) -> list[list[int]]:
        calls.append(groups)
        await asyncio.sleep(0)
        if len(calls) == 1:
            raise error
        return [[n * 10 for n in group] for group in groups]

    async def scenario() -> None:
        committer: GroupCommitter[int, int] = GroupCommitter(write)
        results = await asyncio.wait_for(
            asyncio.gather(*(committer.submit([n]) for n in range(3)), return_exceptions=True),
            timeout=5,
        )
        assert all(r is not None for r in results)
        assert isinstance(results[0], type(error))  # the first batch failed, nobody hangs
        assert await asyncio.wait_for(committer.submit([7]), timeout=5) == [70]

    asyncio.run(scenario())
