"""KPI report numbers: every ReportStore adapter behaves the same."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from segue.core.model import Covariate, ReportBatch, ReportRow
from segue.errors import StaleState
from segue.storage.memory_reports import MemoryReportStore
from segue.storage.sqlite_reports import SqliteReportStore
from tests.contracts.conftest import Sync, _make, _on_server


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def report_store(request, tmp_path) -> Iterator[Sync]:
    if request.param == "postgresql":
        from segue.storage.postgres_reports import PostgresReportStore

        yield from _on_server(PostgresReportStore(request.getfixturevalue("pg_dsn")))
        return
    yield from _make(request.param, MemoryReportStore, SqliteReportStore, tmp_path)


def row(unit, day="2026-01-01", variant="personalized", **numbers) -> ReportRow:
    return ReportRow(
        placement="home_hero", experiment="hero", variant=variant, unit=unit, day=day, **numbers
    )


def test_rows_add_up_and_the_checkpoint_moves_with_them(report_store):
    assert report_store.checkpoint("reports") == 0
    report_store.commit(
        ReportBatch(
            rows=[row("p1", impressions=2, clicks=1, revenue=10.5, sessions=1, bounces=1)],
            people={"p1": b"state-1"},
        ),
        "reports",
        0,
        10,
    )
    report_store.commit(
        ReportBatch(
            rows=[
                row("p1", impressions=1, bounces=-1, time_on_page_s=3.5, time_on_page_sq=12.25),
                row("p2", impressions=1, timed_pages=2),
            ],
            people={"p1": b"state-2", "p2": b"x"},
        ),
        "reports",
        10,
        25,
    )
    assert report_store.checkpoint("reports") == 25
    assert report_store.checkpoint("other") == 0
    assert report_store.people(["p1", "p2", "nobody"]) == {"p1": b"state-2", "p2": b"x"}
    p1, p2 = report_store.units(None, None, "2026-01-01", "2026-01-01", by_day=True)
    assert p1 == row(
        "p1",
        impressions=3,
        clicks=1,
        revenue=10.5,
        sessions=1,
        bounces=0,
        time_on_page_s=3.5,
        time_on_page_sq=12.25,
    )
    assert p2 == row("p2", impressions=1, timed_pages=2)


def test_a_commit_from_a_stale_position_changes_nothing(report_store):
    report_store.commit(ReportBatch(rows=[row("p1", impressions=1)]), "reports", 0, 5)
    with pytest.raises(StaleState):
        report_store.commit(ReportBatch(rows=[row("p1", impressions=1)]), "reports", 0, 9)
    with pytest.raises(StaleState):
        report_store.commit(ReportBatch(people={"p9": b"s"}), "reports", 7, 9)
    assert report_store.checkpoint("reports") == 5
    assert report_store.people(["p9"]) == {}
    (only,) = report_store.units(None, None, "2026-01-01", "2026-01-01", by_day=False)
    assert only.impressions == 1


def test_cells_sum_units_per_day_and_units_sum_over_the_range(report_store):
    report_store.commit(
        ReportBatch(
            rows=[
                row("p1", impressions=2, conversions=1, revenue=5.0),
                row("p2", impressions=1),
                row("p1", day="2026-01-02", impressions=4, revenue=1.0),
                row("p3", day="2026-01-02", variant="holdout", impressions=1),
                row("p1", day="2026-01-05", impressions=100),  # outside the range
                ReportRow(placement="cart", experiment="", variant="", unit="p1", day="2026-01-01"),
            ]
        ),
        "reports",
        0,
        1,
    )
    cells = report_store.cells("home_hero", None, "2026-01-01", "2026-01-02")
    got = [(c.variant, c.day, c.visitors, c.impressions, c.revenue) for c in cells]
    assert got == [
        ("holdout", "2026-01-02", 1, 1, 0.0),
        ("personalized", "2026-01-01", 2, 3, 5.0),
        ("personalized", "2026-01-02", 1, 4, 1.0),
    ]
    assert [c.placement for c in report_store.cells(None, "", "2026-01-01", "2026-01-31")] == [
        "cart"
    ]
    totals = report_store.units("home_hero", "hero", "2026-01-01", "2026-01-02", by_day=False)
    assert [(u.variant, u.unit, u.day, u.impressions, u.revenue) for u in totals] == [
        ("holdout", "p3", "", 1, 0.0),
        ("personalized", "p1", "", 6, 6.0),
        ("personalized", "p2", "", 1, 0.0),
    ]
    by_day = report_store.units("home_hero", "hero", "2026-01-01", "2026-01-31", by_day=True)
    assert [(u.unit, u.day) for u in by_day] == [
        ("p3", "2026-01-02"),
        ("p1", "2026-01-01"),
        ("p1", "2026-01-02"),
        ("p1", "2026-01-05"),
        ("p2", "2026-01-01"),
    ]


def test_a_covariate_is_kept_once(report_store):
    first = Covariate(placement="home_hero", experiment="hero", unit="p1", orders=2, revenue=9.5)
    later = Covariate(placement="home_hero", experiment="hero", unit="p1", orders=7, revenue=1.0)
    other = Covariate(placement="cart", experiment="basket", unit="p1", orders=0, revenue=0.0)
    report_store.commit(ReportBatch(covariates=[first]), "reports", 0, 1)
    report_store.commit(ReportBatch(covariates=[later, other]), "reports", 1, 2)
    assert report_store.covariates("home_hero", "hero") == [first]
    assert report_store.covariates(None, None) == [other, first]


def test_merged_away_people_are_dropped(report_store):
    report_store.commit(ReportBatch(people={"old": b"a", "new": b"b"}), "reports", 0, 1)
    report_store.commit(ReportBatch(people={"new": b"ab"}, drop_people=["old"]), "reports", 1, 2)
    assert report_store.people(["old", "new"]) == {"new": b"ab"}


def test_privacy_budgets_are_charged_up_to_their_limits(report_store):
    assert report_store.spent("dash") == (0.0, 0.0)
    for _ in range(10):  # ten releases of 0.1 fit a budget of 1 despite rounding
        granted, eps, _ = report_store.spend("dash", 0.1, 1e-6, 1.0, 1e-3)
        assert granted
    assert eps == pytest.approx(1.0)
    granted, eps, delta = report_store.spend("dash", 0.1, 1e-6, 1.0, 1e-3)
    assert not granted
    assert eps == pytest.approx(1.0)
    assert delta == pytest.approx(1e-5)
    assert report_store.spent("dash") == pytest.approx((1.0, 1e-5))
    assert report_store.spend("other", 0.5, 0.0, 1.0, 0.0) == (True, 0.5, 0.0)
    # the δ limit binds too
    assert report_store.spend("gauss", 0.1, 1e-4, 1.0, 1e-4)[0]
    assert report_store.spend("gauss", 0.1, 1e-4, 1.0, 1e-4) == pytest.approx((False, 0.1, 1e-4))


def test_erase_forgets_units_and_people(report_store):
    report_store.commit(
        ReportBatch(
            rows=[row("p1", impressions=1), row("p1", day="2026-01-02"), row("p2", clicks=1)],
            covariates=[
                Covariate(placement="home_hero", experiment="hero", unit="p1", orders=1, revenue=1)
            ],
            people={"p1": b"a", "p2": b"b"},
        ),
        "reports",
        0,
        1,
    )
    removed = report_store.erase(["p1", "unknown"], ["p1"])
    assert removed == {"rows": 2, "covariates": 1, "people": 1}
    assert [
        u.unit for u in report_store.units(None, None, "2026-01-01", "2026-12-31", by_day=True)
    ] == ["p2"]
    assert report_store.covariates(None, None) == []
    assert report_store.people(["p1", "p2"]) == {"p2": b"b"}
    assert report_store.erase([], []) == {"rows": 0, "covariates": 0, "people": 0}


def test_of_units_gives_every_row_and_covariate_of_those_units_only(report_store):
    batch = ReportBatch(
        rows=[
            row("p1", impressions=1),
            row("p1", day="2026-01-02", clicks=1),
            row("p1", variant="holdout", day="2026-01-03", impressions=2),
            row("p2", impressions=5),
        ],
        covariates=[
            Covariate(placement="home_hero", experiment="hero", unit="p1", orders=2, revenue=9.0),
            Covariate(placement="home_hero", experiment="hero", unit="p2", orders=1, revenue=1.0),
        ],
    )
    report_store.commit(batch, "reports", 0, 3)
    rows, covariates = report_store.of_units(["p1", "nobody"])
    assert sorted((r.variant, r.day, r.impressions, r.clicks) for r in rows) == [
        ("holdout", "2026-01-03", 2, 0),
        ("personalized", "2026-01-01", 1, 0),
        ("personalized", "2026-01-02", 0, 1),
    ]
    assert {r.unit for r in rows} == {"p1"}
    assert [(c.unit, c.orders, c.revenue) for c in covariates] == [("p1", 2, 9.0)]
    assert report_store.of_units([]) == ([], [])
