"""A running experiment whose split changed since the last start is reported at start-up."""

from __future__ import annotations

import asyncio

from segue.experiments.assignment import Experiment, Variant
from segue.reporting import check_designs, design_fingerprint
from segue.storage.memory_reports import MemoryReportStore

NOW = 1_767_225_600.0


def hero(holdout: float = 0.1, *weights: float, start: float = NOW - 86400) -> Experiment:
    names = ("personalized", "steady")
    variants = tuple(
        Variant(name=n, weight=w) for n, w in zip(names, weights or (1.0, 1.0), strict=True)
    )
    return Experiment(
        name="hero", placement="home_hero", variants=variants, holdout=holdout, start=start
    )


def test_a_changed_split_of_a_running_experiment_is_reported_once():
    async def starts() -> list[list[str]]:
        store = MemoryReportStore()
        seen = []
        for design in (
            hero(),  # first start: remembered, nothing to compare with
            hero(),
            hero(0.1, 2.0, 2.0),  # the same shares
            hero(0.2),  # holdout changed
            hero(0.2),
            hero(0.2, 3.0, 1.0),  # weights changed
            hero(0.2, 1.0, 3.0, start=NOW + 1),  # not running yet: nobody moves
        ):
            seen.append(await check_designs(store, [design], NOW))
        return seen

    assert asyncio.run(starts()) == [[], [], [], ["hero"], [], ["hero"], []]


def test_the_fingerprint_is_the_split_not_the_rest_of_the_design():
    assert design_fingerprint(hero()) == design_fingerprint(hero(0.1, 5.0, 5.0))
    assert design_fingerprint(hero()) != design_fingerprint(hero(0.1, 1.0, 2.0))
    assert 0 < design_fingerprint(hero()) < 2**62
