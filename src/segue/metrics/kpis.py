"""KPI definitions and the report's rows, lift against the holdout and sample-ratio check.

Pure: everything here works on sums already read from the report store.

KPIs of a row (``None`` when the denominator is 0):

- ``ctr`` = clicks / impressions (an impression is a decision shown; a click, a shown
  decision clicked at least once);
- ``conversion_rate`` = conversions / visitors (orders per visitor);
- ``revenue_per_visitor`` = revenue / visitors;
- ``average_order_value`` = revenue / conversions;
- ``bounce_rate`` = bounces / sessions (one-page sessions);
- ``time_on_page_s`` = seconds on timed pages / timed pages.

Lift compares each variant with the holdout of its experiment, over the whole period of the
report: CTR and bounce rate as rates (impressions and sessions as trials), conversion rate
and revenue per visitor as means over units with CUPED on the unit's pre-period orders and
revenue, time on page as a mean over timed pages. Each lift has a 95 % interval, a p-value
and an always-valid sequential p-value (for people who look every day).

Where the stats module answers with a sentinel (``0.0``, ``-1``/``±inf``, p = 1) because
nothing can be estimated, a lift row says ``None`` instead, so that no reader takes a
sentinel for a measured "no difference": everything when an arm has no data (for a rate:
no trials in an arm, or no success in either); the estimate when the holdout's mean is 0
(a ratio to 0); the p-values when an arm has fewer than two units or nothing varies (the
noise is unknown).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from segue.core.model import REPORT_METRICS, ReportCell, ReportRow
from segue.experiments.assignment import HOLDOUT, Experiments
from segue.experiments.stats import (
    Interval,
    cuped_lift,
    mean_lift,
    rate_lift,
    sequential_p_value,
    srm_p_value,
)

__all__ = [
    "LIFT_METRICS",
    "SRM_ALARM",
    "SUMS",
    "CellKey",
    "Sums",
    "UnitValues",
    "add_unit",
    "kpi_row",
    "lift_rows",
    "srm_rows",
    "sums_of_cell",
]

#: what a cell's sums hold: visitors, the row metrics, and sums of squares for lift
SUMS: Final = ("visitors", *REPORT_METRICS, "conversions_sq", "revenue_sq")
LIFT_METRICS: Final = (
    "ctr",
    "conversion_rate",
    "revenue_per_visitor",
    "bounce_rate",
    "time_on_page_s",
)
#: an SRM p-value below this flags the experiment (assignment or logging is broken)
SRM_ALARM: Final = 0.001
#: (placement, experiment, variant); ``""`` outside any experiment
CellKey = tuple[str, str, str]
Sums = dict[str, float]


class UnitValues:
    """One arm's per-unit values for CUPED: (conversions, revenue) and the covariates."""

    __slots__ = ("conversions", "pre_orders", "pre_revenue", "revenue")

    def __init__(self) -> None:
        self.conversions: list[float] = []
        self.revenue: list[float] = []
        self.pre_orders: list[float] = []
        self.pre_revenue: list[float] = []


def add_unit(into: Sums, row: ReportRow) -> None:
    """Add one unit's row to a cell's sums (it is one more visitor)."""
    into["visitors"] = into.get("visitors", 0.0) + 1.0
    for name in REPORT_METRICS:
        into[name] = into.get(name, 0.0) + float(getattr(row, name))
    into["conversions_sq"] = into.get("conversions_sq", 0.0) + float(row.conversions) ** 2
    into["revenue_sq"] = into.get("revenue_sq", 0.0) + float(row.revenue) ** 2


def sums_of_cell(cell: ReportCell) -> Sums:
    """A stored day cell's sums (no sums of squares: day rows carry no lift)."""
    out: Sums = {"visitors": float(cell.visitors)}
    for name in REPORT_METRICS:
        out[name] = float(getattr(cell, name))
    return out


def _ratio(numerator: float, denominator: float, places: int = 6) -> float | None:
    return round(numerator / denominator, places) if denominator > 0 else None


def kpi_row(key: CellKey, day: str | None, s: Mapping[str, float]) -> dict[str, Any]:
    """One row of the report: counts, revenue, sessions and the KPIs they give."""
    placement, experiment, variant = key
    visitors = s.get("visitors", 0.0)
    impressions, clicks = s.get("impressions", 0.0), s.get("clicks", 0.0)
    conversions, revenue = s.get("conversions", 0.0), s.get("revenue", 0.0)
    sessions, bounces = s.get("sessions", 0.0), s.get("bounces", 0.0)
    return {
        "placement": placement,
        "experiment": experiment or None,
        "variant": variant or None,
        "day": day,
        "visitors": round(visitors),
        "impressions": round(impressions),
        "clicks": round(clicks),
        "add_to_carts": round(s.get("add_to_carts", 0.0)),
        "conversions": round(conversions),
        "revenue": round(revenue, 2),
        "sessions": round(sessions),
        "ctr": _ratio(clicks, impressions),
        "conversion_rate": _ratio(conversions, visitors),
        "revenue_per_visitor": _ratio(revenue, visitors, 4),
        "average_order_value": _ratio(revenue, conversions, 4),
        "bounce_rate": _ratio(bounces, sessions),
        "time_on_page_s": _ratio(s.get("time_on_page_s", 0.0), s.get("timed_pages", 0.0), 3),
    }


def _finite(value: float, places: int = 6) -> float | None:
    return round(value, places) if math.isfinite(value) else None


def _count(value: float) -> int:
    return max(0, round(value))


def _lift(
    key: CellKey,
    metric: str,
    interval: Interval,
    sequential: float,
    reduction: float | None = None,
    *,
    estimable: bool = True,
    testable: bool = True,
) -> dict[str, Any]:
    """A lift row; ``estimable`` and ``testable`` false turn the stats module's sentinels
    for an undefined ratio and an unknown noise into ``None``."""
    placement, experiment, variant = key
    return {
        "placement": placement,
        "experiment": experiment,
        "variant": variant,
        "metric": metric,
        "estimate": _finite(interval.estimate) if estimable else None,
        "low": _finite(interval.low) if estimable else None,
        "high": _finite(interval.high) if estimable else None,
        "p_value": _finite(interval.p_value) if testable else None,
        "sequential_p_value": _finite(sequential) if testable else None,
        "cuped": reduction is not None,
        "variance_reduction": None if reduction is None else round(reduction, 6),
    }


def _known(arm_t: tuple[float, float, int], arm_c: tuple[float, float, int]) -> dict[str, bool]:
    """Whether a lift of means has an estimate (the holdout's mean is not 0) and a test (two
    units per arm and some variation), from each arm's (sum, sum of squares, units)."""
    (sum_t, sumsq_t, n_t), (sum_c, sumsq_c, n_c) = arm_t, arm_c
    both = n_t > 0 and n_c > 0
    # the variance as the stats module computes it: 0 there means "noise unknown"
    spread_t = n_t >= 2 and sumsq_t - sum_t * (sum_t / n_t) > 0.0
    spread_c = n_c >= 2 and sumsq_c - sum_c * (sum_c / n_c) > 0.0
    return {
        "estimable": both and sum_c != 0.0,
        "testable": n_t >= 2 and n_c >= 2 and (spread_t or spread_c),
    }


def _mean_parts(
    s: Mapping[str, float], total: str, square: str, count: str
) -> tuple[float, float, int]:
    n = _count(s.get(count, 0.0))
    value = max(0.0, s.get(total, 0.0))
    # noisy sums of squares may fall below what the sum implies: no variance below zero
    sumsq = max(s.get(square, 0.0), value * value / n if n else 0.0)
    return value, sumsq, n


def lift_rows(
    totals: Mapping[CellKey, Mapping[str, float]],
    units: Mapping[CellKey, UnitValues] | None = None,
) -> list[dict[str, Any]]:
    """Lift of every variant over its experiment's holdout, for each of ``LIFT_METRICS``.

    Args:
        totals: each cell's sums over the report's period.
        units: each cell's per-unit values; when given, conversion rate and revenue per
            visitor use CUPED (a differentially private release has no per-unit values).
    """
    out: list[dict[str, Any]] = []
    for key in sorted(totals):
        placement, experiment, variant = key
        control_key = (placement, experiment, HOLDOUT)
        if not experiment or variant == HOLDOUT or control_key not in totals:
            continue
        t, c = totals[key], totals[control_key]
        out.append(_rate(key, "ctr", t, c, "clicks", "impressions"))
        for metric, total, square in (
            ("conversion_rate", "conversions", "conversions_sq"),
            ("revenue_per_visitor", "revenue", "revenue_sq"),
        ):
            arms = (units.get(key), units.get(control_key)) if units is not None else None
            out.append(_per_visitor(key, metric, t, c, total, square, arms))
        out.append(_rate(key, "bounce_rate", t, c, "bounces", "sessions"))
        out.append(_mean(key, "time_on_page_s", t, c, "time_on_page_s", "time_on_page_sq"))
    return out


def _rate(
    key: CellKey,
    metric: str,
    t: Mapping[str, float],
    c: Mapping[str, float],
    success: str,
    trials: str,
) -> dict[str, Any]:
    n_t, n_c = _count(t.get(trials, 0.0)), _count(c.get(trials, 0.0))
    x_t, x_c = min(_count(t.get(success, 0.0)), n_t), min(_count(c.get(success, 0.0)), n_c)
    interval = rate_lift(x_t, n_t, x_c, n_c)
    sequential = sequential_p_value(x_t, x_t, n_t, x_c, x_c, n_c)
    known = n_t > 0 and n_c > 0 and x_t + x_c > 0
    return _lift(key, metric, interval, sequential, estimable=known, testable=known)


def _mean(
    key: CellKey,
    metric: str,
    t: Mapping[str, float],
    c: Mapping[str, float],
    total: str,
    square: str,
    count: str = "timed_pages",
) -> dict[str, Any]:
    arm_t = _mean_parts(t, total, square, count)
    arm_c = _mean_parts(c, total, square, count)
    interval = mean_lift(*arm_t, *arm_c)
    sequential = sequential_p_value(*arm_t, *arm_c)
    return _lift(key, metric, interval, sequential, **_known(arm_t, arm_c))


def _per_visitor(
    key: CellKey,
    metric: str,
    t: Mapping[str, float],
    c: Mapping[str, float],
    total: str,
    square: str,
    arms: tuple[UnitValues | None, UnitValues | None] | None,
) -> dict[str, Any]:
    arm_t = _mean_parts(t, total, square, "visitors")
    arm_c = _mean_parts(c, total, square, "visitors")
    sequential = sequential_p_value(*arm_t, *arm_c)  # CUPED does not enter the mSPRT
    known = _known(arm_t, arm_c)
    ut, uc = arms if arms is not None else (None, None)
    if ut is None or uc is None:
        return _lift(key, metric, mean_lift(*arm_t, *arm_c), sequential, **known)
    if total == "conversions":
        y_t, x_t, y_c, x_c = ut.conversions, ut.pre_orders, uc.conversions, uc.pre_orders
    else:
        y_t, x_t, y_c, x_c = ut.revenue, ut.pre_revenue, uc.revenue, uc.pre_revenue
    interval, reduction = cuped_lift(y_t, x_t, y_c, x_c)
    return _lift(key, metric, interval, sequential, reduction, **known)


def srm_rows(
    totals: Mapping[CellKey, Mapping[str, float]], experiments: Experiments
) -> list[dict[str, Any]]:
    """The sample-ratio check of every configured experiment in ``totals``: visitors per
    arm against the designed shares (``ok`` is false below :data:`SRM_ALARM`)."""
    seen = sorted({(p, e) for p, e, _ in totals if e})
    out: list[dict[str, Any]] = []
    for placement, name in seen:
        design = experiments.named(name)
        if design is None:
            continue  # no longer configured: its design is unknown
        arms = design.arms()
        observed: Sequence[int] = [
            _count(totals.get((placement, name, arm), {}).get("visitors", 0.0)) for arm, _ in arms
        ]
        p_value = srm_p_value(observed, [share for _, share in arms])
        out.append(
            {
                "placement": placement,
                "experiment": name,
                "p_value": _finite(p_value),
                "ok": p_value >= SRM_ALARM,
            }
        )
    return out
