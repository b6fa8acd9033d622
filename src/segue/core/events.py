"""Segment-spec messages as typed, frozen msgspec Structs.

The collection API accepts what the Segment and RudderStack SDKs send; these types are the
contract every later stage (identity, profiles, features, decisioning) reads. They are
deliberately lenient where real SDKs differ (ids as numbers, ``null`` ids, identify traits in
``context.traits``) and strict where a message would be meaningless (no id, no event name).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import msgspec

from segue.errors import InvalidEvent

__all__ = [
    "EVENT_TYPES",
    "Alias",
    "Event",
    "Group",
    "Identify",
    "Page",
    "Screen",
    "Track",
    "event_time",
    "to_event",
    "to_event_and_body",
]

EVENT_TYPES: Final = frozenset({"track", "identify", "page", "screen", "group", "alias"})

Id = str | int | float | None


class _Message(
    msgspec.Struct, kw_only=True, frozen=True, tag_field="type", rename="camel", omit_defaults=True
):
    message_id: str
    user_id: Id = None
    anonymous_id: Id = None
    timestamp: datetime | None = None
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    received_at: datetime | None = None
    context: dict[str, Any] = {}
    integrations: dict[str, Any] = {}

    @property
    def uid(self) -> str | None:
        """The user id as a string, or None when absent or blank."""
        return _id_text(self.user_id)

    @property
    def aid(self) -> str | None:
        """The anonymous id as a string, or None when absent or blank."""
        return _id_text(self.anonymous_id)


class Track(_Message, tag="track", frozen=True, kw_only=True):
    event: str
    properties: dict[str, Any] = {}


class Identify(_Message, tag="identify", frozen=True, kw_only=True):
    traits: dict[str, Any] = {}


class Page(_Message, tag="page", frozen=True, kw_only=True):
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] = {}


class Screen(_Message, tag="screen", frozen=True, kw_only=True):
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] = {}


class Group(_Message, tag="group", frozen=True, kw_only=True):
    group_id: str | int
    traits: dict[str, Any] = {}


class Alias(_Message, tag="alias", frozen=True, kw_only=True):
    previous_id: str | int


Event = Track | Identify | Page | Screen | Group | Alias


def _id_text(value: Id) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        text = str(value).strip()
    return text or None


_event_decoder: Final = msgspec.json.Decoder(Event)
_encode: Final = msgspec.json.Encoder().encode


def to_event(message: dict[str, Any]) -> Event:
    """Validate one normalised message dict and return its typed form.

    Args:
        message: a message whose ``type`` and ``messageId`` are already set.

    Raises:
        InvalidEvent: with ``field`` set to the JSON path at fault.
    """
    return to_event_and_body(message)[0]


def to_event_and_body(message: dict[str, Any]) -> tuple[Event, bytes]:
    """:func:`to_event`, and the message as JSON: ingest stores exactly that text, so
    it need not encode the message a second time."""
    body = _encode(message)
    try:
        # through JSON, which is what the log stores and the processor decodes: msgspec
        # decodes JSON into the typed union about four times faster than it converts the
        # dict (a typical track: 8.4 µs converted, 3.5 µs encoded and decoded), and ingest
        # validates every message
        event: Event = _event_decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = None
        if " - at `" in text:
            text, _, path = text.rpartition(" - at `")
            field = path.rstrip("`")
        if text.startswith("Object missing required field `"):
            field = f"{field or '$'}.{text.split('`')[1]}"
        raise InvalidEvent(text, field=field) from None
    _check_semantics(event)
    return event, body


def _check_semantics(event: Event) -> None:
    if isinstance(event, Alias):
        if event.uid is None:
            raise InvalidEvent("alias needs a userId", field="$.userId")
        if _id_text(event.previous_id) is None:
            raise InvalidEvent("alias needs a previousId", field="$.previousId")
        return
    if event.uid is None and event.aid is None:
        raise InvalidEvent("userId or anonymousId is required", field="$.userId")
    if isinstance(event, Track) and not event.event.strip():
        raise InvalidEvent("track needs a non-empty event name", field="$.event")
    if isinstance(event, Group) and _id_text(event.group_id) is None:
        raise InvalidEvent("group needs a groupId", field="$.groupId")


def event_time(event: Event, received_at: datetime) -> datetime:
    """When the event happened, in UTC, corrected for the sender's clock skew.

    Segment's rule: ``timestamp`` if the sender set it; otherwise ``originalTimestamp``
    shifted by the difference between ``receivedAt`` and ``sentAt``; otherwise
    ``receivedAt``. Naive datetimes are read as UTC. A time after ``receivedAt`` plus a day,
    before 1970, or out of range after the skew correction is a broken device clock:
    ``receivedAt`` is used instead.
    """
    received = _utc(received_at)
    moment = received
    try:
        if event.timestamp is not None:
            moment = _utc(event.timestamp)
        elif event.original_timestamp is not None:
            moment = _utc(event.original_timestamp)
            if event.sent_at is not None:
                moment = moment + (received - _utc(event.sent_at))
    except OverflowError:
        return received
    if moment < _EPOCH or moment > received + _FUTURE:
        return received
    return moment


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FUTURE = timedelta(days=1)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


MessageType = Literal["track", "identify", "page", "screen", "group", "alias"]
