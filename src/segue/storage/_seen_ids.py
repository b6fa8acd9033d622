"""Which (source, messageId) pairs the SQLite event log holds: its de-duplication.

Why not a unique index on ``events``: the SDKs send random UUIDs as message ids, so every
insert into such an index lands on a random leaf page, and SQLite's write-ahead log writes
each dirty page whole, at every commit. Measured on this project's 2-core VM with a log of
4 million records and commits of 1,000 rows (``synchronous=FULL``): 19.6 µs of CPU and
47.6 µs of wall time a row with the unique index, 7.2 and 7.9 with the two tiers below
(plus 2.8 µs a row later, for the merge). Over HTTP random ids made ingest about 45 %
slower than ordered ones.

Two tiers, together exact and permanent (the port's promise: a message id is stored once
for the whole life of the log):

recent
    In memory: the key of every record after the *watermark*, mapped to its offset, in two
    generations (see :class:`SeenIds`). Rebuilt at the first append from the records after
    the watermark.
settled
    ``dedupe.db``: the keys of every record up to the watermark, in one table whose primary
    key is the key itself. A full generation is merged in, sorted, in one transaction on a
    thread of its own, and the watermark moves with it (in the same transaction). A sorted
    bulk insert touches each leaf page once for many keys, where an append touched one page
    per key; the merge never holds the log's write lock.

A new record is looked up in ``recent`` and, if not there, in ``settled`` (one ``IN``
query for the whole group commit): reads, which cost no page writes. The key is 128 bits
of BLAKE2b of the pair, so a collision between two different messages is not a practical
concern (the same digest names records on the NATS log).

``dedupe.db`` is derived data: missing or behind (``synchronous=NORMAL``, so a power cut
may take its last merge, and its watermark with it), it is caught up from the log at the
first append. An older ``events.db`` that still has the unique index is migrated at open:
every key is merged in, then the index is dropped.

Several processes may append to one log (``serve --workers``). Each keeps its own
``recent``, and before it decides anything, under the log's write lock, it reads the
records other processes appended since it last looked (``sync``): so its ``recent`` and
``settled`` together hold every record of the log. A merge by one process moves the
shared watermark; the others skip the keys it covers when they merge. An erasure bumps a
counter in ``log_meta``; a process that sees it move without having erased reloads its
``recent`` from the log.

Everything here but :meth:`SeenIds.wants_settling`, :meth:`SeenIds.settle` and
:meth:`SeenIds.forget_settled` (on the event loop) runs on the event log's writer thread,
inside its transactions: ``recent`` has one owner.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from segue.storage._sqlite_db import SqliteFile, in_chunks, transaction

__all__ = ["SeenIds", "message_key"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settled (key BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settled_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_WATERMARK = "SELECT value FROM settled_meta WHERE name = 'watermark'"
_SET_WATERMARK = (
    "INSERT INTO settled_meta (name, value) VALUES ('watermark', ?) "
    "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)"
)
#: the length of a key: 128 bits
KEY_BYTES = 16
#: keys concatenated in one blob, cut apart and sorted by SQLite itself: 1.35 µs a key
#: against 2.39 with ``executemany`` of one-tuples (100,000 keys into 400,000), and the sort
#: runs without the GIL (a Python sort of 100,000 keys held it for ~30 ms, a stall for every
#: request of the process)
_MERGE = (
    "WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n < ?1) "
    "INSERT OR IGNORE INTO settled (key) "
    "SELECT substr(?2, n * 16 + 1, 16) AS k FROM i ORDER BY k"  # 16: KEY_BYTES
)
#: keys per merge statement: each statement's Python side (filtering, joining) holds the
#: GIL for about a millisecond; one transaction still writes each page once
_MERGE_CHUNK = 10_000
_ERASURES = "SELECT value FROM log_meta WHERE name = 'erasures'"
_AFTER = 'SELECT "offset", source, message_id FROM events WHERE "offset" > ? ORDER BY "offset"'

#: keys per ``IN (…)`` lookup, under SQLite's bound-parameter limit
_LOOKUP_CHUNK = 500


def message_key(source: str, message_id: str) -> bytes:
    """The 128-bit key of a (source, message id) pair."""
    return hashlib.blake2b(f"{source}\0{message_id}".encode(), digest_size=KEY_BYTES).digest()


def _watermark(conn: sqlite3.Connection) -> int:
    row = conn.execute(_WATERMARK).fetchone()
    return 0 if row is None else int(row[0])


def _erasures(conn: sqlite3.Connection) -> int:
    row = conn.execute(_ERASURES).fetchone()
    return 0 if row is None else int(row[0])


def _merge(conn: sqlite3.Connection, entries: dict[bytes, int], upto: int) -> int:
    """Add the keys of ``entries`` (key → offset: every record up to ``upto`` after the last
    merge) to ``settled``; return the watermark after it. Keys another process merged
    already (at or below the watermark it finds) are skipped: with ``serve --workers``
    every process holds every key and fills up at about the same time."""

    def body(c: sqlite3.Connection) -> int:
        mark = _watermark(c)
        items = iter(entries.items())
        while chunk := list(itertools.islice(items, _MERGE_CHUNK)):
            keys = [k for k, offset in chunk if offset > mark]
            if keys:
                c.execute(_MERGE, (len(keys) - 1, b"".join(keys)))
        c.execute(_SET_WATERMARK, (upto,))
        return _watermark(c)

    return transaction(conn, body)


_NOTHING: dict[bytes, int] = {}


class SeenIds:
    """The two tiers of one event log's de-duplication (see the module's docstring).

    The recent tier is two generations of dicts: new keys go into ``newer``; when it holds
    half the bound it becomes ``older`` as it is (no copy), a merge writes ``older`` into
    ``settled`` on ``dedupe.db``'s own thread, and once that committed ``older`` is let go
    (no deletions). Copying the older half out of one dict and deleting it afterwards held
    the log's writer for 30–45 ms a merge, a stall for every request waiting on a commit.

    Args:
        folder: the data folder; the settled tier is ``<folder>/dedupe.db``.
        recent_limit: about how many keys the recent tier holds (about 120 bytes each).
    """

    def __init__(self, folder: Path, *, recent_limit: int = 200_000) -> None:
        if recent_limit < 2:
            raise ValueError("recent_limit must be at least 2")
        self._file = SqliteFile(
            folder / "dedupe.db", _SCHEMA, synchronous="NORMAL", readers=1, secure_delete=True
        )
        self._limit = recent_limit
        #: key → offset of the newest records this process knows; None until the first
        #: append loads it
        self._newer: dict[bytes, int] | None = None
        #: the generation before, until its merge committed; never changed once here (an
        #: erasure replaces it with a copy), so a merge may read it on another thread
        self._older: dict[bytes, int] | None = None
        #: the highest offset ``_older`` accounts for
        self._older_upto = 0
        #: the highest offset whose record this process accounts for
        self._seen_head = 0
        #: keys of records up to this offset are only in ``settled``
        self._dropped = 0
        #: the watermark of the last merge this process saw commit
        self._settled_upto = 0
        #: the log's erasure counter as this process last accounted for it
        self._erasures = 0
        #: ``_older`` waits for ``settle`` (not before this monotonic time, after a failure)
        self._pending = False
        self._retry_at = 0.0
        self._settling = False
        #: merges this process has run (tests and benchmarks read it)
        self.merges = 0

    async def open(self) -> None:
        await self._file.open()

    async def aclose(self) -> None:
        await self._file.aclose()

    # --- on the event log's writer thread, inside its transaction -------------------

    def sync(self, conn: sqlite3.Connection, head: int) -> None:
        """Make the recent tier account for every record up to ``head`` (the log's stored
        head, read under its write lock)."""
        erasures = _erasures(conn)
        if self._newer is None or erasures != self._erasures:
            self._load(conn, erasures)
        elif head > self._seen_head:
            self._take(conn.execute(_AFTER, (self._seen_head,)))
        if self._older is not None and self._settled_upto >= self._older_upto:
            self._dropped = max(self._dropped, self._older_upto)
            self._older = None  # merged: only ``settled`` needs to hold those keys now

    def fresh(self, keys: Sequence[bytes]) -> list[bool]:
        """Which of ``keys`` the log does not hold yet (a repeat within ``keys`` is not)."""
        newer = self._newer
        assert newer is not None, "sync first"
        older = self._older if self._older is not None else _NOTHING
        unknown = {k for k in keys if k not in newer and k not in older}
        if unknown and self._dropped:
            unknown -= self._in_settled(list(unknown))
        verdicts: list[bool] = []
        for k in keys:
            new = k in unknown
            if new:
                unknown.discard(k)  # a repeat within ``keys`` is not new
            verdicts.append(new)
        return verdicts

    def committed(self, added: Iterable[tuple[bytes, int]], head: int) -> None:
        """The transaction that stored ``added`` (key, offset) committed; ``head`` is the
        highest offset handed out in it."""
        newer = self._newer
        assert newer is not None
        for key, offset in added:
            newer[key] = offset
        self._seen_head = max(self._seen_head, head)
        if self._older is None and len(newer) >= self._limit // 2:
            self._older, self._older_upto, self._newer = newer, self._seen_head, {}
            self._pending = True

    def erased(self, conn: sqlite3.Connection, keys: Iterable[bytes]) -> None:
        """Records with these keys were deleted in the current transaction: count the
        erasure in ``log_meta`` (other processes reload) and forget the keys here."""
        before = _erasures(conn)
        counter = before + 1
        conn.execute(
            "INSERT INTO log_meta (name, value) VALUES ('erasures', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (counter,),
        )
        if self._newer is None or before != self._erasures:
            self.invalidate()  # another process erased too: reload at the next append
            return
        gone = set(keys)
        for key in gone:
            self._newer.pop(key, None)
        older = self._older
        if older is not None and not gone.isdisjoint(older):
            # a copy: a merge running now reads the old one (``forget_settled`` runs after
            # it on the same thread and removes these keys again)
            self._older = {k: o for k, o in older.items() if k not in gone}
        self._erasures = counter

    def invalidate(self) -> None:
        """A transaction failed after changing the recent tier: rebuild it at the next
        append."""
        self._newer = self._older = None
        self._pending = False

    def _load(self, conn: sqlite3.Connection, erasures: int) -> None:
        """Rebuild the recent tier from the log: every record after the settled watermark,
        merging as it goes so memory stays bounded (a missing ``dedupe.db``, or the
        migration of a log that had a unique index, reads the whole log)."""
        lookup = self._file.connection()
        self._newer, self._older, self._pending = {}, None, False
        self._settled_upto = self._dropped = self._seen_head = _watermark(lookup)
        self._erasures = erasures
        self._take(conn.execute(_AFTER, (self._seen_head,)), lookup)

    def _take(
        self, rows: Iterable[tuple[int, str, str]], merge_on: sqlite3.Connection | None = None
    ) -> None:
        """Add another process's (or the loaded log's) records to the recent tier; with
        ``merge_on``, merge whenever it passes its bound (loading, on this thread)."""
        newer = self._newer
        assert newer is not None
        for offset, source, message_id in rows:
            newer[message_key(source, message_id)] = offset
            self._seen_head = offset
            if merge_on is not None and len(newer) > self._limit:
                upto = _merge(merge_on, newer, offset)
                self.merges += 1
                newer = self._newer = {}
                self._settled_upto = self._dropped = max(self._dropped, upto)

    def _in_settled(self, keys: list[bytes]) -> set[bytes]:
        conn = self._file.connection()
        found: set[bytes] = set()
        for chunk, marks in in_chunks(keys, _LOOKUP_CHUNK):
            sql = f"SELECT key FROM settled WHERE key IN ({marks})"  # noqa: S608
            found.update(row[0] for row in conn.execute(sql, chunk))
        return found

    # --- on the event loop ------------------------------------------------------------

    def wants_settling(self) -> bool:
        return self._pending and not self._settling and time.monotonic() >= self._retry_at

    async def settle(self) -> None:
        """Merge ``older`` into ``settled`` on ``dedupe.db``'s own writer thread; the log's
        writer lets ``older`` go at its next append. A failure keeps ``older`` for a later
        try: nothing is lost, the recent tier only grows meanwhile."""
        older, upto = self._older, self._older_upto
        if self._settling or not self._pending or older is None:
            return
        self._pending, self._settling = False, True
        try:
            merged = await self._file.write(lambda conn: _merge(conn, older, upto))
            self._settled_upto = max(self._settled_upto, merged)
            self.merges += 1
        except Exception:
            log.exception("merging message ids into dedupe.db failed; retrying in 5 s")
            self._pending, self._retry_at = True, time.monotonic() + 5.0
        finally:
            self._settling = False

    async def forget_settled(self, keys: Sequence[bytes]) -> None:
        """Remove erased records' keys from ``settled`` (they may be appended again) and
        truncate ``dedupe.db``'s write-ahead log so no copy stays on disk."""
        if not keys:
            return

        def body(conn: sqlite3.Connection) -> None:
            for chunk, marks in in_chunks(list(keys), _LOOKUP_CHUNK):
                conn.execute(f"DELETE FROM settled WHERE key IN ({marks})", chunk)  # noqa: S608

        await self._file.write(lambda conn: transaction(conn, body))
        await self._file.truncate_wal()
