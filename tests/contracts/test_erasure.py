"""The erasure contract of every store (memory is the reference), plus the key store and the
privacy store. The SQLite adapters must also leave no byte of what they removed on disk."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from segue.core.model import (
    Changeset,
    Decision,
    Identifier,
    NewRecord,
    PossibleMatch,
    PrivacyRequest,
    Profile,
    QuarantineEntry,
    TraitValue,
)
from segue.storage.memory_keys import MemoryKeyStore
from segue.storage.memory_privacy import MemoryPrivacyStore
from segue.storage.sqlite import SqliteEventLog, SqliteProfileStore
from segue.storage.sqlite_keys import SqliteKeyStore
from segue.storage.sqlite_privacy import SqlitePrivacyStore
from tests.contracts.conftest import Sync, _make, _on_server

SECRET_EMAIL = "ada.secret-person@example.org"
U1, E1, A1 = (
    Identifier("user_id", "u1"),
    Identifier("email", SECRET_EMAIL),
    Identifier("anonymous_id", "a1"),
)
U2 = Identifier("user_id", "u2")


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def key_store(request, tmp_path) -> Iterator[Sync]:
    if request.param == "postgresql":
        from segue.storage.postgres_keys import PostgresKeyStore

        yield from _on_server(PostgresKeyStore(request.getfixturevalue("pg_dsn")))
        return
    yield from _make(request.param, MemoryKeyStore, SqliteKeyStore, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def privacy_store(request, tmp_path) -> Iterator[Sync]:
    if request.param == "postgresql":
        from segue.storage.postgres_privacy import PostgresPrivacyStore

        yield from _on_server(PostgresPrivacyStore(request.getfixturevalue("pg_dsn")))
        return
    yield from _make(request.param, MemoryPrivacyStore, SqlitePrivacyStore, tmp_path)


def _bytes_of(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def _profile(pid: str, *identities: Identifier, **traits: str) -> Profile:
    return Profile(
        profile_id=pid,
        created_at=1.0,
        updated_at=1.0,
        first_seen=1.0,
        last_seen=1.0,
        identities=list(identities),
        traits={
            k: TraitValue(value=v, source="web", message_id="m", at=1.0) for k, v in traits.items()
        },
    )


def _two_people(profile_store) -> None:
    """p1 (u1, email, a1; p0 merged into it) and p2 (u2), with every kind of row."""
    profile_store.commit(
        Changeset(
            profiles={
                "p0": _profile("p0", A1),
                "p1": _profile("p1", U1, E1, email=SECRET_EMAIL),
                "p2": _profile("p2", U2, email="other@example.org"),
            },
            links={U1: "p1", E1: "p1", A1: "p0", U2: "p2"},
            timeline=[("p0", 1, 1.0), ("p1", 2, 2.0), ("p1", 3, 3.0), ("p2", 4, 4.0)],
            new_profiles=3,
            new_identities=4,
            block_keys={"p1": [f"em:{SECRET_EMAIL}"], "p2": ["em:other@example.org"]},
            match_records={"p1": SECRET_EMAIL.encode(), "p2": b"other"},
            features={"p1": b"f1", "p2": b"f2"},
            possible=[PossibleMatch(profile_a="p1", profile_b="p2", score=0.7)],
        ),
        "profiles",
        4,
    )
    # p0 merges into p1: a redirect, and a1 moves over
    profile_store.commit(
        Changeset(
            profiles={"p1": _profile("p1", U1, E1, A1, email=SECRET_EMAIL)},
            links={A1: "p1"},
            redirects={"p0": "p1"},
            new_profiles=-1,
        ),
        "profiles",
        4,
    )


def test_profile_store_erase_removes_the_person_and_nothing_else(profile_store):
    _two_people(profile_store)
    counts = profile_store.erase(["p1"], [E1])
    assert counts["profiles"] == 1
    assert counts["identities"] == 3
    assert counts["redirects"] == 1
    assert counts["timeline"] == 3
    assert counts["features"] == 1
    assert counts["blocks"] == 1
    assert counts["match_records"] == 1
    assert counts["possible_matches"] == 1
    assert profile_store.lookup([U1, E1, A1, U2]) == {U2: "p2"}
    assert profile_store.profiles(["p1", "p0"]) == {}
    assert profile_store.resolve("p0") is None
    assert profile_store.timeline("p1", 0, 10) == []
    assert profile_store.features(["p1"]) == {}
    assert profile_store.match_records(["p1"]) == {}
    assert profile_store.block_candidates([f"em:{SECRET_EMAIL}"], 10) == {f"em:{SECRET_EMAIL}": []}
    assert profile_store.possible_matches("p2", None, 0, 10) == []
    # the other person is untouched
    assert profile_store.timeline("p2", 0, 10) == [4]
    assert profile_store.features(["p2"]) == {"p2": b"f2"}
    assert profile_store.counts() == {"profiles": 1, "identities": 1}
    # idempotent
    assert sum(profile_store.erase(["p1"], [E1]).values()) == 0


def test_profile_store_erase_fences_out_a_commit_that_read_the_person_before(profile_store):
    """A batch (or an unmerge) that read the person before their erasure must not write
    them back: its commit, fenced on the version it read, fails as stale."""
    from segue.errors import StaleState

    _two_people(profile_store)
    offset, version = profile_store.position("profiles")
    profile_store.erase(["p1"], [E1])
    assert profile_store.position("profiles") == (offset, version + 1)
    back = Changeset(profiles={"p1": _profile("p1", U1, E1, email=SECRET_EMAIL)}, links={U1: "p1"})
    with pytest.raises(StaleState):
        profile_store.commit(back, "profiles", offset + 1, expected=version)
    assert profile_store.lookup([U1]) == {}
    # read again after the erasure, a commit goes through
    profile_store.commit(Changeset(), "profiles", offset + 1, expected=version + 1)


def test_sqlite_state_erasure_leaves_no_old_version_on_disk(tmp_path):
    """Profiles are rewritten on every event; every old version must go with the erasure
    (secure_delete zeroes the pages each rewrite frees, whatever the SQLite build's default)."""
    store = Sync(SqliteProfileStore(tmp_path))
    for i in range(30):  # big documents (overflow pages), each version freed by the next
        bio = f"{SECRET_EMAIL} v{i} " + "x" * 3000
        store.commit(
            Changeset(
                profiles={
                    "p1": _profile("p1", U1, E1, email=SECRET_EMAIL, bio=bio),
                    "p2": _profile("p2", U2, email="kept@example.org", bio="y" * 3000),
                },
                links={U1: "p1", E1: "p1", U2: "p2"},
            ),
            "profiles",
            i,
        )
        # a long-lived file: old versions reach the database file, not only the WAL
        store.run(store.adapter._db.truncate_wal())
    assert SECRET_EMAIL.encode() in _bytes_of(tmp_path)
    # most events only move a profile's counters (a row of their own)
    counted = _profile("p1", U1, E1, email=SECRET_EMAIL)
    counted.event_count = 31
    other = _profile("p2", U2, email="kept@example.org", bio="y" * 3000)
    other.event_count = 7
    store.commit(Changeset(activity={"p1": counted, "p2": other}), "profiles", 31)
    assert store.profiles(["p1"])["p1"].event_count == 31
    store.erase(["p1"], [E1])
    data = _bytes_of(tmp_path)
    assert SECRET_EMAIL.encode() not in data
    assert b"kept@example.org" in data
    store.close()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        rows = conn.execute("SELECT profile_id FROM activity ORDER BY profile_id").fetchall()
    assert rows == [("p2",)]


def test_profile_store_erase_timeline_rows(profile_store):
    _two_people(profile_store)
    assert profile_store.erase_timeline([("p1", 2), ("p2", 4), ("p2", 99)]) == 2
    assert profile_store.timeline("p1", 0, 10) == [1, 3]
    assert profile_store.timeline("p2", 0, 10) == []


def test_event_log_erase_removes_records_and_never_reuses_offsets(event_log):
    bodies = [f'{{"n":{i},"email":"{SECRET_EMAIL}"}}'.encode() for i in range(5)]
    offsets = event_log.append(
        [NewRecord("web", f"m{i}", 1.0, "k", b) for i, b in enumerate(bodies)]
    )
    assert event_log.erase([offsets[1], offsets[4], 999]) == 2
    assert [r.offset for r in event_log.read(0, 10)] == [offsets[0], offsets[2], offsets[3]]
    assert [r.offset for r in event_log.get([offsets[1], offsets[2]])] == [offsets[2]]
    assert event_log.read(offsets[0], 1)[0].offset == offsets[2]
    assert event_log.last_offset() == offsets[4]
    (new,) = event_log.append([NewRecord("web", "m9", 2.0, "k", b"{}")])
    assert new == offsets[4] + 1
    # an erased record's message id may come again (suppression stops erased people first)
    assert event_log.append([NewRecord("web", "m1", 2.0, "k", b"{}")])[0] == new + 1


def test_sqlite_event_log_keeps_its_head_across_a_reopen_after_erasing_the_tail(tmp_path):
    log = Sync(SqliteEventLog(tmp_path))
    offsets = log.append([NewRecord("web", f"m{i}", 1.0, "k", b"{}") for i in range(3)])
    assert log.erase([offsets[2]]) == 1
    log.close()
    log = Sync(SqliteEventLog(tmp_path))
    assert log.last_offset() == offsets[2]
    assert log.append([NewRecord("web", "n", 1.0, "k", b"{}")]) == [offsets[2] + 1]
    log.close()


def test_sqlite_event_log_erasure_leaves_no_byte_on_disk(tmp_path):
    log = Sync(SqliteEventLog(tmp_path))
    body = f'{{"email":"{SECRET_EMAIL}"}}'.encode()
    offsets = log.append([NewRecord("web", f"m{i}", 1.0, "k", body) for i in range(50)])
    log.append([NewRecord("web", "other", 1.0, "k", b'{"email":"kept@example.org"}')])
    assert SECRET_EMAIL.encode() in _bytes_of(tmp_path)
    assert log.erase(offsets) == 50
    data = _bytes_of(tmp_path)
    assert SECRET_EMAIL.encode() not in data
    assert b"kept@example.org" in data
    log.close()


def test_quarantine_erase(quarantine):
    ids = quarantine.add(
        [
            QuarantineEntry(id=0, source="web", received_at=1.0, reason="r", field=None, body=b"a"),
            QuarantineEntry(id=0, source="web", received_at=1.0, reason="r", field=None, body=b"b"),
        ]
    )
    assert quarantine.erase([ids[0], 12345]) == 1
    assert [e.id for e in quarantine.list(None, 0, 10)] == [ids[1]]
    assert quarantine.count() == 1


def _decision(decision_id: str, profile_id: str | None) -> Decision:
    return Decision(
        decision_id=decision_id,
        created_at=1.0,
        placement="home",
        profile_id=profile_id,
        items=["i1"],
        scores=[1.0],
        propensities=[1.0],
        strategy="personalized",
        personalized=True,
    )


def test_decision_store_erase_decisions(decision_store):
    decision_store.put_decisions(
        [_decision("d1", "p1"), _decision("d2", "p1"), _decision("d3", "p2"), _decision("d4", None)]
    )
    assert decision_store.erase_decisions(["p1", "p9"]) == 2
    assert decision_store.decisions_for("p1", 10) == []
    assert decision_store.get_decision("d1") is None
    assert [d.decision_id for d in decision_store.decisions_for("p2", 10)] == ["d3"]
    assert decision_store.get_decision("d4") is not None


def test_key_store_creates_once_and_destroys_for_good(key_store):
    created = key_store.create(["k1", "k2", "k1"])
    assert set(created) == {"k1", "k2"}
    assert all(len(k) == 32 for k in created.values())
    assert key_store.create(["k1"]) == {"k1": created["k1"]}
    # some new, some there already: each id gets the key that is stored
    mixed = key_store.create(["k4", "k2"])
    assert mixed["k2"] == created["k2"]
    assert key_store.get(["k4"]) == {"k4": mixed["k4"]}
    assert key_store.get(["k1", "k3"]) == {"k1": created["k1"]}
    assert key_store.destroy(["k1", "k3"]) == 1
    assert key_store.get(["k1", "k2"]) == {"k2": created["k2"]}
    assert key_store.create(["k1"])["k1"] != created["k1"]


def test_privacy_store_requests_exports_and_suppression(privacy_store):
    request = PrivacyRequest(
        request_id="r1", type="access", created_at=1.0, updated_at=1.0, user={"email": "x@y.z"}
    )
    privacy_store.put(request)
    later = PrivacyRequest(request_id="r2", type="erasure", created_at=2.0, updated_at=2.0)
    privacy_store.put(later)
    assert [r.request_id for r in privacy_store.unfinished()] == ["r1", "r2"]
    request.status, request.user, request.receipt = "done", {}, {"events": 3}
    privacy_store.put(request)
    assert privacy_store.get("r1") == request
    assert privacy_store.get("nope") is None
    assert [r.request_id for r in privacy_store.unfinished()] == ["r2"]
    privacy_store.put_export("r1", ["h1", "h2"], b'{"a":1}')
    privacy_store.put_export("r3", ["h3"], b'{"b":2}')
    assert privacy_store.export("r1") == b'{"a":1}'
    assert privacy_store.erase_exports(["h2", "h9"]) == 1
    assert privacy_store.export("r1") is None
    assert privacy_store.export("r3") == b'{"b":2}'
    assert privacy_store.suppress(["h1", "h2"], 5.0) == 2
    assert privacy_store.suppress(["h2", "h3"], 6.0) == 1
    assert sorted(privacy_store.suppressed()) == ["h1", "h2", "h3"]


def test_privacy_store_recent_lists_every_status_newest_first(privacy_store):
    for n, status in enumerate(["done", "failed", "pending", "running", "done"]):
        privacy_store.put(
            PrivacyRequest(
                request_id=f"r{n}",
                type="erasure" if n % 2 else "access",
                status=status,
                created_at=float(n // 2),  # two pairs share a time: request_id breaks the tie
                updated_at=float(n),
            )
        )
    assert [r.request_id for r in privacy_store.recent(10)] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r.status for r in privacy_store.recent(2)] == ["done", "running"]
    updated = privacy_store.get("r0")
    updated.status, updated.receipt = "done", {"events": 2}
    privacy_store.put(updated)
    assert privacy_store.recent(5)[-1] == updated
    assert privacy_store.recent(0) == []
