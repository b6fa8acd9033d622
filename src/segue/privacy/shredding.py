"""Crypto-shredding of the event log: an EventLog that seals personal fields on append and
opens them on read, with one data key per subject (the partition key of the event).

Erasure destroys the person's keys; every copy of their events — in a log that cannot
delete, a replica, a backup — then reveals nothing personal. Every reader (processor,
timeline API, export, replay) goes through this wrapper and never sees the envelope.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from segue.core.model import LogRecord, NewRecord
from segue.core.ports import EventLog, KeyStore
from segue.privacy.envelope import (
    Envelope,
    derive_key,
    key_id,
    nonces,
    open_split,
    seal_body,
    split,
)

__all__ = ["SealedEventLog"]


class SealedEventLog:
    """An :class:`EventLog` whose records keep personal fields under per-subject keys.

    Args:
        inner: the log that stores the sealed records.
        keys: where the data keys live (apart from the log).
        secret: the installation secret (key ids are keyed hashes of subjects).
        personal_properties: property names that make ``properties`` personal.
        cache_size: data keys kept in memory.
        opened_size: records kept opened in memory (see :meth:`_open`).
    """

    def __init__(
        self,
        inner: EventLog,
        keys: KeyStore,
        secret: bytes,
        personal_properties: Iterable[str] = (),
        *,
        cache_size: int = 200_000,
        opened_size: int = 8192,
    ) -> None:
        self.inner = inner
        self.keys = keys
        self._hash_key = derive_key(secret, "data-key-id")
        self._needles = tuple(msgspec.json.encode(p) for p in personal_properties)
        self._cache: OrderedDict[str, AESGCM] = OrderedDict()
        self._cache_size = cache_size
        self._kids: dict[str, str] = {}
        #: offset → (its sealed body, key id, the record opened): the processor and the
        #: reports consumer of a process read the same records moments apart
        self._opened: OrderedDict[int, tuple[bytes, str, LogRecord]] = OrderedDict()
        self._opened_size = opened_size
        #: moved by every destruction of keys, before and after: a key fetched while it
        #: moved may be one just destroyed, and must not be kept
        self._generation = 0

    def key_id(self, subject: str) -> str:
        """The id of the data key of ``subject`` (``user_id:42``)."""
        kid = self._kids.get(subject)
        if kid is None:
            # a keyed hash per appended event was ~7 % of sealing; a person sends many
            if len(self._kids) >= self._cache_size:
                self._kids.clear()
            kid = self._kids[subject] = key_id(self._hash_key, subject)
        return kid

    async def open(self) -> None:
        await self.keys.open()
        await self.inner.open()

    def _remember(self, kid: str, key: bytes) -> AESGCM:
        aead = self._cache[kid] = AESGCM(key)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return aead

    async def append(self, records: Sequence[NewRecord]) -> list[int | None]:
        if not records:
            return []
        kids = [self.key_id(r.key) for r in records]
        missing = [k for k in dict.fromkeys(kids) if k not in self._cache]
        if missing:
            await self._fetch(self.keys.create, missing)
        cache, needles = self._cache, self._needles
        sealed = [
            NewRecord(
                r.source,
                r.message_id,
                r.received_at,
                r.key,
                seal_body(r.body, kid, cache[kid], needles, nonce),
            )
            for r, kid, nonce in zip(records, kids, nonces(len(records)), strict=True)
        ]
        return await self.inner.append(sealed)

    async def _open(self, records: list[LogRecord]) -> list[LogRecord]:
        """The records with their sealed fields opened.

        A record opened lately is not decrypted again: the processor reads each record,
        and the reports consumer of the same process reads it again moments later (the
        decryption was a tenth of a worker's time). It is taken from the memo only while
        the log still holds the same sealed bytes at its offset and this process still
        holds its key, exactly when decrypting it again would give the same answer.
        """
        memo, cache = self._opened, self._cache
        out: list[LogRecord] = []
        todo: list[tuple[int, LogRecord, tuple[int, Envelope]]] = []
        for record in records:
            hit = memo.get(record.offset)
            if hit is not None and hit[1] in cache and hit[0] == record.body:
                out.append(hit[2])
                continue
            part = split(record.body)
            if part is None:
                out.append(record)
                continue
            todo.append((len(out), record, part))
            out.append(record)  # replaced once opened
        if not todo:
            return out
        missing = list(dict.fromkeys(p[1].k for _, _, p in todo if p[1].k not in cache))
        if missing:
            await self._fetch(self.keys.get, missing)
        for at, record, (pos, envelope) in todo:
            aead = cache.get(envelope.k)
            body = open_split(record.body, pos, envelope, aead)
            opened = LogRecord(
                record.offset,
                record.source,
                record.message_id,
                record.received_at,
                record.key,
                body,
            )
            out[at] = opened
            if aead is not None and self._opened_size:
                if len(memo) >= self._opened_size:
                    memo.popitem(last=False)  # O(1), where a dict's first key is not
                memo[record.offset] = (record.body, envelope.k, opened)
        return out

    async def _fetch(
        self, fetch: Callable[[list[str]], Awaitable[dict[str, bytes]]], kids: list[str]
    ) -> None:
        """Fetch (or create) keys into the cache, again if keys were destroyed meanwhile:
        the answer may hold a key that an erasure destroyed after it was read, and that
        key must not come back into this process."""
        while True:
            generation = self._generation
            found = await fetch(kids)
            if generation == self._generation:
                for kid, key in found.items():
                    self._remember(kid, key)
                return

    async def read(self, after: int, limit: int) -> list[LogRecord]:
        return await self._open(await self.inner.read(after, limit))

    async def get(self, offsets: Sequence[int]) -> list[LogRecord]:
        return await self._open(await self.inner.get(offsets))

    async def last_offset(self) -> int:
        return await self.inner.last_offset()

    async def wait(self, after: int, timeout: float) -> None:
        await self.inner.wait(after, timeout)

    async def erase(self, offsets: Sequence[int]) -> int:
        for offset in offsets:
            self._opened.pop(offset, None)
        return await self.inner.erase(offsets)

    async def destroy_keys(self, subjects: Iterable[str]) -> int:
        """Destroy the data keys of ``subjects``: their sealed fields are gone for good."""
        named = list(subjects)
        kids = {self.key_id(s) for s in named}
        for subject in named:  # the memo holds the erased person's identifiers in clear
            self._kids.pop(subject, None)
        self._generation += 1
        for kid in kids:
            self._cache.pop(kid, None)
        self._opened.clear()  # opened with those keys, some of them
        try:
            return await self.keys.destroy(kids)
        finally:
            self._generation += 1

    def forget_cached(self) -> None:
        """Drop every cached key and opened record: another process destroyed keys (an
        erasure there), and this one cannot tell which of its keys they were."""
        self._generation += 1
        self._cache.clear()
        self._opened.clear()
        self._kids.clear()

    async def aclose(self) -> None:
        await self.inner.aclose()
        await self.keys.aclose()
