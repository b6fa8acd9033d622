"""A differentially private release of a report's sums: per-unit clipping, then noise.

The released numbers form a table — one cell per (placement, experiment, arm[, day]) and one
column per statistic (visitors, impressions, …, sums of squares). Each column is one release
with the Laplace or Gaussian mechanism of :mod:`segue.experiments.dp`:

- **The domain is fixed in advance** from the configuration (configured experiments and
  their arms, configured placements, the days asked for), never from the data: a cell that
  exists only because somebody was exposed would reveal that somebody. Every cell of the
  domain is released, empty ones too (as noise).
- **What one unit can change is bounded**: a unit's contributions to a column, summed over
  all the cells it appears in, are scaled down to at most the column's bound. So the whole
  column moves by at most the bound (L1, and so L2) when one unit is added or removed, and
  adding noise calibrated to the bound to each cell is one (ε, δ) release of the column.
- **The columns compose**: each gets ``ε / columns`` (and ``δ / columns``); the report costs
  their sum, the ε and δ asked for.

The unit of protection is the assignment unit (a profile). A person who was two units — a
visitor assigned before their profile existed, then by it; two profiles before a merge —
is protected with up to twice the ε.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final, NamedTuple

import numpy as np

from segue.core.model import ReportRow
from segue.experiments.dp import Budget, Gaussian, Laplace, compose
from segue.metrics.kpis import CellKey, Sums

__all__ = ["DEFAULT_BOUNDS", "Noised", "release"]

#: the most one unit adds to each column of a report, summed over the cells it is in
DEFAULT_BOUNDS: Final[Mapping[str, float]] = {
    "visitors": 7.0,
    "impressions": 100.0,
    "clicks": 20.0,
    "add_to_carts": 20.0,
    "conversions": 5.0,
    "revenue": 1000.0,
    "sessions": 20.0,
    "bounces": 20.0,
    "timed_pages": 100.0,
    "time_on_page_s": 3600.0,
    "time_on_page_sq": 1.0e6,
    "conversions_sq": 25.0,
    "revenue_sq": 1.0e6,
}


class Noised(NamedTuple):
    """The released sums per (cell, day), what they cost, and each column's noise."""

    sums: dict[tuple[CellKey, str], Sums]
    cost: Budget
    std: dict[str, float]


def _value(row: ReportRow, column: str) -> float:
    if column == "visitors":
        return 1.0
    if column == "conversions_sq":
        return float(row.conversions) ** 2
    if column == "revenue_sq":
        return float(row.revenue) ** 2
    return max(0.0, float(getattr(row, column)))


def release(
    rows: Iterable[ReportRow],
    domain: Sequence[tuple[CellKey, str]],
    columns: Sequence[str],
    bounds: Mapping[str, float],
    *,
    epsilon: float,
    delta: float,
    rng: np.random.Generator,
) -> Noised:
    """Release ``columns`` of every (cell, day) of ``domain`` with (ε, δ)-DP.

    Args:
        rows: the units' rows (per day, or summed with ``day == ""``); rows outside the
            domain are not released and do not count.
        domain: the (cell, day) pairs to release, fixed without looking at the data.
        columns: the statistics to release.
        bounds: each column's bound on one unit's total contribution.
        epsilon, delta: the whole release's budget (δ = 0: Laplace; else Gaussian).
        rng: an unpredictable generator in production (a seeded one replays the noise).

    Raises:
        ValueError: a column without a bound, or a bad ε or δ.
    """
    wanted = set(domain)
    missing = [c for c in columns if c not in bounds]
    if missing:
        raise ValueError(f"no contribution bound for {missing}")
    kept = [r for r in rows if ((r.placement, r.experiment, r.variant), r.day) in wanted]
    units = sorted({r.unit for r in kept})
    unit_index = {u: i for i, u in enumerate(units)}
    values = np.array([[_value(r, c) for c in columns] for r in kept]).reshape(
        len(kept), len(columns)
    )
    owner = np.array([unit_index[r.unit] for r in kept], dtype=np.intp)
    totals = np.zeros((len(units), len(columns)))
    np.add.at(totals, owner, values)
    limits = np.array([bounds[c] for c in columns])
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(totals > limits, limits / totals, 1.0)
    clipped = values * scale[owner] if len(kept) else values
    cell_index = {key: i for i, key in enumerate(domain)}
    sums = np.zeros((len(domain), len(columns)))
    if len(kept):
        at = np.array([cell_index[((r.placement, r.experiment, r.variant), r.day)] for r in kept])
        np.add.at(sums, at, clipped)
    share_eps, share_delta = epsilon / len(columns), delta / len(columns)
    costs: list[Budget] = []
    std: dict[str, float] = {}
    for j, column in enumerate(columns):
        mechanism: Laplace | Gaussian = (
            Laplace(epsilon=share_eps, sensitivity=bounds[column])
            if delta == 0.0
            else Gaussian(epsilon=share_eps, delta=share_delta, sensitivity=bounds[column])
        )
        costs.append(mechanism.cost)
        std[column] = mechanism.std
        # the mechanism's calibration, drawn for the whole column at once (σ is found by
        # bisection: once per column, not per cell)
        if isinstance(mechanism, Laplace):
            noise = rng.laplace(0.0, mechanism.scale, len(domain))
        else:
            noise = rng.normal(0.0, mechanism.sigma, len(domain))
        # every true value is at least 0: clamping the noisy one is free post-processing
        sums[:, j] = np.maximum(0.0, sums[:, j] + noise)
    out = {
        key: {column: float(sums[i, j]) for j, column in enumerate(columns)}
        for key, i in cell_index.items()
    }
    return Noised(out, compose(costs), std)
