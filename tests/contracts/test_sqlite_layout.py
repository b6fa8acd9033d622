"""The SQLite state store keeps its documents in rowid tables, and converts older databases.

Profile documents and feature blobs are usually larger than the ~1,000 bytes a WITHOUT ROWID
row keeps in its leaf page: there each spilled into an overflow page of its own (a 1.4 KB
profile took 4.5 KB on disk, and each update wrote two pages). Databases written before the
change are rebuilt when the store opens; nothing in them may be lost.
"""

from __future__ import annotations

import sqlite3

import msgspec

from segue.core.model import Identifier, Profile
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
