"""What only a shared PostgreSQL database can show: many processes on one audit chain, one
set of keys, migrations racing at open, durable commits whatever the server's default, and
a runtime whose stores all live in the database named by ``settings.store``.

The contract suites (``catalog_store``, ``audit_log``, … with the ``postgresql`` param)
already prove these adapters behave like the memory reference.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from segue.core.model import AuditEntry, ConsentRecord, Item
from segue.errors import InvalidInput
from segue.privacy.audit import verify
from segue.runtime import Runtime
from segue.settings import Settings
from segue.storage.postgres_audit import PostgresAuditLog
from segue.storage.postgres_catalog import PostgresCatalogStore
from segue.storage.postgres_consent import PostgresConsentStore
from segue.storage.postgres_decisions import PostgresDecisionStore
from segue.storage.postgres_keys import PostgresKeyStore
from segue.storage.postgres_privacy import PostgresPrivacyStore
from tests.contracts.conftest import Sync

KEY = b"contract-secret"

# one process appending to the shared chain: many small appends, each its own transaction
_APPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from segue.core.model import AuditEntry
    from segue.storage.postgres_audit import PostgresAuditLog

    async def main(dsn: str, name: str, n: int) -> None:
        log = PostgresAuditLog(dsn, b"contract-secret")
        await log.open()
        for i in range(n):
            await log.append([
                AuditEntry(at=float(i), actor=name, action="a", subjects=[name], details={"i": i}),
                AuditEntry(at=float(i), actor=name, action="b", subjects=[], details={"i": i}),
            ])
        await log.aclose()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def test_two_processes_appending_at_once_keep_one_chain(pg_dsn: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, pg_dsn, name, "60"])
        for name in ("proc-a", "proc-b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    log = Sync(PostgresAuditLog(pg_dsn, KEY))
    try:
        entries = log.scan(0, 10_000)
        assert [e.seq for e in entries] == list(range(1, 241))
        assert len({e.prev_hash for e in entries}) == 240  # no fork
        for first, second in zip(entries[::2], entries[1::2], strict=True):
            assert (first.action, second.action) == ("a", "b")  # one append stays together
            assert first.actor == second.actor
        assert {e.actor for e in entries} == {"proc-a", "proc-b"}
        verdict = verify(entries, log.head(), KEY, sealed=True)
        assert verdict.ok
        assert verdict.entries == 240
        assert [e.seq for e in log.list(subjects=["proc-b"], limit=1000)] == [
            e.seq for e in entries if e.actor == "proc-b" and e.action == "a"
        ]
    finally:
        log.close()


def test_a_reopened_log_continues_the_chain_and_edits_in_the_database_are_detected(
    pg_dsn: str,
) -> None:
    first = Sync(PostgresAuditLog(pg_dsn, KEY))
    stored = first.append(
        [AuditEntry(at=float(i), actor="x", action="a", subjects=[f"h{i}"]) for i in range(4)]
    )
    first.close()
    again = Sync(PostgresAuditLog(pg_dsn, KEY))
    try:
        (fifth,) = again.append([AuditEntry(at=9.0, actor="x", action="a")])
        assert (fifth.seq, fifth.prev_hash) == (5, stored[-1].hash)
        assert verify(again.scan(0, 100), again.head(), KEY, sealed=True).ok
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE audit_subjects SET subject = 'h9' WHERE seq = 3")
        verdict = verify(again.scan(0, 100), again.head(), KEY, sealed=True)
        assert not verdict.ok
        assert verdict.first_bad_seq == 3
    finally:
        again.close()


def test_processes_creating_the_same_key_at_once_get_the_same_key(pg_dsn: str) -> None:
    async def scenario() -> None:
        stores = [PostgresKeyStore(pg_dsn) for _ in range(3)]
        await asyncio.gather(*(s.open() for s in stores))  # migrations race, one wins
        try:
            created = await asyncio.gather(*(s.create(["k1", "k2"]) for s in stores))
            assert created[0] == created[1] == created[2]
            assert await stores[2].get(["k1"]) == {"k1": created[0]["k1"]}
        finally:
            for s in stores:
                await s.aclose()

    asyncio.run(scenario())


def test_every_adapter_opens_on_one_schema_at_once_and_records_its_migrations(
    pg_dsn: str,
) -> None:
    async def scenario() -> list[tuple[str, int]]:
        adapters = [
            cls(pg_dsn)
            for cls in (
                PostgresCatalogStore,
                PostgresConsentStore,
                PostgresDecisionStore,
                PostgresKeyStore,
                PostgresPrivacyStore,
                PostgresCatalogStore,  # a second process opening the same component
            )
        ]
        adapters.append(PostgresAuditLog(pg_dsn, KEY))
        await asyncio.gather(*(a.open() for a in adapters))
        for a in adapters:
            await a.aclose()
        with psycopg.connect(pg_dsn) as conn:
            rows = conn.execute("SELECT component, version FROM schema_migrations").fetchall()
        return sorted((str(c), int(v)) for c, v in rows)

    assert asyncio.run(scenario()) == [
        ("audit", 1),
        ("audit", 2),  # its genesis head, sealed with the key
        ("catalog", 1),
        ("consent", 1),
        ("decisions", 1),
        ("keys", 1),
        ("privacy", 1),
        ("privacy", 2),
    ]


def test_consent_commits_durably_even_when_the_session_default_is_asynchronous(
    pg_dsn: str,
) -> None:
    lax = pg_dsn + "%20-csynchronous_commit%3Doff"  # what a tuned server might default to
    with psycopg.connect(lax) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)

    async def scenario() -> tuple[object, object]:
        consent, decisions = PostgresConsentStore(lax), PostgresDecisionStore(lax)
        await consent.open()
        await decisions.open()
        try:
            async with consent._db.connection() as c:
                strict = await (await c.execute("SHOW synchronous_commit")).fetchone()
            async with decisions._db.connection() as c:
                relaxed = await (await c.execute("SHOW synchronous_commit")).fetchone()
            return strict, relaxed
        finally:
            await consent.aclose()
            await decisions.aclose()

    # the ledger is acknowledged only once on disk; the decision log trades that for speed
    assert asyncio.run(scenario()) == (("on",), ("off",))


def test_runtime_builds_every_store_on_the_store_url(pg_dsn: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = Settings(
            data=str(tmp_path),
            store=pg_dsn,
            log="sqlite",
            admin_key="test-admin-key-0123456789",
        )
        runtime = Runtime(settings)
        await runtime.start(run_processor=False)
        try:
            assert isinstance(
                runtime.catalog.store, PostgresCatalogStore
            )  # the ViewedCatalog wraps it
            assert isinstance(runtime.decisions, PostgresDecisionStore)
            assert isinstance(runtime.consents, PostgresConsentStore)
            assert isinstance(runtime.privacy_store, PostgresPrivacyStore)
            assert isinstance(runtime.audit.log, PostgresAuditLog)
            await runtime.catalog.put([Item(item_id="sku-1", title="Shoe", updated_at=1.0)])
            body = b'{"batch": [{"type": "identify", "messageId": "m1", "userId": "u1",'
            body += b' "traits": {"email": "u1@example.org"}}]}'
            await runtime.ingest.collect("default", runtime.ingest.parse(body, None))
        finally:
            await runtime.aclose()
        # another process on the same URL sees what this one stored
        other = PostgresCatalogStore(pg_dsn)
        await other.open()
        try:
            assert (await other.get(["sku-1"]))["sku-1"].title == "Shoe"
        finally:
            await other.aclose()
        with psycopg.connect(pg_dsn) as conn:  # the event was sealed with a key kept there
            assert conn.execute("SELECT count(*) FROM data_keys").fetchone() == (1,)
        assert not (tmp_path / "keys.db").exists()
        assert not (tmp_path / "catalog.db").exists()
        assert not (tmp_path / "consent.db").exists()
        assert not (tmp_path / "audit.db").exists()

    asyncio.run(scenario())


def test_text_postgresql_cannot_hold_is_refused_as_invalid_input_and_stores_nothing(
    pg_dsn: str,
) -> None:
    """PostgreSQL text holds no NUL character (SQLite's does): a client's NUL is a 4xx."""
    catalog = Sync(PostgresCatalogStore(pg_dsn))
    consent = Sync(PostgresConsentStore(pg_dsn))
    try:
        with pytest.raises(InvalidInput):
            catalog.put(
                [Item(item_id="ok", updated_at=1.0), Item(item_id="a\x00b", updated_at=1.0)]
            )
        assert catalog.count() == 0
        with pytest.raises(InvalidInput):
            consent.record([ConsentRecord(subject="user_id:\x00", at=1.0, source="api")])
        assert consent.subjects() == []
    finally:
        catalog.close()
        consent.close()
