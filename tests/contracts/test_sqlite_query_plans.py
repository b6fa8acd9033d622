"""Every statement the SQLite state store runs on a hot path reaches rows through an index.

A full scan is invisible in a small test and ruinous at 100,000 profiles (a row-value
``IN (VALUES …)`` once scanned the whole identity table on every processor batch), so the
plans are checked here, by count, not by timing.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from segue.core.model import Changeset, Identifier, Profile
from segue.storage import _sqlite_db
from segue.storage.sqlite import ALL_BLOCK_SETS, SqliteProfileStore

from .conftest import Sync

# tables whose size grows with the data; a scan of any of them is a defect on a hot path
_GROWING = (
    "identities",
    "profiles",
    "timeline",
    "profile_blocks",
    "match_records",
    "features",
    "redirects",
)


@pytest.fixture
def traced(tmp_path, monkeypatch) -> Any:
    statements: list[str] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(_sqlite_db.sqlite3, "connect", connect)
    store = Sync(SqliteProfileStore(tmp_path))
    yield store, statements, tmp_path / "state.db"
    store.close()


def _scans(db: Any, statements: list[str]) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    found = []
    for sql in statements:
        head = sql.lstrip().split(None, 1)[0].upper()
        if head not in ("SELECT", "UPDATE", "DELETE", "INSERT"):
            continue
        for row in conn.execute("EXPLAIN QUERY PLAN " + sql):
            detail = str(row[-1])
            if detail.startswith("SCAN") and any(f"SCAN {t}" in detail for t in _GROWING):
                found.append((sql[:120], detail))
    conn.close()
    return found


def test_lookups_and_commits_search_by_key(traced):
    store, statements, db = traced
    ids = [Identifier("user_id", str(n)) for n in range(50)]
    profiles = {
        f"p{n}": Profile(
            profile_id=f"p{n}",
            created_at=1.0,
            updated_at=1.0,
            first_seen=1.0,
            last_seen=1.0,
            event_count=1,
            identities=[ident],
        )
        for n, ident in enumerate(ids)
    }
    store.commit(
        Changeset(
            profiles=profiles,
            links={ident: f"p{n}" for n, ident in enumerate(ids)},
            timeline=[(f"p{n}", n + 1, 1.0) for n in range(50)],
            block_keys={"p1": ["k1", "k2"]},
            features={"p1": b"f"},
            match_records={"p1": b"m"},
            new_profiles=50,
            new_identities=50,
        ),
        "profiles",
        50,
    )
    store.commit(Changeset(redirects={"p2": "p1"}, drop_profiles=["p3"]), "profiles", 51)
    statements.clear()
    assert store.lookup([*ids[:5], Identifier("email", "x@y.z")]) == {
        ident: f"p{n}" for n, ident in enumerate(ids[:5])
    }
    store.profiles(["p1", "p4"])
    store.features(["p1"])
    store.match_records(["p1"])
    assert store.block_candidates(["k1"], 10) == {"k1": ["p1"]}
    assert store.block_candidates(["k2", "k9"], 10) == {"k2": ["p1"], "k9": []}
    store.timeline("p1", 0, 10)
    store.resolve("p2")
    store.commit(
        Changeset(redirects={"p4": "p1"}, links={ids[4]: "p1"}, block_keys={"p1": ["k2", "k3"]}),
        "profiles",
        52,
    )
    assert statements, "the trace saw no statement"
    # who holds a block key is answered in memory: the keys are read whole once, by design
    assert statements.count(ALL_BLOCK_SETS) == 1
    assert _scans(db, [s for s in statements if s != ALL_BLOCK_SETS]) == []
