"""Privacy requests, exports and the suppression list in memory: the contract's reference."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

from segue.core.model import PrivacyRequest

__all__ = ["MemoryPrivacyStore"]


class MemoryPrivacyStore:
    """Requests by id, exports by id with their subjects, suppressed hashes in a dict."""

    def __init__(self) -> None:
        self._requests: dict[str, PrivacyRequest] = {}
        self._exports: dict[str, tuple[frozenset[str], bytes]] = {}
        self._suppressed: dict[str, float] = {}

    async def open(self) -> None:
        return None

    async def put(self, request: PrivacyRequest) -> None:
        self._requests[request.request_id] = copy.deepcopy(request)

    async def get(self, request_id: str) -> PrivacyRequest | None:
        found = self._requests.get(request_id)
        return None if found is None else copy.deepcopy(found)

    async def unfinished(self) -> list[PrivacyRequest]:
        found = [r for r in self._requests.values() if r.status in ("pending", "running")]
        return [copy.deepcopy(r) for r in sorted(found, key=lambda r: r.created_at)]

    async def recent(self, limit: int) -> list[PrivacyRequest]:
        newest = sorted(
            self._requests.values(), key=lambda r: (r.created_at, r.request_id), reverse=True
        )
        return [copy.deepcopy(r) for r in newest[: max(limit, 0)]]

    async def put_export(self, request_id: str, subjects: Sequence[str], data: bytes) -> None:
        self._exports[request_id] = (frozenset(subjects), data)

    async def export(self, request_id: str) -> bytes | None:
        found = self._exports.get(request_id)
        return None if found is None else found[1]

    async def erase_exports(self, subjects: Iterable[str]) -> int:
        wanted = set(subjects)
        gone = [rid for rid, (named, _) in self._exports.items() if named & wanted]
        for request_id in gone:
            del self._exports[request_id]
        return len(gone)

    async def suppress(self, hashes: Iterable[str], at: float) -> int:
        new = 0
        for h in set(hashes):
            if h not in self._suppressed:
                self._suppressed[h] = at
                new += 1
        return new

    async def suppressed(self) -> list[str]:
        return list(self._suppressed)

    async def aclose(self) -> None:
        return None
