import pytest

from segue.core.events import to_event
from segue.core.model import Identifier
from segue.identity.identifiers import (
    IdentityRules,
    identifiers_of,
    normalise_email,
    normalise_phone,
)

RULES = IdentityRules(
    priority=[
        "user_id",
        "email",
        "phone",
        "crm_id",
        "loyalty_id",
        "device_id",
        "advertising_id",
        "anonymous_id",
    ],
    trait_identifiers={"loyalty_id": "loyalty_id"},
    blocked_values=["guest-user"],
    phone_region="DE",
)


def test_every_identifier_source_in_priority_order():
    event = to_event(
        {
            "type": "identify",
            "messageId": "m",
            "anonymousId": "anon-1",
            "userId": 42,
            "traits": {"email": " Ann@Example.COM ", "phone": "0151 23456789", "loyalty_id": "L-9"},
            "context": {
                "device": {"id": "dev-1", "advertisingId": "00000000-0000-0000-0000-000000000000"},
                "externalIds": [
                    {"id": "c-1", "type": "CRM Id", "collection": "users"},
                    {"id": "x", "type": "user_id"},
                    "junk",
                ],
            },
        }
    )
    assert identifiers_of(event, RULES) == [
        Identifier("user_id", "42"),
        Identifier("email", "ann@example.com"),
        Identifier("phone", "+4915123456789"),
        Identifier("crm_id", "c-1"),
        Identifier("loyalty_id", "L-9"),
        Identifier("device_id", "dev-1"),
        Identifier("anonymous_id", "anon-1"),
    ]


def test_configured_blocked_values_and_track_context_traits():
    event = to_event(
        {
            "type": "track",
            "messageId": "m",
            "event": "A",
            "anonymousId": "Guest-User",
            "userId": "7",
            "context": {"traits": {"email": "b@c.io"}},
        }
    )
    assert identifiers_of(event, RULES) == [
        Identifier("user_id", "7"),
        Identifier("email", "b@c.io"),
    ]


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+1 (415) 555-2671", "DE", "+14155552671"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("0151 23456789", "DE", "+4915123456789"),
        ("12", "US", None),
        ("", "US", None),
        (4155552671, "US", "+14155552671"),
        ("call me", "US", None),
    ],
)
def test_phone_normalisation(raw, region, expected):
    assert normalise_phone(raw, region) == expected


def test_email_normalisation():
    assert normalise_email("  A.B@Example.org ") == "a.b@example.org"
    assert normalise_email("not-an-email") is None
    assert normalise_email(5) is None


def test_external_ids_of_email_and_phone_type_are_normalised():
    event = to_event(
        {
            "type": "track",
            "messageId": "m",
            "event": "A",
            "anonymousId": "x",
            "context": {
                "externalIds": [
                    {"id": "Ada@Example.COM", "type": "email"},
                    {"id": "0151 23456789", "type": "phone"},
                ]
            },
        }
    )
    found = identifiers_of(event, RULES)
    assert Identifier("email", "ada@example.com") in found
    assert Identifier("phone", "+4915123456789") in found


def test_a_value_holding_a_nul_never_links():
    event = to_event(
        {
            "type": "identify",
            "messageId": "m",
            "userId": "u\x00",
            "anonymousId": "a-1",
            "traits": {"loyalty_id": "\x00"},
        }
    )
    assert identifiers_of(event, RULES) == [Identifier("anonymous_id", "a-1")]
