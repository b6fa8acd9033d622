from datetime import UTC, datetime, timedelta

import pytest

from segue.core.events import Alias, Identify, Track, event_time, to_event
from segue.errors import InvalidEvent


def msg(**fields):
    base = {"type": "track", "messageId": "m1", "userId": "u1", "event": "Product Viewed"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def test_track_is_typed_and_ids_are_normalised():
    event = to_event(msg(userId=42, anonymousId=None))
    assert isinstance(event, Track)
    assert event.uid == "42"
    assert event.aid is None


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"userId": ["x"]}, "$.userId", "Expected `int | float | str | null`, got `array`"),
        ({"event": 5}, "$.event", "Expected `str`, got `int`"),
        ({"properties": "x"}, "$.properties", "Expected `object`, got `str`"),
        ({"timestamp": "yesterday"}, "$.timestamp", "Invalid RFC3339"),
        ({"event": ...}, "$.event", "missing required field `event`"),
        ({"userId": None, "anonymousId": " "}, "$.userId", "userId or anonymousId is required"),
        ({"event": "  "}, "$.event", "non-empty event name"),
        ({"type": "alias", "previousId": ...}, "$.previousId", "missing required field"),
        (
            {"type": "alias", "previousId": "a", "userId": None, "anonymousId": "x"},
            "$.userId",
            "alias needs a userId",
        ),
        ({"type": "group", "groupId": ""}, "$.groupId", "group needs a groupId"),
        ({"type": "nope"}, "$.type", "Invalid value 'nope'"),
    ],
)
def test_invalid_messages_name_the_field(fields, field, text):
    with pytest.raises(InvalidEvent) as caught:
        to_event(msg(**fields))
    assert caught.value.field == field
    assert text in caught.value.message


def test_identify_and_alias():
    assert isinstance(to_event(msg(type="identify", traits={"email": "a@b.c"})), Identify)
    alias = to_event(msg(type="alias", previousId="anon-1"))
    assert isinstance(alias, Alias)
    assert alias.previous_id == "anon-1"


def test_event_time_prefers_timestamp_then_skew_corrected_original():
    received = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    explicit = to_event(msg(timestamp="2024-05-01T10:00:00.123456+02:00"))
    assert event_time(explicit, received) == datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)
    # device clock 1 hour fast: sentAt says 13:00 when the server saw 12:00
    skewed = to_event(msg(originalTimestamp="2024-05-01T12:59:00Z", sentAt="2024-05-01T13:00:00Z"))
    assert event_time(skewed, received) == received - timedelta(minutes=1)
    assert event_time(to_event(msg()), received) == received
