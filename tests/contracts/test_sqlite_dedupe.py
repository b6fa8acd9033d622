"""The SQLite log's de-duplication (``storage/_seen_ids.py``): exact and permanent across
its two tiers, restarts, several processes on one file, erasures, and the migration of a
log that still has the unique index of before.

Small ``recent_ids`` bounds make the merges into ``dedupe.db`` happen within a few appends.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segue.core.model import NewRecord
from segue.storage import _seen_ids
from segue.storage.sqlite import SqliteEventLog
from tests.contracts.conftest import Sync


def rec(message_id: str, source: str = "web") -> NewRecord:
    return NewRecord(source, message_id, 1.0, "user_id:1", b"{}")


def open_log(folder: Path, recent_ids: int = 4) -> Sync:
    return Sync(SqliteEventLog(folder, recent_ids=recent_ids))


def settle(log: Sync) -> None:
    """Let a merge the last append started finish (it runs on the log's own loop)."""
    task = log.adapter._settling
    if task is not None:
        log.run(task)


def settled_keys(folder: Path) -> int:
    with sqlite3.connect(folder / "dedupe.db") as conn:
        return int(conn.execute("SELECT count(*) FROM settled").fetchone()[0])


def test_ids_merged_out_of_memory_still_deduplicate(tmp_path, monkeypatch):
    monkeypatch.setattr(_seen_ids, "_MERGE_CHUNK", 3)  # several statements a merge
    log = open_log(tmp_path)
    ids = [f"m{i}" for i in range(40)]
    for start in range(0, 40, 5):
        log.append([rec(i) for i in ids[start : start + 5]])
        settle(log)
    assert log.adapter._seen.merges >= 3
    assert settled_keys(tmp_path) >= 20  # most keys left memory
    assert log.append([rec(i) for i in ids]) == [None] * 40
    assert log.append([rec("m3", source="app"), rec("new")]) == [41, 42]
    log.close()


def test_deduplicates_across_a_restart_and_a_lost_dedupe_file(tmp_path):
    log = open_log(tmp_path)
    for start in range(0, 30, 3):
        log.append([rec(f"m{i}") for i in range(start, start + 3)])
        settle(log)
    log.close()

    log = open_log(tmp_path)
    assert log.append([rec(f"m{i}") for i in range(30)]) == [None] * 30
    log.close()

    for suffix in ("", "-wal", "-shm"):  # derived data: rebuilt from the log
        (tmp_path / f"dedupe.db{suffix}").unlink(missing_ok=True)
    log = open_log(tmp_path)
    assert log.append([rec(f"m{i}") for i in range(30)] + [rec("m30")]) == [None] * 30 + [31]
    log.close()


def test_two_processes_on_one_log_never_store_an_id_twice(tmp_path):
    a, b = open_log(tmp_path), open_log(tmp_path)
    assert a.append([rec("x"), rec("y")]) == [1, 2]
    assert b.append([rec("x"), rec("z")]) == [None, 3]
    assert a.append([rec("z")]) == [None]
    for i in range(20):  # both merge; each drops what the other's merges cover
        (a if i % 2 else b).append([rec(f"m{i}"), rec(f"n{i}")])
        settle(a)
        settle(b)
    assert a.append([rec(f"m{i}") for i in range(20)]) == [None] * 20
    assert b.append([rec(f"n{i}") for i in range(20)] + [rec("x")]) == [None] * 21
    a.close()
    b.close()


def test_an_erased_id_may_come_again_in_every_process(tmp_path):
    a, b = open_log(tmp_path), open_log(tmp_path)
    offsets = a.append([rec(f"m{i}") for i in range(12)])
    settle(a)
    b.append([rec("warm")])  # b loads its memory before the erasure
    a.append([rec("m12")])
    settle(a)
    early, late = offsets[0], offsets[-1]  # one merged into dedupe.db, one in memory
    assert a.erase([early, late]) == 2
    assert b.append([rec("m0")]) == [15]
    assert a.append([rec("m11"), rec("m0")]) == [16, None]
    assert b.append([rec("m11"), rec("m1")]) == [None, None]
    a.close()
    b.close()


def test_a_log_with_the_old_unique_index_is_migrated(tmp_path):
    with sqlite3.connect(tmp_path / "events.db") as conn:
        conn.executescript(
            """
            CREATE TABLE events ("offset" INTEGER PRIMARY KEY, source TEXT NOT NULL,
                message_id TEXT NOT NULL, received_at REAL NOT NULL, key TEXT NOT NULL,
                body BLOB NOT NULL);
            CREATE UNIQUE INDEX events_dedupe ON events (source, message_id);
            CREATE TABLE log_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            """
        )
        conn.executemany(
            "INSERT INTO events VALUES (?, 'web', ?, 1.0, 'k', x'7b7d')",
            [(i + 1, f"old{i}") for i in range(25)],
        )
    log = open_log(tmp_path)
    with sqlite3.connect(tmp_path / "events.db") as conn:
        indexes = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'").fetchall()
    assert ("events_dedupe",) not in indexes
    assert settled_keys(tmp_path) >= 20
    assert log.append([rec(f"old{i}") for i in range(25)] + [rec("new")]) == [None] * 25 + [26]
    log.close()


# a model of the port's promise, against the two tiers under any interleaving: appends from
# two processes, erasures, restarts, with memory bounds that merge every few appends
_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.sampled_from("ab"),
            st.lists(st.tuples(st.sampled_from(["web", "app"]), st.integers(0, 15)), max_size=6),
        ),
        st.tuples(st.just("erase"), st.sampled_from("ab"), st.integers(0, 40)),
        st.tuples(st.just("reopen"), st.sampled_from("ab"), st.just(None)),
        st.tuples(st.just("settle"), st.sampled_from("ab"), st.just(None)),
    ),
    max_size=30,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_ops, limit=st.integers(2, 6))
def test_matches_the_model_under_any_interleaving(tmp_path_factory, monkeypatch, ops, limit):
    monkeypatch.setattr(_seen_ids, "_MERGE_CHUNK", 2)
    folder = tmp_path_factory.mktemp("log")
    logs = {"a": open_log(folder, limit), "b": open_log(folder, limit)}
    stored: dict[tuple[str, str], int] = {}  # the model: what the log holds, by pair
    head = 0
    try:
        for op, who, arg in ops:
            log = logs[who]
            if op == "append":
                records = [rec(f"m{n}", source) for source, n in arg]
                expected: list[int | None] = []
                for r in records:
                    pair = (r.source, r.message_id)
                    if pair in stored:
                        expected.append(None)
                    else:
                        head += 1
                        stored[pair] = head
                        expected.append(head)
                assert log.append(records) == expected
            elif op == "erase":
                victims = [o for o in stored.values() if o % 41 == arg % 41 or o % 3 == arg % 3]
                assert log.erase(victims) == len(victims)
                stored = {p: o for p, o in stored.items() if o not in victims}
            elif op == "reopen":
                log.close()
                logs[who] = open_log(folder, limit)
            else:
                settle(log)
        survivors = sorted(stored.values())
        logs["a"].last_offset()  # a reader asks for no more than it knows of (read's docs)
        assert [r.offset for r in logs["a"].read(0, 1000)] == survivors
    finally:
        for log in logs.values():
            log.close()
