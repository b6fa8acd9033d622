"""The consent-ledger contract, run on every adapter."""

from __future__ import annotations

from segue.core.model import ConsentRecord


def rec(subject: str, at: float, **purposes: bool) -> ConsentRecord:
    return ConsentRecord(subject=subject, at=at, source="api", purposes=purposes, proof="{}")


def test_record_assigns_increasing_seq_and_history_is_in_ledger_order(consent_store):
    stored = consent_store.record(
        [rec("user_id:1", 1.0, personalization=True), rec("email:a@b.c", 2.0, analytics=False)]
    )
    assert [r.seq for r in stored] == sorted(r.seq for r in stored)
    assert stored[0].seq < stored[1].seq
    later = consent_store.record([rec("user_id:1", 3.0, personalization=False)])
    history = consent_store.history(["user_id:1", "email:a@b.c", "user_id:nobody"])
    assert [(r.subject, r.purposes) for r in history] == [
        ("user_id:1", {"personalization": True}),
        ("email:a@b.c", {"analytics": False}),
        ("user_id:1", {"personalization": False}),
    ]
    assert history[-1].seq == later[0].seq
    assert consent_store.history(["user_id:1"], limit=1) == later
    assert consent_store.history([]) == []


def test_every_field_round_trips(consent_store):
    full = ConsentRecord(
        subject="anonymous_id:x",
        at=5.5,
        source="tcf",
        purposes={"personalization": True, "advertising": False},
        region="DE",
        gpc=True,
        objects_to_automated=True,
        proof="CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA",
    )
    consent_store.record([full])
    (got,) = consent_store.history(["anonymous_id:x"])
    assert got.seq > 0
    assert got == ConsentRecord(
        **{**{f: getattr(full, f) for f in full.__struct_fields__}, "seq": got.seq}
    )


def test_erase_removes_only_the_subjects_given(consent_store):
    consent_store.record(
        [rec("user_id:1", 1.0, personalization=True), rec("user_id:2", 1.0, analytics=True)]
    )
    consent_store.record([rec("user_id:1", 2.0, marketing=False)])
    assert consent_store.erase(["user_id:1", "user_id:3"]) == 2
    assert consent_store.history(["user_id:1"]) == []
    assert [r.subject for r in consent_store.history(["user_id:2"])] == ["user_id:2"]
    assert consent_store.erase(["user_id:1"]) == 0
    assert consent_store.subjects() == ["user_id:2"]


def test_scan_pages_through_the_whole_ledger_in_seq_order(consent_store):
    first = consent_store.record(
        [rec(f"user_id:{n}", float(n), analytics=n % 2 == 0) for n in range(7)]
    )
    consent_store.record([rec("user_id:1", 9.0, marketing=True)])
    consent_store.erase(["user_id:3"])
    seen: list[tuple[int, str]] = []
    after = 0
    while page := consent_store.scan(after, 3):
        assert len(page) <= 3
        seen += [(r.seq, r.subject) for r in page]
        after = page[-1].seq
    assert [s for _, s in seen] == [f"user_id:{n}" for n in (0, 1, 2, 4, 5, 6, 1)]
    assert [q for q, _ in seen] == sorted(q for q, _ in seen)
    assert seen[0][0] == first[0].seq
    (last,) = consent_store.scan(seen[-2][0], 10)
    assert last.purposes == {"marketing": True}
    assert last.seq == seen[-1][0]
    assert consent_store.scan(seen[-1][0], 10) == []
    assert consent_store.scan(0, 0) == []


def test_sqlite_erasure_leaves_no_byte_of_the_subject_in_the_files(tmp_path):
    from segue.storage.sqlite_consent import SqliteConsentStore

    from .conftest import Sync

    store = Sync(SqliteConsentStore(tmp_path))
    store.record([rec("email:erase.me@example.com", float(n), analytics=True) for n in range(50)])
    store.record([rec("email:keep@example.com", 1.0, analytics=True)])
    store.erase(["email:erase.me@example.com"])
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"erase.me@example.com" not in blob
    assert b"keep@example.com" in blob
    store.close()
