"""Bytes of a collection request → validated messages ready for the event log.

Decoding happens once per edge with typed msgspec decoders; each message of a batch is
validated on its own so one bad message never sinks the others. Everything here is pure:
the caller passes the receive time and the id generator.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from segue.core.events import EVENT_TYPES, Event, to_event_and_body
from segue.core.model import NewRecord
from segue.errors import InvalidEvent, InvalidInput, PayloadTooLarge, SegueError

__all__ = [
    "Accepted",
    "Limits",
    "ParsedRequest",
    "Rejected",
    "body_write_key",
    "parse_request",
    "prepare_message",
]


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Size limits, in bytes, after gzip decompression."""

    max_message_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024


class Accepted(msgspec.Struct, frozen=True):
    index: int
    event: Event
    message: dict[str, Any]


class Rejected(msgspec.Struct, frozen=True):
    index: int
    code: str
    message: str
    field: str | None
    body: bytes


class _Members(msgspec.Struct, frozen=True):
    """A batch-level object as merged into a message: each member's ``"key":value,`` bytes
    and the nesting depth of its value (an upper bound; exact when it could matter)."""

    members: dict[str, tuple[int, int]]
    #: the object's JSON size, and its deepest value
    size: int
    depth: int


class _BatchAdds(msgspec.Struct, frozen=True):
    """What the batch-level fields add to each message, measured once per request so the
    limits hold for each merged message without encoding it (the ingest inner loop)."""

    context: _Members | None
    integrations: _Members | None
    sent_at: int
    #: the most any message can grow by, and whether a value could nest too deep: only
    #: messages these do not clear are measured member by member
    most: int
    deep: bool


class ParsedRequest(msgspec.Struct, frozen=True):
    """A decoded request: the write key found in the body (if any) and its raw messages."""

    #: the body's ``writeKey`` as sent: any JSON value, since a Basic header makes it
    #: irrelevant, and without one only the caller can say what a non-string means
    write_key: object
    messages: list[tuple[int, bytes]]
    context: dict[str, Any] | None
    integrations: dict[str, Any] | None
    sent_at: str | None
    kind: str | None
    adds: _BatchAdds | None = None


class _Batch(msgspec.Struct, rename="camel"):
    batch: list[msgspec.Raw]
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    write_key: Any = None
    sent_at: str | None = None


class _Single(msgspec.Struct, rename="camel"):
    write_key: Any = None


_batch_decoder = msgspec.json.Decoder(_Batch)
_single_decoder = msgspec.json.Decoder(_Single)
_object_decoder = msgspec.json.Decoder(dict[str, Any])


def _field_of(exc: msgspec.ValidationError) -> tuple[str, str | None]:
    text = str(exc)
    field = None
    if " - at `" in text:
        text, _, path = text.rpartition(" - at `")
        field = path.rstrip("`")
    if text.startswith("Object missing required field `"):
        # msgspec names the object that lacks the member; the client must fix the member
        field = f"{field or '$'}.{text.split('`')[1]}"
    return text, field


def _is_json(body: bytes) -> bool:
    """Whether the whole body is one JSON document (typed decoding may stop at the first)."""
    try:
        msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def parse_request(body: bytes, kind: str | None) -> ParsedRequest:
    """Decode a collection request body.

    Args:
        body: the (already decompressed) request body.
        kind: the message type for single-message endpoints, or None for ``/v1/batch``.

    Raises:
        InvalidInput: the body is not JSON, not an object, or ``batch`` is not a list.
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"body is not valid UTF-8: {exc}", code="invalid_json") from None
    try:
        if kind is None:
            batch = _batch_decoder.decode(body)
            return ParsedRequest(
                write_key=batch.write_key,
                messages=[(i, bytes(raw)) for i, raw in enumerate(batch.batch)],
                context=batch.context,
                integrations=batch.integrations,
                sent_at=batch.sent_at,
                kind=None,
                adds=_batch_adds(batch.context, batch.integrations, batch.sent_at),
            )
        single = _single_decoder.decode(body)
    except msgspec.DecodeError as exc:
        if isinstance(exc, msgspec.ValidationError) and _is_json(body):
            text, field = _field_of(exc)
            raise InvalidInput(text, field=field or "$", code="invalid_request") from None
        raise InvalidInput(f"body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise InvalidInput("body is nested too deeply", code="invalid_json") from None
    return ParsedRequest(
        write_key=single.write_key,
        messages=[(0, body)],
        context=None,
        integrations=None,
        sent_at=None,
        kind=kind,
    )


def body_write_key(body: bytes) -> object:
    """The top-level ``writeKey`` of a body :func:`parse_request` refused, or None when the
    body is not a JSON object: whether the sender may learn what is wrong with its body
    depends on it."""
    try:
        return _single_decoder.decode(body).write_key
    except (msgspec.DecodeError, RecursionError):
        return None


#: deepest nesting of objects and arrays a message may have (Segment payloads use a few)
MAX_DEPTH = 32


def _depth(raw: bytes) -> int:
    """Deepest bracket nesting outside strings; only called when a message has many brackets."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x7D, 0x5D):  # } ]
            depth -= 1
    return deepest


_encode = msgspec.json.encode


def _measure(value: dict[str, Any] | None) -> _Members | None:
    if not value:
        return None
    members: dict[str, tuple[int, int]] = {}
    for key, member in value.items():
        encoded = _encode(member)
        depth = encoded.count(b"{") + encoded.count(b"[")
        if depth > MAX_DEPTH - 2:  # under the limit even if every bracket nested
            depth = _depth(encoded)
        members[key] = (len(_encode(key)) + len(encoded) + 2, depth)  # ':' and ','
    return _Members(
        members=members,
        size=sum(size for size, _ in members.values()) + 1,  # '{' and '}' less a ','
        depth=max(depth for _, depth in members.values()),
    )


def _batch_adds(
    context: dict[str, Any] | None, integrations: dict[str, Any] | None, sent_at: str | None
) -> _BatchAdds | None:
    if not (context or integrations or sent_at):
        return None
    measured = _measure(context), _measure(integrations)
    sent = len(_encode(sent_at)) + len(b'"sentAt":,') if sent_at else 0
    return _BatchAdds(
        context=measured[0],
        integrations=measured[1],
        sent_at=sent,
        most=sent
        + sum(len(name) + 4 + m.size for name, m in zip(_MERGED, measured, strict=True) if m),
        deep=any(m.depth + 2 > MAX_DEPTH for m in measured if m),
    )


#: the batch-level objects merged into each message
_MERGED = ("context", "integrations")


def _check_merged(message: dict[str, Any], size: int, adds: _BatchAdds, limits: Limits) -> None:
    """Apply the size and depth limits to ``message`` as the batch's fields will make it.

    Args:
        message: the message before the merge.
        size: its JSON size.

    Raises:
        PayloadTooLarge, InvalidEvent: as :func:`prepare_message`.
    """
    for name, measured in zip(_MERGED, (adds.context, adds.integrations), strict=True):
        if measured is None:
            continue
        own = message.get(name)
        if isinstance(own, dict):  # the message's own members win
            added = [at for key, at in measured.members.items() if key not in own]
            size += sum(at[0] for at in added)
        elif own:
            continue  # not an object: validation rejects it at this field
        else:
            added = list(measured.members.values())
            size += len(name) + 4 + measured.size  # '"name":' and ','
        if any(depth + 2 > MAX_DEPTH for _, depth in added):  # message, then ``name``
            raise InvalidEvent(
                f"message is nested deeper than {MAX_DEPTH} levels with the batch's {name}",
                field=f"$.{name}",
            )
    if "sentAt" not in message:
        size += adds.sent_at
    if size > limits.max_message_bytes:
        raise PayloadTooLarge(
            f"message is {size} bytes with the batch's context, integrations and sentAt, "
            f"over the limit of {limits.max_message_bytes}"
        )


def prepare_message(
    raw: bytes,
    parsed: ParsedRequest,
    *,
    limits: Limits,
    received_at: datetime,
    new_id: Callable[[], str],
) -> tuple[dict[str, Any], Event, bytes]:
    """Normalise and validate one message.

    Normalising merges the batch's ``context``/``integrations`` (the message's own keys
    win), sets ``type`` for single endpoints, assigns a ``messageId`` when the sender gave
    none and stamps ``receivedAt``. The size and depth limits hold for the message with what
    the batch merged into it: a batch's context is copied into every message it carries.

    Returns:
        the normalised message, its typed form, and the message as JSON (what the log
        stores, unless a later step changes the message).

    Raises:
        PayloadTooLarge: the message is over ``limits.max_message_bytes``.
        InvalidEvent: the message breaks the Segment spec; ``field`` says where.
    """
    if len(raw) > limits.max_message_bytes:
        raise PayloadTooLarge(
            f"message is {len(raw)} bytes, over the limit of {limits.max_message_bytes}"
        )
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _depth(raw) > MAX_DEPTH:
        raise InvalidEvent(f"message is nested deeper than {MAX_DEPTH} levels", field="$")
    try:
        message = _object_decoder.decode(raw)
    except msgspec.ValidationError:
        raise InvalidEvent("message must be a JSON object", field="$") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidEvent("message is not valid JSON", field="$") from None
    message.pop("writeKey", None)
    if parsed.kind is not None:
        message["type"] = parsed.kind
    else:
        kind = message.get("type")
        if not isinstance(kind, str) or kind not in EVENT_TYPES:
            raise InvalidEvent(
                f"type must be one of {', '.join(sorted(EVENT_TYPES))}, got {kind!r}",
                field="$.type",
            )
    adds = parsed.adds
    if adds is None and (parsed.context or parsed.integrations or parsed.sent_at):
        # a request parse_request did not make: measured here, once per message
        adds = _batch_adds(parsed.context, parsed.integrations, parsed.sent_at)
    if adds is not None and (len(raw) + adds.most > limits.max_message_bytes or adds.deep):
        _check_merged(message, len(raw), adds, limits)
    if parsed.context:
        own = message.get("context")
        message["context"] = (
            {**parsed.context, **own} if isinstance(own, dict) else own or dict(parsed.context)
        )
    if parsed.integrations:
        own = message.get("integrations")
        message["integrations"] = (
            {**parsed.integrations, **own}
            if isinstance(own, dict)
            else own or dict(parsed.integrations)
        )
    if parsed.sent_at and "sentAt" not in message:
        message["sentAt"] = parsed.sent_at
    message_id = message.get("messageId")
    if message_id is None or message_id == "":
        message["messageId"] = new_id()
    elif isinstance(message_id, (int, float)) and not isinstance(message_id, bool):
        message["messageId"] = str(message_id)
    elif not isinstance(message_id, str):
        raise InvalidEvent("messageId must be a string", field="$.messageId")
    elif len(message_id) > 256:
        raise InvalidEvent("messageId is longer than 256 characters", field="$.messageId")
    message["receivedAt"] = _iso_ms(received_at)
    event, body = to_event_and_body(message)
    return message, event, body


@functools.lru_cache(maxsize=64)
def _iso_ms(at: datetime) -> str:
    """``receivedAt`` text; one request's messages share one time, so this is cached."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def partition_key(event: Event) -> str:
    """The identifier the log partitions by: user id if known, else anonymous id."""
    uid = event.uid
    if uid is not None:
        return f"user_id:{uid}"
    return f"anonymous_id:{event.aid}"


def to_record(
    source: str,
    message: dict[str, Any],
    event: Event,
    received_at: float,
    body: bytes | None = None,
) -> NewRecord:
    """A validated message as a log record.

    Args:
        body: ``message`` as JSON, when the caller has it (``prepare_message`` does);
            encoded here when None.
    """
    return NewRecord(
        source=source,
        message_id=event.message_id,
        received_at=received_at,
        key=partition_key(event),
        body=msgspec.json.encode(message) if body is None else body,
    )


def reject(index: int, raw: bytes, error: SegueError, kind: str | None = None) -> Rejected:
    """Describe a rejected message for the response and the quarantine.

    The quarantined body loses any ``writeKey`` (a credential must not be stored) and gains
    the ``type`` of a single-message endpoint, so a replay can process it like a batch member.
    """
    body = raw
    try:
        message = _object_decoder.decode(raw)
    except msgspec.DecodeError:
        message = None
    if message is not None and ("writeKey" in message or kind is not None):
        message.pop("writeKey", None)
        if kind is not None:
            message["type"] = kind
        body = msgspec.json.encode(message)
    return Rejected(
        index=index, code=error.code, message=error.message, field=error.field, body=body
    )
