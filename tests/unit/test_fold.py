"""Identity stitching and trait folding, on the pure fold."""

import msgspec

from segue.core.events import to_event
from segue.core.model import Identifier, LogRecord
from segue.processor.fold import WorkingSet, apply_event

RECEIVED = 1_714_521_600.0  # 2024-05-01T00:00:00Z


class Folder:
    def __init__(self):
        self.ws = WorkingSet({}, {})
        self.offset = 0

    def __call__(self, **message):
        self.offset += 1
        message.setdefault("messageId", f"m{self.offset}")
        message.setdefault("timestamp", f"2024-05-01T00:00:{self.offset:02d}Z")
        event = to_event(message)
        record = LogRecord(
            self.offset,
            "web",
            message["messageId"],
            RECEIVED + self.offset,
            "k",
            msgspec.json.encode(message),
        )
        return apply_event(self.ws, record, event, new_profile_id=lambda i: f"p:{i}")

    def profile_of(self, kind, value):
        return self.ws.profiles[self.ws.links[Identifier(kind, value)]]


def test_anonymous_browsing_is_stitched_on_identify_and_traits_keep_lineage():
    fold = Folder()
    anon = fold(type="page", anonymousId="a1")
    fold(type="track", anonymousId="a1", event="Product Viewed")
    known = fold(type="identify", anonymousId="a1", userId="42", traits={"email": "x@y.z"})
    assert anon == known == "p:anonymous_id:a1"
    profile = fold.profile_of("user_id", "42")
    assert profile.event_count == 3
    assert set(profile.identities) == {
        Identifier("anonymous_id", "a1"),
        Identifier("user_id", "42"),
    }
    assert profile.traits["email"].value == "x@y.z"
    assert profile.traits["email"].source == "web"
    assert profile.traits["email"].message_id == "m3"


def test_two_profiles_merge_into_the_older_one_and_the_other_redirects():
    fold = Folder()
    fold(type="track", userId="42", event="A")
    fold(type="track", anonymousId="a9", event="B")
    survivor = fold(type="identify", userId="42", anonymousId="a9")
    assert survivor == "p:user_id:42"
    assert fold.ws.changes.redirects == {"p:anonymous_id:a9": "p:user_id:42"}
    assert fold.profile_of("anonymous_id", "a9").event_count == 3
    assert fold.profile_of("user_id", "42").merged_from == ["p:anonymous_id:a9"]
    assert fold.ws.changes.new_profiles == 1
    assert fold.ws.changes.new_identities == 2


def test_shared_device_does_not_merge_two_customers():
    fold = Folder()
    fold(type="identify", userId="alice", anonymousId="tablet")
    landed = fold(type="identify", userId="bob", anonymousId="tablet", traits={"name": "Bob"})
    assert landed == "p:user_id:bob"
    alice, bob = fold.profile_of("user_id", "alice"), fold.profile_of("user_id", "bob")
    assert alice is not bob
    assert Identifier("anonymous_id", "tablet") not in bob.identities
    assert fold.ws.links[Identifier("anonymous_id", "tablet")] == alice.profile_id
    assert "name" not in alice.traits


def test_alias_links_previous_anonymous_id():
    fold = Folder()
    fold(type="track", anonymousId="old-anon", event="A")
    fold(type="alias", userId="7", previousId="old-anon")
    assert fold.profile_of("user_id", "7") is fold.profile_of("anonymous_id", "old-anon")


def test_latest_event_time_wins_even_when_it_arrives_first():
    fold = Folder()
    fold(type="identify", userId="1", traits={"plan": "pro"}, timestamp="2024-05-02T00:00:00Z")
    fold(type="identify", userId="1", traits={"plan": "free"}, timestamp="2024-04-01T00:00:00Z")
    assert fold.profile_of("user_id", "1").traits["plan"].value == "pro"


def test_rudder_context_traits_count_as_identify_traits():
    fold = Folder()
    fold(
        type="identify",
        userId="1",
        context={"traits": {"email": "r@s.t", "plan": "a"}},
        traits={"plan": "b"},
    )
    traits = fold.profile_of("user_id", "1").traits
    assert traits["email"].value == "r@s.t"
    assert traits["plan"].value == "b"
