"""The SQL the SQLite and PostgreSQL report stores share, built from ``REPORT_METRICS``.

Both keep one row per (placement, experiment, variant, day, unit) with a column per metric;
only the placeholder (``?`` or ``%s``) and a few types differ, so the statements are built
once per dialect here instead of being kept twice by hand.
"""

from __future__ import annotations

from typing import Any

from segue.core.model import REPORT_METRICS, Covariate, ReportCell, ReportRow

__all__ = ["ReportSql", "cell_of", "fits", "row_of", "where"]

_KEY = ("placement", "experiment", "variant", "unit", "day")
_INTEGER = {"impressions", "clicks", "add_to_carts", "conversions", "sessions", "bounces"}
_INTEGER.add("timed_pages")


class ReportSql:
    """Statements for one dialect.

    Args:
        mark: the driver's placeholder, ``?`` (sqlite3) or ``%s`` (psycopg).
        integer, real: the column types of counts and of sums.
    """

    def __init__(self, mark: str, integer: str, real: str) -> None:
        self.mark = mark
        columns = []
        for name in REPORT_METRICS:
            kind = integer if name in _INTEGER else real
            columns.append(f"    {name} {kind} NOT NULL DEFAULT 0")
        self.rows_table = (
            "CREATE TABLE IF NOT EXISTS report_rows (\n"
            + "".join(f"    {k} TEXT NOT NULL,\n" for k in _KEY)
            + ",\n".join(columns)
            + ",\n    PRIMARY KEY (placement, experiment, variant, day, unit)\n)"
        )
        names = (*_KEY, *REPORT_METRICS)
        marks = ", ".join([mark] * len(names))
        updates = ", ".join(f"{m} = report_rows.{m} + excluded.{m}" for m in REPORT_METRICS)
        self.add_row = (
            f"INSERT INTO report_rows ({', '.join(names)}) VALUES ({marks}) "  # noqa: S608 - fixed names, values bound
            f"ON CONFLICT (placement, experiment, variant, day, unit) DO UPDATE SET {updates}"
        )
        self.add_covariate = (
            "INSERT INTO report_covariates (placement, experiment, unit, orders, revenue) "  # noqa: S608 - fixed names, values bound
            f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) "
            "ON CONFLICT (placement, experiment, unit) DO NOTHING"
        )
        sums = ", ".join(f"SUM({m})" for m in REPORT_METRICS)
        self.cells = (
            f"SELECT placement, experiment, variant, day, COUNT(*), {sums} FROM report_rows "  # noqa: S608 - fixed names, values bound
            "WHERE day >= {mark} AND day <= {mark}{filters} "
            "GROUP BY placement, experiment, variant, day "
            "ORDER BY placement, experiment, variant, day"
        )
        self.units_by_day = (
            f"SELECT {', '.join(names)} FROM report_rows "  # noqa: S608 - fixed names, values bound
            "WHERE day >= {mark} AND day <= {mark}{filters} "
            "ORDER BY placement, experiment, variant, unit, day"
        )
        self.units_total = (
            f"SELECT placement, experiment, variant, unit, '', {sums} FROM report_rows "  # noqa: S608 - fixed names, values bound
            "WHERE day >= {mark} AND day <= {mark}{filters} "
            "GROUP BY placement, experiment, variant, unit "
            "ORDER BY placement, experiment, variant, unit"
        )
        # ``marks``: the units, as placeholders (SQLite) or a subquery (PostgreSQL)
        self.of_units = (
            f"SELECT {', '.join(names)} FROM report_rows "  # noqa: S608 - fixed names, values bound
            "WHERE unit IN ({marks}) ORDER BY placement, experiment, variant, unit, day"
        )
        self.covariates_of_units = (
            "SELECT placement, experiment, unit, orders, revenue FROM report_covariates "
            "WHERE unit IN ({marks}) ORDER BY placement, experiment, unit"
        )
        self.covariates = (
            "SELECT placement, experiment, unit, orders, revenue FROM report_covariates "
            "WHERE 1 = 1{filters} ORDER BY placement, experiment, unit"
        )

    def add_row_params(self, row: ReportRow) -> tuple[Any, ...]:
        return (
            row.placement,
            row.experiment,
            row.variant,
            row.unit,
            row.day,
            *(getattr(row, m) for m in REPORT_METRICS),
        )

    def add_covariate_params(self, cov: Covariate) -> tuple[Any, ...]:
        return (cov.placement, cov.experiment, cov.unit, cov.orders, cov.revenue)


def where(mark: str, placement: str | None, experiment: str | None) -> tuple[str, list[str]]:
    """The ``AND …`` filters of a report query and their parameters."""
    sql, params = "", []
    if placement is not None:
        sql += f" AND placement = {mark}"
        params.append(placement)
    if experiment is not None:
        sql += f" AND experiment = {mark}"
        params.append(experiment)
    return sql, params


def _metrics(values: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in zip(REPORT_METRICS, values, strict=True):
        out[name] = int(value or 0) if name in _INTEGER else float(value or 0.0)
    return out


def row_of(values: tuple[Any, ...]) -> ReportRow:
    """A result row of ``units_*`` as a :class:`ReportRow`."""
    placement, experiment, variant, unit, day = values[:5]
    return ReportRow(
        placement=placement,
        experiment=experiment,
        variant=variant,
        unit=unit,
        day=day,
        **_metrics(values[5:]),
    )


def cell_of(values: tuple[Any, ...]) -> ReportCell:
    """A result row of ``cells`` as a :class:`ReportCell`."""
    placement, experiment, variant, day, visitors = values[:5]
    return ReportCell(
        placement=placement,
        experiment=experiment,
        variant=variant,
        day=day,
        visitors=int(visitors),
        **_metrics(values[5:]),
    )


def fits(epsilon: float, max_epsilon: float, delta: float, max_delta: float) -> bool:
    """Whether a budget total stays within its limits, with a relative slack for rounding
    (three releases of ε = 0.1 fit a budget of 0.3), as ``experiments.dp`` compares them."""
    slack = 1.0 + 1e-9
    return epsilon <= max_epsilon * slack and delta <= max_delta * slack
