"""Consent rates: how many people allow each purpose, per region, from the ledger as it is now.

For operators and DPOs (the dashboard's operations page, ``GET /v1/reports/consent``). A
*person* is a profile: the ledger's subjects (identifiers) are grouped by the profile they
belong to, so someone who consented under an anonymous id and again after logging in counts
once; a subject no profile holds (consent recorded before any event) counts as a person of
its own. Each person's state is their subjects' entries folded exactly as the consent gate
folds them (the newest signal per purpose wins, by ledger ``seq``), and each purpose is
counted four ways:

- ``granted`` / ``refused``: the ledger's newest word on the purpose;
- ``unset``: the ledger says nothing on it, so the region's regime decides;
- ``allowed``: what the gate answers now for a request with no signals of its own (the
  regime's default, GPC and an Art. 22 objection included).

Only people with at least one ledger entry are counted: the ledger knows nobody else. The
whole ledger is read, page by page, in ``seq`` order, keeping one small summary per subject
(not every entry), so the cost is one pass over the ledger plus one identifier lookup per
subject: fine for a dashboard refreshed every few seconds up to a few hundred thousand
subjects, not for a hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from segue.core.model import ConsentRecord, Identifier
from segue.core.ports import ConsentStore, ProfileStore
from segue.privacy.policy import (
    NO_SIGNALS,
    PURPOSES,
    ConsentState,
    PurposeState,
    RegionPolicy,
    evaluate,
)

__all__ = [
    "ConsentRates",
    "PurposeCount",
    "RegionRates",
    "SubjectSummary",
    "consent_rates",
    "tally",
]

_PAGE: Final = 5_000
_LOOKUP_CHUNK: Final = 1_000


class PurposeCount(msgspec.Struct, kw_only=True):
    """People per verdict for one purpose (see the module docstring)."""

    granted: int = 0
    refused: int = 0
    unset: int = 0
    allowed: int = 0


class RegionRates(msgspec.Struct, kw_only=True):
    """The people of one region (their newest stated region, else the default region)."""

    region: str | None
    regime: str
    people: int
    purposes: dict[str, PurposeCount]


class ConsentRates(msgspec.Struct, kw_only=True):
    """Consent per purpose over every person in the ledger, in total and per region."""

    people: int
    subjects: int
    ledger_entries: int
    purposes: dict[str, PurposeCount]
    regions: list[RegionRates]


class SubjectSummary:
    """The newest word of one subject's entries, field by field, each with its ``seq``.

    What :func:`segue.privacy.policy.fold` would keep of them, in a form that merges: the
    summaries of a person's subjects combine field by field, the higher ``seq`` winning.
    """

    __slots__ = ("gpc", "objects", "purposes", "region", "updated_at")

    def __init__(self) -> None:
        self.purposes: dict[str, tuple[int, PurposeState]] = {}
        self.region: tuple[int, str] | None = None
        self.gpc: tuple[int, bool] | None = None
        self.objects: tuple[int, bool] | None = None
        self.updated_at: float | None = None

    def add(self, rec: ConsentRecord) -> None:
        """Fold in one entry (entries may come in any order)."""
        for purpose, granted in rec.purposes.items():
            known = self.purposes.get(purpose)
            if known is None or known[0] < rec.seq:
                self.purposes[purpose] = (rec.seq, PurposeState(granted, rec.at, rec.source))
        if rec.region and (self.region is None or self.region[0] < rec.seq):
            self.region = (rec.seq, rec.region)
        if rec.gpc is not None and (self.gpc is None or self.gpc[0] < rec.seq):
            self.gpc = (rec.seq, rec.gpc)
        if rec.objects_to_automated is not None and (
            self.objects is None or self.objects[0] < rec.seq
        ):
            self.objects = (rec.seq, rec.objects_to_automated)
        self.updated_at = rec.at if self.updated_at is None else max(self.updated_at, rec.at)

    def merge(self, other: SubjectSummary) -> None:
        """Take ``other``'s newer fields (another subject of the same person)."""
        for purpose, (seq, state) in other.purposes.items():
            known = self.purposes.get(purpose)
            if known is None or known[0] < seq:
                self.purposes[purpose] = (seq, state)
        if other.region is not None and (self.region is None or self.region[0] < other.region[0]):
            self.region = other.region
        if other.gpc is not None and (self.gpc is None or self.gpc[0] < other.gpc[0]):
            self.gpc = other.gpc
        if other.objects is not None and (
            self.objects is None or self.objects[0] < other.objects[0]
        ):
            self.objects = other.objects
        if other.updated_at is not None:
            self.updated_at = (
                other.updated_at
                if self.updated_at is None
                else max(self.updated_at, other.updated_at)
            )

    def state(self) -> ConsentState:
        """The consent state, as the gate's fold of the same entries gives it."""
        return ConsentState(
            purposes={p: state for p, (_, state) in self.purposes.items()},
            region=self.region[1] if self.region else None,
            gpc=self.gpc[1] if self.gpc else False,
            objects_to_automated=self.objects[1] if self.objects else False,
            updated_at=self.updated_at,
        )


def tally(
    states: Iterable[ConsentState],
    policy: RegionPolicy,
    *,
    subjects: int = 0,
    ledger_entries: int = 0,
) -> ConsentRates:
    """Count people per purpose and verdict, in total and per region (pure).

    Args:
        states: one consent state per person.
        policy: the region policy the consent gate uses.
        subjects: ledger subjects behind ``states`` (reported as is).
        ledger_entries: ledger entries behind ``states`` (reported as is).

    Returns:
        the rates; regions sorted by people, most first, then by code.
    """
    totals = {p: PurposeCount() for p in PURPOSES}
    regions: dict[str | None, RegionRates] = {}
    people = 0
    for state in states:
        people += 1
        code, regime = policy.regime(state.region)
        region = regions.get(code)
        if region is None:
            region = regions[code] = RegionRates(
                region=code,
                regime=regime,
                people=0,
                purposes={p: PurposeCount() for p in PURPOSES},
            )
        region.people += 1
        for purpose in PURPOSES:
            recorded = state.purposes.get(purpose)
            allowed = evaluate(purpose, state, NO_SIGNALS, policy).allowed
            for count in (totals[purpose], region.purposes[purpose]):
                if recorded is None:
                    count.unset += 1
                elif recorded.granted:
                    count.granted += 1
                else:
                    count.refused += 1
                count.allowed += allowed
    ordered = sorted(regions.values(), key=lambda r: (-r.people, r.region or ""))
    return ConsentRates(
        people=people,
        subjects=subjects,
        ledger_entries=ledger_entries,
        purposes=totals,
        regions=ordered,
    )


async def consent_rates(
    ledger: ConsentStore,
    profiles: ProfileStore,
    policy: RegionPolicy,
    *,
    page: int = _PAGE,
) -> ConsentRates:
    """Read the whole ledger and count people per purpose and region (module docstring).

    Args:
        ledger: the consent ledger.
        profiles: the profile store, to group subjects into people.
        policy: the region policy the consent gate uses.
        page: ledger entries per read.
    """
    summaries: dict[str, SubjectSummary] = {}
    entries = 0
    after = 0
    while True:
        batch = await ledger.scan(after, page)
        for rec in batch:
            summary = summaries.get(rec.subject)
            if summary is None:
                summary = summaries[rec.subject] = SubjectSummary()
            summary.add(rec)
        entries += len(batch)
        if len(batch) < page:
            break
        after = batch[-1].seq
    person_of = await _people(list(summaries), profiles)
    people: dict[str, SubjectSummary] = {}
    for subject, summary in summaries.items():
        key = person_of.get(subject, "subject:" + subject)
        known = people.get(key)
        if known is None:
            people[key] = summary
        else:
            known.merge(summary)
    return tally(
        (s.state() for s in people.values()),
        policy,
        subjects=len(summaries),
        ledger_entries=entries,
    )


async def _people(subjects: Sequence[str], profiles: ProfileStore) -> dict[str, str]:
    """Subject → the profile id holding it (subjects no profile holds are absent)."""
    parsed: dict[Identifier, str] = {}
    for subject in subjects:
        try:
            parsed[Identifier.parse(subject)] = subject
        except ValueError:
            continue  # not an identifier a profile could hold: the subject stands alone
    out: dict[str, str] = {}
    wanted = list(parsed)
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        found = await profiles.lookup(wanted[start : start + _LOOKUP_CHUNK])
        for identifier, profile_id in found.items():
            out[parsed[identifier]] = profile_id
    return out
