"""Pure fold of events into profiles: deterministic identity stitching and golden traits.

No I/O: the service loads what a batch touches into a :class:`WorkingSet`, folds every event
into it, and commits the resulting :class:`Changeset` atomically with its checkpoint.
Processing the same records from the same state always yields the same changeset, which is
what makes a replay from any offset — and an unmerge that re-derives profiles — safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from segue.core.events import Alias, Event, Identify, event_time
from segue.core.model import Changeset, Identifier, LogRecord, MergeRecord, Profile
from segue.identity.identifiers import (
    IdentityRules,
    attachable,
    identifiers_of,
    person_traits,
)
from segue.profiles.golden import Survivorship

__all__ = ["MATCH_TRAITS", "MAX_RECORDS", "Folder", "WorkingSet"]

#: Segment reserved traits that probabilistic matching compares
MATCH_TRAITS = (
    "firstName",
    "lastName",
    "first_name",
    "last_name",
    "name",
    "birthday",
    "email",
    "phone",
    "address",
)
#: trait snapshots kept per profile for matching (the oldest go first)
MAX_RECORDS = 10


class WorkingSet:
    """The slice of state one batch touches, plus the changes made to it so far."""

    def __init__(self, links: dict[Identifier, str], profiles: dict[str, Profile]) -> None:
        self.links = links
        self.profiles = profiles
        self.changes = Changeset(profiles={}, links={}, timeline=[], redirects={})
        #: profiles whose traits changed in this batch, with the first offset that did it
        self.traits_changed: dict[str, int] = {}
        #: separations that hold on top of the profiles' own (used by unmerge)
        self.separations: list[tuple[list[Identifier], list[Identifier]]] = []
        #: matchable trait snapshots added in this batch: (profile id then, offset, snapshot)
        self.new_records: list[tuple[str, int, dict[str, Any]]] = []
        #: events without analytics consent, with their time: counted in aggregates only
        self.unattached: list[tuple[Any, float]] = []

    def touch(self, profile: Profile) -> None:
        """The profile's document changed: it is written whole."""
        self.changes.profiles[profile.profile_id] = profile
        self.changes.activity.pop(profile.profile_id, None)

    def count(self, profile: Profile) -> None:
        """Only the profile's activity fields changed (unless its document did already)."""
        if profile.profile_id not in self.changes.profiles:
            self.changes.activity[profile.profile_id] = profile

    def link(self, identifier: Identifier, profile_id: str) -> None:
        if identifier not in self.links:
            self.changes.new_identities += 1
        self.relink(identifier, profile_id)

    def relink(self, identifier: Identifier, profile_id: str) -> None:
        """Point an identifier that some profile already holds at another profile (a merge).

        It was counted when first linked; a batch loads only its events' identifiers, so
        whether it is in ``links`` says nothing about whether it is new.
        """
        self.links[identifier] = profile_id
        self.changes.links[identifier] = profile_id


class Folder:
    """Folds events into a working set under identity rules and survivorship.

    Args:
        rules: identity rules (priority, limits, blocked values, custom identifiers).
        survivorship: golden-record rules.
        new_profile_id: deterministic id for a profile first seen with an identifier.
        legal_basis: source name → legal basis recorded in the lineage of its traits.
    """

    def __init__(
        self,
        rules: IdentityRules,
        survivorship: Survivorship,
        new_profile_id: Callable[[Identifier], str],
        legal_basis: Mapping[str, str] | None = None,
    ) -> None:
        self.rules = rules
        self.survivorship = survivorship
        self.new_profile_id = new_profile_id
        self.legal_basis = dict(legal_basis or {})

    def wanted(self, event: Event, identifiers: list[Identifier] | None = None) -> list[Identifier]:
        """Identifiers to load before folding ``event`` (alias: both readings of previousId);
        ``identifiers``: the event's own, when already worked out."""
        found = identifiers_of(event, self.rules) if identifiers is None else list(identifiers)
        if isinstance(event, Alias) and attachable(event):
            previous = str(event.previous_id).strip()
            found += [Identifier("user_id", previous), Identifier("anonymous_id", previous)]
        return found

    def apply(
        self,
        ws: WorkingSet,
        record: LogRecord,
        event: Event,
        only: set[Identifier] | None = None,
        identifiers: list[Identifier] | None = None,
    ) -> str | None:
        """Fold one event; return the id of the profile it landed in (None: no usable id).

        Identity: identifiers are taken in priority order; the first decides the target
        profile (created if new); each further identifier already belongs to it, joins it,
        or brings its own profile to be merged in — unless that would break a per-type limit
        or a separation, in which case that identifier is left out of this event.
        ``only`` restricts stitching to these identifiers (an unmerge re-derives one
        profile's events and must not claim identifiers that belong to other profiles).
        ``identifiers`` are the event's own (``identifiers_of``: sorted, unique) when the
        caller has them. The event's time lands in the timeline row appended last.
        """
        if not attachable(event):
            return None
        at = event_time(event, datetime.fromtimestamp(record.received_at, UTC)).timestamp()
        # identifiers_of gives them in priority order without duplicates; only an alias's
        # previous id has to be sorted in
        ordered = identifiers_of(event, self.rules) if identifiers is None else identifiers
        if isinstance(event, Alias):
            previous = str(event.previous_id).strip()
            if self.rules.usable(previous):
                prior = Identifier("user_id", previous)
                if prior not in ws.links:
                    prior = Identifier("anonymous_id", previous)
                ordered = sorted(dict.fromkeys([*ordered, prior]), key=self.rules.sort_key)
        if only is not None:
            ordered = [c for c in ordered if c in only]
        if not ordered:
            return None
        target = self._target(ws, ordered, at, record.received_at)
        #: whether the document changed, not only the activity fields (merges touch it)
        changed = False
        for identifier in ordered:
            owner = ws.links.get(identifier)
            if owner == target.profile_id:
                continue
            if owner is None:
                if self.allowed(ws, target.identities, [identifier], target, None):
                    target.identities.append(identifier)
                    ws.link(identifier, target.profile_id)
                    changed = True
                continue
            other = ws.profiles[owner]
            if self.allowed(ws, target.identities, other.identities, target, other):
                target = self.merge(
                    ws,
                    target,
                    other,
                    reason="identifier",
                    via=[ordered[0], identifier],
                    at=at,
                    message_id=record.message_id,
                )
        target.event_count += 1
        target.first_seen = min(target.first_seen, at)
        target.last_seen = max(target.last_seen, at)
        target.updated_at = max(target.updated_at, record.received_at)
        if isinstance(event, Identify):
            traits = person_traits(event)
            if traits:
                basis = self.legal_basis.get(record.source)
                for name, value in traits.items():
                    self.survivorship.observe(
                        target,
                        name,
                        value,
                        source=record.source,
                        message_id=record.message_id,
                        at=at,
                        legal_basis=basis,
                    )
                ws.traits_changed.setdefault(target.profile_id, record.offset)
                changed = True
                snapshot = {k: traits[k] for k in MATCH_TRAITS if traits.get(k) not in (None, "")}
                if len(snapshot) >= 2 and snapshot not in target.records:
                    target.records.append(snapshot)
                    del target.records[:-MAX_RECORDS]
                    ws.new_records.append((target.profile_id, record.offset, snapshot))
        if changed:
            ws.touch(target)
        else:
            ws.count(target)
        ws.changes.timeline.append((target.profile_id, record.offset, at))
        return target.profile_id

    def allowed(
        self,
        ws: WorkingSet,
        mine: Iterable[Identifier],
        theirs: Iterable[Identifier],
        a: Profile,
        b: Profile | None,
    ) -> bool:
        """Whether two identifier sets may live in one profile (limits and separations)."""
        combined = {*mine, *theirs}
        for kind, limit in self.rules.limits.items():
            if sum(1 for i in combined if i.type == kind) > limit:
                return False
        separations = [*ws.separations, *a.separations, *(b.separations if b else [])]
        for left, right in separations:
            if not combined.isdisjoint(left) and not combined.isdisjoint(right):
                return False
        return True

    def _target(
        self, ws: WorkingSet, ordered: list[Identifier], at: float, received_at: float
    ) -> Profile:
        """The profile an event lands in before merging.

        The highest-priority identifier decides. When it is new but a lower one is known,
        the event joins that known profile if the new identifier fits there (anonymous
        visitor logs in); if it does not fit (a second user id on a shared device), the new
        identifier starts a profile of its own.
        """
        first = ordered[0]
        owner = ws.links.get(first)
        if owner is not None:
            return ws.profiles[owner]
        known = next((ws.links[i] for i in ordered[1:] if i in ws.links), None)
        if known is not None:
            profile = ws.profiles[known]
            if self.allowed(ws, profile.identities, [first], profile, None):
                return profile
        profile_id = self.new_profile_id(first)
        profile = Profile(
            profile_id=profile_id,
            created_at=received_at,
            updated_at=received_at,
            first_seen=at,
            last_seen=at,
            event_count=0,
            identities=[first],
            traits={},
            merged_from=[],
        )
        ws.profiles[profile_id] = profile
        ws.changes.new_profiles += 1
        ws.link(first, profile_id)
        ws.touch(profile)
        return profile

    def merge(
        self,
        ws: WorkingSet,
        a: Profile,
        b: Profile,
        *,
        reason: str,
        via: list[Identifier],
        at: float,
        message_id: str | None = None,
        score: float | None = None,
        explanation: list[tuple[str, str, float]] | None = None,
    ) -> Profile:
        """Join two profiles into the older one; the other id redirects to it.

        Profiles born of one request share their server time: the one whose person was
        seen first (event time) is then the older, so the survivor does not depend on how
        the processor happened to batch the request, nor on the ids' random digits.
        """
        older = (a.created_at, a.first_seen, a.profile_id) <= (
            b.created_at,
            b.first_seen,
            b.profile_id,
        )
        survivor, victim = (a, b) if older else (b, a)
        survivor.merges.append(
            MergeRecord(
                at=at,
                profile_id=victim.profile_id,
                identifiers=list(victim.identities),
                reason=reason,
                via=via if older else via[::-1],
                message_id=message_id,
                score=score,
                explanation=explanation,
            )
        )
        survivor.merges.extend(victim.merges)
        for snapshot in victim.records:
            if snapshot not in survivor.records:
                survivor.records.append(snapshot)
        del survivor.records[:-MAX_RECORDS]
        for identifier in victim.identities:
            if identifier not in survivor.identities:
                survivor.identities.append(identifier)
            ws.relink(identifier, survivor.profile_id)
        self.survivorship.merge(survivor, victim)
        survivor.event_count += victim.event_count
        survivor.first_seen = min(survivor.first_seen, victim.first_seen)
        survivor.last_seen = max(survivor.last_seen, victim.last_seen)
        survivor.created_at = min(survivor.created_at, victim.created_at)  # server time
        survivor.updated_at = max(survivor.updated_at, victim.updated_at)
        survivor.merged_from = sorted(
            {*survivor.merged_from, victim.profile_id, *victim.merged_from}
        )
        for separation in victim.separations:
            if separation not in survivor.separations:
                survivor.separations.append(separation)
        del ws.profiles[victim.profile_id]
        ws.changes.new_profiles -= 1
        ws.changes.profiles.pop(victim.profile_id, None)
        ws.changes.activity.pop(victim.profile_id, None)
        ws.changes.redirects[victim.profile_id] = survivor.profile_id
        if victim.profile_id in ws.traits_changed:
            first = ws.traits_changed.pop(victim.profile_id)
            ws.traits_changed[survivor.profile_id] = min(
                first, ws.traits_changed.get(survivor.profile_id, first)
            )
        ws.touch(survivor)
        return survivor
