"""Identity stitching and golden traits, on the pure fold."""

import msgspec
import pytest

from segue.core.events import to_event
from segue.core.model import Identifier, LogRecord, Profile
from segue.identity.identifiers import IdentityRules
from segue.processor.fold import Folder, WorkingSet
from segue.profiles.golden import Survivorship

RECEIVED = 1_714_521_600.0  # 2024-05-01T00:00:00Z
PRIORITY = ["user_id", "email", "phone", "loyalty_id", "device_id", "anonymous_id"]


class Fold:
    def __init__(self, survivorship=None, **rules):
        rules.setdefault("priority", PRIORITY)
        self.folder = Folder(
            IdentityRules(**rules),
            survivorship or Survivorship(),
            lambda i: f"p:{i}",
            {"crm": "contract"},
        )
        self.ws = WorkingSet({}, {})
        self.offset = 0

    def __call__(self, source="web", **message):
        self.offset += 1
        message.setdefault("messageId", f"m{self.offset}")
        message.setdefault("timestamp", f"2024-05-01T00:00:{self.offset:02d}Z")
        event = to_event(message)
        record = LogRecord(
            self.offset,
            source,
            message["messageId"],
            RECEIVED + self.offset,
            "k",
            msgspec.json.encode(message),
        )
        return self.folder.apply(self.ws, record, event)

    def profile_of(self, kind, value):
        return self.ws.profiles[self.ws.links[Identifier(kind, value)]]


def test_anonymous_browsing_is_stitched_on_identify_and_traits_keep_lineage():
    fold = Fold()
    anon = fold(type="page", anonymousId="a1")
    fold(type="track", anonymousId="a1", event="Product Viewed")
    known = fold(type="identify", anonymousId="a1", userId="42", traits={"email": "X@Y.io"})
    assert anon == known == "p:anonymous_id:a1"
    profile = fold.profile_of("user_id", "42")
    assert profile.event_count == 3
    assert set(profile.identities) == {
        Identifier("anonymous_id", "a1"),
        Identifier("user_id", "42"),
        Identifier("email", "x@y.io"),
    }
    assert profile.traits["email"].value == "X@Y.io"
    assert profile.traits["email"].source == "web"
    assert profile.traits["email"].message_id == "m3"


def test_two_profiles_merge_into_the_older_one_with_a_merge_record():
    fold = Fold()
    fold(type="track", userId="42", event="A")
    fold(type="track", anonymousId="a9", event="B")
    survivor = fold(type="identify", userId="42", anonymousId="a9")
    assert survivor == "p:user_id:42"
    assert fold.ws.changes.redirects == {"p:anonymous_id:a9": "p:user_id:42"}
    profile = fold.profile_of("anonymous_id", "a9")
    assert profile.event_count == 3
    assert profile.merged_from == ["p:anonymous_id:a9"]
    (merge,) = profile.merges
    assert merge.reason == "identifier"
    assert merge.profile_id == "p:anonymous_id:a9"
    assert merge.identifiers == [Identifier("anonymous_id", "a9")]
    assert merge.message_id == "m3"
    assert fold.ws.changes.new_profiles == 1
    assert fold.ws.changes.new_identities == 2


def test_profiles_of_one_request_merge_into_the_person_seen_first_whatever_their_ids():
    """Same server time (one request, batched either way by the processor): the earlier
    event time decides, not the ids' random digits; a later-born profile still loses."""

    def profile(pid: str, created: float, seen: float) -> Profile:
        return Profile(
            profile_id=pid, created_at=created, updated_at=created, first_seen=seen, last_seen=seen
        )

    for first, second in ((0, 1), (1, 0)):
        fold = Fold()
        pair = [
            profile("p:zz-web", RECEIVED, RECEIVED - 86_400),
            profile("p:aa-till", RECEIVED, RECEIVED),
        ]
        fold.ws.profiles.update({p.profile_id: p for p in pair})
        survivor = fold.folder.merge(
            fold.ws, pair[first], pair[second], reason="match", via=[], at=RECEIVED
        )
        assert survivor.profile_id == "p:zz-web"
    fold = Fold()
    older, newer = profile("p:zz", RECEIVED - 1, RECEIVED), profile("p:aa", RECEIVED, RECEIVED - 9)
    fold.ws.profiles.update({"p:zz": older, "p:aa": newer})
    assert fold.folder.merge(fold.ws, newer, older, reason="match", via=[], at=RECEIVED) is older


def test_shared_email_merges_across_sources():
    fold = Fold()
    fold(type="identify", anonymousId="web-1", traits={"email": "ann@example.com"})
    fold(
        source="pos",
        type="identify",
        anonymousId="pos:L-1",
        traits={"email": " ANN@example.com", "loyalty_id": "L-1"},
    )
    profile = fold.profile_of("loyalty_id", "L-1")
    assert profile is fold.profile_of("anonymous_id", "web-1")
    assert profile.traits["email"].value == " ANN@example.com"
    assert [o.value for o in profile.alternates["email"]] == ["ann@example.com", " ANN@example.com"]


def test_shared_device_does_not_merge_two_customers():
    fold = Fold()
    fold(type="identify", userId="alice", anonymousId="tablet")
    landed = fold(type="identify", userId="bob", anonymousId="tablet", traits={"name": "Bob"})
    assert landed == "p:user_id:bob"
    alice, bob = fold.profile_of("user_id", "alice"), fold.profile_of("user_id", "bob")
    assert alice is not bob
    assert Identifier("anonymous_id", "tablet") not in bob.identities
    assert fold.ws.links[Identifier("anonymous_id", "tablet")] == alice.profile_id
    assert "name" not in alice.traits


@pytest.mark.parametrize("junk", ["undefined", "null", "0", "anonymous", " NULL "])
def test_blocked_values_never_link(junk):
    fold = Fold()
    fold(type="identify", userId="u1", anonymousId=junk)
    fold(type="identify", userId="u2", anonymousId=junk)
    assert fold.profile_of("user_id", "u1") is not fold.profile_of("user_id", "u2")
    assert all(i.value.strip().lower() != junk.strip().lower() for i in fold.ws.links)


def test_test_email_and_invalid_phone_do_not_link():
    fold = Fold()
    fold(type="identify", userId="u1", traits={"email": "test@test.com", "phone": "123"})
    fold(type="identify", userId="u2", traits={"email": "test@test.com", "phone": "123"})
    assert len(fold.ws.profiles) == 2


def test_only_a_message_with_no_usable_id_lands_nowhere():
    fold = Fold()
    assert fold(type="track", anonymousId="undefined", event="A") is None
    assert fold.ws.profiles == {}


def test_alias_links_previous_anonymous_id():
    fold = Fold()
    fold(type="track", anonymousId="old-anon", event="A")
    fold(type="alias", userId="7", previousId="old-anon")
    assert fold.profile_of("user_id", "7") is fold.profile_of("anonymous_id", "old-anon")


def test_golden_rules_recency_frequency_first_seen_and_source_priority():
    survivorship = Survivorship(
        "non_empty",
        ["crm", "web"],
        {
            "plan": ("most_frequent", []),
            "signup": ("first_seen", []),
            "name": ("source_priority", []),
        },
    )
    fold = Fold(survivorship)
    fold(type="identify", userId="1", traits={"plan": "pro", "signup": "a", "name": "Web Ann"})
    fold(source="crm", type="identify", userId="1", traits={"plan": "free", "name": "Ann Smith"})
    fold(
        type="identify",
        userId="1",
        traits={"plan": "pro", "signup": "b", "name": "Annie", "city": None},
    )
    traits = fold.profile_of("user_id", "1").traits
    assert traits["plan"].value == "pro"
    assert traits["plan"].rule == "most_frequent"
    assert traits["signup"].value == "a"
    assert traits["name"].value == "Ann Smith"
    assert traits["name"].legal_basis == "contract"
    assert traits["city"].value is None  # nothing better was ever seen


def test_non_empty_keeps_a_value_over_a_later_blank():
    fold = Fold()
    fold(type="identify", userId="1", traits={"phone": "+1 415 555 2671"})
    fold(type="identify", userId="1", traits={"phone": ""})
    profile = fold.profile_of("user_id", "1")
    assert profile.traits["phone"].value == "+1 415 555 2671"
    assert len(profile.alternates["phone"]) == 2


def test_latest_event_time_wins_even_when_it_arrives_first():
    fold = Fold()
    fold(type="identify", userId="1", traits={"plan": "pro"}, timestamp="2024-05-02T00:00:00Z")
    fold(type="identify", userId="1", traits={"plan": "free"}, timestamp="2024-04-01T00:00:00Z")
    assert fold.profile_of("user_id", "1").traits["plan"].value == "pro"


def test_rudder_context_traits_count_as_identify_traits():
    fold = Fold()
    fold(
        type="identify",
        userId="1",
        context={"traits": {"email": "r@s.io", "plan": "a"}},
        traits={"plan": "b"},
    )
    profile = fold.profile_of("user_id", "1")
    assert profile.traits["email"].value == "r@s.io"
    assert profile.traits["plan"].value == "b"
    assert fold.profile_of("email", "r@s.io") is profile


def test_separation_blocks_a_merge():
    fold = Fold()
    fold(type="identify", anonymousId="a", traits={"email": "x@y.io"})
    fold(type="track", anonymousId="b", event="Seen")
    fold.ws.separations.append(([Identifier("anonymous_id", "b")], [Identifier("email", "x@y.io")]))
    fold(type="identify", anonymousId="b", traits={"email": "x@y.io"})
    assert fold.profile_of("anonymous_id", "a") is not fold.profile_of("anonymous_id", "b")
    assert fold.profile_of("email", "x@y.io") is fold.profile_of("anonymous_id", "a")


def test_source_priority_ignores_empty_values_from_the_preferred_source():
    fold = Fold(Survivorship("source_priority", ["crm", "web"]))
    fold(type="identify", userId="1", traits={"birthday": "1980-01-02"})
    fold(source="crm", type="identify", userId="1", traits={"birthday": "", "lastName": None})
    traits = fold.profile_of("user_id", "1").traits
    assert traits["birthday"].value == "1980-01-02"


def test_an_event_that_only_counts_leaves_the_document_unwritten():
    """Most events only move a profile's counters; the store then rewrites those, not the
    document with its traits' lineage and merge history."""
    fold = Fold()
    pid = fold(type="page", anonymousId="a1")
    assert set(fold.ws.changes.profiles) == {pid}  # new: written whole
    fold.ws.changes.profiles.clear()  # as after a commit
    fold(type="track", anonymousId="a1", event="Product Viewed")
    assert fold.ws.changes.profiles == {}
    assert fold.ws.changes.activity[pid].event_count == 2
    # a new identifier, traits or a merge rewrite it whole, and it leaves the counted set
    fold(type="track", anonymousId="a1", userId="42", event="Signed In")
    assert set(fold.ws.changes.profiles) == {pid}
    assert fold.ws.changes.activity == {}
    fold.ws.changes.profiles.clear()
    fold(type="identify", userId="42", traits={"firstName": "Ada"})
    assert set(fold.ws.changes.profiles) == {pid}
    assert fold.ws.changes.activity == {}
    fold(type="page", anonymousId="b7")
    fold.ws.changes.profiles.clear()
    fold(type="page", anonymousId="b7")
    assert set(fold.ws.changes.activity) == {"p:anonymous_id:b7"}
    fold(type="identify", anonymousId="b7", userId="42")  # merges b7 into the older profile
    assert set(fold.ws.changes.profiles) == {pid}
    assert fold.ws.changes.activity == {}
    assert fold.ws.changes.redirects == {"p:anonymous_id:b7": pid}


def test_a_merge_counts_none_of_the_merged_away_identifiers_as_new():
    """A batch loads only its events' identifiers: the other profile's remaining ones are
    relinked to the survivor, not created."""
    fold = Fold()
    fold(type="identify", userId="6")
    fold(type="identify", anonymousId="b", traits={"email": "six@ex.org"})
    assert fold.ws.changes.new_identities == 3
    # the next batch: a working set with the links of its event's identifiers only
    email, user = Identifier("email", "six@ex.org"), Identifier("user_id", "6")
    links = {i: fold.ws.links[i] for i in (email, user)}
    fold.ws = WorkingSet(links, {pid: fold.ws.profiles[pid] for pid in links.values()})
    fold(type="identify", userId="6", traits={"email": "six@ex.org"})
    assert fold.profile_of("anonymous_id", "b") is fold.profile_of("user_id", "6")
    assert fold.ws.changes.new_identities == 0
