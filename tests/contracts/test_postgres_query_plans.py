"""Every statement the PostgreSQL catalog, decision, consent, audit, key and privacy stores
run on a hot path reaches rows through an index.

Each adapter's statements are recorded as they run (with their parameters), then planned
again with ``EXPLAIN (FORMAT JSON)`` under ``enable_seqscan = off``: on tables this small the
planner would rightly scan, but with scans priced out it still scans when no index can
serve the query. A full index scan with no index condition counts as a scan too. The
queries that must use a particular partial index (due rank events, open privacy requests)
are checked by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest

from segue.core.model import AuditEntry, ConsentRecord, Decision, Item, PrivacyRequest, RankEvent
from segue.storage.postgres_audit import PostgresAuditLog
from segue.storage.postgres_catalog import PostgresCatalogStore
from segue.storage.postgres_consent import PostgresConsentStore
from segue.storage.postgres_decisions import PostgresDecisionStore
from segue.storage.postgres_keys import PostgresKeyStore
from segue.storage.postgres_privacy import PostgresPrivacyStore

# tables whose size grows with the data; scanning any of them on a hot path is a defect
_GROWING = {
    "items",
    "decisions",
    "rank_events",
    "consent_ledger",
    "audit",
    "audit_subjects",
    "data_keys",
    "privacy_requests",
    "privacy_exports",
    "privacy_export_subjects",
    "suppressed",
}


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every (statement, parameters) an async cursor runs while the test body is traced."""
    seen: list[tuple[str, Any]] = []
    real_execute = psycopg.AsyncCursor.execute
    real_executemany = psycopg.AsyncCursor.executemany

    async def execute(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        seen.append((str(query), params))
        return await real_execute(self, query, params, **kw)

    async def executemany(self: Any, query: Any, params_seq: Any, **kw: Any) -> Any:
        rows = list(params_seq)
        if rows:
            seen.append((str(query), rows[0]))
        return await real_executemany(self, query, rows, **kw)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", execute)
    monkeypatch.setattr(psycopg.AsyncCursor, "executemany", executemany)
    return seen


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _plans(dsn: str, statements: list[tuple[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    with psycopg.connect(dsn) as conn:  # one transaction, rolled back: EXPLAIN never writes
        conn.execute("SET enable_seqscan = off")
        for sql, params in statements:
            head = sql.lstrip().split(None, 1)[0].upper()
            if head not in ("SELECT", "INSERT", "UPDATE", "DELETE"):
                continue
            if "pg_advisory" in sql:
                continue
            row = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()
            assert row is not None
            out.append((sql, row[0][0]["Plan"]))
        conn.rollback()
    return out


def _scans(plans: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    found = []
    for sql, plan in plans:
        for node in _nodes(plan):
            table = node.get("Relation Name")
            if table not in _GROWING:
                continue
            kind = node["Node Type"]
            full_index = kind in ("Index Scan", "Index Only Scan") and "Index Cond" not in node
            if kind == "Seq Scan" or full_index:
                found.append((sql[:100], kind, str(table)))
    return found


def _indexes(plans: list[tuple[str, dict[str, Any]]], needle: str) -> set[str]:
    return {
        str(node.get("Index Name"))
        for sql, plan in plans
        if needle in sql
        for node in _nodes(plan)
        if "Index Name" in node
    }


def _run(adapter: Any, body: Callable[[], Awaitable[None]], seen: list[Any]) -> None:
    async def scenario() -> None:
        await adapter.open()
        try:
            seen.clear()  # migrations are not a hot path
            await body()
        finally:
            await adapter.aclose()

    asyncio.run(scenario())
    assert seen, "the trace saw no statement"


def test_catalog_reads_and_writes_by_key(pg_dsn: str, recorded: list[Any]) -> None:
    store = PostgresCatalogStore(pg_dsn)

    async def body() -> None:
        await store.put([Item(item_id=f"i{n}", category="c", updated_at=1.0) for n in range(50)])
        await store.get(["i1", "i7", "nope"])
        await store.scan("i2", 10)
        await store.delete("i3")

    _run(store, body, recorded)
    assert _scans(_plans(pg_dsn, recorded)) == []


def test_decisions_and_due_rank_events_use_their_indexes(pg_dsn: str, recorded: list[Any]) -> None:
    store = PostgresDecisionStore(pg_dsn)

    def decision(n: int) -> Decision:
        return Decision(
            decision_id=f"d{n}",
            created_at=float(n),
            placement="home",
            profile_id=f"p{n % 5}",
            items=["i1"],
            scores=[1.0],
            propensities=[1.0],
            strategy="s",
            personalized=True,
        )

    async def body() -> None:
        await store.put_decisions([decision(n) for n in range(50)])
        await store.get_decision("d3")
        await store.decisions_for("p1", 10)
        for n in range(20):
            await store.put_rank_event(
                RankEvent(
                    event_id=f"e{n}",
                    created_at=float(n),
                    context_features=[],
                    action_ids=["a"],
                    action_features=[[]],
                    ranking=["a"],
                    probabilities=[1.0],
                    reward_action_id="a",
                    learned=n % 2 == 0,
                )
            )
        await store.get_rank_event("e3")
        await store.due_rank_events(10.0, 5)
        await store.erase_decisions(["p2"])

    _run(store, body, recorded)
    plans = _plans(pg_dsn, recorded)
    assert _scans(plans) == []
    assert _indexes(plans, "FROM rank_events WHERE due") == {"rank_events_due"}


def test_consent_ledger_reads_and_erases_by_subject(pg_dsn: str, recorded: list[Any]) -> None:
    store = PostgresConsentStore(pg_dsn)

    async def body() -> None:
        await store.record(
            [
                ConsentRecord(subject=f"user_id:{n % 7}", at=float(n), source="api", proof="{}")
                for n in range(50)
            ]
        )
        await store.history(["user_id:1", "user_id:2"], limit=3)
        await store.scan(10, 5)
        await store.erase(["user_id:3"])

    _run(store, body, recorded)
    plans = _plans(pg_dsn, recorded)
    assert _scans(plans) == []
    assert "consent_subject" in _indexes(plans, "FROM consent_ledger c")


def test_audit_appends_pages_and_filters_by_index(pg_dsn: str, recorded: list[Any]) -> None:
    log = PostgresAuditLog(pg_dsn, b"k")

    async def body() -> None:
        await log.append(
            [
                AuditEntry(at=float(n), actor="a", action=f"x{n % 3}", subjects=[f"h{n % 4}"])
                for n in range(50)
            ]
        )
        await log.scan(10, 10)
        await log.head()
        await log.list(subjects=["h1"], after=5, limit=5)
        await log.list(action="x1", limit=5)
        await log.list(since=10.0, until=20.0, limit=5)

    _run(log, body, recorded)
    assert _scans(_plans(pg_dsn, recorded)) == []


def test_keys_and_privacy_requests_by_key(pg_dsn: str, recorded: list[Any]) -> None:
    keys = PostgresKeyStore(pg_dsn)

    async def key_body() -> None:
        await keys.create([f"k{n}" for n in range(20)])
        await keys.get(["k1", "k2"])
        await keys.destroy(["k3"])

    _run(keys, key_body, recorded)
    assert _scans(_plans(pg_dsn, recorded)) == []

    privacy = PostgresPrivacyStore(pg_dsn)

    async def privacy_body() -> None:
        for n in range(10):
            await privacy.put(
                PrivacyRequest(
                    request_id=f"r{n}",
                    type="access",
                    created_at=float(n),
                    updated_at=float(n),
                    user={"user_id": str(n)},
                    status="done" if n % 2 else "pending",
                )
            )
        await privacy.get("r1")
        await privacy.unfinished()
        await privacy.put_export("r1", ["h1", "h2"], b"{}")
        await privacy.export("r1")
        await privacy.erase_exports(["h2"])
        await privacy.suppress(["h1", "h2"], 1.0)

    _run(privacy, privacy_body, recorded)
    plans = _plans(pg_dsn, recorded)
    assert _scans(plans) == []
    assert _indexes(plans, "status IN ('pending', 'running')") == {"privacy_requests_open"}

    async def listing() -> None:  # newest first, LIMIT: a bounded backward walk of one index
        await privacy.recent(5)

    _run(privacy, listing, recorded)
    plans = _plans(pg_dsn, recorded)
    assert _indexes(plans, "ORDER BY created_at DESC") == {"privacy_requests_created"}
