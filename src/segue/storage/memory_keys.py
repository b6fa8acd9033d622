"""Data keys in memory: the reference for the key-store contract (nothing survives)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

__all__ = ["MemoryKeyStore"]


class MemoryKeyStore:
    """Per-subject data keys in a dict."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}

    async def open(self) -> None:
        return None

    async def get(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        return {k: self._keys[k] for k in set(key_ids) if k in self._keys}

    async def create(self, key_ids: Sequence[str]) -> dict[str, bytes]:
        return {k: self._keys.setdefault(k, os.urandom(32)) for k in key_ids}

    async def destroy(self, key_ids: Iterable[str]) -> int:
        return sum(self._keys.pop(k, None) is not None for k in set(key_ids))

    async def aclose(self) -> None:
        return None
