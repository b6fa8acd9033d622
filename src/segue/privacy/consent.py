"""Consent: purposes and the one policy every read of personal data goes through.

``gate`` answers "may this purpose use this person's data now?" from the signals at hand:
the consent recorded on the profile and the request's own signals (Segment's
``context.consent.categoryPreferences``, Global Privacy Control). It is pure and cheap — it
sits on the decision hot path. The privacy work (region policies, TCF and US Privacy strings,
the consent ledger) extends the state it reads, not the call sites.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

__all__ = ["PURPOSES", "ConsentDecision", "gate", "request_preferences"]

PURPOSES: Final = (
    "necessary",
    "analytics",
    "personalization",
    "marketing",
    "advertising",
    "automated_decisions",
)


class ConsentDecision(msgspec.Struct, frozen=True):
    allowed: bool
    reason: str


def request_preferences(context: Mapping[str, Any]) -> dict[str, bool]:
    """Purpose → granted, from Segment's ``context.consent.categoryPreferences``."""
    consent = context.get("consent")
    if not isinstance(consent, dict):
        return {}
    prefs = consent.get("categoryPreferences")
    if not isinstance(prefs, dict):
        return {}
    return {str(k).lower(): v for k, v in prefs.items() if isinstance(v, bool)}


def gate(
    purpose: str,
    recorded: Mapping[str, bool],
    request: Mapping[str, bool],
    *,
    gpc: bool = False,
    default: bool = True,
) -> ConsentDecision:
    """Whether ``purpose`` may use personal data.

    A refusal anywhere wins: in the request, then on record. Global Privacy Control is a
    binding opt-out of sale/share and targeted advertising (``advertising``), and of
    ``marketing``; it does not by itself refuse first-party personalization.

    Args:
        purpose: one of :data:`PURPOSES`.
        recorded: purpose → granted, as recorded for the person.
        request: purpose → granted, as sent with this request.
        gpc: the request carries ``Sec-GPC: 1``.
        default: the answer when nothing was said (opt-out regions: True; opt-in: False).
    """
    if gpc and purpose in ("advertising", "marketing"):
        return ConsentDecision(False, "global_privacy_control")
    if request.get(purpose) is False:
        return ConsentDecision(False, f"{purpose}_refused_in_request")
    if recorded.get(purpose) is False:
        return ConsentDecision(False, f"{purpose}_refused")
    if request.get(purpose) or recorded.get(purpose):
        return ConsentDecision(True, f"{purpose}_granted")
    return ConsentDecision(default, "default_allow" if default else "no_consent")
