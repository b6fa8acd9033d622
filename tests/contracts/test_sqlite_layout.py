"""The SQLite state store keeps its documents in rowid tables, and converts older databases.

Profile documents and feature blobs are usually larger than the ~1,000 bytes a WITHOUT ROWID
row keeps in its leaf page: there each spilled into an overflow page of its own (a 1.4 KB
profile took 4.5 KB on disk, and each update wrote two pages). Databases written before the
change are rebuilt when the store opens; nothing in them may be lost.
"""

from __future__ import annotations

import sqlite3

import msgspec

from segue.core.model import Changeset, Identifier, Profile
from segue.storage.sqlite import SqliteProfileStore

from .conftest import Sync


def _profile(n: int) -> Profile:
    return Profile(
        profile_id=f"p{n}",
        created_at=1.0,
        updated_at=2.0,
        first_seen=1.0,
        last_seen=2.0,
        event_count=n,
        # about 2 KB: more than a WITHOUT ROWID leaf keeps
        identities=[Identifier("email", f"{n}.{k}.{'x' * 30}@example.com") for k in range(40)],
    )


def _layout(db: sqlite3.Connection, table: str) -> str:
    return str(db.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (table,)).fetchone()[0])


def test_a_new_store_keeps_documents_in_rowid_tables(tmp_path):
    store = Sync(SqliteProfileStore(tmp_path))
    store.close()
    db = sqlite3.connect(tmp_path / "state.db")
    for table in ("profiles", "features"):
        assert "WITHOUT ROWID" not in _layout(db, table).upper()
    db.close()


def test_an_older_database_is_converted_with_every_document(tmp_path):
    old = sqlite3.connect(tmp_path / "state.db")
    old.executescript(
        "CREATE TABLE profiles (profile_id TEXT PRIMARY KEY, doc BLOB NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE features (profile_id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;"
    )
    profiles = [_profile(n) for n in range(300)]
    old.executemany(
        "INSERT INTO profiles VALUES (?, ?)",
        [(p.profile_id, msgspec.msgpack.encode(p)) for p in profiles],
    )
    old.executemany(
        "INSERT INTO features VALUES (?, ?)", [(p.profile_id, b"f" * 1500) for p in profiles]
    )
    old.commit()
    old.close()

    store = Sync(SqliteProfileStore(tmp_path))
    try:
        ids = [p.profile_id for p in profiles]
        assert store.profiles(ids) == {p.profile_id: p for p in profiles}
        assert store.features(ids) == {pid: b"f" * 1500 for pid in ids}
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / "state.db")
    for table in ("profiles", "features"):
        assert "WITHOUT ROWID" not in _layout(db, table).upper()
    assert db.execute("SELECT count(*) FROM profiles").fetchone() == (300,)
    db.close()
    # opening again leaves the converted database as it is
    store = Sync(SqliteProfileStore(tmp_path))
    assert len(store.profiles([p.profile_id for p in profiles])) == 300
    store.close()


def test_an_older_table_of_block_keys_becomes_one_row_of_keys_per_profile(tmp_path):
    """Block keys were rows of (key, profile) indexed both ways (~9 random B-tree pages per
    new record in every commit); a database from before keeps every key, findable, and
    erasable by profile."""
    old = sqlite3.connect(tmp_path / "state.db")
    old.executescript(
        "CREATE TABLE blocks (key TEXT NOT NULL, profile_id TEXT NOT NULL, "
        "PRIMARY KEY (key, profile_id)) WITHOUT ROWID;"
        "CREATE INDEX blocks_profile ON blocks (profile_id);"
    )
    old.executemany(
        "INSERT INTO blocks VALUES (?, ?)",
        [(f"nm:{k}", f"p{n}") for n in range(50) for k in range(n % 4, n % 4 + 3)],
    )
    old.commit()
    old.close()

    store = Sync(SqliteProfileStore(tmp_path))
    try:
        found = store.block_candidates(["nm:0", "nm:5"], 100)
        assert found["nm:0"] == sorted(f"p{n}" for n in range(50) if n % 4 == 0)
        assert found["nm:5"] == sorted(f"p{n}" for n in range(50) if n % 4 == 3)
        assert store.erase(["p4", "p8"], [])["blocks"] == 6
        assert "p4" not in store.block_candidates(["nm:0"], 100)["nm:0"]
        # a profile's new keys replace the ones it held before the upgrade
        store.commit(Changeset(block_keys={"p1": ["nm:9"]}), "profiles", 1)
        after = store.block_candidates(["nm:1", "nm:9"], 100)
        assert "p1" not in after["nm:1"]
        assert after["nm:9"] == ["p1"]
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / "state.db")
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_schema")}
    assert "blocks" not in names
    assert "blocks_profile" not in names
    assert db.execute("SELECT count(*) FROM profile_blocks").fetchone() == (48,)
    db.close()
    # opened again: the same answers, from the rows alone
    store = Sync(SqliteProfileStore(tmp_path))
    try:
        assert store.block_candidates(["nm:9", "nm:2"], 100) == {
            "nm:9": ["p1"],
            "nm:2": sorted(f"p{n}" for n in range(50) if n % 4 < 3 and n not in (1, 4, 8)),
        }
    finally:
        store.close()


def test_block_keys_another_process_wrote_are_found(tmp_path):
    """Each process answers "who holds this key" from memory; another process's commit or
    erasure moves the database's epoch, and the next lookup reads the keys again."""
    first = Sync(SqliteProfileStore(tmp_path))
    other = Sync(SqliteProfileStore(tmp_path))
    try:
        first.commit(Changeset(block_keys={"p1": ["k:a", "k:b"]}), "profiles", 1)
        assert first.block_candidates(["k:a"], 10) == {"k:a": ["p1"]}
        assert other.block_candidates(["k:a"], 10) == {"k:a": ["p1"]}
        other.commit(Changeset(block_keys={"p2": ["k:a"], "p1": ["k:b"]}), "profiles", 2)
        assert first.block_candidates(["k:a", "k:b"], 10) == {"k:a": ["p2"], "k:b": ["p1"]}
        assert other.erase(["p2"], [])["blocks"] == 1
        assert first.block_candidates(["k:a"], 10) == {"k:a": []}
        # and the first one's own commits keep the other one's view current too
        first.commit(Changeset(block_keys={"p3": ["k:a"]}), "profiles", 3)
        assert other.block_candidates(["k:a"], 10) == {"k:a": ["p3"]}
        assert first.block_candidates(["k:a"], 10) == {"k:a": ["p3"]}
    finally:
        first.close()
        other.close()
