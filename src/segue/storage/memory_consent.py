"""The consent ledger in memory: the reference for the consent-store contract."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from segue.core.model import ConsentRecord

__all__ = ["MemoryConsentStore"]


class MemoryConsentStore:
    """Consent signals per subject, in ledger order."""

    def __init__(self) -> None:
        self._seq = 0
        self._by_subject: dict[str, list[ConsentRecord]] = {}

    async def open(self) -> None:
        return None

    async def record(self, records: Sequence[ConsentRecord]) -> list[ConsentRecord]:
        out = []
        for rec in records:
            self._seq += 1
            stored = msgspec.structs.replace(rec, seq=self._seq)
            self._by_subject.setdefault(rec.subject, []).append(stored)
            out.append(stored)
        return out

    async def history(self, subjects: Iterable[str], limit: int = 10_000) -> list[ConsentRecord]:
        found = [r for s in set(subjects) for r in self._by_subject.get(s, [])]
        found.sort(key=lambda r: r.seq)
        return found[-limit:] if limit else []

    async def erase(self, subjects: Iterable[str]) -> int:
        return sum(len(self._by_subject.pop(s, [])) for s in set(subjects))

    async def subjects(self) -> list[str]:
        return list(self._by_subject)

    async def scan(self, after: int, limit: int) -> list[ConsentRecord]:
        found = [r for rs in self._by_subject.values() for r in rs if r.seq > after]
        found.sort(key=lambda r: r.seq)
        return found[: max(limit, 0)]

    async def aclose(self) -> None:
        return None
