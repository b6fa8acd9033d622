"""The audit chain on its own: every kind of tampering is caught and named."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.core.model import AuditEntry, AuditHead
from segue.privacy.audit import (
    GENESIS,
    ChainVerifier,
    Verdict,
    canonical,
    chain,
    entry_hash,
    key_fingerprint,
    seal,
    subject_hash,
    verify,
)

KEY = b"installation-secret"


def draft(i: int, **kw: object) -> AuditEntry:
    fields: dict[str, object] = {
        "at": 1_700_000_000.0 + i,
        "actor": "admin:1a2b3c",
        "action": "consent.changed" if i % 2 else "profile.read",
        "subjects": [subject_hash(KEY, f"user_id:{i}")],
        "details": {"n": i, "purposes": {"personalization": bool(i % 3)}},
    }
    fields.update(kw)
    return AuditEntry(**fields)  # type: ignore[arg-type]


def build(n: int) -> tuple[list[AuditEntry], AuditHead]:
    entries = chain(0, GENESIS, [draft(i) for i in range(n)])
    last = entries[-1]
    return entries, AuditHead(seq=last.seq, hash=last.hash, seal=seal(KEY, last.seq, last.hash))


def test_an_intact_chain_verifies_and_links_each_entry_to_the_one_before():
    entries, head = build(6)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert verify(entries, head, KEY) == verify(entries) == verify(entries, head, KEY)
    verdict = verify(entries, head, KEY)
    assert verdict.ok
    assert verdict.entries == 6
    assert verdict.first_bad_seq is None


def test_chaining_continues_from_a_given_head():
    first, _ = build(3)
    more = chain(first[-1].seq, first[-1].hash, [draft(10), draft(11)])
    assert [e.seq for e in more] == [4, 5]
    assert more[0].prev_hash == first[-1].hash
    assert verify(first + more).ok


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "admin:ffffff"},
        {"action": "key.used"},
        {"at": 1.0},
        {"subjects": []},
        {"details": {"n": 2, "purposes": {"personalization": False}}},
    ],
)
def test_editing_any_field_of_one_entry_is_detected_at_that_entry(change):
    entries, head = build(5)
    entries[2] = msgspec.structs.replace(entries[2], **change)
    verdict = verify(entries, head, KEY)
    assert not verdict.ok
    assert verdict.first_bad_seq == 3
    assert verdict.reason is not None
    assert verdict.reason.startswith("edited")
    assert verdict.entries == 2


def test_an_edit_with_its_hash_recomputed_breaks_the_next_link():
    entries, head = build(5)
    edited = msgspec.structs.replace(entries[1], actor="someone else")
    entries[1] = msgspec.structs.replace(edited, hash=entry_hash(edited.prev_hash, edited))
    verdict = verify(entries, head, KEY)
    assert (verdict.ok, verdict.first_bad_seq) == (False, 3)
    assert verdict.reason is not None
    assert verdict.reason.startswith("broken link")


def test_a_chain_recomputed_after_an_edit_is_caught_by_the_sealed_head():
    entries, head = build(5)
    drafts = [msgspec.structs.replace(e, seq=0, prev_hash="", hash="") for e in entries]
    drafts[1] = msgspec.structs.replace(drafts[1], actor="someone else")
    forged = chain(0, GENESIS, drafts)
    assert verify(forged).ok  # a consistent chain on its own …
    verdict = verify(forged, head, KEY)  # … but not the one the log sealed
    assert (verdict.ok, verdict.first_bad_seq) == (False, 5)
    assert verdict.reason is not None
    assert verdict.reason.startswith("rewritten")
    last = forged[-1]
    resealed = AuditHead(seq=last.seq, hash=last.hash, seal=seal(b"a guessed key", 5, last.hash))
    verdict = verify(forged, resealed, KEY)
    assert (verdict.ok, verdict.reason is not None and "head edited" in verdict.reason) == (
        False,
        True,
    )


def test_deleting_an_entry_is_detected_as_removed():
    entries, head = build(5)
    del entries[2]
    verdict = verify(entries, head, KEY)
    assert (verdict.ok, verdict.first_bad_seq) == (False, 3)
    assert verdict.reason == "removed: entry 3 is missing"


def test_swapping_two_entries_is_detected_as_reordered():
    entries, head = build(5)
    entries[1], entries[3] = entries[3], entries[1]
    verdict = verify(entries, head, KEY)
    assert (verdict.ok, verdict.first_bad_seq) == (False, 2)
    assert verdict.reason is not None
    assert verdict.reason.startswith("reordered")


def test_swapping_contents_but_keeping_the_seqs_is_detected_as_edited():
    entries, head = build(5)
    a, b = entries[1], entries[2]
    entries[1] = msgspec.structs.replace(b, seq=a.seq)
    entries[2] = msgspec.structs.replace(a, seq=b.seq)
    verdict = verify(entries, head, KEY)
    assert (verdict.ok, verdict.first_bad_seq) == (False, 2)
    assert verdict.reason is not None
    assert verdict.reason.startswith("edited")


def test_truncating_the_tail_is_detected_against_the_sealed_head():
    entries, head = build(6)
    truncated = entries[:4]
    assert verify(truncated).ok  # a plain chain cannot see a cut-off tail …
    verdict = verify(truncated, head, KEY)  # … the sealed head can
    assert (verdict.ok, verdict.first_bad_seq) == (False, 5)
    assert verdict.reason == "truncated: entries 5 to 6 are missing"
    assert not verify([], head, KEY).ok


def genesis(key: bytes = KEY) -> AuditHead:
    return AuditHead(seq=0, hash=GENESIS, seal=seal(key, 0, GENESIS))


def test_a_log_without_a_head_fails_sealed_verification_even_when_empty():
    """Every log has a sealed head from its creation on, so a missing one means the head
    (and with it, perhaps, every entry) was deleted."""
    entries, _ = build(2)
    verdict = verify(entries, None, KEY, sealed=True)
    assert not verdict.ok
    assert verdict.reason is not None
    assert "head missing" in verdict.reason
    emptied = verify([], None, KEY, sealed=True)
    assert (emptied.ok, emptied.first_bad_seq) == (False, 1)
    assert emptied.reason is not None
    assert emptied.reason.startswith("head missing")


def test_an_empty_log_verifies_against_its_sealed_genesis_head():
    assert verify([], genesis(), KEY) == Verdict(ok=True, entries=0)
    forged = verify([], genesis(b"a guessed key"), KEY)
    assert (forged.ok, forged.first_bad_seq) == (False, 1)
    assert forged.reason is not None
    assert forged.reason.startswith("head edited")


def test_entries_chained_after_the_sealed_head_are_rejected_as_unsealed():
    """A SHA-256 link needs no secret: anyone can chain an entry after the last one, so
    the last entry must be the one the head seals."""
    entries, head = build(4)
    forged = chain(entries[-1].seq, entries[-1].hash, [draft(9), draft(10)])
    verdict = verify(entries + forged, head, KEY)
    assert (verdict.ok, verdict.first_bad_seq, verdict.entries) == (False, 5, 4)
    assert verdict.reason == (
        "unsealed: entries 5 to 6 come after the sealed head (entry 4): the log did not write them"
    )
    (alone,) = chain(0, GENESIS, [draft(1)])
    verdict = verify([alone], genesis(), KEY)
    assert (verdict.ok, verdict.first_bad_seq, verdict.entries) == (False, 1, 0)
    assert verdict.reason is not None
    assert verdict.reason.startswith("unsealed: entry 1 comes after the sealed head")


def test_the_streaming_verifier_stops_at_the_first_break():
    entries, head = build(5)
    entries[3] = msgspec.structs.replace(entries[3], actor="x")
    verifier = ChainVerifier(sealed=True, head=head, key=KEY)
    fed = [verifier.feed(e) for e in entries]
    assert fed == [True, True, True, False, False]
    assert verifier.finish().first_bad_seq == 4


def test_canonical_encoding_is_stable_and_ignores_dict_order():
    a = draft(1, details={"b": 1, "a": {"y": 2, "x": 1}})
    b = draft(1, details={"a": {"x": 1, "y": 2}, "b": 1})
    assert canonical(a) == canonical(b)
    assert b'"a":{"x":1,"y":2}' in canonical(a)


def test_subject_hashes_are_keyed_normalised_and_hold_no_identifier():
    h = subject_hash(KEY, "email:Ann@Example.com ")
    assert h == subject_hash(KEY, "email:ann@example.com")
    assert h != subject_hash(b"another secret", "email:ann@example.com")
    assert h != subject_hash(KEY, "email:bob@example.com")
    assert len(h) == 32
    assert "ann" not in h
    fp = key_fingerprint(KEY, "a-secret-admin-key")
    assert len(fp) == 12
    assert fp != key_fingerprint(KEY, "another-key")


_details = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=12), st.booleans(), st.none()),
    max_size=4,
)
_drafts = st.lists(
    st.builds(
        lambda at, actor, action, details: AuditEntry(
            at=at, actor=actor, action=action, details=details
        ),
        st.floats(0, 4e9, allow_nan=False),
        st.text(max_size=10),
        st.sampled_from(["consent.changed", "privacy.request", "profile.read", "key.used"]),
        _details,
    ),
    min_size=2,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(_drafts, st.data())
def test_property_any_single_tampering_is_detected(drafts, data):
    entries = chain(0, GENESIS, drafts)
    last = entries[-1]
    head = AuditHead(seq=last.seq, hash=last.hash, seal=seal(KEY, last.seq, last.hash))
    assert verify(entries, head, KEY).ok
    # what travels through storage and back still verifies
    decoded = [msgspec.json.decode(msgspec.json.encode(e), type=AuditEntry) for e in entries]
    assert verify(decoded, head, KEY).ok
    i = data.draw(st.integers(0, len(entries) - 1))
    kind = data.draw(st.sampled_from(["edit", "delete", "swap", "truncate"]))
    tampered = list(entries)
    if kind == "edit":
        tampered[i] = msgspec.structs.replace(entries[i], actor=entries[i].actor + "!")
    elif kind == "delete":
        del tampered[i]
    elif kind == "swap":
        j = data.draw(st.integers(0, len(entries) - 1).filter(lambda j: j != i))
        tampered[i], tampered[j] = tampered[j], tampered[i]
    else:
        tampered = tampered[:i]
    verdict = verify(tampered, head, KEY)
    assert not verdict.ok
    assert verdict.first_bad_seq is not None
    assert 1 <= verdict.first_bad_seq <= len(entries)
    assert verdict.entries < verdict.first_bad_seq
