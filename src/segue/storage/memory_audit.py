"""The audit log in memory: the reference for the audit-log contract.

Entries are kept encoded, as the SQLite adapter keeps them, so a caller changing what it got
back (``details`` is a dict) never changes the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from segue.core.model import AuditEntry, AuditHead
from segue.privacy.audit import GENESIS, chain, seal

__all__ = ["MemoryAuditLog"]

_decoder = msgspec.json.Decoder(AuditEntry)


class MemoryAuditLog:
    """A list of encoded entries and the sealed head.

    Args:
        key: the installation secret that seals the head.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._entries: list[bytes] = []
        # sealed at creation, so that a log emptied along with its head is not intact
        self._head: AuditHead | None = AuditHead(seq=0, hash=GENESIS, seal=seal(key, 0, GENESIS))
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        return None

    async def append(self, entries: Sequence[AuditEntry]) -> list[AuditEntry]:
        if not entries:
            return []
        async with self._lock:
            head = self._head
            linked = chain(head.seq if head else 0, head.hash if head else GENESIS, entries)
            self._entries.extend(msgspec.json.encode(e) for e in linked)
            last = linked[-1]
            self._head = AuditHead(
                seq=last.seq, hash=last.hash, seal=seal(self._key, last.seq, last.hash)
            )
        return linked

    async def scan(self, after: int, limit: int) -> list[AuditEntry]:
        start = max(after, 0)
        return [_decoder.decode(doc) for doc in self._entries[start : start + max(limit, 0)]]

    async def head(self) -> AuditHead | None:
        return self._head

    async def list(
        self,
        *,
        subjects: Sequence[str] = (),
        action: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[AuditEntry]:
        wanted = set(subjects)
        out: list[AuditEntry] = []
        for doc in self._entries[max(after, 0) :]:
            if len(out) >= limit:
                break
            entry = _decoder.decode(doc)
            if wanted and wanted.isdisjoint(entry.subjects):
                continue
            if action is not None and entry.action != action:
                continue
            if since is not None and entry.at < since:
                continue
            if until is not None and entry.at >= until:
                continue
            out.append(entry)
        return out

    async def aclose(self) -> None:
        return None
