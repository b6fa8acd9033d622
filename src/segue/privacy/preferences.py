"""Zero-party data: what a person told the preference centre — interests, channels,
exclusions — and how decide uses it. Pure.

Preferences travel as an ordinary identify event from the source ``preference_center``
(trait ``preferences``), so they get the golden record's lineage (source, event, time, legal
basis ``consent``) and every store's erasure for free. Decide trusts only values whose
lineage names that source: anyone with a write key can send a trait called
``preferences``, but only the preference centre speaks for the person.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from segue.decide.signals import PersonSignals

__all__ = [
    "PREFERENCES_TRAIT",
    "PREFERENCE_SOURCE",
    "Exclusions",
    "Preferences",
    "parse_preferences",
    "with_preferences",
]

PREFERENCES_TRAIT: Final = "preferences"
PREFERENCE_SOURCE: Final = "preference_center"

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Names = Annotated[list[Name], msgspec.Meta(max_length=100)]


class Exclusions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the person never wants to be shown."""

    items: Names = []
    categories: Names = []
    brands: Names = []


class Preferences(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Stated interests (categories), channel opt-ins, exclusions."""

    interests: Names = []
    channels: dict[Name, bool] = {}
    exclusions: Exclusions = Exclusions()


def parse_preferences(value: Any) -> Preferences | None:
    """The preferences in a stored trait value, or None when it does not have their shape."""
    try:
        return msgspec.convert(value, Preferences)
    except (msgspec.ValidationError, TypeError):
        return None


def with_preferences(
    signals: PersonSignals, value: Any, source: str | None = PREFERENCE_SOURCE
) -> PersonSignals:
    """``signals`` with the person's stated preferences applied.

    Stated interests count as the strongest affinity (the person's own word outranks what
    their clicks suggest); exclusions become rules decide never breaks.
    """
    if value is None or source != PREFERENCE_SOURCE:
        return signals
    prefs = parse_preferences(value)
    if prefs is None:
        return signals
    excluded = set(prefs.exclusions.categories)
    categories = {k: v for k, v in signals.categories.items() if k not in excluded}
    for interest in prefs.interests:
        if interest not in excluded:
            categories[interest] = 1.0
    brands = {k: v for k, v in signals.brands.items() if k not in set(prefs.exclusions.brands)}
    return msgspec.structs.replace(
        signals,
        categories=categories,
        brands=brands,
        interests=tuple(i for i in prefs.interests if i not in excluded),
        excluded_items=frozenset(prefs.exclusions.items),
        excluded_categories=frozenset(excluded),
        excluded_brands=frozenset(prefs.exclusions.brands),
    )
