"""What the PostgreSQL profile store must do beyond the shared contract: reach rows through an
index on every statement it sends, keep two concurrent committers' checkpoints and links, and
migrate once when two processes open the same schema at the same moment."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from segue.core.model import Changeset, Identifier, PossibleMatch, Profile
from segue.storage.postgres import PostgresProfileStore, PostgresQuarantine

from .conftest import Sync

# tables whose size grows with the data; reading all of one is a defect on a hot path
_GROWING = {
    "identities",
    "profiles",
    "timeline",
    "blocks",
    "match_records",
    "features",
    "redirects",
    "possible_matches",
    "quarantine",
}


def _profile(pid: str, *identities: Identifier) -> Profile:
    return Profile(
        profile_id=pid,
        created_at=1.0,
        updated_at=1.0,
        first_seen=1.0,
        last_seen=1.0,
        event_count=1,
        identities=list(identities),
    )


@pytest.fixture
def traced(pg_dsn, monkeypatch) -> Iterator[tuple[Sync, list[tuple[str, Any]]]]:
    """A store whose every statement (with its parameters) is recorded as it is sent."""
    statements: list[tuple[str, Any]] = []
    real_execute = psycopg.AsyncCursor.execute

    async def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        statements.append((str(query), params))
        return await real_execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", execute)
    store = Sync(PostgresProfileStore(pg_dsn))
    yield store, statements
    store.close()


#: rows added to each growing table before planning: a planner facing an empty table rightly
#: reads all of it (one page), which says nothing about 10 million rows
_FILLER = {
    "identities": "INSERT INTO identities SELECT 'user_id', 'f' || i, 'fp' || i FROM g",
    "profiles": "INSERT INTO profiles SELECT 'fp' || i, '\\x00' FROM g",
    "timeline": "INSERT INTO timeline SELECT 'fp' || (i % 2000), i + 100000, 1.0 FROM g",
    "blocks": "INSERT INTO blocks SELECT 'fk' || (i % 2000), 'fp' || i FROM g",
    "match_records": "INSERT INTO match_records SELECT 'fp' || i, '\\x00' FROM g",
    "features": "INSERT INTO features SELECT 'fp' || i, '\\x00' FROM g",
    "redirects": "INSERT INTO redirects SELECT 'fo' || i, 'fp' || (i % 5000) FROM g",
    "possible_matches": "INSERT INTO possible_matches (profile_a, profile_b, score, "
    "explanation, created_at, status) SELECT 'fp' || i, 'fq' || i, 0.5, '[]', 1.0, 'open' FROM g",
    "quarantine": "INSERT INTO quarantine (source, received_at, reason, field, body) "
    "SELECT 'src' || (i % 10), 1.0, 'r', NULL, '' FROM g",
}


def _full_reads(pg_dsn: str, statements: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(statement, plan node) for each read of a whole growing table.

    Planned against 20,000 rows per table (added, analysed and rolled back), with
    sequential scans disabled: the planner still picks one when no index can answer, and
    an index scan without an index condition reads the whole index; both are defects.
    """
    found: list[tuple[str, str]] = []

    def walk(sql: str, node: dict[str, Any]) -> None:
        relation = node.get("Relation Name")
        kind = node["Node Type"]
        if relation in _GROWING:
            if kind == "Seq Scan":
                found.append((sql[:120], f"{kind} on {relation}"))
            elif "Index" in kind and "Index Cond" not in node:
                found.append((sql[:120], f"{kind} on {relation} without a condition"))
        for child in node.get("Plans", []):
            walk(sql, child)

    with psycopg.connect(pg_dsn) as conn:  # one transaction, rolled back at the end
        tables = {
            str(r[0])
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        }
        for table, fill in _FILLER.items():
            if table in tables:
                conn.execute("WITH g AS (SELECT generate_series(1, 20000) AS i) " + fill)
                conn.execute(f"ANALYZE {table}")
        conn.execute("SET LOCAL enable_seqscan = off")
        for sql, params in statements:
            head = sql.lstrip().split(None, 1)[0].upper()
            if head not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
                continue
            if "schema_migrations" in sql or "pg_advisory" in sql:
                continue
            (plan,) = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()
            walk(sql, plan[0]["Plan"])
        conn.rollback()
    return found


def test_every_statement_reaches_rows_through_an_index(traced, pg_dsn):
    store, statements = traced
    ids = [Identifier("user_id", str(n)) for n in range(50)]
    store.commit(
        Changeset(
            profiles={f"p{n}": _profile(f"p{n}", ident) for n, ident in enumerate(ids)},
            links={ident: f"p{n}" for n, ident in enumerate(ids)},
            timeline=[(f"p{n}", n + 1, 1.0) for n in range(50)],
            block_keys={"p1": ["k1", "k2"], "p2": ["k1"]},
            features={"p1": b"f", "p2": b"g"},
            match_records={"p1": b"m", "p2": b"n", "p5": b""},
            possible=[PossibleMatch(profile_a="p1", profile_b="p6", score=0.7)],
            new_profiles=50,
            new_identities=50,
        ),
        "profiles",
        50,
    )
    store.commit(
        Changeset(
            redirects={"p2": "p1"},
            drop_profiles=["p3"],
            clear_redirects=["p9"],
            unlink=[ids[3]],
        ),
        "profiles",
        51,
    )
    assert statements, "the trace saw no statement"
    assert store.lookup([*ids[:5], Identifier("email", "x@y.z")]) == {
        ident: f"p{n}" for n, ident in enumerate(ids[:5]) if n != 3
    }
    store.profiles(["p1", "p4"])
    store.identities("p1")
    store.features(["p1"])
    store.match_records(["p1"])
    store.block_candidates(["k1", "k2"], 10)
    store.timeline("p1", 0, 10)
    store.resolve("p2")
    store.checkpoint("profiles")
    store.possible_matches("p1", "open", 0, 10)
    store.possible_matches(None, None, 0, 10)
    store.set_possible_match(1, "rejected")
    store.scan_profiles("p1", 10)
    store.scan_match_records("", 10)
    store.commit(Changeset(redirects={"p4": "p1"}, links={ids[4]: "p1"}), "profiles", 52)
    store.erase_timeline([("p1", 1)])
    store.erase(["p1"], [ids[0]])
    assert _full_reads(pg_dsn, statements) == []


def test_quarantine_statements_reach_rows_through_an_index(pg_dsn, monkeypatch):
    from segue.core.model import QuarantineEntry

    statements: list[tuple[str, Any]] = []
    real_execute = psycopg.AsyncCursor.execute

    async def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        statements.append((str(query), params))
        return await real_execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", execute)
    quarantine = Sync(PostgresQuarantine(pg_dsn))
    entry = QuarantineEntry(id=0, source="web", received_at=1.0, reason="r", field=None, body=b"")
    ids = quarantine.add([entry, entry])
    quarantine.list("web", 0, 10)
    quarantine.get(ids[0])
    quarantine.remove(ids[0])
    quarantine.erase([ids[1]])
    quarantine.close()
    assert _full_reads(pg_dsn, [s for s in statements if "count(*)" not in s[0]]) == []


def test_two_stores_committing_at_once_keep_both_checkpoints_and_every_link(pg_dsn):
    """Two workers (two stores, two pools) commit interleaved batches into one schema."""
    batches, per_batch = 20, 25

    def batch(worker: str, n: int) -> Changeset:
        start = n * per_batch
        idents = [Identifier("user_id", f"{worker}-{i}") for i in range(start, start + per_batch)]
        # every batch of both workers also writes one shared profile and block key, so the
        # two transactions really do contend for the same rows
        mine = {f"{worker}-p{i}": _profile(f"{worker}-p{i}", idents[i - start]) for i in
                range(start, start + per_batch)}  # fmt: skip
        return Changeset(
            profiles={**mine, "shared": _profile("shared")},
            links={ident: f"{worker}-p{start + k}" for k, ident in enumerate(idents)},
            timeline=[(f"{worker}-p{i}", 1000 * n + i + 1, 1.0) for i in range(start, start + 5)],
            block_keys={"shared": [f"k{n}"], f"{worker}-p{start}": ["common"]},
            new_profiles=per_batch,
            new_identities=per_batch,
        )

    async def run() -> dict[str, Any]:
        a, b = PostgresProfileStore(pg_dsn), PostgresProfileStore(pg_dsn)
        await asyncio.gather(a.open(), b.open())

        async def work(store: PostgresProfileStore, worker: str) -> None:
            for n in range(batches):
                await store.commit(batch(worker, n), worker, 100 + n)

        await asyncio.gather(work(a, "w0"), work(b, "w1"))
        every = [
            Identifier("user_id", f"{w}-{i}") for w in ("w0", "w1") for i in range(batches * 25)
        ]
        found = {
            "checkpoints": (await a.checkpoint("w0"), await b.checkpoint("w1")),
            "links": await b.lookup(every),
            "every": every,
            "counts": await a.counts(),
            "common": await a.block_candidates(["common"], 1000),
            "timeline": await b.timeline("w1-p0", 0, 10),
        }
        await a.aclose()
        await b.aclose()
        return found

    found = asyncio.run(run())
    assert found["checkpoints"] == (100 + batches - 1, 100 + batches - 1)
    links = found["links"]
    assert len(links) == len(found["every"])
    assert all(
        pid == f"{i.value.split('-')[0]}-p{i.value.split('-')[1]}" for i, pid in links.items()
    )
    total = 2 * batches * per_batch
    assert found["counts"] == {"profiles": total, "identities": total}
    assert len(found["common"]["common"]) == 2 * batches
    assert found["timeline"] == [1]


def test_two_processes_opening_a_fresh_schema_migrate_once(pg_dsn):
    async def run() -> list[tuple[Any, ...]]:
        stores = [PostgresProfileStore(pg_dsn) for _ in range(3)]
        quarantines = [PostgresQuarantine(pg_dsn) for _ in range(2)]
        await asyncio.gather(*(s.open() for s in [*stores, *quarantines]))
        await stores[0].commit(Changeset(profiles={"p": _profile("p")}), "c", 1)
        assert [p.profile_id for p in await stores[2].scan_profiles("", 5)] == ["p"]
        for s in [*stores, *quarantines]:
            await s.aclose()
        again = PostgresProfileStore(pg_dsn)  # a restart finds everything applied
        await again.open()
        assert await again.checkpoint("c") == 1
        await again.aclose()
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute(
                "SELECT component, version FROM schema_migrations "
                "WHERE component IN ('profiles', 'quarantine') ORDER BY component"
            ).fetchall()

    assert asyncio.run(run()) == [("profiles", 1), ("profiles", 2), ("quarantine", 1)]


def test_a_runtime_on_postgresql_folds_events_there_and_erases_a_person(pg_dsn, tmp_path):
    """The processor commits into PostgreSQL, another process reads the result, and an
    erasure leaves no row in the schema that names the person."""
    from segue.runtime import Runtime
    from segue.settings import Settings

    email = "ada.pg-person@example.org"

    async def scenario() -> dict[str, Any]:
        settings = Settings(
            data=str(tmp_path), store=pg_dsn, log="sqlite", admin_key="test-admin-key-0123456789"
        )
        runtime = Runtime(settings)
        await runtime.start()
        try:
            assert isinstance(runtime.store, PostgresProfileStore)
            assert isinstance(runtime.quarantine, PostgresQuarantine)
            body = (
                '{"batch": ['
                f'{{"type": "identify", "messageId": "m1", "userId": "u1", "anonymousId": "a1",'
                f' "traits": {{"email": "{email}"}}}},'
                '{"type": "track", "messageId": "m2", "anonymousId": "a1", "event": "Seen"},'
                '{"type": "identify", "messageId": "m3", "userId": "u2"},'
                f'{{"type": "track", "messageId": "m4", "userId": "u1",'
                f' "properties": {{"email": "{email}"}}}}'  # no event name: quarantined
                "]}"
            ).encode()
            result = await runtime.ingest.collect("default", runtime.ingest.parse(body, None))
            assert len(result.rejected) == 1
            head = await runtime.log.last_offset()
            for _ in range(500):
                if runtime.processor.position >= head:
                    break
                await asyncio.sleep(0.01)
            other = PostgresProfileStore(pg_dsn)  # another process's view of the state
            await other.open()
            u1, a1 = Identifier("user_id", "u1"), Identifier("anonymous_id", "a1")
            found = await other.lookup([u1, a1])
            before = {
                "one_profile": len(set(found.values())) == 1 and len(found) == 2,
                "timeline": len(await other.timeline(found[u1], 0, 10)),
                "checkpoint": await other.checkpoint("profiles") == head,
                "counts": await other.counts(),
                "quarantined": await runtime.quarantine.count(),
            }
            await other.aclose()
            before["naming"] = _tables_naming(pg_dsn, email)
            receipt = await runtime.privacy_requests.erase([u1])
        finally:
            await runtime.aclose()
        return {"before": before, "receipt": receipt}

    found = asyncio.run(scenario())
    assert found["before"] == {
        "one_profile": True,
        "timeline": 2,
        "checkpoint": True,
        "counts": {"profiles": 2, "identities": 4},
        "quarantined": 1,
        "naming": ["identities", "profiles", "quarantine"],
    }
    state = found["receipt"]["stores"]["state"]
    assert state["profiles"] == 1
    assert state["identities"] == 3
    assert state["timeline"] == 2
    assert found["receipt"]["stores"]["quarantine"] == {"entries": 1}
    assert _tables_naming(pg_dsn, email) == []
    with psycopg.connect(pg_dsn) as conn:  # the other person is untouched
        assert conn.execute(
            "SELECT profile_id FROM identities WHERE type = 'user_id' AND value = 'u2'"
        ).fetchone()


def _tables_naming(pg_dsn: str, needle: str) -> list[str]:
    """Tables of the schema with a row holding ``needle`` in any text or bytea column."""
    with psycopg.connect(pg_dsn) as conn:
        columns: dict[str, list[str]] = {}
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = 'bytea'"
        ):
            columns.setdefault(str(table), []).append(str(column))
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        found = []
        for table in sorted(tables):
            # text columns through the row's text form, bytea ones byte for byte
            conditions = ["position(%(text)s IN r::text) > 0"] + [
                f"position(%(bytes)s IN r.{column}) > 0" for column in columns.get(table, [])
            ]
            sql = f"SELECT count(*) FROM {table} AS r WHERE " + " OR ".join(conditions)
            params = {"text": needle, "bytes": needle.encode()}
            if conn.execute(sql, params).fetchone() != (0,):
                found.append(table)
        return found


def test_a_commit_chosen_as_deadlock_victim_is_run_again(pg_dsn):
    """Two workers' commits deadlock; PostgreSQL aborts one and its store runs it again.

    PostgreSQL looks for a cycle once per lock wait, so the victim is the commit whose wait
    closes the cycle. A third session paces them: w2 deletes p2, then waits for the
    session's timeline row; w1 links x, then waits for p2; the session rolls back, and w2
    now wants x: its wait closes the cycle and w2 is aborted, then run again after w1.
    """
    fast = pg_dsn + "%20-cdeadlock_timeout%3D50"  # milliseconds
    x = Identifier("user_id", "x")

    async def scenario() -> dict[str, Any]:
        w1, w2 = PostgresProfileStore(fast), PostgresProfileStore(fast)
        await asyncio.gather(w1.open(), w2.open())
        await w1.commit(
            Changeset(profiles={"p1": _profile("p1"), "p2": _profile("p2")}, links={x: "p1"}),
            "setup",
            1,
        )
        pacer = await psycopg.AsyncConnection.connect(pg_dsn)  # in a transaction from here
        await pacer.execute("INSERT INTO timeline (profile_id, \"offset\", at) VALUES ('q', 1, 1)")
        second = asyncio.create_task(
            w2.commit(
                Changeset(drop_profiles=["p2"], timeline=[("q", 1, 1.0)], links={x: "p9"}),
                "w2",
                5,
            )
        )
        await asyncio.sleep(0.3)  # w2 holds p2 and waits for the pacer
        first = asyncio.create_task(
            w1.commit(Changeset(links={x: "p1"}, profiles={"p2": _profile("p2")}), "w1", 7)
        )
        await asyncio.sleep(0.3)  # w1 holds x and waits for p2
        assert not first.done()
        assert not second.done()
        await pacer.rollback()
        await pacer.close()
        await asyncio.gather(first, second)
        found = {
            "x": await w1.lookup([x]),
            "p2": await w1.profiles(["p2"]),
            "checkpoints": (await w1.checkpoint("w1"), await w1.checkpoint("w2")),
            "timeline": await w1.timeline("q", 0, 10),
        }
        await w1.aclose()
        await w2.aclose()
        return found

    # w2 ran last, whole: x is its link, p2 is gone, its timeline row is there
    assert asyncio.run(scenario()) == {
        "x": {x: "p9"},
        "p2": {},
        "checkpoints": (7, 5),
        "timeline": [1],
    }
