"""Region policies and the consent decision for one purpose: pure, cheap, on the hot path.

Consent reaches segue as *signals* — Segment's ``categoryPreferences``, an IAB TCF string, a
US Privacy string, Global Privacy Control, ``PUT /v1/consent`` — and each signal is kept in
the ledger. The person's state is the ledger folded per purpose, the newest signal winning:
a revocation after a grant is the person's current will, and so is a grant after a
revocation. What was never said falls to the region's regime:

- ``opt_in`` (GDPR-style: EU/EEA, UK, Switzerland): nothing but ``necessary`` until granted;
- ``opt_out`` (CCPA-style): allowed until refused; GPC is a binding opt-out of sale/share and
  targeted advertising (``advertising``) and of ``marketing`` wherever it is seen.

A request may carry its own signals (the decide call's ``context.consent``, ``Sec-GPC``).
They are fresher than nothing but are not the ledger: a refusal in a request is honoured for
that request, a grant in a request only counts where the ledger is silent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from segue.core.model import ConsentRecord

__all__ = [
    "PURPOSES",
    "REGIMES",
    "ConsentState",
    "Decision",
    "RegionPolicy",
    "RequestSignals",
    "evaluate",
    "fold",
]

PURPOSES: Final = (
    "necessary",
    "analytics",
    "personalization",
    "marketing",
    "advertising",
    "automated_decisions",
)
REGIMES: Final = ("opt_in", "opt_out")
#: purposes that Global Privacy Control refuses (sale/share, targeted advertising)
GPC_REFUSES: Final = frozenset({"advertising", "marketing"})


class PurposeState(msgspec.Struct, frozen=True):
    """The newest signal about one purpose."""

    granted: bool
    at: float
    source: str


class ConsentState(msgspec.Struct, frozen=True, kw_only=True):
    """A person's consent as the ledger says it now (newest signal per purpose)."""

    purposes: dict[str, PurposeState] = {}
    region: str | None = None
    gpc: bool = False
    objects_to_automated: bool = False
    updated_at: float | None = None


class RequestSignals(msgspec.Struct, frozen=True, kw_only=True):
    """What one request says for itself (not recorded)."""

    purposes: dict[str, bool] = {}
    region: str | None = None
    gpc: bool = False
    objects_to_automated: bool = False


class Decision(msgspec.Struct, frozen=True):
    """May ``purpose`` use this person's data, and why (the reason is shown to callers)."""

    allowed: bool
    reason: str
    region: str | None
    regime: str


EMPTY_STATE: Final = ConsentState()
NO_SIGNALS: Final = RequestSignals()


def fold(records: Iterable[ConsentRecord]) -> ConsentState:
    """The state after ``records`` (any order: the ledger's ``seq`` decides which is newer)."""
    purposes: dict[str, PurposeState] = {}
    region: str | None = None
    gpc = False
    objects = False
    updated: float | None = None
    for rec in sorted(records, key=lambda r: (r.seq, r.at)):
        for purpose, granted in rec.purposes.items():
            purposes[purpose] = PurposeState(granted, rec.at, rec.source)
        if rec.region:
            region = rec.region
        if rec.gpc is not None:
            gpc = rec.gpc
        if rec.objects_to_automated is not None:
            objects = rec.objects_to_automated
        updated = rec.at if updated is None else max(updated, rec.at)
    return ConsentState(
        purposes=purposes, region=region, gpc=gpc, objects_to_automated=objects, updated_at=updated
    )


class RegionPolicy:
    """Maps a region code to its regime.

    Args:
        regions: region name → (regime, ISO codes it covers: ``DE``, ``US-CA``).
        default_region: the region of a person and request that name none.
        default_regime: the regime of a code no region lists.
    """

    def __init__(
        self,
        regions: Mapping[str, tuple[str, Iterable[str]]],
        default_region: str | None = None,
        default_regime: str = "opt_out",
    ) -> None:
        if default_regime not in REGIMES:
            raise ValueError(f"default_regime must be one of {REGIMES}")
        self.default_region = default_region
        self.default_regime = default_regime
        self._regime: dict[str, str] = {}
        for name, (regime, codes) in regions.items():
            if regime not in REGIMES:
                raise ValueError(f"region {name}: regime must be one of {REGIMES}")
            self._regime[name.upper()] = regime
            for code in codes:
                self._regime[code.upper()] = regime

    def regime(self, region: str | None) -> tuple[str | None, str]:
        """``(region, regime)`` for a code; a subdivision falls back to its country."""
        code = (region or self.default_region or "").strip().upper()
        if not code:
            return None, self.default_regime
        found = self._regime.get(code)
        if found is None and "-" in code:
            found = self._regime.get(code.split("-", 1)[0])
        return code, found or self.default_regime


def evaluate(
    purpose: str,
    state: ConsentState,
    request: RequestSignals,
    policy: RegionPolicy,
) -> Decision:
    """Whether ``purpose`` may use the person's data for this request.

    Order: ``necessary`` is always allowed; an objection to automated decisions refuses
    ``personalization`` and ``automated_decisions``; GPC refuses ``advertising`` and
    ``marketing``; a refusal in the request refuses; then the ledger's newest word; then a
    grant in the request; then the regime's default.
    """
    region, regime = policy.regime(request.region or state.region)
    if purpose == "necessary":
        return Decision(True, "necessary", region, regime)
    if (state.objects_to_automated or request.objects_to_automated) and purpose in (
        "personalization",
        "automated_decisions",
    ):
        return Decision(False, "objected_to_automated_decisions", region, regime)
    if (state.gpc or request.gpc) and purpose in GPC_REFUSES:
        return Decision(False, "global_privacy_control", region, regime)
    if request.purposes.get(purpose) is False:
        return Decision(False, f"{purpose}_refused_in_request", region, regime)
    recorded = state.purposes.get(purpose)
    if recorded is not None:
        verdict = "granted" if recorded.granted else "refused"
        return Decision(recorded.granted, f"{purpose}_{verdict}", region, regime)
    if request.purposes.get(purpose):
        return Decision(True, f"{purpose}_granted_in_request", region, regime)
    if regime == "opt_in":
        return Decision(False, "no_consent_opt_in_region", region, regime)
    return Decision(True, "opt_out_region_default", region, regime)
