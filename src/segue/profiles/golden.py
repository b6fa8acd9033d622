"""Golden record: every value seen for a trait is kept; a survivorship rule picks the winner.

Rules (configuration, per trait, with a default):

- ``non_empty``: the most recent value that is not null, empty string, list or object;
- ``most_recent``: the most recent value, even an empty one (a deliberate clear wins);
- ``most_frequent``: the value seen most often, ties to the most recent;
- ``first_seen``: the value seen first;
- ``source_priority``: the value from the highest-ranked source that has one (per-trait
  ``sources`` list, else the default ranking), whichever source sent it last; ties to the
  most recent; unranked sources come last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from segue.core.model import Observation, Profile, TraitValue

__all__ = ["MAX_ALTERNATES", "Survivorship"]

#: distinct values kept per trait; beyond it the oldest non-winning ones are dropped
MAX_ALTERNATES = 20
_encode = msgspec.json.Encoder(order="sorted").encode


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


class Survivorship:
    """Chooses golden trait values.

    Args:
        default: rule for traits without their own.
        source_priority: default source ranking, best first.
        traits: trait name → (rule, source ranking or empty for the default).
    """

    def __init__(
        self,
        default: str = "non_empty",
        source_priority: Iterable[str] = (),
        traits: Mapping[str, tuple[str, list[str]]] | None = None,
    ) -> None:
        self.default = default
        self.source_priority = list(source_priority)
        self.traits = dict(traits or {})

    def _rule(self, name: str) -> tuple[str, list[str]]:
        rule, sources = self.traits.get(name, (self.default, []))
        return rule, sources or self.source_priority

    def choose(self, name: str, observations: list[Observation]) -> tuple[Observation, str]:
        """Return the winning observation and the rule that chose it."""
        rule, ranking = self._rule(name)
        if len(observations) == 1:  # most traits of most profiles: every rule picks it
            return observations[0], rule
        pool = observations
        if rule in ("non_empty", "source_priority"):  # a source "has" a value only if non-empty
            pool = [o for o in observations if not _empty(o.value)] or observations
        key: Callable[[Observation], tuple[float, ...]]
        if rule == "most_frequent":
            key = lambda o: (o.count, o.at)  # noqa: E731 - a tiny sort key reads best inline
        elif rule == "first_seen":
            key = lambda o: (-o.first_at, o.at)  # noqa: E731
        elif rule == "source_priority":
            rank = {s: i for i, s in enumerate(ranking)}

            def best(o: Observation) -> int:
                # the best source that ever sent the value: ``o.source`` is only the latest,
                # and a web form echoing the CRM's value must not demote it
                return min(rank.get(s, len(rank)) for s in (o.source, *o.sources))

            key = lambda o: (-best(o), o.at)  # noqa: E731
        else:
            key = lambda o: (o.at,)  # noqa: E731
        return max(pool, key=key), rule

    def observe(
        self,
        profile: Profile,
        name: str,
        value: Any,
        *,
        source: str,
        message_id: str,
        at: float,
        legal_basis: str | None = None,
    ) -> None:
        """Record one sighting of a trait value and re-choose the golden value."""
        observations = profile.alternates.setdefault(name, [])
        marker = _encode(value)
        for o in observations:
            if _encode(o.value) == marker:
                o.count += 1
                o.first_at = min(o.first_at, at)
                if at >= o.at:
                    o.at, o.source, o.message_id, o.legal_basis = (
                        at,
                        source,
                        message_id,
                        legal_basis,
                    )
                if source not in o.sources:
                    o.sources.append(source)
                break
        else:
            observations.append(
                Observation(
                    value=value,
                    source=source,
                    message_id=message_id,
                    first_at=at,
                    at=at,
                    legal_basis=legal_basis,
                    sources=[source],
                )
            )
        self._settle(profile, name)

    def merge(self, survivor: Profile, victim: Profile) -> None:
        """Fold the victim's observations into the survivor's and re-choose every trait."""
        for name, theirs in victim.alternates.items():
            mine = survivor.alternates.setdefault(name, [])
            index = {_encode(o.value): o for o in mine}
            for o in theirs:
                same = index.get(_encode(o.value))
                if same is None:
                    mine.append(
                        Observation(
                            value=o.value,
                            source=o.source,
                            message_id=o.message_id,
                            first_at=o.first_at,
                            at=o.at,
                            count=o.count,
                            legal_basis=o.legal_basis,
                            sources=list(o.sources),
                        )
                    )
                    continue
                same.count += o.count
                same.first_at = min(same.first_at, o.first_at)
                if o.at > same.at:
                    same.at, same.source, same.message_id = o.at, o.source, o.message_id
                    same.legal_basis = o.legal_basis
                same.sources = sorted({*same.sources, *o.sources})
            self._settle(survivor, name)

    def _settle(self, profile: Profile, name: str) -> None:
        observations = profile.alternates[name]
        winner, rule = self.choose(name, observations)
        excess = len(observations) - MAX_ALTERNATES
        if excess > 0:  # one after an observation; after a merge, up to the limit again
            losers = sorted((o for o in observations if o is not winner), key=lambda o: o.at)
            observations[:] = sorted([winner, *losers[excess:]], key=lambda o: o.at)
        profile.traits[name] = TraitValue(
            value=winner.value,
            source=winner.source,
            message_id=winner.message_id,
            at=winner.at,
            legal_basis=winner.legal_basis,
            rule=rule,
        )
