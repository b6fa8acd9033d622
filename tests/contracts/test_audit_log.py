"""The audit log: every AuditLog adapter chains, stores and filters the same way.

The SQLite-only tests at the end edit ``audit.db`` behind the adapter's back, as someone
with access to the data folder could, and check that verification sees it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segue.core.model import AuditEntry, AuditHead
from segue.privacy.audit import GENESIS, chain, seal, verify
from segue.privacy.audit_service import AuditService
from segue.storage.memory_audit import MemoryAuditLog
from segue.storage.sqlite_audit import SqliteAuditLog, _row
from tests.contracts.conftest import Sync

KEY = b"contract-secret"


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def audit_log(request, tmp_path) -> Iterator[Sync]:
    adapter: Any
    if request.param == "postgresql":
        from segue.storage.postgres_audit import PostgresAuditLog

        adapter = PostgresAuditLog(request.getfixturevalue("pg_dsn"), KEY)
    elif request.param == "memory":
        adapter = MemoryAuditLog(KEY)
    else:
        adapter = SqliteAuditLog(tmp_path, KEY)
    sync = Sync(adapter)
    yield sync
    sync.close()


def entry(i: int, action: str = "consent.changed", subjects=("s-a",), **details) -> AuditEntry:
    return AuditEntry(
        at=1000.0 + i,
        actor="admin:abc123",
        action=action,
        subjects=list(subjects),
        details={"i": i, **details},
    )


def everything(log: Sync) -> list[AuditEntry]:
    return log.scan(0, 10_000)


def test_append_numbers_links_and_seals_the_head(audit_log):
    # a new log has a sealed head already (seq 0): an emptied log without one is not intact
    assert audit_log.head() == AuditHead(seq=0, hash=GENESIS, seal=seal(KEY, 0, GENESIS))
    assert audit_log.scan(0, 10) == []
    assert verify([], audit_log.head(), KEY).ok
    stored = audit_log.append([entry(1), entry(2)])
    assert [e.seq for e in stored] == [1, 2]
    assert stored[0].prev_hash == GENESIS
    assert stored[1].prev_hash == stored[0].hash != ""
    more = audit_log.append([entry(3)])
    assert more[0].seq == 3
    assert more[0].prev_hash == stored[1].hash
    assert everything(audit_log) == [*stored, *more]
    head = audit_log.head()
    assert (head.seq, head.hash) == (3, more[0].hash)
    assert head.seal == seal(KEY, 3, more[0].hash)
    assert verify(everything(audit_log), head, KEY).ok
    assert audit_log.append([]) == []


def test_entries_come_back_exactly_as_stored(audit_log):
    details = {"big": 2**70, "text": "é ☃ \u0000", "nested": {"b": [1, 2.5, None], "a": True}}
    (stored,) = audit_log.append([entry(1, subjects=("h2", "h1", "h3"), **details)])
    (read,) = audit_log.scan(0, 10)
    assert read == stored
    assert read.subjects == ["h2", "h1", "h3"]  # order is part of what the hash covers
    read.details["i"] = 99  # a caller's change never reaches the log
    assert audit_log.scan(0, 10)[0].details["i"] == 1
    assert verify(audit_log.scan(0, 10), audit_log.head(), KEY).ok


def test_concurrent_appends_never_fork_the_chain(audit_log):
    async def many() -> list[list[AuditEntry]]:
        return await asyncio.gather(
            *(audit_log.adapter.append([entry(i), entry(i + 100)]) for i in range(40))
        )

    results = audit_log.run(many())
    seqs = sorted(e.seq for batch in results for e in batch)
    assert seqs == list(range(1, 81))
    for batch in results:  # one call's entries stay together and in order
        assert batch[1].seq == batch[0].seq + 1
    entries = everything(audit_log)
    assert len({e.prev_hash for e in entries}) == 80  # no two entries share a predecessor
    verdict = verify(entries, audit_log.head(), KEY)
    assert verdict.ok
    assert verdict.entries == 80


def test_scan_pages_in_seq_order(audit_log):
    audit_log.append([entry(i) for i in range(1, 8)])
    assert [e.seq for e in audit_log.scan(0, 3)] == [1, 2, 3]
    assert [e.seq for e in audit_log.scan(3, 3)] == [4, 5, 6]
    assert [e.seq for e in audit_log.scan(6, 3)] == [7]
    assert audit_log.scan(7, 3) == []


def test_list_filters_by_subject_action_time_and_pages(audit_log):
    audit_log.append(
        [
            entry(1, "consent.changed", ("alice",)),
            entry(2, "profile.read", ("alice", "bob")),
            entry(3, "key.used", ()),
            entry(4, "consent.changed", ("bob",)),
            entry(5, "privacy.request", ("carol",)),
            entry(6, "profile.read", ("alice",)),
        ]
    )

    def seqs(**kw) -> list[int]:
        return [e.seq for e in audit_log.list(**kw)]

    assert seqs() == [1, 2, 3, 4, 5, 6]
    assert seqs(subjects=["alice"]) == [1, 2, 6]
    assert seqs(subjects=["bob", "carol"]) == [2, 4, 5]
    assert seqs(subjects=["nobody"]) == []
    assert seqs(action="profile.read") == [2, 6]
    assert seqs(subjects=["alice"], action="profile.read") == [2, 6]
    assert seqs(since=1003.0) == [3, 4, 5, 6]
    assert seqs(until=1003.0) == [1, 2]
    assert seqs(since=1002.0, until=1005.0, subjects=["bob"]) == [2, 4]
    assert seqs(subjects=["alice"], limit=2) == [1, 2]
    assert seqs(subjects=["alice"], after=2, limit=2) == [6]
    assert seqs(after=6) == []
    listed = audit_log.list(subjects=["bob"])
    assert listed[0].subjects == ["alice", "bob"]  # every subject, not only the matched one


# --- the tables behind the adapter's back (SQLite and PostgreSQL) -----------------------


class Tables:
    """An audit log's tables opened directly, as someone with access to the database (but
    not to the secret) could, and a way to open the adapter again (a restart)."""

    def __init__(self, kind: str, place: Any) -> None:
        self.kind, self.place = kind, place

    def adapter(self) -> Any:
        if self.kind == "postgresql":
            from segue.storage.postgres_audit import PostgresAuditLog

            return PostgresAuditLog(self.place, KEY)
        return SqliteAuditLog(self.place, KEY)

    def create_as_before_genesis_heads(self) -> None:
        """The empty log an earlier segue created: the tables, without a head."""
        if self.kind == "postgresql":
            from segue.storage._postgres import PgDatabase
            from segue.storage.postgres_audit import MIGRATIONS

            db = PgDatabase(self.place, "audit", MIGRATIONS)
            Sync(db).close()  # open applies the migrations of then
            return
        from segue.storage._sqlite_db import SqliteFile
        from segue.storage.sqlite_audit import _SCHEMA

        Sync(SqliteFile(self.place / "audit.db", _SCHEMA)).close()

    def execute(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(self.place, autocommit=False) as conn:
                for sql, args in statements:
                    conn.execute(sql.replace("?", "%s"), args)
            return
        conn = sqlite3.connect(self.place / "audit.db")
        with conn:
            for sql, args in statements:
                conn.execute(sql, args)
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def tables(request, tmp_path) -> Tables:
    place = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else tmp_path
    return Tables(request.param, place)


def online(log: Sync):
    return log.run(AuditService(log.adapter, KEY, clock=None).verify())


def test_an_entry_chained_after_the_sealed_head_is_rejected(tables):
    """The audit's reproduction: a forged entry with a correct SHA-256 link (no secret
    needed) appended after the head is reported, offline and online, not counted."""
    log = Sync(tables.adapter())
    try:
        log.append([entry(i) for i in range(1, 4)])
        last = everything(log)[-1]
        (forged,) = chain(last.seq, last.hash, [entry(4, actor="eve")])
        tables.execute(
            (
                "INSERT INTO audit (seq, at, actor, action, details, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                _row(forged),
            ),
            ("INSERT INTO audit_subjects (subject, seq, pos) VALUES (?, ?, ?)", ("s-a", 4, 0)),
        )
        for verdict in (check(log), online(log)):
            assert (verdict.ok, verdict.first_bad_seq, verdict.entries) == (False, 4, 3)
            assert verdict.reason is not None
            assert verdict.reason.startswith("unsealed: entry 4 comes after the sealed head")
    finally:
        log.close()


def test_a_log_emptied_with_its_head_is_not_intact_even_after_a_restart(tables):
    log = Sync(tables.adapter())
    try:
        log.append([entry(i) for i in range(1, 4)])
        tables.execute(
            ("DELETE FROM audit_subjects", ()),
            ("DELETE FROM audit", ()),
            ("DELETE FROM audit_head", ()),
        )
        assert check(log).reason == "head missing: an empty log has no sealed head"
    finally:
        log.close()
    again = Sync(tables.adapter())  # opening the log again must not seal a new, empty one
    try:
        for verdict in (check(again), online(again)):
            assert (verdict.ok, verdict.first_bad_seq) == (False, 1)
            assert verdict.reason == "head missing: an empty log has no sealed head"
    finally:
        again.close()


def test_an_empty_log_of_an_installation_that_never_wrote_one_is_intact(tables):
    log = Sync(tables.adapter())
    log.close()
    again = Sync(tables.adapter())
    try:
        assert check(again).ok
        assert online(again).ok
        assert again.head().seq == 0
    finally:
        again.close()


# --- SQLite: the file itself ----------------------------------------------------------


@pytest.fixture
def sqlite_log(tmp_path) -> Iterator[tuple[Sync, Path]]:
    sync = Sync(SqliteAuditLog(tmp_path, KEY))
    sync.append([entry(i, subjects=(f"h{i}", "shared")) for i in range(1, 7)])
    yield sync, tmp_path / "audit.db"
    sync.close()


def tamper(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    with conn:
        for sql in statements:
            conn.execute(sql)
    conn.close()


def check(log: Sync):
    return verify(log.scan(0, 10_000), log.head(), KEY, sealed=True)


def test_sqlite_reopened_log_continues_the_same_chain(tmp_path):
    first = Sync(SqliteAuditLog(tmp_path, KEY))
    stored = first.append([entry(1), entry(2)])
    first.close()
    again = Sync(SqliteAuditLog(tmp_path, KEY))
    (third,) = again.append([entry(3)])
    assert third.seq == 3
    assert third.prev_hash == stored[-1].hash
    assert check(again).ok
    again.close()


@pytest.mark.parametrize(
    ("statements", "bad_seq", "reason"),
    [
        (["UPDATE audit SET actor = 'eve' WHERE seq = 3"], 3, "edited"),
        (["UPDATE audit SET details = '{\"i\":30}' WHERE seq = 3"], 3, "edited"),
        (["UPDATE audit SET details = 'not json' WHERE seq = 3"], 3, "edited"),
        (["UPDATE audit SET at = 'yesterday' WHERE seq = 3"], 3, "edited"),
        (["DELETE FROM audit_subjects WHERE seq = 3 AND subject = 'h3'"], 3, "edited"),
        (
            ["UPDATE audit_subjects SET subject = 'h9' WHERE seq = 3 AND subject = 'h3'"],
            3,
            "edited",
        ),
        (["DELETE FROM audit WHERE seq = 3"], 3, "removed"),
        (
            ["DELETE FROM audit WHERE seq > 4", "UPDATE audit_head SET seq = 4, hash = 'x'"],
            4,
            "head edited",
        ),
        (["DELETE FROM audit WHERE seq > 4"], 5, "truncated"),
        (["DELETE FROM audit_head"], 1, "head missing"),
    ],
)
def test_sqlite_any_edit_of_the_file_is_detected(sqlite_log, statements, bad_seq, reason):
    log, db = sqlite_log
    assert check(log).ok
    tamper(db, *statements)
    verdict = check(log)
    assert not verdict.ok
    assert verdict.first_bad_seq == bad_seq
    assert verdict.reason is not None
    assert verdict.reason.startswith(reason)


def test_an_empty_log_created_by_an_earlier_segue_is_sealed_once_on_upgrade(tables):
    tables.create_as_before_genesis_heads()
    log = Sync(tables.adapter())
    try:
        assert log.head() == AuditHead(seq=0, hash=GENESIS, seal=seal(KEY, 0, GENESIS))
        assert online(log).ok
        tables.execute(("DELETE FROM audit_head", ()))
    finally:
        log.close()
    again = Sync(tables.adapter())
    try:
        assert again.head() is None
        assert online(again).reason == "head missing: an empty log has no sealed head"
    finally:
        again.close()
