"""Consent signals as they arrive — a Segment context, a ``PUT /v1/consent`` body, headers —
turned into purposes. Pure.

Accepted in a Segment ``context`` (events and decide requests alike):

- ``consent.categoryPreferences``: ``{"<category>": bool}`` — segue's purpose names, or the
  usual consent-manager category names (see :data:`CATEGORY_ALIASES`); others are ignored;
- ``consent.tcf`` (or ``consent.tcString``): an IAB TCF v2.2 TC string;
- ``consent.usp`` (or ``consent.usPrivacy``): a US Privacy string such as ``1YNN``;
- ``consent.gpc`` or ``gpc``: Global Privacy Control (so is the ``Sec-GPC: 1`` header);
- ``consent.objectToAutomatedDecisions``: an objection under GDPR Art. 22;
- ``consent.region``, else ``region``, else ``location.country`` (+ ``location.region`` for a
  subdivision such as ``US-CA``): where the person is, for the region policy.

Several signals in one place combine restrictively: a refusal by any of them refuses.
A malformed TC string is *no consent* (every purpose but ``necessary`` refused), never a grant;
a malformed US Privacy string reads as an opt-out of sale.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from segue.privacy.policy import PURPOSES, RequestSignals
from segue.privacy.tcf import InvalidTCString, decode_tc_string, tcf_purposes
from segue.privacy.usp import InvalidUSPrivacy, parse_us_privacy, usp_purposes

__all__ = [
    "CATEGORY_ALIASES",
    "Signal",
    "combine",
    "from_context",
    "from_strings",
    "region_of",
]

#: consent-manager category names → segue purposes (lower case, spaces/dashes as "_")
CATEGORY_ALIASES: Final[Mapping[str, str]] = {
    **{p: p for p in PURPOSES},
    "personalisation": "personalization",
    "functional": "personalization",
    "preferences": "personalization",
    "statistics": "analytics",
    "performance": "analytics",
    "measurement": "analytics",
    "ads": "advertising",
    "targeting": "advertising",
    "sale_of_data": "advertising",
    "sale_share": "advertising",
    "strictly_necessary": "necessary",
    "essential": "necessary",
}


class Signal(msgspec.Struct, frozen=True, kw_only=True):
    """What one consent signal said; ``proof`` holds the raw strings it rested on."""

    purposes: dict[str, bool] = {}
    region: str | None = None
    gpc: bool | None = None
    objects_to_automated: bool | None = None
    proof: dict[str, Any] = {}

    @property
    def empty(self) -> bool:
        return (
            not self.purposes
            and self.region is None
            and self.gpc is None
            and self.objects_to_automated is None
        )

    def request(self) -> RequestSignals:
        """This signal as a request's own (not recorded) signals."""
        return RequestSignals(
            purposes=self.purposes,
            region=self.region,
            gpc=bool(self.gpc),
            objects_to_automated=bool(self.objects_to_automated),
        )


def combine(*parts: Mapping[str, bool]) -> dict[str, bool]:
    """Purpose maps merged restrictively: any refusal refuses."""
    out: dict[str, bool] = {}
    for part in parts:
        for purpose, granted in part.items():
            out[purpose] = out.get(purpose, True) and granted
    return out


def categories(prefs: Mapping[str, Any]) -> dict[str, bool]:
    """``categoryPreferences`` → purposes (unknown categories ignored, non-booleans too)."""
    found: list[dict[str, bool]] = []
    for name, granted in prefs.items():
        if not isinstance(granted, bool):
            continue
        purpose = CATEGORY_ALIASES.get(
            str(name).strip().lower().replace(" ", "_").replace("-", "_")
        )
        if purpose is not None:
            found.append({purpose: granted})
    return combine(*found)


def from_strings(
    tcf: str | None, usp: str | None, vendor_id: int | None
) -> tuple[dict[str, bool], dict[str, Any]]:
    """Purposes and proof from a TC string and a US Privacy string (either may be None)."""
    parts: list[dict[str, bool]] = []
    proof: dict[str, Any] = {}
    if tcf is not None:
        proof["tcf"] = tcf
        purposes, error = _tcf(tcf, vendor_id)
        if error is not None:
            proof["tcf_error"] = error
        parts.append(dict(purposes))
    if usp is not None:
        proof["usp"] = usp
        try:
            parsed = parse_us_privacy(usp)
        except InvalidUSPrivacy as exc:
            proof["usp_error"] = str(exc)
            parsed = None
        parts.append(usp_purposes(parsed))
    return combine(*parts), proof


@functools.lru_cache(maxsize=4096)
def _tcf(text: str, vendor_id: int | None) -> tuple[tuple[tuple[str, bool], ...], str | None]:
    """A TC string's purposes (and why it was unreadable), cached: a browser sends the same
    string with every request until the person changes their choice."""
    try:
        tc = decode_tc_string(text)
    except InvalidTCString as exc:
        return tuple(tcf_purposes(None, vendor_id).items()), str(exc)
    return tuple(tcf_purposes(tc, vendor_id).items()), None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def region_of(context: Mapping[str, Any]) -> str | None:
    """The region a Segment context names (see the module docstring), None if none."""
    raw = context.get("consent")
    return _region(context, raw if isinstance(raw, Mapping) else {})


def _region(context: Mapping[str, Any], consent: Mapping[str, Any]) -> str | None:
    region = _text(consent.get("region")) or _text(context.get("region"))
    if region:
        return region.upper()
    location = context.get("location")
    if isinstance(location, dict):
        country = _text(location.get("country"))
        if country and len(country) == 2:
            sub = _text(location.get("region"))
            if sub and len(sub) <= 3 and sub.isalnum():
                return f"{country}-{sub}".upper()
            return country.upper()
    return None


def from_context(
    context: Mapping[str, Any] | None, *, gpc_header: bool = False, vendor_id: int | None = None
) -> Signal:
    """The consent signal a Segment ``context`` (and the request's ``Sec-GPC``) carries."""
    context = context if isinstance(context, Mapping) else {}
    raw = context.get("consent")
    consent: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    prefs = consent.get("categoryPreferences")
    parts = [categories(prefs)] if isinstance(prefs, Mapping) else []
    tcf = consent.get("tcf", consent.get("tcString"))
    usp = consent.get("usp", consent.get("usPrivacy"))
    strings, proof = from_strings(
        tcf if isinstance(tcf, str) else None, usp if isinstance(usp, str) else None, vendor_id
    )
    if strings or proof:
        parts.append(strings)
    if isinstance(prefs, Mapping) and prefs:
        proof["categoryPreferences"] = dict(prefs)
    gpc_flag = consent.get("gpc", context.get("gpc"))
    gpc = True if gpc_header or gpc_flag is True else (False if gpc_flag is False else None)
    objection = consent.get("objectToAutomatedDecisions")
    return Signal(
        purposes=combine(*parts),
        region=_region(context, consent),
        gpc=gpc,
        objects_to_automated=objection if isinstance(objection, bool) else None,
        proof=proof,
    )
