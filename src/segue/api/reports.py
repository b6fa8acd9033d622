"""``GET /v1/reports/kpis`` (admin key): KPIs per placement, experiment and variant.

Query: ``placement``, ``experiment`` (filters), ``from`` and ``to`` (UTC dates, inclusive;
default the last 30 days), ``granularity=day|total``, ``format=json|csv``, and for a
differentially private release ``epsilon`` with ``consumer`` (and ``mechanism=laplace|
gaussian``). A release past the consumer's privacy budget is refused with 403
``privacy_budget_exceeded``; nothing is released and nothing charged. The JSON shape is in
docs/experiments.md; the CSV has the same rows, one line each.
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec

from segue.api.http import Request, Response, Route, json_response
from segue.errors import InvalidInput
from segue.metrics.reports import GRANULARITIES, MECHANISMS, ReportQuery

if TYPE_CHECKING:
    from segue.api.app import SegueApp

__all__ = ["KpiReport", "routes"]

#: the longest period one report covers, in days
MAX_DAYS: Final = 366
DEFAULT_DAYS: Final = 30
#: the ε a private release may ask for: below, the noise is astronomically large; above,
#: there is no privacy left to speak of
MIN_EPSILON: Final = 1e-4
MAX_EPSILON: Final = 100.0
_CONSUMER = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")


class KpiRow(msgspec.Struct, kw_only=True):
    """One placement/experiment/variant (and day): counts and KPIs (null: no denominator)."""

    placement: str
    experiment: str | None
    variant: str | None
    day: str | None
    visitors: int
    impressions: int
    clicks: int
    add_to_carts: int
    conversions: int
    revenue: float
    sessions: int
    ctr: float | None
    conversion_rate: float | None
    revenue_per_visitor: float | None
    average_order_value: float | None
    bounce_rate: float | None
    time_on_page_s: float | None


class LiftRow(msgspec.Struct, kw_only=True):
    """A variant's relative lift over the holdout in one metric (null: not estimable)."""

    placement: str
    experiment: str
    variant: str
    metric: str
    estimate: float | None
    low: float | None
    high: float | None
    p_value: float | None
    sequential_p_value: float | None
    cuped: bool
    variance_reduction: float | None


class SrmRow(msgspec.Struct, kw_only=True):
    """The sample-ratio check of an experiment: ``ok`` is false when p < 0.001."""

    placement: str
    experiment: str
    p_value: float | None
    ok: bool


class PrivacyOut(msgspec.Struct, kw_only=True):
    """How a private release was made and what its consumer has spent of its budget."""

    mechanism: str
    epsilon: float
    delta: float
    consumer: str
    budget_spent: float
    budget_limit: float


class KpiReport(msgspec.Struct, kw_only=True, rename={"first": "from", "last": "to"}):
    """The report: its period, rows, lift against the holdout, SRM, and privacy."""

    first: str
    last: str
    granularity: str
    rows: list[KpiRow]
    lift: list[LiftRow]
    srm: list[SrmRow]
    privacy: PrivacyOut | None


_CSV_COLUMNS: Final = tuple(KpiRow.__struct_fields__)


def _day(request: Request, name: str) -> date | None:
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a date, YYYY-MM-DD", field=name) from None


def _choice(request: Request, name: str, choices: tuple[str, ...], default: str) -> str:
    value = request.query.get(name, "").strip() or default
    if value not in choices:
        raise InvalidInput(f"{name} must be {' or '.join(choices)}", field=name)
    return value


def parse_query(request: Request, today: date) -> tuple[ReportQuery, str]:
    """The report asked for and its format.

    Raises:
        InvalidInput: a parameter is malformed, or they contradict each other.
    """
    last = _day(request, "to") or today
    first = _day(request, "from") or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidInput("from must not be after to", field="from")
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidInput(f"a report covers at most {MAX_DAYS} days", field="from")
    raw_epsilon = request.query.get("epsilon", "").strip()
    consumer = request.query.get("consumer", "").strip() or None
    epsilon: float | None = None
    if raw_epsilon:
        try:
            epsilon = float(raw_epsilon)
        except ValueError:
            raise InvalidInput("epsilon must be a number", field="epsilon") from None
        if not (math.isfinite(epsilon) and MIN_EPSILON <= epsilon <= MAX_EPSILON):
            raise InvalidInput(
                f"epsilon must be between {MIN_EPSILON:g} and {MAX_EPSILON:g}", field="epsilon"
            )
        if consumer is None:
            raise InvalidInput(
                "a private release needs consumer: whose privacy budget it is charged to",
                field="consumer",
            )
    elif consumer is not None:
        raise InvalidInput("consumer is only used with epsilon", field="consumer")
    if consumer is not None and not _CONSUMER.match(consumer):
        raise InvalidInput("consumer must be 1–64 letters, digits or . _ : @ -", field="consumer")
    mechanism = _choice(request, "mechanism", MECHANISMS, "laplace")
    if "mechanism" in request.query and epsilon is None:
        raise InvalidInput("mechanism is only used with epsilon", field="mechanism")
    query = ReportQuery(
        first_day=first,
        last_day=last,
        placement=request.query.get("placement", "").strip() or None,
        experiment=request.query.get("experiment", "").strip() or None,
        granularity=_choice(request, "granularity", GRANULARITIES, "day"),
        epsilon=epsilon,
        consumer=consumer,
        mechanism=mechanism,
    )
    return query, _choice(request, "format", ("json", "csv"), "json")


def to_csv(report: dict[str, Any]) -> bytes:
    """The report's rows as CSV with a header line (lift and SRM stay in the JSON)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_CSV_COLUMNS)
    for row in report["rows"]:
        writer.writerow(["" if row[c] is None else row[c] for c in _CSV_COLUMNS])
    return out.getvalue().encode()


def routes(app: SegueApp) -> list[Route]:
    """The KPI report route of ``app``."""

    async def kpis(request: Request) -> Response:
        now = datetime.fromtimestamp(app.runtime.clock.now(), UTC)
        query, fmt = parse_query(request, now.date())
        report = await app.runtime.reporting.reports.report(query)
        if fmt == "json":
            return json_response(report)
        name = f"kpis-{report['from']}-{report['to']}.csv"
        disposition = f'attachment; filename="{name}"'.encode()
        return Response(
            200,
            to_csv(report),
            "text/csv; charset=utf-8",
            [(b"content-disposition", disposition)],
        )

    return [
        Route(
            method="GET",
            path="/v1/reports/kpis",
            handler=kpis,
            tag="reports",
            auth="admin",
            response=KpiReport,
            errors=(400, 401, 403),
            summary="KPIs per placement, experiment and variant, lift vs holdout, CSV export",
            query={
                "placement": "only this placement",
                "experiment": "only this experiment",
                "from": "first day, YYYY-MM-DD (UTC; default: 29 days before to)",
                "to": "last day, YYYY-MM-DD (UTC; default: today)",
                "granularity": "day (default) or total",
                "format": "json (default) or csv (text/csv, one line per row)",
                "epsilon": "a differentially private release with this ε (needs consumer)",
                "consumer": "whose privacy budget a private release is charged to",
                "mechanism": "laplace (default) or gaussian (δ from reports.dp_delta)",
            },
        )
    ]
