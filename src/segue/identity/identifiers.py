"""Which identifiers a message carries, normalised, with junk values blocked.

Deterministic identity resolution is only as good as its identifiers: an email written in
two cases, a phone with and without its country code, or the literal string "undefined"
sent by a broken tag would split one person in two or merge thousands into one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import phonenumbers

from segue.core.events import Alias, Event, Identify
from segue.core.model import Identifier

__all__ = [
    "BLOCKED_VALUES",
    "IdentityRules",
    "attachable",
    "identifiers_of",
    "normalise_email",
    "normalise_phone",
]

#: values that never identify anybody (compared after strip + casefold)
BLOCKED_VALUES = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "undefined",
        "nan",
        "0",
        "-1",
        "anonymous",
        "unknown",
        "guest",
        "n/a",
        "na",
        "[object object]",
        "00000000-0000-0000-0000-000000000000",
        "test@test.com",
        "test@example.com",
        "email@example.com",
        "example@example.com",
        "a@a.com",
        "noreply@example.com",
        "no-reply@example.com",
        "none@none.com",
        "+10000000000",
        "+11111111111",
        "+15555555555",
    }
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TYPE = re.compile(r"[^a-z0-9_]+")


class IdentityRules:
    """Compiled identity configuration (see ``settings.IdentitySettings``)."""

    def __init__(
        self,
        *,
        priority: Iterable[str] = ("user_id", "email", "phone", "anonymous_id"),
        limits: Mapping[str, int] | None = None,
        blocked_values: Iterable[str] = (),
        trait_identifiers: Mapping[str, str] | None = None,
        phone_region: str = "US",
    ) -> None:
        order = list(priority)
        self.rank = {kind: i for i, kind in enumerate(order)}
        self.unranked = len(order) - 1 if "anonymous_id" in self.rank else len(order)
        if "anonymous_id" in self.rank:  # unknown custom types rank just above anonymous ids
            self.rank["anonymous_id"] = len(order) + 1
        self.limits = dict(limits if limits is not None else {"user_id": 1})
        self.blocked = BLOCKED_VALUES | {v.strip().casefold() for v in blocked_values}
        self.trait_identifiers = dict(
            trait_identifiers
            if trait_identifiers is not None
            else {"loyalty_id": "loyalty_id", "crm_id": "crm_id"}
        )
        self.phone_region = phone_region

    def sort_key(self, identifier: Identifier) -> tuple[int, str, str]:
        return (self.rank.get(identifier.type, self.unranked), identifier.type, identifier.value)

    def usable(self, value: str) -> bool:
        # a NUL names nobody, and PostgreSQL's text cannot hold it: such a value never links
        return "\x00" not in value and value.strip().casefold() not in self.blocked


def normalise_email(raw: object) -> str | None:
    """Lower-cased, trimmed email, or None when it is not an address."""
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    return email if _EMAIL.match(email) else None


def normalise_phone(raw: object, region: str) -> str | None:
    """The number in E.164 (``+4915112345678``), or None when it is not a valid number."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _text(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    return None


def person_traits(event: Event) -> dict[str, Any]:
    """The traits a message says about its person (identify: traits over context.traits)."""
    traits: dict[str, Any] = {}
    context_traits = event.context.get("traits")
    if isinstance(context_traits, dict):
        traits.update(context_traits)
    if isinstance(event, Identify):
        traits.update(event.traits)
    return traits


def attachable(event: Event) -> bool:
    """False for an event that arrived without analytics consent: ingestion marked it
    (``context.segue.attach = false``) and no profile may take it in."""
    marker = event.context.get("segue")
    return not (isinstance(marker, dict) and marker.get("attach") is False)


def identifiers_of(event: Event, rules: IdentityRules) -> list[Identifier]:
    """Every usable identifier of a message, highest priority first, without duplicates.

    Sources: ``userId``, ``anonymousId``, traits ``email`` and ``phone`` (identify traits and
    ``context.traits``), ``context.device.id`` / ``advertisingId``, ``context.externalIds``
    and configured trait identifiers. An alias's ``previousId`` is resolved by the fold,
    which knows whether it names a user or an anonymous id.
    """
    if not attachable(event):
        return []
    found: list[Identifier] = []

    def add(kind: str, value: str | None) -> None:
        if value is not None and rules.usable(value):
            found.append(Identifier(kind, value))

    add("user_id", event.uid)
    add("anonymous_id", event.aid)
    traits = person_traits(event)
    if traits:
        add("email", normalise_email(traits.get("email")))
        add("phone", normalise_phone(traits.get("phone"), rules.phone_region))
        for trait, kind in rules.trait_identifiers.items():
            add(kind, _text(traits.get(trait)))
    device = event.context.get("device")
    if isinstance(device, dict):
        add("device_id", _text(device.get("id")))
        add("advertising_id", _text(device.get("advertisingId")))
    external = event.context.get("externalIds")
    if isinstance(external, list):
        for item in external[:20]:
            if isinstance(item, dict):
                kind = _TYPE.sub("_", str(item.get("type", "")).strip().lower()).strip("_")
                if kind == "email":
                    add(kind, normalise_email(item.get("id")))
                elif kind == "phone":
                    add(kind, normalise_phone(item.get("id"), rules.phone_region))
                elif kind and kind not in ("user_id", "anonymous_id"):
                    add(kind, _text(item.get("id")))
    if isinstance(event, Alias):
        pass  # previousId: see the fold
    return sorted(dict.fromkeys(found), key=rules.sort_key)
