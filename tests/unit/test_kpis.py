"""KPI rows, lift against the holdout, SRM, and the differentially private release."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segue.core.model import ReportRow
from segue.experiments.assignment import Experiment, Experiments, Variant
from segue.metrics.kpis import SUMS, UnitValues, add_unit, kpi_row, lift_rows, srm_rows
from segue.metrics.release import DEFAULT_BOUNDS, release

KEY = ("home_hero", "hero", "personalized")
HELD = ("home_hero", "hero", "holdout")


def unit(unit_id: str, variant: str = "personalized", day: str = "", **numbers) -> ReportRow:
    return ReportRow(
        placement="home_hero",
        experiment="hero",
        variant=variant,
        unit=unit_id,
        day=day,
        **numbers,
    )


def test_a_row_has_its_counts_and_kpis():
    sums: dict[str, float] = {}
    add_unit(sums, unit("a", impressions=4, clicks=1, conversions=1, revenue=30.0, sessions=2))
    add_unit(sums, unit("b", impressions=6, clicks=2, bounces=1, sessions=1, timed_pages=2))
    sums["time_on_page_s"] = 50.0
    row = kpi_row(KEY, "2026-01-01", sums)
    assert row == {
        "placement": "home_hero",
        "experiment": "hero",
        "variant": "personalized",
        "day": "2026-01-01",
        "visitors": 2,
        "impressions": 10,
        "clicks": 3,
        "add_to_carts": 0,
        "conversions": 1,
        "revenue": 30.0,
        "sessions": 3,
        "ctr": 0.3,
        "conversion_rate": 0.5,
        "revenue_per_visitor": 15.0,
        "average_order_value": 30.0,
        "bounce_rate": round(1 / 3, 6),
        "time_on_page_s": 25.0,
    }
    assert sums["revenue_sq"] == 900.0
    empty = kpi_row(("cart", "", ""), None, {})
    assert (empty["experiment"], empty["variant"], empty["ctr"], empty["bounce_rate"]) == (
        None,
        None,
        None,
        None,
    )


def arms(rng: np.random.Generator, n: int, effect: float):
    """Per-unit rows of a treatment and a control, revenue tied to a pre-period covariate."""
    totals = {KEY: {}, HELD: {}}
    values = {KEY: UnitValues(), HELD: UnitValues()}
    for key, lift in ((KEY, effect), (HELD, 0.0)):
        for i in range(n):
            pre = float(rng.gamma(2.0, 10.0))
            revenue = max(0.0, pre * (1 + lift) + float(rng.normal(0, 5)))
            row = unit(
                f"{key[2]}{i}",
                key[2],
                impressions=10,
                clicks=int(rng.random() < 0.1 * (1 + lift)),
                conversions=int(revenue > 20),
                revenue=revenue,
                sessions=1,
                bounces=int(rng.random() < 0.4),
                timed_pages=1,
                time_on_page_s=30.0,
                time_on_page_sq=900.0,
            )
            add_unit(totals[key], row)
            v = values[key]
            v.conversions.append(float(row.conversions))
            v.revenue.append(row.revenue)
            v.pre_orders.append(float(pre > 20))
            v.pre_revenue.append(pre)
    return totals, values


def test_lift_of_each_variant_against_the_holdout_with_cuped():
    totals, values = arms(np.random.default_rng(7), 800, effect=0.2)
    lift = {r["metric"]: r for r in lift_rows(totals, values)}
    assert set(lift) == {
        "ctr",
        "conversion_rate",
        "revenue_per_visitor",
        "bounce_rate",
        "time_on_page_s",
    }
    rpv = lift["revenue_per_visitor"]
    assert rpv["cuped"] is True
    assert rpv["variance_reduction"] > 0.5  # revenue follows the pre-period closely
    assert rpv["low"] < 0.2 < rpv["high"]
    assert rpv["p_value"] < 0.001
    assert 0 <= rpv["sequential_p_value"] < 0.05
    assert lift["ctr"]["cuped"] is False
    assert lift["ctr"]["variance_reduction"] is None
    # time on page is the same in both arms: no variance, no estimate of an interval
    assert lift["time_on_page_s"]["estimate"] == 0.0
    plain = {r["metric"]: r for r in lift_rows(totals, None)}["revenue_per_visitor"]
    assert plain["cuped"] is False
    assert plain["high"] - plain["low"] > rpv["high"] - rpv["low"]  # CUPED narrows it


def test_no_lift_without_a_holdout_and_none_for_the_holdout_itself():
    totals, _ = arms(np.random.default_rng(1), 50, effect=0.0)
    assert lift_rows({KEY: totals[KEY]}) == []
    assert {r["variant"] for r in lift_rows(totals)} == {"personalized"}
    assert lift_rows({("cart", "", ""): totals[KEY]}) == []


def test_srm_flags_a_split_far_from_its_design():
    design = Experiments(
        [
            Experiment(
                name="hero",
                placement="home_hero",
                variants=(Variant(name="personalized"),),
                holdout=0.5,
            )
        ],
        b"k",
    )
    fine = srm_rows({KEY: {"visitors": 1010.0}, HELD: {"visitors": 990.0}}, design)
    assert fine == [
        {"placement": "home_hero", "experiment": "hero", "p_value": fine[0]["p_value"], "ok": True}
    ]
    broken = srm_rows({KEY: {"visitors": 1200.0}, HELD: {"visitors": 800.0}}, design)
    assert broken[0]["ok"] is False
    assert broken[0]["p_value"] < 0.001
    gone = Experiments([], b"k")
    assert srm_rows({KEY: {"visitors": 5.0}}, gone) == []  # no design, no check


def test_a_private_release_covers_its_domain_bounds_each_unit_and_costs_what_was_asked():
    rows = [
        unit("whale", impressions=10_000, revenue=1e7, conversions=50),
        unit("a", impressions=3, revenue=20.0, conversions=1),
        unit("old", variant="gone", impressions=5),  # outside the domain
    ]
    domain = [(KEY, ""), (HELD, ""), (("cart", "", ""), "")]
    exact = release(
        rows, domain, SUMS, DEFAULT_BOUNDS, epsilon=1e9, delta=0.0, rng=np.random.default_rng(1)
    )
    assert set(exact.sums) == set(domain)  # empty cells too
    cell = exact.sums[(KEY, "")]
    # with a huge ε the noise vanishes and the clipping shows: the whale adds at most the bound
    assert cell["impressions"] == pytest.approx(DEFAULT_BOUNDS["impressions"] + 3, abs=1e-3)
    assert cell["revenue"] == pytest.approx(DEFAULT_BOUNDS["revenue"] + 20, abs=1e-3)
    assert cell["conversions"] == pytest.approx(DEFAULT_BOUNDS["conversions"] + 1, abs=1e-3)
    assert cell["visitors"] == pytest.approx(2, abs=1e-3)
    assert exact.sums[(HELD, "")]["impressions"] == pytest.approx(0, abs=1e-3)
    assert exact.cost.epsilon == pytest.approx(1e9)
    assert exact.cost.delta == 0.0
    gaussian = release(
        rows, domain, SUMS, DEFAULT_BOUNDS, epsilon=2.0, delta=1e-6, rng=np.random.default_rng(2)
    )
    assert gaussian.cost.epsilon == pytest.approx(2.0)
    assert gaussian.cost.delta == pytest.approx(1e-6)
    assert all(v >= 0 for s in gaussian.sums.values() for v in s.values())


def test_a_units_clipping_spans_every_cell_it_is_in():
    days = [unit("u", day=f"2026-01-0{d}", impressions=80) for d in (1, 2, 3)]
    domain = [(KEY, f"2026-01-0{d}") for d in (1, 2, 3)]
    out = release(
        days, domain, ("impressions",), {"impressions": 60.0},
        epsilon=1e9, delta=0.0, rng=np.random.default_rng(3),
    )  # fmt: skip
    assert sum(s["impressions"] for s in out.sums.values()) == pytest.approx(60.0, abs=1e-3)


def test_the_noise_has_the_scale_its_epsilon_and_bound_ask_for():
    domain = [(KEY, f"d{i}") for i in range(20_000)]
    out = release(
        [], domain, ("clicks", "revenue"), {"clicks": 4.0, "revenue": 100.0},
        epsilon=2.0, delta=0.0, rng=np.random.default_rng(4),
    )  # fmt: skip
    # each column gets ε/2 = 1: Laplace scale b = bound / 1; clamped at 0, so E = b/2
    clicks = np.array([s["clicks"] for s in out.sums.values()])
    assert clicks.mean() == pytest.approx(4.0 / 2, rel=0.05)
    assert out.std["revenue"] == pytest.approx(math.sqrt(2) * 100.0)
    with pytest.raises(ValueError, match="no contribution bound"):
        release(
            [], domain[:1], ("clicks",), {}, epsilon=1.0, delta=0.0, rng=np.random.default_rng()
        )


@pytest.mark.parametrize("cuped", [False, True])
def test_a_lift_that_cannot_be_estimated_is_null_not_a_sentinel(cuped):
    totals, values = arms(np.random.default_rng(3), 50, effect=0.0)
    totals[HELD] = {}  # the holdout has no data yet
    values[HELD] = UnitValues()
    nothing = dict.fromkeys(("estimate", "low", "high", "p_value", "sequential_p_value"))
    for row in lift_rows(totals, values if cuped else None):
        assert {k: row[k] for k in nothing} == nothing, row["metric"]


def test_a_ratio_to_a_holdout_mean_of_zero_has_no_estimate_but_a_test():
    totals, _ = arms(np.random.default_rng(4), 50, effect=0.0)
    held: dict[str, float] = {}
    for i in range(50):  # visitors who bought nothing and spent no time on timed pages
        add_unit(held, unit(f"h{i}", "holdout", impressions=10, clicks=1, timed_pages=1))
    totals[HELD] = held
    lift = {r["metric"]: r for r in lift_rows(totals)}
    for metric in ("conversion_rate", "revenue_per_visitor", "time_on_page_s"):
        assert (lift[metric]["estimate"], lift[metric]["low"], lift[metric]["high"]) == (
            None,
            None,
            None,
        )
    for metric in ("conversion_rate", "revenue_per_visitor"):
        assert lift[metric]["p_value"] < 0.001  # the treatment's mean is clearly not 0
    # 30 s on every timed page against 0 s: nothing varies, so there is nothing to test with
    assert lift["time_on_page_s"]["p_value"] is None
    assert lift["ctr"]["estimate"] is not None
    # one unit per arm: an estimate, but no noise to test it against
    one = {KEY: {"visitors": 1.0, "revenue": 30.0, "revenue_sq": 900.0}}
    one[HELD] = {"visitors": 1.0, "revenue": 20.0, "revenue_sq": 400.0}
    rpv = {r["metric"]: r for r in lift_rows(one)}["revenue_per_visitor"]
    assert rpv["estimate"] == 0.5
    assert (rpv["p_value"], rpv["sequential_p_value"]) == (None, None)
