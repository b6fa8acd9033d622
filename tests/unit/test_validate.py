import functools
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.errors import InvalidEvent, InvalidInput, PayloadTooLarge, SegueError
from segue.ingest.validate import Limits, parse_request, prepare_message

NOW = datetime(2024, 5, 1, tzinfo=UTC)
LIMITS = Limits()


def prepare(raw: bytes, parsed=None):
    parsed = parsed or parse_request(b'{"batch": []}', None)
    message, event, body = prepare_message(
        raw, parsed, limits=LIMITS, received_at=NOW, new_id=lambda: "generated"
    )
    assert body == msgspec.json.encode(message)  # what the log stores, encoded once
    return message, event


def test_batch_context_and_integrations_merge_into_each_message_own_keys_win():
    body = msgspec.json.encode(
        {
            "batch": [
                {"type": "track", "userId": "1", "event": "A", "context": {"ip": "1.1.1.1"}},
                {"type": "page", "anonymousId": "x"},
            ],
            "context": {"library": {"name": "analytics-python"}, "ip": "9.9.9.9"},
            "integrations": {"All": True},
            "sentAt": "2024-05-01T00:00:00Z",
            "writeKey": "wk",
        }
    )
    parsed = parse_request(body, None)
    assert parsed.write_key == "wk"
    first, _ = prepare(parsed.messages[0][1], parsed)
    second, _ = prepare(parsed.messages[1][1], parsed)
    assert first["context"] == {"library": {"name": "analytics-python"}, "ip": "1.1.1.1"}
    assert second["context"]["ip"] == "9.9.9.9"
    assert first["integrations"] == {"All": True}
    assert first["sentAt"] == "2024-05-01T00:00:00Z"
    assert first["messageId"] == "generated"
    assert first["receivedAt"] == "2024-05-01T00:00:00.000Z"


def test_single_endpoint_sets_type_and_drops_write_key():
    parsed = parse_request(b'{"userId": "1", "event": "A", "writeKey": "k", "type": "x"}', "track")
    message, event = prepare(parsed.messages[0][1], parsed)
    assert message["type"] == "track"
    assert "writeKey" not in message
    assert event.message_id == "generated"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b"{nope", "invalid_json", None),
        (b"[1, 2]", "invalid_request", "$"),
        (b'{"batch": {}}', "invalid_request", "$.batch"),
        (b"{}", "invalid_request", "$.batch"),
        (b'{"batch": [], "context": 3}', "invalid_request", "$.context"),
    ],
)
def test_bad_requests(body, code, field):
    with pytest.raises(InvalidInput) as caught:
        parse_request(body, None)
    assert caught.value.code == code
    assert caught.value.field == field


def test_message_size_limit():
    raw = msgspec.json.encode({"type": "track", "userId": "1", "event": "A", "p": "x" * 40_000})
    with pytest.raises(PayloadTooLarge):
        prepare(raw)


@pytest.mark.parametrize(
    "own", [None, {"n": 1, "own": "z"}], ids=["no_own_context", "own_context_wins"]
)
def test_the_size_limit_holds_for_the_message_with_the_batch_context_merged_in(own):
    """Exactly at the limit with the batch's context merged in is accepted; a byte more
    is not (measured without encoding each message)."""
    limits = Limits(max_message_bytes=2000)
    context = {"pad": "x" * 500, "n": [1, 2]}

    def request(fill: int) -> tuple[bytes, int]:
        member = {"type": "track", "userId": "1", "event": "A", "properties": {"p": "y" * fill}}
        if own is not None:
            member["context"] = own
        merged = {**member, "context": {**context, **(own or {})}}
        body = msgspec.json.encode({"batch": [member], "context": context})
        return body, len(msgspec.json.encode(merged))

    body, size = request(0)
    fill = limits.max_message_bytes - size
    for extra, fits in ((0, True), (1, False)):
        body, size = request(fill + extra)
        assert size == limits.max_message_bytes + extra
        parsed = parse_request(body, None)
        call = functools.partial(
            prepare_message,
            parsed.messages[0][1],
            parsed,
            limits=limits,
            received_at=NOW,
            new_id=lambda: "generated",
        )
        if fits:
            assert call()[0]["context"]["pad"] == context["pad"]
        else:
            with pytest.raises(PayloadTooLarge):
                call()


def test_numeric_message_id_becomes_text_and_non_object_is_rejected():
    message, _ = prepare(b'{"type": "track", "userId": "1", "event": "A", "messageId": 7}')
    assert message["messageId"] == "7"
    with pytest.raises(SegueError) as caught:
        prepare(b"[1]")
    assert caught.value.field == "$"


@pytest.mark.parametrize(
    "raw",
    [
        # members segue's event types do not know are read all the same
        b'{"type": "track", "userId": "1", "event": "A", "extra": 1e999}',
        b'{"type": "identify", "userId": "1", "properties": {"n": 1e999}}',
        b'{"type": "track", "userId": "1", "event": "A", "properties": {"n": -1e999}}',
        b'{"type": 1e999, "userId": "1"}',
        b'{"type": "track", "userId": "1", "event": "A", "messageId": 1e999}',
    ],
)
def test_a_number_no_reader_could_decode_is_rejected_wherever_it_is(raw):
    with pytest.raises(InvalidEvent):
        prepare(raw)


def test_members_are_stored_as_sent_known_or_not():
    raw = (
        b'{"type":"page","anonymousId":"a","name":"Home","_metadata":{"bundled":["x"]},'
        b'"channel":"web","properties":{"price":12.50,"big":123456789012345678901234567890}}'
    )
    message, event = prepare(raw)
    assert message["_metadata"] == {"bundled": ["x"]}
    assert message["channel"] == "web"
    assert message["properties"] == {"price": 12.5, "big": 123456789012345678901234567890}
    assert event.properties["big"] == 123456789012345678901234567890


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "event",
        "messageId",
        "properties",
        "traits",
        "context",
        "timestamp",
        "previousId",
        "groupId",
        "integrations",
        "sentAt",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=8))
def test_any_message_is_accepted_or_rejected_with_a_segue_error(message):
    raw = msgspec.json.encode(message)
    try:
        stored, event = prepare(raw)
    except SegueError as exc:
        assert exc.message  # noqa: PT017 - the property is "every failure is a SegueError"
        return
    assert stored["messageId"]
    assert event.uid is not None or event.aid is not None
