"""The pure parts of privacy requests: the crypto envelope, suppression hashing, retention
lifetimes, term values and the quarantine matcher."""

from __future__ import annotations

import os

import msgspec
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from segue.core.events import to_event
from segue.core.model import Identifier, Profile
from segue.identity.identifiers import IdentityRules
from segue.privacy.envelope import derive_key, key_id, open_body, seal_body, sealed_key_id
from segue.privacy.requests import mentions, term_values
from segue.privacy.retention import event_type, lifetimes
from segue.privacy.suppression import SuppressionList, normalise_identifier

KEY = AESGCM(os.urandom(32))
OTHER = AESGCM(os.urandom(32))
NEEDLES = (b'"email"',)


def body(**members):
    return msgspec.json.encode(
        {"type": "track", "messageId": "m1", "userId": "u1", "event": "Viewed", **members}
    )


def test_seal_hides_personal_members_and_open_restores_them_exactly():
    original = body(
        traits={"email": "secret@example.org"},
        context={"ip": "203.0.113.7", "traits": {"lastName": "Secretson"}},
        properties={"email": "again@example.org", "sku": "s1"},
    )
    sealed = seal_body(original, "kid", KEY, NEEDLES)
    for secret in (b"secret@example.org", b"203.0.113.7", b"Secretson", b"again@example.org"):
        assert secret not in sealed
    assert b'"userId":"u1"' in sealed
    assert sealed_key_id(sealed) == "kid"
    assert msgspec.json.decode(open_body(sealed, {"kid": KEY}.get)) == msgspec.json.decode(original)


def test_without_the_key_the_personal_members_are_simply_gone():
    sealed = seal_body(body(traits={"email": "x@y.z"}, properties={"sku": "s"}), "kid", KEY)
    assert msgspec.json.decode(open_body(sealed, {}.get)) == {
        "type": "track",
        "messageId": "m1",
        "userId": "u1",
        "event": "Viewed",
        "properties": {"sku": "s"},  # no personal property: stays readable
    }


def test_a_body_with_nothing_personal_is_left_alone_and_a_forged_envelope_is_dropped():
    plain = body(properties={"sku": "s"})
    assert seal_body(plain, "kid", KEY, NEEDLES) is plain
    assert open_body(plain, {}.get) is plain
    forged = body(_sealed={"k": "x", "n": "AAAA", "c": "AAAA"})
    assert b"_sealed" not in seal_body(forged, "kid", KEY)


@pytest.mark.parametrize(
    "nested",
    [
        {"k": "x", "n": "AAAA", "c": "AAAA"},  # shaped like an envelope
        {"k": "x"},
        3,
        [{"_sealed": {"k": "x", "n": "AAAA", "c": "AAAA"}}],
    ],
)
def test_a_member_named_sealed_inside_an_object_is_the_senders_not_an_envelope(nested):
    for original in (
        body(properties={"sku": "s", "_sealed": nested}),  # nothing personal: stored as sent
        body(properties={"list": [{"a": 1, "_sealed": nested}]}),
        body(traits={"email": "x@y.z"}, properties={"sku": "s", "_sealed": nested}),
    ):
        sealed = seal_body(original, "kid", KEY, NEEDLES)
        opened = open_body(sealed, {"kid": KEY}.get)
        assert msgspec.json.decode(opened) == msgspec.json.decode(original)
        assert sealed_key_id(sealed) == (None if sealed is original else "kid")


def test_tampering_or_the_wrong_key_is_detected():
    sealed = seal_body(body(traits={"email": "x@y.z"}), "kid", KEY)
    with pytest.raises(InvalidTag):
        open_body(sealed.replace(b'"u1"', b'"u2"'), {"kid": KEY}.get)
    with pytest.raises(InvalidTag):
        open_body(sealed, {"kid": OTHER}.get)


def test_key_ids_are_keyed_hashes_of_the_subject():
    a, b = derive_key(b"s1", "data-key-id"), derive_key(b"s2", "data-key-id")
    assert key_id(a, "user_id:42") == key_id(a, "user_id:42")
    assert key_id(a, "user_id:42") != key_id(b, "user_id:42")
    assert "42" not in key_id(a, "user_id:42")


def _suppression() -> SuppressionList:
    rules = IdentityRules()
    return SuppressionList(
        b"secret", lambda e: [Identifier("user_id", e.uid)] if e.uid else [], rules
    )


def test_suppression_recognises_events_and_raw_messages_of_erased_people():
    s = _suppression()
    event = to_event({"type": "track", "messageId": "m", "userId": "u1", "event": "E"})
    assert s.blocks(event) is False  # empty list: nothing is checked
    s.add([s.hash(Identifier("user_id", "u1")), s.hash(Identifier("email", "ann@x.org"))])
    assert s.blocks(event) is True
    other = to_event({"type": "track", "messageId": "m", "anonymousId": "a9", "event": "E"})
    assert s.blocks(other) is False
    assert s.blocks_message({"context": {"traits": {"email": " ANN@x.org "}}}) is True
    assert s.blocks_message({"userId": "u2"}) is False
    assert s.dropped == 2


def test_a_shared_device_of_an_erased_person_drops_only_their_own_events():
    """The family tablet: erasing user 100 suppresses the tablet's id too, yet user 101's
    next order on it is 101's; an event the tablet's id alone decides is 100's."""
    from segue.identity.identifiers import identifiers_of

    rules = IdentityRules()
    s = SuppressionList(b"secret", lambda e: identifiers_of(e, rules), rules)
    tablet = {"device": {"id": "store-tablet-7"}}
    s.add(
        s.hash(i)
        for i in (
            Identifier("user_id", "100"),
            Identifier("device_id", "store-tablet-7"),
            Identifier("anonymous_id", "a-100"),
        )
    )

    def event(**fields):
        return to_event({"type": "track", "messageId": "m", "event": "Order Completed", **fields})

    assert s.blocks(event(userId="101", context=tablet)) is False
    assert s.blocks(event(userId="101", anonymousId="a-100")) is False
    assert s.blocks(event(userId="100", context=tablet)) is True
    assert s.blocks(event(anonymousId="a-new", context=tablet)) is True  # the tablet decides
    assert s.blocks(event(anonymousId="a-100")) is True
    # an erased person's email beside another user id is theirs: dropped
    s.add([s.hash(Identifier("email", "eve@x.org"))])
    assert s.blocks(event(userId="101", context={"traits": {"email": "eve@x.org"}})) is True
    assert s.blocks_message({"userId": "101", "anonymousId": "a-100"}) is False
    assert s.blocks_message({"anonymousId": "a-100"}) is True


def test_suppression_hashes_are_keyed_and_name_no_one():
    s = _suppression()
    h = s.hash(Identifier("email", "ann@x.org"))
    assert "ann" not in h
    assert len(h) == 32
    rules = IdentityRules()
    assert (
        SuppressionList(b"other", lambda e: [], rules).hash(Identifier("email", "ann@x.org")) != h
    )


def test_normalise_identifier():
    rules = IdentityRules()
    assert normalise_identifier("email", " A@B.co ", rules) == Identifier("email", "a@b.co")
    assert normalise_identifier("phone", "(415) 555-0123", rules) == Identifier(
        "phone", "+14155550123"
    )
    assert normalise_identifier("user_id", 42, rules) == Identifier("user_id", "42")
    assert normalise_identifier("email", "nope", rules) is None
    assert normalise_identifier("user_id", " ", rules) is None


def test_retention_lifetime_is_the_longest_limit_of_the_purposes_using_a_type():
    assert lifetimes({}) == {}
    got = lifetimes({"analytics": 30, "personalization": 90})
    assert got["track"] == got["page"] == 90 * 86400.0
    assert got["identify"] == 90 * 86400.0
    assert "alias" not in got  # no listed purpose uses it: kept
    assert "track" not in lifetimes({"analytics": 30, "personalization": 0})  # 0 = forever
    assert event_type(b'{"type":"page","x":1}') == "page"
    assert event_type(b"not json") == ""


def test_term_values_count_the_match_snapshots_of_a_profile():
    profile = Profile(
        profile_id="p",
        created_at=0,
        updated_at=0,
        first_seen=0,
        last_seen=0,
        records=[
            {"firstName": "Ann", "lastName": "Smith"},
            {"firstName": "Ann", "lastName": "Smyth", "address": {"city": "Paris"}},
        ],
    )
    assert term_values([profile]) == [
        ("city", "paris", 1),
        ("first_name", "ann", 2),
        ("last_name", "smith", 1),
        ("last_name", "smyth", 1),
    ]


def test_mentions_matches_identifier_keys_only():
    values = {"u1", "ann@x.org", "+14155550123"}
    assert mentions(b'{"userId":"u1"}', values, "US")
    assert mentions(b'{"context":{"traits":{"email":"ANN@x.org"}}}', values, "US")
    assert mentions(b'{"traits":{"phone":"(415) 555-0123"}}', values, "US")
    assert not mentions(b'{"properties":{"sku":"u1"}}', values, "US")
    assert not mentions(b'{"userId":"u2"}', values, "US")
    assert mentions(b"not json but ann@x.org", values, "US")
