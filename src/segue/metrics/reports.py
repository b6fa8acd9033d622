"""The KPI report of ``GET /v1/reports/kpis``: rows, lift, SRM, and private releases.

Exact reports read the report store's sums (per day) and per-unit totals (for the period's
rows, the lift with CUPED and the sample-ratio check). A differentially private release
(``epsilon`` and ``consumer`` given) first charges the consumer's privacy budget — refused
with :class:`~segue.experiments.dp.BudgetExceeded` when it would go over — and then releases
noisy sums over a domain fixed by the configuration (see :mod:`segue.metrics.release`);
every KPI and lift of it is computed from the noisy sums only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Final

import msgspec
import numpy as np

from segue.core.model import REPORT_METRICS, ReportRow
from segue.core.ports import ReportStore
from segue.errors import ConfigError
from segue.experiments.assignment import Experiments
from segue.experiments.dp import Accountant, Budget, BudgetExceeded
from segue.metrics.kpis import (
    SUMS,
    CellKey,
    Sums,
    UnitValues,
    add_unit,
    kpi_row,
    lift_rows,
    srm_rows,
    sums_of_cell,
)
from segue.metrics.release import DEFAULT_BOUNDS, release

__all__ = ["GRANULARITIES", "MECHANISMS", "KpiReports", "ReportQuery"]

GRANULARITIES: Final = ("day", "total")
_BELOW_1: Final = 0.999999
MECHANISMS: Final = ("laplace", "gaussian")


class ReportQuery(msgspec.Struct, frozen=True, kw_only=True):
    """What a report covers (days inclusive, UTC) and how it is released."""

    first_day: date
    last_day: date
    placement: str | None = None
    experiment: str | None = None
    granularity: str = "day"
    epsilon: float | None = None
    consumer: str | None = None
    mechanism: str = "laplace"


class KpiReports:
    """Builds reports from the report store.

    Args:
        store: the report store.
        experiments: the configured experiments (designs for SRM, the private domain).
        placements: the configured placements (rows outside experiments in private
            releases).
        budget: each consumer's ε limit; ``budgets`` overrides it per consumer.
        budget_delta: each consumer's δ limit.
        dp_delta: the δ of one Gaussian release.
        bounds: per-unit contribution bounds, over :data:`DEFAULT_BOUNDS`.
        rng: the noise source; unpredictable in production.

    Raises:
        ConfigError: a bound names no released statistic, or is not positive.
    """

    def __init__(
        self,
        store: ReportStore,
        experiments: Experiments,
        placements: Sequence[str],
        *,
        budget: float,
        budgets: Mapping[str, float] | None = None,
        budget_delta: float,
        dp_delta: float,
        bounds: Mapping[str, float] | None = None,
        rng: np.random.Generator,
    ) -> None:
        unknown = sorted(set(bounds or {}) - set(DEFAULT_BOUNDS))
        if unknown:
            raise ConfigError(
                [f"reports.contribution_bounds: unknown {unknown}; known: {sorted(SUMS)}"]
            )
        self.store = store
        self.experiments = experiments
        self.placements = list(placements)
        self.budget = budget
        self.budgets = dict(budgets or {})
        self.budget_delta = budget_delta
        self.dp_delta = dp_delta
        self.bounds = {**DEFAULT_BOUNDS, **(bounds or {})}
        self.rng = rng

    def limit(self, consumer: str) -> Budget:
        return Budget(epsilon=self.budgets.get(consumer, self.budget), delta=self.budget_delta)

    async def report(self, q: ReportQuery) -> dict[str, Any]:
        """The report, in the shape of ``GET /v1/reports/kpis`` (see docs/experiments.md).

        Raises:
            BudgetExceeded: a private release would take the consumer over its limit.
        """
        if q.epsilon is not None and q.consumer is not None:
            body = await self._private(q, q.epsilon, q.consumer)
        else:
            body = await self._exact(q)
        return {
            "from": q.first_day.isoformat(),
            "to": q.last_day.isoformat(),
            "granularity": q.granularity,
            **body,
        }

    # --- exact ----------------------------------------------------------------------------
    async def _exact(self, q: ReportQuery) -> dict[str, Any]:
        first, last = q.first_day.isoformat(), q.last_day.isoformat()
        units = await self.store.units(q.placement, q.experiment, first, last, by_day=False)
        covariates = {
            (c.placement, c.experiment, c.unit): c
            for c in await self.store.covariates(q.placement, q.experiment)
        }
        totals: dict[CellKey, Sums] = {}
        per_unit: dict[CellKey, UnitValues] = {}
        for row in units:
            key = (row.placement, row.experiment, row.variant)
            add_unit(totals.setdefault(key, {}), row)
            if row.experiment:
                values = per_unit.setdefault(key, UnitValues())
                cov = covariates.get((row.placement, row.experiment, row.unit))
                values.conversions.append(float(row.conversions))
                values.revenue.append(row.revenue)
                values.pre_orders.append(float(cov.orders) if cov else 0.0)
                values.pre_revenue.append(cov.revenue if cov else 0.0)
        if q.granularity == "total":
            rows = [kpi_row(key, None, s) for key, s in sorted(totals.items())]
        else:
            cells = await self.store.cells(q.placement, q.experiment, first, last)
            rows = [
                kpi_row((c.placement, c.experiment, c.variant), c.day, sums_of_cell(c))
                for c in cells
            ]
        return {
            "rows": rows,
            "lift": lift_rows(totals, per_unit),
            "srm": srm_rows(totals, self.experiments),
            "privacy": None,
        }

    # --- differentially private -----------------------------------------------------------
    def domain(self, q: ReportQuery) -> list[CellKey]:
        """The cells a private release covers, from the configuration alone."""
        cells: list[CellKey] = []
        for e in self.experiments.all:
            if q.placement not in (None, e.placement) or q.experiment not in (None, e.name):
                continue
            cells += [(e.placement, e.name, arm) for arm, _ in e.arms()]
        if q.experiment in (None, ""):
            cells += [(p, "", "") for p in self.placements if q.placement in (None, p)]
        return sorted(set(cells))

    async def _charge(self, consumer: str, cost: Budget) -> tuple[float, Budget]:
        limit = self.limit(consumer)
        eps_spent, delta_spent = await self.store.spent(consumer)
        spent = Budget(epsilon=eps_spent, delta=min(delta_spent, _BELOW_1))
        Accountant(limit=limit).charge(spent, cost)  # refuses before anything is released
        granted, eps, delta = await self.store.spend(
            consumer, cost.epsilon, cost.delta, limit.epsilon, limit.delta
        )
        if not granted:  # another release took the rest in the meantime
            raise BudgetExceeded(spent=Budget(epsilon=eps, delta=delta), cost=cost, limit=limit)
        return eps, limit

    async def _private(self, q: ReportQuery, epsilon: float, consumer: str) -> dict[str, Any]:
        delta = self.dp_delta if q.mechanism == "gaussian" else 0.0
        spent, limit = await self._charge(consumer, Budget(epsilon=epsilon, delta=delta))
        first, last = q.first_day.isoformat(), q.last_day.isoformat()
        cells = self.domain(q)
        # a daily table spends half the budget on the period's totals (lift and SRM need
        # them), half on the days
        share = 1.0 if q.granularity == "total" else 0.5
        units = await self.store.units(q.placement, q.experiment, first, last, by_day=False)
        totals = release(
            units,
            [(key, "") for key in cells],
            SUMS,
            self.bounds,
            epsilon=epsilon * share,
            delta=delta * share,
            rng=self.rng,
        )
        by_cell = {key: s for (key, _), s in totals.sums.items()}
        if q.granularity == "total":
            rows = [kpi_row(key, None, s) for key, s in sorted(by_cell.items())]
        else:
            days = _days(q.first_day, q.last_day)
            daily_units: list[ReportRow] = await self.store.units(
                q.placement, q.experiment, first, last, by_day=True
            )
            daily = release(
                daily_units,
                [(key, day) for key in cells for day in days],
                ("visitors", *REPORT_METRICS),
                self.bounds,
                epsilon=epsilon - epsilon * share,
                delta=delta - delta * share,
                rng=self.rng,
            )
            rows = [kpi_row(key, day, s) for (key, day), s in sorted(daily.sums.items())]
        return {
            "rows": rows,
            "lift": lift_rows(by_cell, None),
            "srm": srm_rows(by_cell, self.experiments),
            "privacy": {
                "mechanism": q.mechanism,
                "epsilon": epsilon,
                "delta": delta,
                "consumer": consumer,
                "budget_spent": round(spent, 9),
                "budget_limit": limit.epsilon,
            },
        }


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
