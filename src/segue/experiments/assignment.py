"""Which variant of a placement's experiment a unit gets: a keyed hash, no state.

Pure and deterministic: the same (experiment, unit) always lands in the same bucket, in every
process and after every restart, with nothing stored. The hash is keyed with the
installation's secret, so nobody outside can pick a unit that lands in a chosen variant, and
salted with the experiment's name, so two experiments split the same people independently.

The **unit** is the person's profile id when decide knows the person. Profile ids are stable
(a merged-away id redirects to its survivor), so after two profiles merge every decision
uses the survivor's id: the survivor's assignment wins, and the merged-away profile's earlier
exposures stay counted under its own unit. A visitor decide does not know yet is assigned
by the profile id their first event will create, derived from its highest-priority
identifier, the user id before the anonymous id (``Reporting.visitor_unit``, see
:func:`segue.processor.service.profile_id_factory`), so the assignment carries over when
that event creates the profile.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

import msgspec

__all__ = ["HOLDOUT", "Assignment", "Experiment", "Experiments", "Variant", "bucket"]

#: the name of every experiment's holdout arm (no variant may use it)
HOLDOUT: Final = "holdout"
_SCALE: Final = float(2**64)


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    """One arm: its weight and what it changes in the placement (None: unchanged)."""

    name: str
    weight: float = 1.0
    strategy: str | None = None
    exploration: bool | None = None
    model: str | None = None
    parameters: Mapping[str, Any] = {}


class Experiment(msgspec.Struct, frozen=True, kw_only=True):
    """A split of one placement's traffic; ``[start, end)`` in epoch seconds."""

    name: str
    placement: str
    variants: tuple[Variant, ...]
    holdout: float = 0.1
    start: float = float("-inf")
    end: float = float("inf")
    attribution_window_s: float = 86400.0

    def arms(self) -> list[tuple[str, float]]:
        """(arm, share of units) for every arm, holdout first; the shares sum to 1."""
        total = sum(v.weight for v in self.variants)
        rest = 1.0 - self.holdout
        return [(HOLDOUT, self.holdout)] + [
            (v.name, rest * v.weight / total) for v in self.variants
        ]


class Assignment(NamedTuple):
    """The arm a unit is in; ``variant`` is None for the holdout."""

    experiment: Experiment
    arm: str
    variant: Variant | None

    @property
    def holdout(self) -> bool:
        return self.variant is None


def bucket(key: bytes, experiment: str, unit: str) -> float:
    """The unit's position in ``[0, 1)`` for this experiment: uniform, stable, keyed.

    HMAC-BLAKE2b over ``experiment NUL unit``; the first 8 bytes as a fraction of 2**64.
    """
    message = experiment.encode() + b"\x00" + unit.encode()
    digest = hmac.new(key, message, hashlib.blake2b).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def choose(experiment: Experiment, position: float) -> Assignment:
    """The arm at ``position`` in ``[0, 1)``: the holdout takes the first ``holdout`` of
    the interval, the variants the rest in order, each in proportion to its weight.

    A unit's position never changes, but these boundaries do when the holdout, a weight or
    the variants' order does, and the units near them change arm: a process warns at
    start-up when a running experiment's split changed (:func:`segue.reporting.
    check_designs`).
    """
    if position < experiment.holdout:
        return Assignment(experiment, HOLDOUT, None)
    total = sum(v.weight for v in experiment.variants)
    scaled = (position - experiment.holdout) / (1.0 - experiment.holdout) * total
    edge = 0.0
    for variant in experiment.variants:
        edge += variant.weight
        if scaled < edge:
            return Assignment(experiment, variant.name, variant)
    last = experiment.variants[-1]  # float rounding at the very top of the interval
    return Assignment(experiment, last.name, last)


class Experiments:
    """The configured experiments, found by placement.

    Args:
        experiments: at most one running per placement at any time (settings check this).
        key: the installation's secret; assignments change if it does.
    """

    def __init__(self, experiments: Iterable[Experiment], key: bytes) -> None:
        self._key = key
        self._by_placement: dict[str, list[Experiment]] = {}
        for experiment in experiments:
            self._by_placement.setdefault(experiment.placement, []).append(experiment)
        self.all: list[Experiment] = [e for es in self._by_placement.values() for e in es]

    def __bool__(self) -> bool:
        return bool(self._by_placement)

    def running(self, placement: str, now: float) -> Experiment | None:
        """The placement's experiment that assigns at ``now``, if any."""
        for experiment in self._by_placement.get(placement, ()):
            if experiment.start <= now < experiment.end:
                return experiment
        return None

    def named(self, name: str) -> Experiment | None:
        return next((e for e in self.all if e.name == name), None)

    def assign(self, placement: str, unit: str, now: float) -> Assignment | None:
        """The unit's arm in the placement's running experiment (None: no experiment)."""
        experiment = self.running(placement, now)
        if experiment is None:
            return None
        return choose(experiment, bucket(self._key, experiment.name, unit))
