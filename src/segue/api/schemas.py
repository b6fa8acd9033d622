"""API DTOs: what goes over the wire, separate from ``core.model``; the spec is built from them."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "BatchRequest",
    "CollectResponse",
    "EventsResponse",
    "LogResponse",
    "Problem",
    "ProfileResponse",
    "QuarantineResponse",
    "ReplayRequest",
    "ReplayResponse",
    "SegmentMessage",
    "StatsResponse",
]


class SegmentMessage(msgspec.Struct, kw_only=True, rename="camel"):
    """One Segment-spec message (track, identify, page, screen, group, alias)."""

    type: Literal["track", "identify", "page", "screen", "group", "alias"] | None = None
    message_id: str | None = None
    user_id: str | int | None = None
    anonymous_id: str | int | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    previous_id: str | int | None = None
    group_id: str | int | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: str | None = None
    original_timestamp: str | None = None
    sent_at: str | None = None
    write_key: str | None = None


class BatchRequest(msgspec.Struct, kw_only=True, rename="camel"):
    """A Segment batch: messages plus context and integrations merged into each."""

    batch: list[SegmentMessage]
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sent_at: str | None = None
    write_key: str | None = None


class RejectedMessage(msgspec.Struct, kw_only=True):
    index: int
    code: str
    message: str
    field: str | None = None


class CollectResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Exactly ``{"success": true}`` when all was stored; ``rejected`` lists the quarantined."""

    success: bool
    rejected: list[RejectedMessage] = []


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error body."""

    code: str
    message: str
    field: str | None = None
    rejected: list[RejectedMessage] = []


class IdentityOut(msgspec.Struct):
    type: str
    value: str


class LineageOut(msgspec.Struct, kw_only=True):
    source: str
    message_id: str
    timestamp: str
    legal_basis: str | None = None
    rule: str = ""


class MergeOut(msgspec.Struct, kw_only=True):
    at: str
    profile_id: str
    identifiers: list[str]
    reason: str
    via: list[str]
    message_id: str | None
    score: float | None
    explanation: list[dict[str, Any]] | None


class ProfileResponse(msgspec.Struct, kw_only=True):
    profile_id: str
    identities: list[IdentityOut]
    traits: dict[str, Any]
    lineage: dict[str, LineageOut]
    alternates: dict[str, list[dict[str, Any]]]
    merges: list[MergeOut]
    possible_matches: list[dict[str, Any]]
    features: dict[str, Any]
    segments: list[str]
    consent: dict[str, Any]
    created_at: str
    updated_at: str
    first_seen: str
    last_seen: str
    event_count: int
    merged_from: list[str]


class EventsResponse(msgspec.Struct, kw_only=True):
    events: list[dict[str, Any]]
    next_cursor: str | None


class StatsResponse(msgspec.Struct, kw_only=True):
    events_received: int
    events_processed: int
    lag_events: int
    lag_ms: float
    profiles: int
    identities: int
    messages_received: int
    events_rejected: int
    events_duplicate: int
    #: messages of erased people dropped at collection (acknowledged with 200)
    events_suppressed: int
    quarantined: int
    uptime_s: float


class LogRecordOut(msgspec.Struct, kw_only=True):
    offset: int
    source: str
    message_id: str
    received_at: float
    message: dict[str, Any]


class LogResponse(msgspec.Struct, kw_only=True):
    records: list[LogRecordOut]
    next: int | None


class QuarantineOut(msgspec.Struct, kw_only=True):
    id: int
    source: str
    received_at: float
    reason: str
    field: str | None
    message: Any


class QuarantineResponse(msgspec.Struct, kw_only=True):
    entries: list[QuarantineOut]
    next: int | None


class PossibleMatchOut(msgspec.Struct, kw_only=True):
    id: int
    profile_a: str
    profile_b: str
    score: float
    status: str
    created_at: str
    explanation: list[dict[str, Any]]


class PossibleMatchesResponse(msgspec.Struct, kw_only=True):
    matches: list[PossibleMatchOut]
    next: int | None


class UnmergeRequest(msgspec.Struct, kw_only=True):
    """The merged-away profile id to split off again (see the profile's ``merges``)."""

    profile_id: str


class UnmergeResponse(msgspec.Struct, kw_only=True):
    profiles: list[str]


class ReplayRequest(msgspec.Struct, kw_only=True):
    """Optionally a corrected message to store instead of the quarantined one."""

    message: dict[str, Any] | None = None


class ReplayResponse(msgspec.Struct, kw_only=True):
    replayed: bool
    offset: int | None
    #: the message names an erased person: dropped, as collection drops it
    suppressed: bool
