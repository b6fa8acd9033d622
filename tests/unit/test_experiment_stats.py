"""The experiment statistics against simulations with known effects, and on degenerate data.

Every simulation is seeded, so the measured rates are the same on every run; the bounds
leave a Monte Carlo margin of about three standard errors around the nominal rate (with
2,000 experiments the standard error of a 5 % rate is 0.5 %). Data are drawn with numpy in
one go; only the calls under test run per experiment. The ``measure_*`` helpers return the
numbers quoted in docs/statistics.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from segue.experiments.stats import (
    Interval,
    _chi2_sf,
    confidence_sequence,
    cuped_lift,
    mean_lift,
    rate_lift,
    sequential_p_value,
    srm_p_value,
)

EXPERIMENTS = 2000
Z95 = 1.959963984540054


def covers(interval: Interval, lift: float) -> bool:
    return interval.low <= lift <= interval.high


def measure_rate_lift(lift: float, seed: int = 1) -> tuple[float, float]:
    """Coverage of 95 % intervals and share of p < 0.05: CTR 5 %, 5,000 units per arm."""
    rng = np.random.default_rng(seed)
    n, base = 5000, 0.05
    treated = rng.binomial(n, base * (1 + lift), EXPERIMENTS)
    control = rng.binomial(n, base, EXPERIMENTS)
    results = [rate_lift(int(t), n, int(c), n) for t, c in zip(treated, control, strict=True)]
    coverage = float(np.mean([covers(r, lift) for r in results]))
    rejected = float(np.mean([r.p_value < 0.05 for r in results]))
    return coverage, rejected


def revenue(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    """Revenue per visitor: 30 % buy, spend exponential — skewed, many zeros."""
    buys = rng.random((EXPERIMENTS, n)) < 0.3
    return rng.exponential(mean / 0.3, (EXPERIMENTS, n)) * buys


def measure_mean_lift(lift: float, n: int = 500, seed: int = 2) -> tuple[float, float]:
    """Coverage and share of p < 0.05 for revenue per visitor with ``n`` visitors per arm."""
    rng = np.random.default_rng(seed)
    treated, control = revenue(rng, 15.0 * (1 + lift), n), revenue(rng, 15.0, n)
    sums = zip(
        treated.sum(1),
        (treated**2).sum(1),
        control.sum(1),
        (control**2).sum(1),
        strict=True,
    )
    results = [mean_lift(st, qt, n, sc, qc, n) for st, qt, sc, qc in sums]
    coverage = float(np.mean([covers(r, lift) for r in results]))
    rejected = float(np.mean([r.p_value < 0.05 for r in results]))
    return coverage, rejected


def measure_peeking(
    lift: float, experiments: int = EXPERIMENTS, days: int = 30, seed: int = 3
) -> dict[str, float]:
    """Conversion 10 %, 300 new units per arm a day, a look every day for ``days`` days.

    Returns the share of experiments that were ever declared significant at 5 % by the
    sequential p-value and by the fixed-horizon p-value, and the share that are
    significant by the fixed-horizon test at the last look only (the planned analysis).
    """
    rng = np.random.default_rng(seed)
    daily, base = 300, 0.10
    treated = rng.binomial(daily, base * (1 + lift), (experiments, days)).cumsum(1)
    control = rng.binomial(daily, base, (experiments, days)).cumsum(1)
    sequential = naive = final = 0
    for t_row, c_row in zip(treated.tolist(), control.tolist(), strict=True):
        seq_hit = naive_hit = False
        for day, (t, c) in enumerate(zip(t_row, c_row, strict=True)):
            n = daily * (day + 1)
            seq_hit = seq_hit or sequential_p_value(t, t, n, c, c, n) < 0.05
            naive_hit = naive_hit or rate_lift(t, n, c, n).p_value < 0.05
        sequential += seq_hit
        naive += naive_hit
        final += rate_lift(t_row[-1], daily * days, c_row[-1], daily * days).p_value < 0.05
    return {
        "sequential": sequential / experiments,
        "naive": naive / experiments,
        "fixed": final / experiments,
    }


def measure_confidence_sequence(lift: float, experiments: int = 400, seed: int = 4) -> float:
    """Share of experiments whose confidence sequence missed the true lift at *any* of 30 looks."""
    rng = np.random.default_rng(seed)
    daily, base, days = 300, 0.10, 30
    treated = rng.binomial(daily, base * (1 + lift), (experiments, days)).cumsum(1)
    control = rng.binomial(daily, base, (experiments, days)).cumsum(1)
    missed = 0
    for t_row, c_row in zip(treated.tolist(), control.tolist(), strict=True):
        for day, (t, c) in enumerate(zip(t_row, c_row, strict=True)):
            n = daily * (day + 1)
            if not covers(confidence_sequence(t, t, n, c, c, n), lift):
                missed += 1
                break
    return missed / experiments


def measure_cuped(
    rho: float, lift: float = 0.05, experiments: int = 1000, n: int = 500, seed: int = 5
) -> dict[str, float]:
    """CUPED on a metric whose pre-period value correlates with it at ``rho``.

    Returns the mean reported variance reduction, the coverage of the CUPED intervals, the
    ratio of the CUPED interval's width to the unadjusted one, and the empirical reduction
    of the variance of the estimated lift across experiments.
    """
    rng = np.random.default_rng(seed)
    mean, sd = 20.0, 5.0

    def arm(scale: float) -> tuple[np.ndarray, np.ndarray]:
        pre = rng.standard_normal((experiments, n))
        noise = rng.standard_normal((experiments, n))
        y = mean + sd * (rho * pre + math.sqrt(1 - rho * rho) * noise)
        return y * scale, mean + sd * pre  # x: the same person's pre-period value

    (yt, xt), (yc, xc) = arm(1 + lift), arm(1.0)
    reductions, hits, widths, adjusted, plain = [], [], [], [], []
    for i in range(experiments):
        interval, reduction = cuped_lift(yt[i], xt[i], yc[i], xc[i])
        raw = mean_lift(yt[i].sum(), yt[i] @ yt[i], n, yc[i].sum(), yc[i] @ yc[i], n)
        reductions.append(reduction)
        hits.append(covers(interval, lift))
        widths.append((interval.high - interval.low) / (raw.high - raw.low))
        adjusted.append(interval.estimate)
        plain.append(raw.estimate)
    return {
        "reduction": float(np.mean(reductions)),
        "coverage": float(np.mean(hits)),
        "width_ratio": float(np.mean(widths)),
        "empirical_reduction": 1.0 - float(np.var(adjusted) / np.var(plain)),
    }


def measure_srm_uniformity(seed: int = 6) -> tuple[float, float]:
    """Share of fair 90/10 splits (10,000 units) with p < 0.05, and with p < 0.5."""
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(10_000, [0.9, 0.1], EXPERIMENTS)
    p = np.array([srm_p_value(row.tolist(), [90.0, 10.0]) for row in draws])
    return float(np.mean(p < 0.05)), float(np.mean(p < 0.5))


# --- fixed-horizon intervals -------------------------------------------------------------


def test_rate_lift_matches_the_katz_formula_by_hand():
    result = rate_lift(550, 10_000, 500, 10_000)
    log_ratio = math.log(0.055 / 0.05)
    se = math.sqrt(0.945 / 550 + 0.95 / 500)
    assert result.estimate == pytest.approx(0.1)
    assert result.low == pytest.approx(math.exp(log_ratio - Z95 * se) - 1)
    assert result.high == pytest.approx(math.exp(log_ratio + Z95 * se) - 1)
    assert result.p_value == pytest.approx(math.erfc(log_ratio / se / math.sqrt(2)))


def test_rate_lift_intervals_cover_the_true_lift():
    coverage, power = measure_rate_lift(0.10)
    assert 0.93 <= coverage <= 0.97
    # normal theory: a +10 % lift on a 5 % CTR with 5,000 per arm has z ≈ 1.13, power ≈ 0.21
    assert 0.17 <= power <= 0.25


def test_rate_lift_false_positive_rate_is_nominal_under_no_effect():
    coverage, false_positives = measure_rate_lift(0.0, seed=11)
    assert 0.93 <= coverage <= 0.97
    assert 0.035 <= false_positives <= 0.065


def test_mean_lift_intervals_cover_on_skewed_revenue():
    coverage, _ = measure_mean_lift(0.10)
    assert 0.93 <= coverage <= 0.97


def test_mean_lift_false_positive_rate_is_nominal_under_no_effect():
    coverage, false_positives = measure_mean_lift(0.0, seed=12)
    assert 0.93 <= coverage <= 0.97
    assert 0.035 <= false_positives <= 0.065


def test_mean_lift_detects_a_real_effect_with_enough_traffic():
    _, power = measure_mean_lift(0.30, n=2000, seed=13)
    assert power > 0.85  # normal theory: z ≈ 3.4, power ≈ 0.93


@pytest.mark.parametrize("seed", range(5))
def test_p_value_below_alpha_exactly_when_the_interval_excludes_zero(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n_t, n_c = (int(v) for v in rng.integers(20, 3000, 2))
        s_t, s_c = int(rng.binomial(n_t, 0.1)), int(rng.binomial(n_c, 0.1))
        r = rate_lift(s_t, n_t, s_c, n_c)
        assert (r.p_value < 0.05) == (r.low > 0 or r.high < 0)
        values_t = rng.exponential(10.0, n_t)
        values_c = rng.exponential(10.0, n_c)
        m = mean_lift(
            values_t.sum(), values_t @ values_t, n_t, values_c.sum(), values_c @ values_c, n_c
        )
        assert (m.p_value < 0.05) == (m.low > 0 or m.high < 0)
        assert m.low <= m.estimate <= m.high


def test_an_unbounded_fieller_set_can_come_with_a_small_p_value():
    # the example of docs/statistics.md: the treatment is clearly higher, but the holdout's
    # mean (0.1, standard error 0.1) is too uncertain to bound the ratio
    m = mean_lift(sum_t=550, sumsq_t=6050, n_t=50, sum_c=5, sumsq_c=25, n_c=50)
    assert (m.estimate, m.low, m.high) == (pytest.approx(109.0), -math.inf, math.inf)
    assert m.p_value < 1e-6


def test_a_wider_confidence_gives_a_wider_interval():
    narrow = rate_lift(550, 10_000, 500, 10_000, confidence=0.8)
    wide = rate_lift(550, 10_000, 500, 10_000, confidence=0.99)
    assert wide.low < narrow.low < narrow.high < wide.high
    assert narrow.p_value == wide.p_value


# --- sequential tests --------------------------------------------------------------------


def test_sequential_p_value_stays_valid_under_daily_peeking_where_the_naive_test_fails():
    rates = measure_peeking(0.0)
    assert rates["sequential"] <= 0.05 + 0.015  # Ville's bound plus the Monte Carlo margin
    assert rates["naive"] > 0.15  # looking 30 times at a fixed-horizon test: far above 5 %
    assert 0.035 <= rates["fixed"] <= 0.065  # the same test looked at once is fine


def test_sequential_p_value_detects_a_real_effect():
    rates = measure_peeking(0.15, seed=7)
    assert rates["sequential"] > 0.5
    assert rates["fixed"] > 0.85  # the price of always-valid: less power than one planned look


def test_sequential_p_value_shrinks_as_evidence_accumulates():
    p = [sequential_p_value(0.12 * n, 0.12 * n, n, 0.10 * n, 0.10 * n, n) for n in (1e3, 1e4, 1e5)]
    assert p[0] > p[1] > p[2]
    assert p[2] < 1e-6


def test_a_smaller_mixing_variance_trades_early_for_late_power():
    args = (1100.0, 1100.0, 10_000, 1000.0, 1000.0, 10_000)
    tuned = sequential_p_value(*args, tau2=0.001**2)  # the real difference is 0.01
    wide = sequential_p_value(*args, tau2=1.0)
    assert tuned < wide
    with pytest.raises(ValueError, match="tau2"):
        sequential_p_value(*args, tau2=0.0)


def test_confidence_sequence_covers_the_true_lift_at_every_look():
    missed = measure_confidence_sequence(0.10)
    assert missed <= 0.05 + 0.025  # 400 experiments: a wider Monte Carlo margin


@pytest.mark.parametrize(
    ("treated", "control", "n"),
    [(650, 500, 10_000), (520, 500, 10_000), (5200, 5000, 100_000), (30, 10, 200)],
)
def test_confidence_sequence_agrees_with_the_sequential_p_value(treated, control, n):
    sequence = confidence_sequence(treated, treated, n, control, control, n)
    p = sequential_p_value(treated, treated, n, control, control, n)
    assert sequence.p_value == p
    assert (p < 0.05) == (sequence.low > 0 or sequence.high < 0)
    fixed = rate_lift(treated, n, control, n)
    assert sequence.low <= fixed.low  # always-valid is wider than one planned look
    assert fixed.high <= sequence.high
    assert sequence.low < sequence.estimate < sequence.high


def test_confidence_sequence_is_unbounded_while_the_control_mean_could_be_zero():
    sequence = confidence_sequence(3, 3, 20, 1, 1, 20)
    assert sequence.estimate == pytest.approx(2.0)
    assert (sequence.low, sequence.high) == (-math.inf, math.inf)


# --- CUPED -------------------------------------------------------------------------------


def test_cuped_reduces_variance_by_about_rho_squared_and_keeps_coverage():
    result = measure_cuped(0.7)
    assert result["reduction"] == pytest.approx(0.49, abs=0.03)
    assert result["empirical_reduction"] == pytest.approx(0.49, abs=0.08)
    assert result["width_ratio"] == pytest.approx(math.sqrt(1 - 0.49), abs=0.03)
    assert 0.93 <= result["coverage"] <= 0.97


def test_cuped_with_an_unrelated_covariate_changes_almost_nothing():
    result = measure_cuped(0.0, experiments=300, seed=8)
    assert result["reduction"] < 0.01
    assert result["width_ratio"] == pytest.approx(1.0, abs=0.01)


def test_cuped_corrects_a_chance_imbalance_of_the_covariate():
    rng = np.random.default_rng(9)
    x_t, x_c = rng.normal(12.0, 2.0, 1000), rng.normal(10.0, 2.0, 1000)  # unlucky split
    y_t, y_c = x_t + rng.normal(0, 0.5, 1000), x_c + rng.normal(0, 0.5, 1000)  # no effect
    interval, reduction = cuped_lift(y_t, x_t, y_c, x_c)
    naive = mean_lift(y_t.sum(), y_t @ y_t, 1000, y_c.sum(), y_c @ y_c, 1000)
    assert naive.p_value < 1e-6  # the raw comparison sees a 20 % "lift" that is all covariate
    assert covers(interval, 0.0)
    assert abs(interval.estimate) < 0.01
    assert reduction > 0.9


def test_cuped_needs_one_covariate_per_unit():
    with pytest.raises(ValueError, match="covariate"):
        cuped_lift([1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0])


# --- sample-ratio mismatch ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("statistic", "df", "tail"),
    [  # tabulated critical values of χ²
        (3.841459, 1, 0.05),
        (10.827566, 1, 0.001),
        (5.991465, 2, 0.05),
        (7.814728, 3, 0.05),
        (9.487729, 4, 0.05),
        (11.070498, 5, 0.05),
        (18.307038, 10, 0.05),
        (29.588298, 10, 0.001),
    ],
)
def test_chi_square_tail_matches_tabulated_critical_values(statistic, df, tail):
    assert _chi2_sf(statistic, df) == pytest.approx(tail, rel=1e-5)


def test_chi_square_tail_far_out_and_at_zero():
    assert _chi2_sf(0.0, 3) == 1.0
    assert 0.0 <= _chi2_sf(5000.0, 2) < 1e-300
    assert _chi2_sf(2000.0, 999) == pytest.approx(_chi2_sf(2000.0, 1000), rel=0.2)


def test_srm_p_value_at_known_statistics():
    # (o - e)²/e summed: 50,500 vs 49,500 of a 50/50 design gives χ² = 10.0, p = 0.001565
    assert srm_p_value([50_500, 49_500], [0.5, 0.5]) == pytest.approx(0.0015654, rel=1e-4)
    # three arms 1:1:2, χ² = 6.0 on 2 df: p = e^-3
    assert srm_p_value([1030, 970, 2000], [1, 1, 2]) == pytest.approx(
        math.exp(-(30**2 / 1000 * 2) / 2), rel=1e-9
    )


def test_srm_flags_a_broken_split():
    assert srm_p_value([5150, 4850], [1, 1]) < 0.01
    assert srm_p_value([9200, 800], [0.9, 0.1]) < 1e-10
    assert srm_p_value([3, 0], [1, 0]) == 1.0  # the zero-weight arm got nothing, as designed
    assert srm_p_value([3, 1], [1, 0]) == 0.0  # an arm designed to get nothing got units


def test_srm_p_values_are_uniform_for_a_fair_split():
    below_5, below_50 = measure_srm_uniformity()
    assert 0.035 <= below_5 <= 0.065
    assert 0.46 <= below_50 <= 0.54


def test_srm_rejects_a_malformed_design():
    with pytest.raises(ValueError, match="one entry per arm"):
        srm_p_value([1, 2], [1.0])
    with pytest.raises(ValueError, match="negative"):
        srm_p_value([1, 2], [1.0, -1.0])
    with pytest.raises(ValueError, match="positive weight"):
        srm_p_value([1, 2], [0.0, 0.0])


# --- empty and degenerate data -----------------------------------------------------------


def finite_or_infinite_bounds(interval: Interval) -> None:
    values = (interval.estimate, interval.low, interval.high, interval.p_value)
    assert not any(math.isnan(v) for v in values)
    assert 0.0 <= interval.p_value <= 1.0
    assert interval.low <= interval.estimate <= interval.high


def test_day_one_with_no_traffic_gives_sentinels_not_errors():
    assert rate_lift(0, 0, 0, 0) == Interval(0.0, -1.0, math.inf, 1.0)
    assert mean_lift(0, 0, 0, 0, 0, 0) == Interval(0.0, -math.inf, math.inf, 1.0)
    assert sequential_p_value(0, 0, 0, 0, 0, 0) == 1.0
    assert confidence_sequence(0, 0, 0, 0, 0, 0) == Interval(0.0, -math.inf, math.inf, 1.0)
    assert cuped_lift([], [], [], []) == (Interval(0.0, -math.inf, math.inf, 1.0), 0.0)
    assert srm_p_value([0, 0], [1, 1]) == 1.0
    assert srm_p_value([], []) == 1.0


@pytest.mark.parametrize(
    ("s_t", "n_t", "s_c", "n_c"),
    [(0, 10, 0, 10), (5, 10, 0, 0), (0, 0, 5, 10), (3, 10, 0, 10), (0, 10, 3, 10), (1, 1, 0, 1)],
)
def test_rate_lift_on_empty_cells_stays_finite(s_t, n_t, s_c, n_c):
    result = rate_lift(s_t, n_t, s_c, n_c)
    finite_or_infinite_bounds(result)
    assert result.low >= -1.0


def test_rate_lift_with_no_successes_in_the_control_is_finite_by_haldane_correction():
    result = rate_lift(3, 10, 0, 10)
    assert result.estimate == pytest.approx((3.5 / 11) / (0.5 / 11) - 1)  # +0.5 in every cell
    assert math.isfinite(result.high)
    assert result.p_value < 1.0


def test_all_successes_in_both_arms_is_no_difference():
    result = rate_lift(10, 10, 10, 10)
    assert result.estimate == pytest.approx(0.0)
    assert result.p_value == pytest.approx(1.0)


@pytest.mark.parametrize(
    "arms",
    [
        (5.0, 5.0, 1, 4.0, 4.0, 1),  # one unit per arm: no variance estimate
        (0.0, 0.0, 10, 0.0, 0.0, 10),  # nothing happened yet
        (5.0, 5.0, 5, 5.0, 5.0, 5),  # every unit equal: no noise to measure
        (10.0, 20.0, 10, 0.0, 0.0, 10),  # control mean 0: relative lift undefined
        (10.0, 20.0, 10, 1.0, 1.0, 10),  # control mean barely above 0
        (-50.0, 400.0, 10, 30.0, 500.0, 10),  # a metric that can be negative
    ],
)
def test_means_on_degenerate_arms_stay_nan_free(arms):
    for result in (mean_lift(*arms), confidence_sequence(*arms)):
        finite_or_infinite_bounds(result)
    assert 0.0 < sequential_p_value(*arms) <= 1.0


def test_a_zero_control_mean_still_tests_the_difference():
    result = mean_lift(30.0, 100.0, 10, 0.0, 0.0, 10)
    assert (result.estimate, result.low, result.high) == (0.0, -math.inf, math.inf)
    assert result.p_value < 0.05  # 3 per unit against 0: the difference itself is clear


def test_one_unit_per_arm_gives_the_point_estimate_only():
    result = mean_lift(12.0, 144.0, 1, 10.0, 100.0, 1)
    assert result == Interval(pytest.approx(0.2), -math.inf, math.inf, 1.0)


def test_cuped_with_too_little_data_falls_back_to_the_plain_lift():
    interval, reduction = cuped_lift([1.0], [1.0], [1.0, 3.0], [2.0, 2.0])
    assert reduction == 0.0
    finite_or_infinite_bounds(interval)
    constant_x, reduction = cuped_lift([1.0, 2.0, 3.0], [5.0] * 3, [1.0, 3.0, 2.0], [5.0] * 3)
    assert reduction == 0.0
    assert constant_x == mean_lift(6.0, 14.0, 3, 6.0, 14.0, 3)


def test_wrong_inputs_raise_value_error():
    with pytest.raises(ValueError, match="exceed"):
        rate_lift(11, 10, 1, 10)
    with pytest.raises(ValueError, match="negative"):
        rate_lift(-1, 10, 1, 10)
    with pytest.raises(ValueError, match="negative"):
        mean_lift(1.0, 1.0, -2, 1.0, 1.0, 2)
    for confidence in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="confidence"):
            rate_lift(1, 10, 1, 10, confidence=confidence)
