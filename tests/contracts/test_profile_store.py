import pytest

from segue.core.model import Changeset, Identifier, Profile, QuarantineEntry, TraitValue

U1 = Identifier("user_id", "1")
A1 = Identifier("anonymous_id", "a")


def profile(pid, *identities, **traits):
    return Profile(
        profile_id=pid,
        created_at=1.0,
        updated_at=1.0,
        first_seen=1.0,
        last_seen=1.0,
        event_count=1,
        identities=list(identities),
        traits={
            k: TraitValue(value=v, source="web", message_id="m", at=1.0) for k, v in traits.items()
        },
    )


def test_commit_is_visible_with_its_checkpoint(profile_store):
    assert profile_store.checkpoint("profiles") == 0
    changes = Changeset(
        profiles={"p1": profile("p1", U1, email="x@y.z")},
        links={U1: "p1"},
        timeline=[("p1", 1, 1.0), ("p1", 2, 2.0)],
        new_profiles=1,
        new_identities=1,
    )
    profile_store.commit(changes, "profiles", 2)
    assert profile_store.checkpoint("profiles") == 2
    assert profile_store.checkpoint("other") == 0
    assert profile_store.lookup([U1, A1]) == {U1: "p1"}
    stored = profile_store.profiles(["p1", "nope"])
    assert list(stored) == ["p1"]
    assert stored["p1"].traits["email"].value == "x@y.z"
    assert profile_store.timeline("p1", 0, 10) == [1, 2]
    assert profile_store.timeline("p1", 1, 10) == [2]
    assert profile_store.counts() == {"profiles": 1, "identities": 1}
    assert profile_store.identities("p1") == [U1]


def test_redirect_moves_timeline_and_resolves_old_ids(profile_store):
    profile_store.commit(
        Changeset(
            profiles={"p1": profile("p1", U1), "p2": profile("p2", A1)},
            links={U1: "p1", A1: "p2"},
            timeline=[("p1", 1, 1.0), ("p2", 2, 1.0)],
            new_profiles=2,
            new_identities=2,
        ),
        "profiles",
        2,
    )
    profile_store.commit(
        Changeset(
            profiles={"p1": profile("p1", U1, A1)},
            links={A1: "p1"},
            timeline=[("p2", 3, 1.0)],
            redirects={"p2": "p1"},
            new_profiles=-1,
        ),
        "profiles",
        3,
    )
    assert profile_store.timeline("p1", 0, 10) == [1, 2, 3]
    assert profile_store.timeline("p2", 0, 10) == []
    assert profile_store.resolve("p2") == "p1"
    assert profile_store.resolve("p1") == "p1"
    assert profile_store.resolve("zz") is None
    assert profile_store.profiles(["p2"]) == {}
    assert profile_store.lookup([A1]) == {A1: "p1"}
    assert profile_store.counts() == {"profiles": 1, "identities": 2}
    # a chain: p1 later merges into p0 and p2 must follow
    profile_store.commit(
        Changeset(profiles={"p0": profile("p0", U1, A1)}, redirects={"p1": "p0"}), "profiles", 4
    )
    assert profile_store.resolve("p2") == "p0"
    # what merged into whom, read from the redirects (the reports consumer's question)
    assert profile_store.merged_into(["p0", "p1", "p2", "zz"]) == {"p0": ["p1", "p2"]}
    assert profile_store.merged_into([]) == {}
    # an unmerge gives p2 back its own profile: it no longer counts as merged into p0
    profile_store.commit(
        Changeset(profiles={"p2": profile("p2", A1)}, links={A1: "p2"}, clear_redirects=["p2"]),
        "profiles",
        5,
    )
    assert profile_store.merged_into(["p0", "p2"]) == {"p0": ["p1"]}


def test_activity_only_changes_keep_the_document_and_move_the_counters(profile_store):
    stored = profile("p1", U1, email="x@y.z")
    profile_store.commit(
        Changeset(profiles={"p1": stored}, links={U1: "p1"}, new_profiles=1), "profiles", 1
    )
    counted = profile("p1", U1, email="x@y.z")
    counted.event_count, counted.last_seen, counted.updated_at = 7, 9.0, 9.5
    counted.first_seen = 0.5
    profile_store.commit(Changeset(activity={"p1": counted}), "profiles", 2)
    back = profile_store.profiles(["p1"])["p1"]
    assert (back.event_count, back.first_seen, back.last_seen, back.updated_at) == (
        7,
        0.5,
        9.0,
        9.5,
    )
    assert back.traits["email"].value == "x@y.z"
    assert back.identities == [U1]
    [scanned] = profile_store.scan_profiles("", 10)
    assert scanned.event_count == 7
    # a later whole write wins over the counters written before it
    rewritten = profile("p1", U1, A1, email="new@y.z")
    rewritten.event_count = 8
    profile_store.commit(Changeset(profiles={"p1": rewritten}), "profiles", 3)
    back = profile_store.profiles(["p1"])["p1"]
    assert (back.event_count, back.traits["email"].value, back.identities) == (
        8,
        "new@y.z",
        [U1, A1],
    )
    # a merged-away or dropped profile takes its counters along
    profile_store.commit(
        Changeset(profiles={"p2": profile("p2")}, activity={"p1": counted}), "profiles", 4
    )
    profile_store.commit(Changeset(redirects={"p1": "p2"}), "profiles", 5)
    assert profile_store.profiles(["p1"]) == {}
    profile_store.commit(
        Changeset(drop_profiles=["p1"], profiles={"p1": profile("p1", U1)}), "profiles", 6
    )
    assert profile_store.profiles(["p1"])["p1"].event_count == 1


def test_profiles_read_back_are_copies(profile_store):
    profile_store.commit(Changeset(profiles={"p1": profile("p1", U1)}), "profiles", 1)
    first = profile_store.profiles(["p1"])["p1"]
    first.event_count = 99
    assert profile_store.profiles(["p1"])["p1"].event_count == 1


def entry(source="web", reason="bad"):
    return QuarantineEntry(
        id=0, source=source, received_at=1.0, reason=reason, field="$.x", body=b'{"a":1}'
    )


def test_quarantine_add_list_get_remove(quarantine):
    ids = quarantine.add([entry(), entry(source="app"), entry()])
    assert len(set(ids)) == 3
    assert quarantine.count() == 3
    assert [e.id for e in quarantine.list(None, 0, 10)] == ids
    assert [e.id for e in quarantine.list("app", 0, 10)] == [ids[1]]
    assert [e.id for e in quarantine.list(None, ids[0], 1)] == [ids[1]]
    got = quarantine.get(ids[0])
    assert got.body == b'{"a":1}'
    assert got.field == "$.x"
    assert quarantine.remove(ids[0]) is True
    assert quarantine.remove(ids[0]) is False
    assert quarantine.get(ids[0]) is None
    assert quarantine.count() == 2


def test_block_index_replaces_keys_caps_common_ones_and_follows_merges(profile_store):
    from segue.core.model import PossibleMatch

    profile_store.commit(
        Changeset(
            profiles={"p1": profile("p1", U1), "p2": profile("p2", A1)},
            block_keys={"p1": ["ln:SMT", "dob:1980"], "p2": ["ln:SMT", "pc:2000"]},
            possible=[
                PossibleMatch(
                    profile_a="p1",
                    profile_b="p2",
                    score=0.7,
                    explanation=[("first_name", "jw>0.9", 2.5)],
                    created_at=5.0,
                )
            ],
        ),
        "profiles",
        1,
    )
    assert profile_store.block_candidates(["ln:SMT", "dob:1980", "zz"], 10) == {
        "ln:SMT": ["p1", "p2"],
        "dob:1980": ["p1"],
        "zz": [],
    }
    assert profile_store.block_candidates(["ln:SMT"], 1) == {"ln:SMT": []}  # too common
    (match,) = profile_store.possible_matches("p2", "open", 0, 10)
    assert (match.profile_a, match.profile_b, match.score) == ("p1", "p2", 0.7)
    assert match.explanation == [("first_name", "jw>0.9", 2.5)]
    assert profile_store.possible_matches("p9", None, 0, 10) == []
    profile_store.commit(Changeset(block_keys={"p1": ["dob:1980"]}), "profiles", 2)
    assert profile_store.block_candidates(["ln:SMT"], 10) == {"ln:SMT": ["p2"]}
    profile_store.commit(
        Changeset(profiles={"p1": profile("p1", U1, A1)}, redirects={"p2": "p1"}), "profiles", 3
    )
    assert profile_store.block_candidates(["ln:SMT", "pc:2000"], 10) == {
        "ln:SMT": [],
        "pc:2000": [],
    }
    (match,) = profile_store.possible_matches(None, None, 0, 10)
    assert match.profile_b == "p1"
    updated = profile_store.set_possible_match(match.id, "rejected")
    assert updated.status == "rejected"
    assert profile_store.possible_matches(None, "open", 0, 10) == []
    assert profile_store.set_possible_match(999, "rejected") is None


def test_scan_profiles_and_blobs(profile_store):
    profile_store.commit(
        Changeset(
            profiles={f"p{i}": profile(f"p{i}", Identifier("user_id", str(i))) for i in range(5)}
        ),
        "profiles",
        1,
    )
    first = profile_store.scan_profiles("", 3)
    assert [p.profile_id for p in first] == ["p0", "p1", "p2"]
    assert [p.profile_id for p in profile_store.scan_profiles("p2", 10)] == ["p3", "p4"]
    assert profile_store.load_blob("model") is None
    profile_store.save_blob("model", b"v1")
    profile_store.save_blob("model", b"v2")
    assert profile_store.load_blob("model") == b"v2"


def test_match_records_replace_scan_and_follow_merges(profile_store):
    profile_store.commit(
        Changeset(match_records={"p1": b"one", "p2": b"two", "p3": b"three"}), "profiles", 1
    )
    assert profile_store.match_records(["p1", "p9"]) == {"p1": b"one"}
    profile_store.commit(Changeset(match_records={"p1": b"uno", "p3": b""}), "profiles", 2)
    assert profile_store.scan_match_records("", 10) == [("p1", b"uno"), ("p2", b"two")]
    assert profile_store.scan_match_records("p1", 10) == [("p2", b"two")]
    profile_store.commit(Changeset(redirects={"p2": "p1"}), "profiles", 3)
    assert profile_store.match_records(["p1", "p2"]) == {"p1": b"uno"}


def test_features_replace_and_follow_merges(profile_store):
    profile_store.commit(Changeset(features={"p1": b"f1", "p2": b"f2"}), "profiles", 1)
    profile_store.commit(Changeset(features={"p1": b"f1b"}), "profiles", 2)
    assert profile_store.features(["p1", "p2", "p3"]) == {"p1": b"f1b", "p2": b"f2"}
    profile_store.commit(
        Changeset(features={"p1": b"merged"}, redirects={"p2": "p1"}), "profiles", 3
    )
    assert profile_store.features(["p1", "p2"]) == {"p1": b"merged"}


def test_a_commit_fenced_on_a_stale_version_applies_nothing(profile_store):
    """Two writers read version 0; the first commit wins, the second is refused whole."""
    from segue.errors import StaleState

    assert profile_store.position("profiles") == (0, 0)
    first = Changeset(profiles={"p1": profile("p1", U1)}, links={U1: "p1"}, new_profiles=1)
    profile_store.commit(first, "profiles", 5, expected=0)
    assert profile_store.position("profiles") == (5, 1)
    second = Changeset(profiles={"p2": profile("p2", A1)}, links={A1: "p2"}, new_profiles=1)
    with pytest.raises(StaleState):
        profile_store.commit(second, "profiles", 9, expected=0)
    assert profile_store.position("profiles") == (5, 1)
    assert profile_store.lookup([A1]) == {}
    assert profile_store.counts()["profiles"] == 1
    # an unfenced commit (a single-process processor) moves the version too
    profile_store.commit(Changeset(), "profiles", 6)
    assert profile_store.position("profiles") == (6, 2)
    profile_store.commit(second, "profiles", 6, expected=2)  # an admin operation: same offset
    assert profile_store.position("profiles") == (6, 3)
    assert profile_store.lookup([A1]) == {A1: "p2"}
    assert profile_store.position("other") == (0, 0)


def test_a_lease_has_one_holder_until_it_expires_or_is_given_up(profile_store):
    assert profile_store.lease("profiles", "w1", 110.0, 100.0)
    assert not profile_store.lease("profiles", "w2", 111.0, 101.0)
    assert profile_store.lease("profiles", "w1", 120.0, 105.0)  # renewed by its holder
    assert not profile_store.lease("profiles", "w2", 125.0, 119.0)
    assert profile_store.lease("profiles", "w2", 130.0, 121.0)  # expired: taken over
    assert not profile_store.lease("profiles", "w1", 131.0, 122.0)
    assert profile_store.lease("profiles", "w2", 0.0, 123.0)  # given up
    assert profile_store.lease("profiles", "w1", 140.0, 124.0)
    assert profile_store.lease("other", "w2", 140.0, 124.0)  # leases are per name


def test_looking_up_an_identifier_with_a_nul_finds_nothing(profile_store):
    """No store links a value with a NUL (PostgreSQL's text cannot hold one): a lookup of
    such a value is not found everywhere, not an error on one backend."""
    first = Changeset(profiles={"p1": profile("p1", U1)}, links={U1: "p1"}, new_profiles=1)
    profile_store.commit(first, "profiles", 1)
    odd = Identifier("user_id", "1\x00")
    assert profile_store.lookup([odd, U1]) == {U1: "p1"}
    assert profile_store.lookup([odd]) == {}
