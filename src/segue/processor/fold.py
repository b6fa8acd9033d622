"""Pure fold of events into profiles: deterministic identity stitching and latest-wins traits.

No I/O: the service loads what a batch touches into a :class:`WorkingSet`, folds every event
into it, and commits the resulting :class:`Changeset` atomically with its checkpoint.
Processing the same records from the same state always yields the same changeset, which is
what makes a replay from any offset safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from segue.core.events import Alias, Event, Identify, event_time
from segue.core.model import Changeset, Identifier, LogRecord, Profile, TraitValue

__all__ = ["DEFAULT_LIMITS", "PRIORITY", "WorkingSet", "apply_event", "identifiers_of"]

#: Identifier types in the order that decides which profile an event lands in.
PRIORITY: dict[str, int] = {"user_id": 0, "email": 1, "phone": 2, "anonymous_id": 9}
#: At most this many identifiers of a type per profile (a shared tablet must not merge people).
DEFAULT_LIMITS: dict[str, int] = {"user_id": 1}


class WorkingSet:
    """The slice of state one batch touches, plus the changes made to it so far."""

    def __init__(self, links: dict[Identifier, str], profiles: dict[str, Profile]) -> None:
        self.links = links
        self.profiles = profiles
        self.changes = Changeset(profiles={}, links={}, timeline=[], redirects={})

    def touch(self, profile: Profile) -> None:
        self.changes.profiles[profile.profile_id] = profile

    def link(self, identifier: Identifier, profile_id: str) -> None:
        if identifier not in self.links:
            self.changes.new_identities += 1
        self.links[identifier] = profile_id
        self.changes.links[identifier] = profile_id


def identifiers_of(event: Event) -> list[Identifier]:
    """Identifiers a message carries, highest priority first (alias: both ids)."""
    found: list[Identifier] = []
    uid = event.uid
    if uid is not None:
        found.append(Identifier("user_id", uid))
    aid = event.aid
    if aid is not None:
        found.append(Identifier("anonymous_id", aid))
    return found


def _sort_key(identifier: Identifier) -> tuple[int, str, str]:
    return (PRIORITY.get(identifier.type, 5), identifier.type, identifier.value)


def _fits(identities: list[Identifier], extra: list[Identifier], limits: Mapping[str, int]) -> bool:
    for kind, limit in limits.items():
        have = {i for i in identities if i.type == kind}
        have.update(i for i in extra if i.type == kind)
        if len(have) > limit:
            return False
    return True


def apply_event(
    ws: WorkingSet,
    record: LogRecord,
    event: Event,
    *,
    new_profile_id: Callable[[Identifier], str],
    limits: Mapping[str, int] = DEFAULT_LIMITS,
    extra_ids: list[Identifier] | None = None,
) -> str:
    """Fold one event into the working set and return the id of the profile it landed in.

    Identity: identifiers are taken in priority order; the first one decides the target
    profile (creating it if new), each further identifier either already belongs to the
    target, joins it, or brings its own profile to be merged in — unless that would break a
    per-type limit, in which case that identifier is left out of this event's stitching.
    """
    at = event_time(event, datetime.fromtimestamp(record.received_at, UTC)).timestamp()
    candidates = identifiers_of(event) + list(extra_ids or [])
    if isinstance(event, Alias):
        previous = str(event.previous_id).strip()
        prior = Identifier("user_id", previous)
        if prior not in ws.links:
            prior = Identifier("anonymous_id", previous)
        candidates.append(prior)
    ordered = sorted(dict.fromkeys(candidates), key=_sort_key)
    target = _target(ws, ordered[0], at, new_profile_id)
    for identifier in ordered[1:]:
        owner = ws.links.get(identifier)
        if owner == target.profile_id:
            continue
        if owner is None:
            if _fits(target.identities, [identifier], limits):
                target.identities.append(identifier)
                ws.link(identifier, target.profile_id)
            continue
        other = ws.profiles[owner]
        if _fits(target.identities, other.identities, limits):
            target = _merge(ws, target, other)
    target.event_count += 1
    target.first_seen = min(target.first_seen, at)
    target.last_seen = max(target.last_seen, at)
    target.updated_at = max(target.updated_at, record.received_at)
    if isinstance(event, Identify):
        _merge_traits(target, _traits_of(event), record, at)
    ws.touch(target)
    ws.changes.timeline.append((target.profile_id, record.offset, at))
    return target.profile_id


def _target(
    ws: WorkingSet, first: Identifier, at: float, new_profile_id: Callable[[Identifier], str]
) -> Profile:
    owner = ws.links.get(first)
    if owner is not None:
        return ws.profiles[owner]
    profile_id = new_profile_id(first)
    profile = Profile(
        profile_id=profile_id,
        created_at=at,
        updated_at=at,
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
    return profile


def _merge(ws: WorkingSet, a: Profile, b: Profile) -> Profile:
    survivor, victim = (
        (a, b) if (a.created_at, a.profile_id) <= (b.created_at, b.profile_id) else (b, a)
    )
    for identifier in victim.identities:
        if identifier not in survivor.identities:
            survivor.identities.append(identifier)
        ws.link(identifier, survivor.profile_id)
    for name, value in victim.traits.items():
        mine = survivor.traits.get(name)
        if mine is None or value.at > mine.at:
            survivor.traits[name] = value
    survivor.event_count += victim.event_count
    survivor.first_seen = min(survivor.first_seen, victim.first_seen)
    survivor.last_seen = max(survivor.last_seen, victim.last_seen)
    survivor.created_at = min(survivor.created_at, victim.created_at)
    survivor.updated_at = max(survivor.updated_at, victim.updated_at)
    survivor.merged_from = sorted({*survivor.merged_from, victim.profile_id, *victim.merged_from})
    del ws.profiles[victim.profile_id]
    ws.changes.new_profiles -= 1
    ws.changes.profiles.pop(victim.profile_id, None)
    ws.changes.redirects[victim.profile_id] = survivor.profile_id
    ws.touch(survivor)
    return survivor


def _traits_of(event: Identify) -> dict[str, Any]:
    traits: dict[str, Any] = {}
    context_traits = event.context.get("traits")
    if isinstance(context_traits, dict):
        traits.update(context_traits)
    traits.update(event.traits)
    return traits


def _merge_traits(profile: Profile, traits: dict[str, Any], record: LogRecord, at: float) -> None:
    for name, value in traits.items():
        mine = profile.traits.get(name)
        if mine is None or at >= mine.at:
            profile.traits[name] = TraitValue(
                value=value, source=record.source, message_id=record.message_id, at=at
            )
