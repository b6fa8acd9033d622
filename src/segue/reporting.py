"""Wiring of experiments and KPI reports (part of the composition root).

``runtime`` builds the report store through the registry and calls :func:`start_reporting`,
which gives decide the configured experiments and the unit of visitors it does not know yet,
builds the reports consumer over the same event log, profile store and decision log as the
rest of the process, and, where this process folds the log, runs the consumer in the
background.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import structlog

from segue.core.model import Decision, Identifier, ReportBatch
from segue.core.ports import ReportStore
from segue.errors import StaleState
from segue.experiments.assignment import Experiment, Experiments, Variant
from segue.metrics.attribution import Attribution
from segue.metrics.consumer import ReportsConsumer
from segue.metrics.reports import KpiReports
from segue.processor.service import profile_id_factory
from segue.settings import Settings, experiment_period

if TYPE_CHECKING:
    from segue.runtime import Runtime

__all__ = ["Reporting", "check_designs", "design_fingerprint", "experiments_of", "start_reporting"]

_log = structlog.get_logger("segue.reporting")
#: the processor counts as folding live traffic this long after a batch that found records
_LIVE_WITHIN_S = 1.0
#: report-store checkpoints named with this prefix hold a running experiment's design
_DESIGN = "experiment-design:"


def experiments_of(settings: Settings) -> list[Experiment]:
    """The configured experiments as assignment knows them."""
    out = []
    for e in settings.experiments:
        start, end = experiment_period(e)
        out.append(
            Experiment(
                name=e.name,
                placement=e.placement,
                variants=tuple(
                    Variant(
                        name=v.name,
                        weight=v.weight,
                        strategy=v.strategy,
                        exploration=v.exploration,
                        model=v.model,
                        parameters=dict(v.parameters),
                    )
                    for v in e.variants
                ),
                holdout=e.holdout,
                start=start,
                end=end,
                attribution_window_s=e.attribution_window_s,
            )
        )
    return out


def design_fingerprint(experiment: Experiment) -> int:
    """What decides the arm a unit's position falls in: the arms in order with their shares
    (so weights 1:1 and 2:2 are one design), as a number in ``[1, 2**62)`` (0 is "none")."""
    arms = [(arm, round(share, 12)) for arm, share in experiment.arms()]
    digest = hashlib.blake2b(msgspec.json.encode(arms), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 2) | 1


async def check_designs(
    store: ReportStore, experiments: Iterable[Experiment], now: float
) -> list[str]:
    """Warn about every running experiment whose split changed since a process last
    started with it, and remember the split it has now; returns their names.

    A changed holdout, weight or order of variants moves units between arms (assignment maps
    a unit's fixed position to cumulative shares), so an arm's numbers before and after mix
    two populations. Nothing stores assignments, so the log line is the only trace. The
    fingerprint is kept as a named checkpoint of the report store: every backend keeps one
    atomically, and a process racing this one with the same news loses the compare-and-set
    harmlessly.
    """
    changed = []
    for experiment in experiments:
        if not experiment.start <= now < experiment.end:
            continue  # not assigning: nobody moves
        name = _DESIGN + experiment.name
        stored = await store.checkpoint(name)
        current = design_fingerprint(experiment)
        if stored == current:
            continue
        if stored:
            changed.append(experiment.name)
            _log.warning(
                "experiment_design_changed",
                experiment=experiment.name,
                placement=experiment.placement,
                arms=experiment.arms(),
                effect="units moved between arms; numbers before and after mix two splits",
            )
        with contextlib.suppress(StaleState):
            await store.commit(ReportBatch(), name, stored, current)
    return changed


class Reporting:
    """The experiments, the reports consumer and the report builder of one process."""

    def __init__(self, runtime: Runtime, store: ReportStore) -> None:
        s = runtime.settings
        secret = runtime.keys.secret.encode()
        self.runtime = runtime
        self.store = store
        self.experiments = Experiments(experiments_of(s), secret)
        #: the profile id an identifier gives the profile it creates: the unit of a visitor
        #: decide does not know yet, and what an erasure must find of their rows
        self.would_be_profile = profile_id_factory(secret)
        r = s.reports
        self.consumer = ReportsConsumer(
            runtime.log,
            store,
            runtime.store,
            self.find_decisions,
            runtime.processor.folder.wanted,
            runtime.clock,
            Attribution(
                {e.name: e.attribution_window_s for e in self.experiments.all},
                session_timeout=r.session_timeout_s,
            ),
            batch_size=r.batch,
        )
        self.reports = KpiReports(
            store,
            self.experiments,
            sorted({*s.placements, *(e.placement for e in self.experiments.all)}),
            budget=r.privacy_budget,
            budgets=r.consumer_budgets,
            budget_delta=r.privacy_budget_delta,
            dp_delta=r.dp_delta,
            bounds=r.contribution_bounds,
            rng=np.random.default_rng(),  # unpredictable: seeded noise could be removed
        )
        self._task: asyncio.Task[None] | None = None

    def visitor_unit(self, user: Mapping[str, str | int]) -> str | None:
        """The profile id a visitor's first event will create, from the ids decide was sent.

        The processor derives it from the event's highest-priority usable identifier (the
        identity rules' order: a user id before an anonymous id), so a visitor sent with
        both is assigned by the user id, as the profile their events create will be. Only
        these two kinds count: others (email, phone) are normalised before they derive one.
        """
        rules = self.runtime.processor.folder.rules
        found = [
            Identifier(kind, text)
            for kind in ("user_id", "anonymous_id")
            if (value := user.get(kind)) is not None
            and not isinstance(value, bool)
            and (text := str(value))
            and rules.usable(text)
        ]
        return self.would_be_profile(min(found, key=rules.sort_key)) if found else None

    async def find_decisions(self, decision_ids: Sequence[str]) -> dict[str, Decision]:
        """Decisions by id: this process's recent ones, else the decision log."""
        recent = self.runtime.engine.recent
        found = {d: decision for d in decision_ids if (decision := recent.get(d)) is not None}
        missing = [d for d in decision_ids if d not in found]
        logged = await asyncio.gather(*(self.runtime.decisions.get_decision(d) for d in missing))
        found.update({d.decision_id: d for d in logged if d is not None})
        return found

    def run(self) -> None:
        """Start the reports consumer in the background (where this process folds)."""
        self._task = asyncio.create_task(self.consumer.run(), name="reports")

    async def forget(
        self, profile_ids: Iterable[str], identifiers: Iterable[Identifier]
    ) -> dict[str, int]:
        """Erase a person's report rows (their profiles' units and the units their
        identifiers would have given them before they had a profile) and their state."""
        people = set(profile_ids)
        return await self.consumer.forget(self.units_of(people, identifiers), people)

    def units_of(self, profile_ids: Iterable[str], identifiers: Iterable[Identifier]) -> set[str]:
        """Every unit a person's decisions and report rows can be under: their profiles'
        ids, and the ids their identifiers would have given a profile (a visitor decide did
        not know yet; :meth:`visitor_unit`)."""
        return set(profile_ids) | {self.would_be_profile(i) for i in identifiers}

    async def aclose(self) -> None:
        self.consumer.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.store.aclose()


async def start_reporting(runtime: Runtime, store: ReportStore, *, run: bool) -> Reporting:
    """Open the report store, give decide its experiments, start the consumer if ``run``."""
    await store.open()
    reporting = Reporting(runtime, store)
    await check_designs(store, reporting.experiments.all, runtime.clock.now())
    runtime.engine.experiments = reporting.experiments
    runtime.engine.visitor_unit = reporting.visitor_unit
    await reporting.consumer.start()
    if run:
        # a standby worker folds nothing: its consumer waits as its processor does
        reporting.consumer.active = lambda: runtime.processor.active
        reporting.consumer.processor_behind = lambda: runtime.processor.behind
        reporting.consumer.processor_live = lambda: (
            runtime.clock.now() - runtime.processor.folded_at < _LIVE_WITHIN_S
        )
        reporting.run()
    _log.info("reporting_ready", experiments=len(reporting.experiments.all), consumer=run)
    return reporting
