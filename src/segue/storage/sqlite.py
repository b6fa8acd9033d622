"""Embedded adapters on SQLite (WAL): the event log, the profile store and the quarantine.

The default backend: one folder, no server. Durability: the log commits with
``synchronous=FULL`` so an acknowledged event survives a kill -9 and a power cut; concurrent
appends share a transaction (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from segue.core.model import (
    Changeset,
    Identifier,
    LogRecord,
    NewRecord,
    PossibleMatch,
    Profile,
    QuarantineEntry,
)
from segue.errors import StaleState
from segue.storage._block_index import BlockIndex
from segue.storage._group_commit import GroupCommitter
from segue.storage._seen_ids import SeenIds, message_key
from segue.storage._sqlite_db import CommitWatch, SqliteFile, in_chunks, transaction

__all__ = ["SqliteEventLog", "SqliteProfileStore", "SqliteQuarantine"]

_LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    "offset"    INTEGER PRIMARY KEY,  -- no AUTOINCREMENT: it burns numbers on conflicts
    source      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    received_at REAL NOT NULL,
    key         TEXT NOT NULL,
    body        BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# explicit offsets: after an erasure removed the newest records, SQLite would hand their
# offsets out again, and a processor checkpointed past them would never read the new ones;
# de-duplication is decided before the insert (SeenIds)
_INSERT = (
    'INSERT INTO events ("offset", source, message_id, received_at, key, body) '
    "VALUES (?, ?, ?, ?, ?, ?)"
)
#: the unique index that de-duplicated logs written before 2026-12-07 (see SeenIds)
_OLD_DEDUPE_INDEX = "SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = 'events_dedupe'"
_SELECT = 'SELECT "offset", source, message_id, received_at, key, body FROM events'
T = TypeVar("T")

#: reads of at most this many keys (identifiers) run on the caller's thread, and of at
#: most _INLINE_PROFILES profiles or blobs: a hand-off to a reader thread costs more than
#: such a read (SqliteFile.read)
_INLINE_KEYS = 32
_INLINE_PROFILES = 8
#: a log reader at most this many records behind the head it knows reads them inline
_INLINE_RECORDS = 8


#: how often a reader polls the log file for records appended by another process
_POLL_S = 0.005


def _stored_head(conn: sqlite3.Connection) -> int:
    """The highest offset ever handed out: the newest record, or the head kept when the
    newest records were erased."""
    top = int(conn.execute('SELECT coalesce(max("offset"), 0) FROM events').fetchone()[0])
    row = conn.execute("SELECT value FROM log_meta WHERE name = 'head'").fetchone()
    return max(top, int(row[0]) if row else 0)


_VERSION = "SELECT version FROM versions WHERE consumer = ?"
_BUMP_VERSION = (
    "INSERT INTO versions (consumer, version) VALUES (?, 1) "
    "ON CONFLICT (consumer) DO UPDATE SET version = version + 1"
)
#: take a lease that is free, expired or already ours; anyone else's stays
_TAKE_LEASE = (
    "INSERT INTO leases (name, holder, until) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until "
    "WHERE leases.holder = excluded.holder OR leases.until < ?"
)


class SqliteEventLog:
    """The event log in ``<folder>/events.db``, de-duplicated with ``<folder>/dedupe.db``.

    Args:
        synchronous: ``FULL`` (the default) makes an append survive power loss.
        recent_ids: about how many message ids the de-duplication keeps in memory, in
            two generations; a full one is merged into ``dedupe.db`` (see ``SeenIds``).
    """

    def __init__(
        self, folder: Path, *, synchronous: str = "FULL", recent_ids: int = 200_000
    ) -> None:
        self._db = SqliteFile(
            folder / "events.db", _LOG_SCHEMA, synchronous=synchronous, secure_delete=True
        )
        self._seen = SeenIds(folder, recent_limit=recent_ids)
        self._settling: asyncio.Task[None] | None = None
        self._committer: GroupCommitter[NewRecord, int | None] = GroupCommitter(self._write)
        self._head = 0
        #: the next offset to hand out; only the writer thread reads or moves it
        self._next = 1
        self._waiters: set[asyncio.Future[None]] = set()
        #: another process's appends, seen without a query while nothing moves
        self._watch = CommitWatch(self._db.path)

    async def open(self) -> None:
        await self._db.open()
        await self._seen.open()
        if await self._db.read(lambda c: c.execute(_OLD_DEDUPE_INDEX).fetchone() is not None):
            await self._db.write(lambda conn: transaction(conn, self._drop_unique_index))
        self._head = await self._db.read(_stored_head)
        self._next = self._head + 1

    def _drop_unique_index(self, conn: sqlite3.Connection) -> None:
        """Migrate a log from before ``SeenIds``: every message id into ``dedupe.db``,
        then the unique index goes (under the write lock: another process may try too)."""
        if conn.execute(_OLD_DEDUPE_INDEX).fetchone() is None:
            return
        self._seen.sync(conn, _stored_head(conn))
        conn.execute("DROP INDEX events_dedupe")

    async def append(self, records: Sequence[NewRecord]) -> list[int | None]:
        if not records:
            return []
        return await self._committer.submit(records)

    async def _write(self, groups: list[Sequence[NewRecord]]) -> list[list[int | None]]:
        seen = self._seen
        added: list[tuple[bytes, int]] = []

        def body(conn: sqlite3.Connection) -> list[list[int | None]]:
            keys = [message_key(r.source, r.message_id) for records in groups for r in records]
            # under the write lock: another process (``serve --workers``) may have appended
            head = _stored_head(conn)
            seen.sync(conn, head)
            fresh = iter(seen.fresh(keys))
            key = iter(keys)
            rows = []
            out: list[list[int | None]] = []
            nxt = max(self._next, head + 1)
            for records in groups:
                offsets: list[int | None] = []
                for r in records:
                    k = next(key)
                    if next(fresh):
                        rows.append((nxt, r.source, r.message_id, r.received_at, r.key, r.body))
                        added.append((k, nxt))
                        offsets.append(nxt)
                        nxt += 1
                    else:
                        offsets.append(None)
                out.append(offsets)
            conn.executemany(_INSERT, rows)
            self._next = nxt
            return out

        def write(conn: sqlite3.Connection) -> list[list[int | None]]:
            out = transaction(conn, body)
            seen.committed(added, self._next - 1)
            return out

        results = await self._db.write(write)
        if seen.wants_settling() and self._settling is None:
            self._settling = asyncio.get_running_loop().create_task(self._settle())
        top = max((o for group in results for o in group if o is not None), default=0)
        if top > self._head:
            self._head = top
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
        return results

    async def _settle(self) -> None:
        try:
            await self._seen.settle()
        finally:
            self._settling = None

    async def read(self, after: int, limit: int) -> list[LogRecord]:
        # A reader a few records behind this process's own appends reads them on the
        # calling thread (SqliteFile.read), asking for no more than it knows of: another
        # process's appends beyond them wait for the next read.
        behind = self._head - after
        inline = 0 < behind <= _INLINE_RECORDS
        if inline:
            limit = min(limit, _INLINE_RECORDS)
        rows = await self._db.read(
            lambda c: c.execute(
                _SELECT + ' WHERE "offset" > ? ORDER BY "offset" LIMIT ?', (after, limit)
            ).fetchall(),
            inline=inline,
        )
        return [LogRecord(*row) for row in rows]

    async def get(self, offsets: Sequence[int]) -> list[LogRecord]:
        if not offsets:
            return []
        wanted = list(offsets)

        def fetch(conn: sqlite3.Connection) -> list[tuple[int, str, str, float, str, bytes]]:
            found: list[tuple[int, str, str, float, str, bytes]] = []
            for chunk, marks in in_chunks(wanted, 500):
                found.extend(conn.execute(_SELECT + f' WHERE "offset" IN ({marks})', chunk))
            return found

        by_offset = {row[0]: LogRecord(*row) for row in await self._db.read(fetch)}
        return [by_offset[o] for o in wanted if o in by_offset]

    async def last_offset(self) -> int:
        # other processes may append to the same file (``serve --workers``): ask the file
        self._head = max(self._head, await self._db.read(_stored_head))
        return self._head

    async def wait(self, after: int, timeout: float) -> None:
        """Until a record past ``after`` exists: woken at once by this process's appends,
        and polling the file every few milliseconds for another process's."""
        if self._head > after:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.add(future)
        try:
            while not future.done():
                # the head another waiter's look moved counts too: the watch tells only
                # the first to look that the file moved
                if self._head > after or (self._watch.moved() and await self.last_offset() > after):
                    return
                left = deadline - loop.time()
                if left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), min(left, _POLL_S))
        finally:
            self._waiters.discard(future)

    async def erase(self, offsets: Sequence[int]) -> int:
        wanted = sorted(set(offsets))
        if not wanted:
            return 0

        keys: list[bytes] = []

        def body(conn: sqlite3.Connection) -> int:
            head = _stored_head(conn)
            removed = 0
            for chunk, marks in in_chunks(wanted, 500):
                where = f'WHERE "offset" IN ({marks})'
                found = conn.execute(f"SELECT source, message_id FROM events {where}", chunk)  # noqa: S608
                keys.extend(message_key(source, message_id) for source, message_id in found)
                removed += conn.execute(f"DELETE FROM events {where}", chunk).rowcount  # noqa: S608
            # the head survives the removal of the newest records, across restarts too
            conn.execute(
                "INSERT INTO log_meta (name, value) VALUES ('head', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                (head,),
            )
            self._seen.erased(conn, keys)
            return removed

        try:
            removed = await self._db.write(lambda conn: transaction(conn, body))
        except BaseException:
            await self._db.write(lambda _conn: self._seen.invalidate())
            raise
        await self._db.truncate_wal()
        await self._seen.forget_settled(keys)
        return removed

    async def aclose(self) -> None:
        await self._committer.flush()
        if self._settling is not None:
            await self._settling
        self._watch.close()
        await self._db.aclose()
        await self._seen.aclose()


_BLOCK_SET = "SELECT keys FROM profile_blocks WHERE profile_id = ?"
#: the one full read of the block keys: a process's first match, or after another process
#: wrote keys (see ``BlockIndex``)
ALL_BLOCK_SETS = "SELECT profile_id, keys FROM profile_blocks"
_BLOCK_EPOCH = "SELECT value FROM counters WHERE name = 'block_epoch'"
_block_set_encode = msgspec.msgpack.Encoder().encode
_block_set_decode = msgspec.msgpack.Decoder(list[str]).decode

_STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (consumer TEXT PRIMARY KEY, "offset" INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (consumer TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    type TEXT NOT NULL, value TEXT NOT NULL, profile_id TEXT NOT NULL,
    PRIMARY KEY (type, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (profile_id TEXT PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS activity (
    profile_id TEXT PRIMARY KEY, event_count INTEGER NOT NULL, first_seen REAL NOT NULL,
    last_seen REAL NOT NULL, updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS redirects (old TEXT PRIMARY KEY, new TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS redirects_new ON redirects (new);
CREATE TABLE IF NOT EXISTS timeline (
    profile_id TEXT NOT NULL, "offset" INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (profile_id, "offset")
) WITHOUT ROWID;
-- a profile's block keys in one row; who holds a key is answered in memory (BlockIndex)
CREATE TABLE IF NOT EXISTS profile_blocks (profile_id TEXT PRIMARY KEY, keys BLOB NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS match_records (profile_id TEXT PRIMARY KEY, data BLOB NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS features (profile_id TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS possible_matches (
    id INTEGER PRIMARY KEY AUTOINCREMENT, profile_a TEXT NOT NULL, profile_b TEXT NOT NULL,
    score REAL NOT NULL, explanation BLOB NOT NULL, created_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'open'
);
CREATE INDEX IF NOT EXISTS possible_a ON possible_matches (profile_a);
CREATE INDEX IF NOT EXISTS possible_b ON possible_matches (profile_b);
CREATE TABLE IF NOT EXISTS blobs (name TEXT PRIMARY KEY, data BLOB NOT NULL);
"""

#: Tables of documents that were WITHOUT ROWID before 2026-12-05, with their columns. In a
#: WITHOUT ROWID table a row of more than about 1,000 bytes (on 4 KB pages) spills into an
#: overflow page of its own: a 1.4 KB profile took 4.5 KB on disk and every update wrote
#: two pages. Ordinary (rowid) tables keep rows up to about 4 KB in the leaf.
_ROWID_DOCUMENTS: Final = {"profiles": "doc", "features": "data"}


def _to_rowid_tables(conn: sqlite3.Connection) -> None:
    """Rebuild the document tables of an older state database as rowid tables, in place."""
    for table, column in _ROWID_DOCUMENTS.items():
        row = conn.execute(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if row is None or "WITHOUT ROWID" not in str(row[0]).upper():
            continue
        conn.execute(
            f"CREATE TABLE {table}_rowid (profile_id TEXT PRIMARY KEY, {column} BLOB NOT NULL)"
        )
        conn.execute(f"INSERT INTO {table}_rowid SELECT profile_id, {column} FROM {table}")  # noqa: S608
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"ALTER TABLE {table}_rowid RENAME TO {table}")


_QUARANTINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, received_at REAL NOT NULL,
    reason TEXT NOT NULL, field TEXT, body BLOB NOT NULL
);
"""

_msgpack_encode = msgspec.msgpack.Encoder().encode
_msgpack_decode = msgspec.msgpack.Decoder(Profile).decode
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder(Profile).decode


class _ProfileCodec:
    """msgpack (compact, fast) unless a trait holds an integer msgpack cannot: then JSON.

    The first byte tells them apart: JSON documents start with ``{``, which is never the
    first byte of a msgpack map of this size.
    """

    @staticmethod
    def encode(profile: Profile) -> bytes:
        try:
            return _msgpack_encode(profile)
        except OverflowError:
            return _json_encode(profile)

    @staticmethod
    def decode(doc: bytes) -> Profile:
        return _json_decode(doc) if doc[:1] == b"{" else _msgpack_decode(doc)


_profile_encoder = _ProfileCodec
_profile_decoder = _ProfileCodec

#: a profile's document with its activity row (the newer counters) when it has one
_PROFILE_ROWS = (
    "SELECT p.profile_id, p.doc, a.event_count, a.first_seen, a.last_seen, a.updated_at "
    "FROM profiles AS p LEFT JOIN activity AS a ON a.profile_id = p.profile_id"
)
#: the tables that hold rows of a profile, emptied when it is dropped
#: (block keys go through ``_BlockWrites.drop``)
_PROFILE_TABLES = ("profiles", "activity", "timeline", "features", "match_records")


def _block_epoch(conn: sqlite3.Connection) -> int:
    row = conn.execute(_BLOCK_EPOCH).fetchone()
    return 0 if row is None else int(row[0])


def _held_blocks(conn: sqlite3.Connection, profile_id: str) -> list[str]:
    row = conn.execute(_BLOCK_SET, (profile_id,)).fetchone()
    return [] if row is None else _block_set_decode(row[0])


class _BlockWrites:
    """The block key changes of one transaction: written to ``profile_blocks`` as they
    come, and replayed on the in-memory index once the transaction has committed."""

    def __init__(self) -> None:
        #: (profile, keys, added?) in the order they happened
        self.steps: list[tuple[str, list[str], bool]] = []

    def set(self, conn: sqlite3.Connection, profile_id: str, keys: Iterable[str]) -> None:
        """``profile_id`` holds exactly ``keys`` from now on."""
        held = _held_blocks(conn, profile_id)
        wanted = list(dict.fromkeys(keys))
        kept = set(wanted)
        gone = [k for k in held if k not in kept]
        before = set(held)
        added = [k for k in wanted if k not in before]
        if not gone and not added:
            return
        if wanted:
            conn.execute(
                "INSERT INTO profile_blocks (profile_id, keys) VALUES (?, ?) "
                "ON CONFLICT (profile_id) DO UPDATE SET keys = excluded.keys",
                (profile_id, _block_set_encode(wanted)),
            )
        else:
            conn.execute("DELETE FROM profile_blocks WHERE profile_id = ?", (profile_id,))
        if gone:
            self.steps.append((profile_id, gone, False))
        if added:
            self.steps.append((profile_id, added, True))

    def drop(self, conn: sqlite3.Connection, profile_ids: Iterable[str]) -> int:
        """These profiles hold no keys any more; return how many they held."""
        removed = 0
        for pid in profile_ids:
            held = _held_blocks(conn, pid)
            if held:
                conn.execute("DELETE FROM profile_blocks WHERE profile_id = ?", (pid,))
                self.steps.append((pid, held, False))
                removed += len(held)
        return removed

    def advance(self, conn: sqlite3.Connection) -> int | None:
        """Move the database's epoch on if keys changed; return the epoch before."""
        if not self.steps:
            return None
        before = _block_epoch(conn)
        conn.execute(
            "INSERT INTO counters (name, value) VALUES ('block_epoch', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (before + 1,),
        )
        return before

    def apply(self, index: BlockIndex, before: int | None) -> None:
        """Replay on ``index`` (under its lock, just committed); an index that was not at
        the epoch before is not trusted any more."""
        if before is None:
            return
        if index.epoch != before:
            index.reset(None)
            return
        for pid, keys, added in self.steps:
            if added:
                index.add(pid, keys)
            else:
                index.remove(pid, keys)
        index.epoch = before + 1


def _blocks_by_profile(conn: sqlite3.Connection) -> None:
    """Turn an older state database's table of (block key, profile) rows, one per key and
    indexed twice, into one row of keys per profile, in place."""
    old = conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'blocks'"
    ).fetchone()
    if old is None:
        return
    sets: dict[str, list[str]] = {}
    for key, pid in conn.execute("SELECT key, profile_id FROM blocks ORDER BY profile_id, key"):
        sets.setdefault(str(pid), []).append(str(key))
    conn.executemany(
        "INSERT INTO profile_blocks (profile_id, keys) VALUES (?, ?) "
        "ON CONFLICT (profile_id) DO UPDATE SET keys = excluded.keys",
        [(pid, _block_set_encode(keys)) for pid, keys in sets.items()],
    )
    conn.execute("DROP TABLE blocks")
    conn.execute(
        "INSERT INTO counters (name, value) VALUES ('block_epoch', 1) "
        "ON CONFLICT (name) DO UPDATE SET value = value + 1"
    )


def _profile_of(row: tuple[Any, ...]) -> Profile:
    """Most events only count: their profile's document is not rewritten for that (1–2 KB
    of traits, lineage and merge history), only its row in ``activity``."""
    profile = _profile_decoder.decode(row[1])
    if row[2] is not None:
        profile.event_count, profile.first_seen, profile.last_seen, profile.updated_at = row[2:]
    return profile


class SqliteProfileStore:
    """Profiles, identity graph, timelines and checkpoints in ``<folder>/state.db``."""

    def __init__(self, folder: Path, *, synchronous: str = "NORMAL") -> None:
        # NORMAL is enough here: state is derived and re-folded from the durable log after a
        # power cut, because the checkpoint commits in the same transaction as the state.
        # each commit rewrites pages all over the file: its checkpoints run beside the
        # commits, not inside one of them
        self._db = SqliteFile(
            folder / "state.db",
            _STATE_SCHEMA,
            synchronous=synchronous,
            secure_delete=True,
            checkpoint_in_background=True,
        )
        #: who holds each block key (built at the first match, see BlockIndex)
        self._blocks = BlockIndex()

    async def open(self) -> None:
        await self._db.open()

        def upgrade(conn: sqlite3.Connection) -> None:
            _to_rowid_tables(conn)
            _blocks_by_profile(conn)

        await self._db.write(lambda conn: transaction(conn, upgrade))

    def _writing_blocks(
        self, body: Callable[[sqlite3.Connection, _BlockWrites], T]
    ) -> Callable[[sqlite3.Connection], T]:
        """``transaction`` for a body that may change block keys: the index takes the
        changes at COMMIT, under its lock, so no reader sees the database's epoch move
        before the index has moved with it."""
        index = self._blocks

        def run(conn: sqlite3.Connection) -> T:
            writes = _BlockWrites()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn, writes)
                before = writes.advance(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            with index.lock:
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    index.reset(None)
                    raise
                writes.apply(index, before)
            return result

        return run

    async def checkpoint(self, consumer: str) -> int:
        row = await self._db.read(
            lambda c: c.execute(
                'SELECT "offset" FROM checkpoints WHERE consumer = ?', (consumer,)
            ).fetchone()
        )
        return int(row[0]) if row else 0

    async def lookup(self, identifiers: Iterable[Identifier]) -> dict[Identifier, str]:
        wanted = list(identifiers)
        if not wanted:
            return {}

        def fetch(conn: sqlite3.Connection) -> dict[Identifier, str]:
            found: dict[Identifier, str] = {}
            for start in range(0, len(wanted), 400):
                chunk = wanted[start : start + 400]
                marks = ",".join("(?, ?)" for _ in chunk)
                params = [part for ident in chunk for part in ident]
                # A join, not "(type, value) IN (VALUES …)": SQLite answers the row-value IN
                # with a scan of the whole table, the join with one primary-key search per
                # identifier. Only "?" placeholders are interpolated.
                sql = (
                    "SELECT i.type, i.value, i.profile_id "  # noqa: S608
                    f"FROM (VALUES {marks}) AS w CROSS JOIN identities AS i "
                    "ON i.type = w.column1 AND i.value = w.column2"
                )
                for kind, value, pid in conn.execute(sql, params):
                    found[Identifier(kind, value)] = pid
            return found

        return await self._db.read(fetch, inline=len(wanted) <= _INLINE_KEYS)

    async def profiles(self, profile_ids: Iterable[str]) -> dict[str, Profile]:
        wanted = list(profile_ids)
        if not wanted:
            return {}

        def fetch(conn: sqlite3.Connection) -> dict[str, Profile]:
            found: dict[str, Profile] = {}
            for chunk, marks in in_chunks(wanted, 500):
                sql = f"{_PROFILE_ROWS} WHERE p.profile_id IN ({marks})"
                for row in conn.execute(sql, chunk):
                    found[row[0]] = _profile_of(row)
            return found

        return await self._db.read(fetch, inline=len(wanted) <= _INLINE_PROFILES)

    async def commit(
        self, changes: Changeset, consumer: str, offset: int, *, expected: int | None = None
    ) -> None:
        def body(conn: sqlite3.Connection, blocks: _BlockWrites) -> None:
            if expected is not None:  # under the write lock: nobody commits meanwhile
                row = conn.execute(_VERSION, (consumer,)).fetchone()
                found = int(row[0]) if row else 0
                if found != expected:
                    raise StaleState(
                        f"state of {consumer!r} is at version {found}, not {expected}: "
                        "another writer committed first"
                    )
            conn.execute(_BUMP_VERSION, (consumer,))
            for pid in changes.drop_profiles:
                for table in _PROFILE_TABLES:
                    conn.execute(f"DELETE FROM {table} WHERE profile_id = ?", (pid,))  # noqa: S608
            blocks.drop(conn, changes.drop_profiles)
            conn.executemany(
                "DELETE FROM redirects WHERE old = ?", [(pid,) for pid in changes.clear_redirects]
            )
            conn.executemany(
                "DELETE FROM identities WHERE type = ? AND value = ?",
                [(i.type, i.value) for i in changes.unlink],
            )
            conn.executemany(
                'INSERT INTO timeline (profile_id, "offset", at) VALUES (?, ?, ?) '
                "ON CONFLICT DO NOTHING",
                changes.timeline,
            )
            for old, new in changes.redirects.items():
                conn.execute("UPDATE timeline SET profile_id = ? WHERE profile_id = ?", (new, old))
                conn.execute("UPDATE redirects SET new = ? WHERE new = ?", (new, old))
                conn.execute(
                    "INSERT INTO redirects (old, new) VALUES (?, ?) "
                    "ON CONFLICT (old) DO UPDATE SET new = excluded.new",
                    (old, new),
                )
                conn.execute("DELETE FROM profiles WHERE profile_id = ?", (old,))
                conn.execute("DELETE FROM activity WHERE profile_id = ?", (old,))
            conn.executemany(
                "INSERT INTO identities (type, value, profile_id) VALUES (?, ?, ?) "
                "ON CONFLICT (type, value) DO UPDATE SET profile_id = excluded.profile_id",
                [(i.type, i.value, pid) for i, pid in changes.links.items()],
            )
            conn.executemany(
                "INSERT INTO profiles (profile_id, doc) VALUES (?, ?) "
                "ON CONFLICT (profile_id) DO UPDATE SET doc = excluded.doc",
                [(pid, _profile_encoder.encode(p)) for pid, p in changes.profiles.items()],
            )
            # a document just written holds the current counters: an activity row would be
            # read over it, so it goes (deleting a row that is not there writes no page,
            # where keeping one per written profile put a random-page insert in every new
            # profile's commit)
            conn.executemany(
                "DELETE FROM activity WHERE profile_id = ?", [(pid,) for pid in changes.profiles]
            )
            conn.executemany(
                "INSERT INTO activity (profile_id, event_count, first_seen, last_seen, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (profile_id) DO UPDATE SET "
                "event_count = excluded.event_count, first_seen = excluded.first_seen, "
                "last_seen = excluded.last_seen, updated_at = excluded.updated_at",
                [
                    (pid, p.event_count, p.first_seen, p.last_seen, p.updated_at)
                    for pid, p in changes.activity.items()
                ],
            )
            for pid, keys in changes.block_keys.items():
                blocks.set(conn, pid, keys)
            for pid, data in changes.match_records.items():
                if data:
                    conn.execute(
                        "INSERT INTO match_records (profile_id, data) VALUES (?, ?) "
                        "ON CONFLICT (profile_id) DO UPDATE SET data = excluded.data",
                        (pid, data),
                    )
                else:
                    conn.execute("DELETE FROM match_records WHERE profile_id = ?", (pid,))
            conn.executemany(
                "INSERT INTO features (profile_id, data) VALUES (?, ?) "
                "ON CONFLICT (profile_id) DO UPDATE SET data = excluded.data",
                list(changes.features.items()),
            )
            for old, new in changes.redirects.items():
                blocks.drop(conn, [old])
                conn.execute("DELETE FROM match_records WHERE profile_id = ?", (old,))
                conn.execute("DELETE FROM features WHERE profile_id = ?", (old,))
                conn.execute(
                    "UPDATE possible_matches SET profile_a = ? WHERE profile_a = ?", (new, old)
                )
                conn.execute(
                    "UPDATE possible_matches SET profile_b = ? WHERE profile_b = ?", (new, old)
                )
            conn.executemany(
                "INSERT INTO possible_matches "
                "(profile_a, profile_b, score, explanation, created_at, status) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        m.profile_a,
                        m.profile_b,
                        m.score,
                        _encode_json(m.explanation),
                        m.created_at,
                        m.status,
                    )
                    for m in changes.possible
                ],
            )
            conn.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                [("profiles", changes.new_profiles), ("identities", changes.new_identities)],
            )
            conn.execute(
                'INSERT INTO checkpoints (consumer, "offset") VALUES (?, ?) '
                'ON CONFLICT (consumer) DO UPDATE SET "offset" = excluded."offset"',
                (consumer, offset),
            )

        await self._db.write(self._writing_blocks(body))

    async def position(self, consumer: str) -> tuple[int, int]:
        def read(conn: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute(
                'SELECT "offset" FROM checkpoints WHERE consumer = ?', (consumer,)
            ).fetchone()
            version = conn.execute(_VERSION, (consumer,)).fetchone()
            return (int(row[0]) if row else 0, int(version[0]) if version else 0)

        return await self._db.read(read)

    async def lease(self, name: str, holder: str, until: float, now: float) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
            conn.execute(_TAKE_LEASE, (name, holder, until, now))
            row = conn.execute("SELECT holder FROM leases WHERE name = ?", (name,)).fetchone()
            return bool(row is not None and row[0] == holder)

        return await self._db.write(lambda conn: transaction(conn, body))

    async def identities(self, profile_id: str) -> list[Identifier]:
        found = await self.profiles([profile_id])
        profile = found.get(profile_id)
        return sorted(profile.identities) if profile else []

    async def resolve(self, profile_id: str) -> str | None:
        def fetch(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT 1 FROM profiles WHERE profile_id = ?", (profile_id,)
            ).fetchone()
            if row:
                return profile_id
            row = conn.execute("SELECT new FROM redirects WHERE old = ?", (profile_id,)).fetchone()
            return str(row[0]) if row else None

        return await self._db.read(fetch)

    async def merged_into(self, profile_ids: Iterable[str]) -> dict[str, list[str]]:
        wanted = list(profile_ids)
        if not wanted:
            return {}

        def fetch(conn: sqlite3.Connection) -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            for chunk, marks in in_chunks(wanted, 500):
                sql = f"SELECT new, old FROM redirects WHERE new IN ({marks})"  # noqa: S608
                for new, old in conn.execute(sql, chunk):
                    found.setdefault(new, []).append(old)
            return {pid: sorted(olds) for pid, olds in found.items()}

        return await self._db.read(fetch)

    async def timeline(self, profile_id: str, after: int, limit: int) -> list[int]:
        rows = await self._db.read(
            lambda c: c.execute(
                'SELECT "offset" FROM timeline WHERE profile_id = ? AND "offset" > ? '
                'ORDER BY "offset" LIMIT ?',
                (profile_id, after, limit),
            ).fetchall()
        )
        return [int(r[0]) for r in rows]

    async def counts(self) -> dict[str, int]:
        rows = await self._db.read(
            lambda c: c.execute("SELECT name, value FROM counters").fetchall()
        )
        found = {str(name): int(value) for name, value in rows}
        return {"profiles": found.get("profiles", 0), "identities": found.get("identities", 0)}

    async def block_candidates(self, keys: Sequence[str], cap: int) -> dict[str, list[str]]:
        wanted = list(dict.fromkeys(keys))
        index = self._blocks

        def lookup(conn: sqlite3.Connection) -> dict[str, list[str]] | None:
            with index.lock:  # a commit of this process moves the epoch and the index at once
                if index.epoch is None or index.epoch != _block_epoch(conn):
                    return None
                return index.members(wanted, cap)

        found = await self._db.read(lookup, inline=True)
        if found is not None:
            return found

        def load(conn: sqlite3.Connection) -> BlockIndex:
            # the keys and their epoch from one snapshot, row by row (~1.6 s and ~50 MB
            # for 100,000 profiles on this machine)
            conn.execute("BEGIN")
            try:
                fresh = BlockIndex()
                fresh.reset(
                    _block_epoch(conn),
                    (
                        (str(pid), _block_set_decode(data))
                        for pid, data in conn.execute(ALL_BLOCK_SETS)
                    ),
                )
            finally:
                conn.execute("COMMIT")
            return fresh

        fresh = await self._db.read(load)
        with index.lock:
            # a commit since the snapshot leaves the epochs apart: the next call reads again
            index.adopt(fresh)
        return fresh.members(wanted, cap)

    async def features(self, profile_ids: Iterable[str]) -> dict[str, bytes]:
        return await self._blobs_of("features", profile_ids)

    async def match_records(self, profile_ids: Iterable[str]) -> dict[str, bytes]:
        return await self._blobs_of("match_records", profile_ids)

    async def _blobs_of(self, table: str, profile_ids: Iterable[str]) -> dict[str, bytes]:
        wanted = list(profile_ids)
        if not wanted:
            return {}

        def fetch(conn: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for chunk, marks in in_chunks(wanted, 500):
                sql = f"SELECT profile_id, data FROM {table} WHERE profile_id IN ({marks})"  # noqa: S608
                for pid, data in conn.execute(sql, chunk):
                    found[str(pid)] = bytes(data)
            return found

        return await self._db.read(fetch, inline=len(wanted) <= _INLINE_PROFILES)

    async def scan_match_records(self, after: str, limit: int) -> list[tuple[str, bytes]]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT profile_id, data FROM match_records WHERE profile_id > ? "
                "ORDER BY profile_id LIMIT ?",
                (after, limit),
            ).fetchall()
        )
        return [(str(pid), bytes(data)) for pid, data in rows]

    async def possible_matches(
        self, profile_id: str | None, status: str | None, after: int, limit: int
    ) -> list[PossibleMatch]:
        sql = (
            "SELECT id, profile_a, profile_b, score, explanation, created_at, status "
            "FROM possible_matches WHERE id > ?"
        )
        params: list[object] = [after]
        if profile_id is not None:
            sql += " AND (profile_a = ? OR profile_b = ?)"
            params += [profile_id, profile_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return [_possible(row) for row in rows]

    async def set_possible_match(self, match_id: int, status: str) -> PossibleMatch | None:
        def body(conn: sqlite3.Connection) -> PossibleMatch | None:
            conn.execute("UPDATE possible_matches SET status = ? WHERE id = ?", (status, match_id))
            row = conn.execute(
                "SELECT id, profile_a, profile_b, score, explanation, created_at, status "
                "FROM possible_matches WHERE id = ?",
                (match_id,),
            ).fetchone()
            return _possible(row) if row else None

        return await self._db.write(lambda conn: transaction(conn, body))

    async def scan_profiles(self, after: str, limit: int) -> list[Profile]:
        rows = await self._db.read(
            lambda c: c.execute(
                f"{_PROFILE_ROWS} WHERE p.profile_id > ? ORDER BY p.profile_id LIMIT ?",
                (after, limit),
            ).fetchall()
        )
        return [_profile_of(r) for r in rows]

    async def load_blob(self, name: str) -> bytes | None:
        row = await self._db.read(
            lambda c: c.execute("SELECT data FROM blobs WHERE name = ?", (name,)).fetchone()
        )
        return bytes(row[0]) if row else None

    async def save_blob(self, name: str, data: bytes) -> None:
        def body(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO blobs (name, data) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET data = excluded.data",
                (name, data),
            )

        await self._db.write(lambda conn: transaction(conn, body))

    async def erase(
        self, profile_ids: Sequence[str], identifiers: Sequence[Identifier]
    ) -> dict[str, int]:
        wanted = sorted(set(profile_ids))
        idents = sorted(set(identifiers))

        def body(conn: sqlite3.Connection, blocks: _BlockWrites) -> dict[str, int]:
            # every writer's state moves on: a batch or an admin operation that read the
            # person before this (in any process) fails its fenced commit, and reads again
            conn.execute("UPDATE versions SET version = version + 1")
            ids = set(wanted)
            for chunk, marks in in_chunks(wanted, _ERASE_CHUNK):
                sql = f"SELECT old FROM redirects WHERE new IN ({marks})"  # noqa: S608
                ids.update(str(r[0]) for r in conn.execute(sql, chunk))
            every = sorted(ids)
            held: set[Identifier] = set(idents)
            for chunk, marks in in_chunks(every, _ERASE_CHUNK):
                sql = f"SELECT doc FROM profiles WHERE profile_id IN ({marks})"  # noqa: S608
                for (doc,) in conn.execute(sql, chunk):
                    held.update(Identifier(*i) for i in _profile_decoder.decode(doc).identities)
            counts = dict.fromkeys(_ERASED, 0)
            for ident in sorted(held):
                counts["identities"] += conn.execute(
                    "DELETE FROM identities WHERE type = ? AND value = ?", ident
                ).rowcount
            counts["blocks"] = blocks.drop(conn, every)
            for chunk, marks in in_chunks(every, _ERASE_CHUNK):
                for table, where in _ERASE_WHERE:
                    sql = f"DELETE FROM {table} WHERE " + where.format(m=marks)  # noqa: S608
                    params = chunk * where.count("{m}")
                    deleted = conn.execute(sql, params).rowcount
                    if table in counts:
                        counts[table] += deleted
            conn.executemany(
                "UPDATE counters SET value = max(value - ?, 0) WHERE name = ?",
                [(counts["profiles"], "profiles"), (counts["identities"], "identities")],
            )
            return counts

        counts = await self._db.write(self._writing_blocks(body))
        await self._db.truncate_wal()
        return counts

    async def erase_timeline(self, rows: Sequence[tuple[str, int]]) -> int:
        wanted = list(rows)
        if not wanted:
            return 0

        def body(conn: sqlite3.Connection) -> int:
            cur = conn.executemany(
                'DELETE FROM timeline WHERE profile_id = ? AND "offset" = ?', wanted
            )
            return int(cur.rowcount)

        return await self._db.write(lambda conn: transaction(conn, body))

    async def aclose(self) -> None:
        await self._db.aclose()


#: what ``erase`` counts, in receipt order (a profile's activity row goes with it, uncounted)
_ERASED = (
    "profiles",
    "identities",
    "redirects",
    "timeline",
    "features",
    "blocks",
    "match_records",
    "possible_matches",
)
#: (table, condition on the erased profile ids ``{m}``) removed by ``erase``
_ERASE_WHERE = (
    ("profiles", "profile_id IN ({m})"),
    ("activity", "profile_id IN ({m})"),
    ("redirects", "old IN ({m}) OR new IN ({m})"),
    ("timeline", "profile_id IN ({m})"),
    ("features", "profile_id IN ({m})"),
    ("match_records", "profile_id IN ({m})"),
    ("possible_matches", "profile_a IN ({m}) OR profile_b IN ({m})"),
)


#: profile ids per ``IN (…)`` list in ``erase`` (a condition may use the list twice)
_ERASE_CHUNK = 200


_encode_json = msgspec.json.encode
_explanation = msgspec.json.Decoder(list[tuple[str, str, float]])


def _possible(row: tuple[object, ...]) -> PossibleMatch:
    match_id, a, b, score, explanation, created_at, status = row
    return PossibleMatch(
        id=int(match_id),  # type: ignore[call-overload]
        profile_a=str(a),
        profile_b=str(b),
        score=float(score),  # type: ignore[arg-type]
        explanation=_explanation.decode(explanation),  # type: ignore[arg-type]
        created_at=float(created_at),  # type: ignore[arg-type]
        status=str(status),
    )


class SqliteQuarantine:
    """The quarantine in ``<folder>/quarantine.db`` (its own file: never blocks the processor)."""

    def __init__(self, folder: Path) -> None:
        self._db = SqliteFile(
            folder / "quarantine.db",
            _QUARANTINE_SCHEMA,
            synchronous="FULL",
            readers=1,
            secure_delete=True,
        )

    async def open(self) -> None:
        await self._db.open()

    async def add(self, entries: Sequence[QuarantineEntry]) -> list[int]:
        def body(conn: sqlite3.Connection) -> list[int]:
            ids: list[int] = []
            for e in entries:
                cur = conn.execute(
                    "INSERT INTO quarantine (source, received_at, reason, field, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (e.source, e.received_at, e.reason, e.field, e.body),
                )
                ids.append(int(cur.lastrowid or 0))
            return ids

        return await self._db.write(lambda conn: transaction(conn, body))

    async def list(self, source: str | None, after: int, limit: int) -> list[QuarantineEntry]:
        sql = "SELECT id, source, received_at, reason, field, body FROM quarantine WHERE id > ?"
        params: list[object] = [after]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return [_entry(row) for row in rows]

    async def get(self, entry_id: int) -> QuarantineEntry | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT id, source, received_at, reason, field, body FROM quarantine WHERE id = ?",
                (entry_id,),
            ).fetchone()
        )
        return _entry(row) if row else None

    async def remove(self, entry_id: int) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM quarantine WHERE id = ?", (entry_id,)).rowcount > 0

        return await self._db.write(lambda conn: transaction(conn, body))

    async def count(self) -> int:
        row = await self._db.read(lambda c: c.execute("SELECT count(*) FROM quarantine").fetchone())
        return int(row[0])

    async def erase(self, entry_ids: Sequence[int]) -> int:
        wanted = sorted(set(entry_ids))
        if not wanted:
            return 0

        def body(conn: sqlite3.Connection) -> int:
            cur = conn.executemany("DELETE FROM quarantine WHERE id = ?", [(i,) for i in wanted])
            return int(cur.rowcount)

        removed = await self._db.write(lambda conn: transaction(conn, body))
        await self._db.truncate_wal()
        return removed

    async def aclose(self) -> None:
        await self._db.aclose()


def _entry(row: tuple[object, ...]) -> QuarantineEntry:
    entry_id, source, received_at, reason, field, body = row
    return QuarantineEntry(
        id=int(entry_id),  # type: ignore[call-overload]
        source=str(source),
        received_at=float(received_at),  # type: ignore[arg-type]
        reason=str(reason),
        field=None if field is None else str(field),
        body=bytes(body),  # type: ignore[call-overload]
    )
