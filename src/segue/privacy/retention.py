"""Retention: how long each kind of event may be kept, from per-purpose limits.

The event log is shared by every purpose, so an event may only go once no purpose that
uses it may keep it any longer: its lifetime is the longest limit among the configured
purposes that use its type. A purpose with limit 0 keeps forever; a type no configured
purpose uses is kept (retention only ever removes what a limit covers). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from segue.core.events import EVENT_TYPES

__all__ = ["PURPOSE_EVENTS", "event_type", "lifetimes"]

_BEHAVIOUR: Final = frozenset({"track", "page", "screen"})
#: which event types each purpose processes (unknown purposes: every type)
PURPOSE_EVENTS: Final[Mapping[str, frozenset[str]]] = {
    "necessary": frozenset({"identify", "alias", "group"}),
    "analytics": _BEHAVIOUR,
    "personalization": _BEHAVIOUR | {"identify"},
    "marketing": _BEHAVIOUR | {"identify"},
    "advertising": _BEHAVIOUR,
    "automated_decisions": _BEHAVIOUR,
}


def lifetimes(retention_days: Mapping[str, int]) -> dict[str, float]:
    """Seconds each event type may be kept; types absent are kept forever."""
    out: dict[str, float] = {}
    for kind in sorted(EVENT_TYPES):
        days = [
            d
            for purpose, d in retention_days.items()
            if kind in PURPOSE_EVENTS.get(purpose, EVENT_TYPES)
        ]
        if days and 0 not in days:
            out[kind] = max(days) * 86400.0
    return out


class _Typed(msgspec.Struct):
    type: str = ""


_type_decoder = msgspec.json.Decoder(_Typed)


def event_type(body: bytes) -> str:
    """The ``type`` of a logged event ("" when unreadable)."""
    try:
        return _type_decoder.decode(body).type
    except msgspec.DecodeError:
        return ""
