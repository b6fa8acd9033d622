"""Differential privacy: noise calibration measured empirically, clipping, rates, the budget.

Seeded; each check draws tens of thousands of noise values at once or in a short loop. The
``measure_ctr_error`` helper produces the accuracy table in docs/statistics.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from segue.errors import Forbidden, SegueError
from segue.experiments.dp import (
    Accountant,
    Budget,
    BudgetExceeded,
    Gaussian,
    Laplace,
    _gaussian_delta,
    clip,
    compose,
    noisy_mean,
    noisy_rate,
    parallel,
    release_count,
    release_sum,
    sum_sensitivity,
)

DRAWS = 40_000


def noise(mechanism: Laplace | Gaussian, seed: int, value: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([mechanism.release(value, rng) for _ in range(DRAWS)]) - value


def measure_ctr_error(
    epsilon: float, clicks: int, impressions: int, runs: int = 4000, seed: int = 0
) -> float:
    """Relative RMSE of a CTR from a noisy click count and a noisy exposure count.

    The rate's ε is split evenly between its two counts (sequential composition), people
    are counted (contribution 1), Laplace mechanism.
    """
    rng = np.random.default_rng(seed)
    truth = clicks / impressions
    rates = np.array(
        [
            noisy_rate(
                release_count(clicks, epsilon=epsilon / 2, rng=rng).value,
                release_count(impressions, epsilon=epsilon / 2, rng=rng).value,
            )
            for _ in range(runs)
        ]
    )
    return float(np.sqrt(np.mean((rates - truth) ** 2)) / truth)


# --- calibration -------------------------------------------------------------------------


@pytest.mark.parametrize(("epsilon", "contribution"), [(0.1, 1), (1.0, 1), (0.5, 3)])
def test_laplace_noise_has_variance_two_b_squared(epsilon, contribution):
    rng = np.random.default_rng(1)
    released = [
        release_count(1000, epsilon=epsilon, rng=rng, contribution=contribution)
        for _ in range(DRAWS)
    ]
    values = np.array([r.value for r in released]) - 1000
    b = contribution / epsilon
    # sample variance of Laplace noise: relative SE sqrt(5 / DRAWS) ≈ 1.1 %; allow 4 %
    assert np.var(values) == pytest.approx(2 * b * b, rel=0.04)
    assert abs(np.mean(values)) < 4 * math.sqrt(2) * b / math.sqrt(DRAWS)  # unbiased
    assert np.mean(np.abs(values) > b) == pytest.approx(math.exp(-1), abs=0.01)  # the shape
    assert released[0].std == pytest.approx(math.sqrt(2) * b)
    assert released[0].cost == Budget(epsilon=epsilon)


def test_laplace_is_exactly_as_private_as_claimed_and_no_less_useful():
    # neighbouring datasets: counts 100 and 101; the event "output ≥ 101" separates them most
    epsilon = 0.7
    mechanism = Laplace(epsilon=epsilon)
    without = np.mean(noise(mechanism, seed=2) + 100 >= 101)
    with_one = np.mean(noise(mechanism, seed=3) + 101 >= 101)
    assert with_one / without == pytest.approx(math.exp(epsilon), rel=0.06)


def test_gaussian_sigma_is_the_analytic_calibration():
    mechanism = Gaussian(epsilon=1.0, delta=1e-5)
    sigma = mechanism.sigma
    assert _gaussian_delta(sigma, 1.0, 1.0) <= 1e-5  # private at σ ...
    assert _gaussian_delta(sigma * 0.999, 1.0, 1.0) > 1e-5  # ... and not with any less noise
    assert sigma == pytest.approx(3.7306, abs=1e-3)  # Balle & Wang (2018), ε = 1, δ = 1e-5
    classic = math.sqrt(2 * math.log(1.25 / 1e-5))
    assert sigma < classic  # the classic bound over-noises
    assert Gaussian(epsilon=1.0, delta=1e-5, sensitivity=4.0).sigma == pytest.approx(4 * sigma)


@pytest.mark.parametrize("epsilon", [0.05, 0.5, 3.0, 20.0])
def test_gaussian_calibration_holds_for_small_and_large_epsilon(epsilon):
    sigma = Gaussian(epsilon=epsilon, delta=1e-6).sigma
    assert 0 < _gaussian_delta(sigma, epsilon, 1.0) <= 1e-6
    assert _gaussian_delta(sigma * 0.99, epsilon, 1.0) > 1e-6


def test_gaussian_noise_matches_its_sigma():
    mechanism = Gaussian(epsilon=0.5, delta=1e-6, sensitivity=2.0)
    values = noise(mechanism, seed=4)
    assert np.std(values) == pytest.approx(mechanism.sigma, rel=0.02)
    released = release_count(
        7, epsilon=0.5, delta=1e-6, contribution=2, rng=np.random.default_rng()
    )
    assert released.std == pytest.approx(mechanism.sigma)
    assert released.cost == Budget(epsilon=0.5, delta=1e-6)


def test_same_seed_same_release():
    first = release_count(42, epsilon=1.0, rng=np.random.default_rng(9))
    again = release_count(42, epsilon=1.0, rng=np.random.default_rng(9))
    assert first == again
    assert first.value != 42


# --- sums and clipping -------------------------------------------------------------------


def test_sums_are_clipped_before_the_noise():
    values = [-5.0, 50.0, 5000.0]  # a refund and a whale
    assert clip(values, 0.0, 100.0).tolist() == [0.0, 50.0, 100.0]
    rng = np.random.default_rng(5)
    released = [
        release_sum(values, lower=0.0, upper=100.0, epsilon=1.0, rng=rng) for _ in range(DRAWS)
    ]
    noisy = np.array([r.value for r in released])
    assert np.mean(noisy) == pytest.approx(150.0, abs=4 * 141.5 / math.sqrt(DRAWS))
    assert np.std(noisy) == pytest.approx(math.sqrt(2) * 100.0, rel=0.03)  # Δ = upper
    assert released[0].std == pytest.approx(math.sqrt(2) * 100.0)


def test_the_whale_cannot_move_the_sum_more_than_the_bound():
    with_whale = release_sum(
        [50.0, 5000.0], lower=0, upper=100, epsilon=1, rng=np.random.default_rng(6)
    )
    capped = release_sum([50.0, 100.0], lower=0, upper=100, epsilon=1, rng=np.random.default_rng(6))
    assert with_whale.value == capped.value  # same noise, and the excess over 100 is gone


def test_sum_sensitivity_is_the_largest_magnitude_one_person_brings():
    assert sum_sensitivity(0.0, 250.0) == 250.0
    assert sum_sensitivity(-30.0, 20.0) == 30.0


def test_bad_clip_bounds_are_refused():
    with pytest.raises(ValueError, match="lower <= upper"):
        clip([1.0], 5.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        release_sum([1.0], lower=0.0, upper=math.inf, epsilon=1.0, rng=np.random.default_rng())
    with pytest.raises(ValueError, match="sensitivity"):
        release_sum([1.0], lower=0.0, upper=0.0, epsilon=1.0, rng=np.random.default_rng())


# --- derived numbers: rates and means ----------------------------------------------------


def test_noisy_rates_stay_in_the_unit_interval_even_for_tiny_counts():
    rng = np.random.default_rng(7)
    rates = [
        noisy_rate(
            release_count(clicks, epsilon=0.1, rng=rng).value,
            release_count(clicks + extra, epsilon=0.1, rng=rng).value,
        )
        for clicks in range(5)
        for extra in range(6)
        for _ in range(100)
    ]
    assert min(rates) >= 0.0
    assert max(rates) <= 1.0
    assert 0.0 in rates  # the clamps were needed: noise pushed counts out of range
    assert 1.0 in rates


def test_noisy_rate_and_mean_rules():
    assert noisy_rate(50.0, 1000.0) == 0.05
    assert noisy_rate(-3.0, 10.0) == 0.0
    assert noisy_rate(12.0, 10.0) == 1.0
    assert noisy_rate(0.5, -4.0) == 0.5  # the denominator is at least 1
    assert noisy_mean(1500.0, 100.0, lower=0.0, upper=200.0) == 15.0
    assert noisy_mean(-20.0, 3.0, lower=0.0, upper=200.0) == 0.0
    assert noisy_mean(900.0, 0.2, lower=0.0, upper=200.0) == 200.0


def test_ctr_error_shrinks_with_epsilon_as_the_calibration_predicts():
    clicks, impressions = 500, 10_000
    errors = [measure_ctr_error(eps, clicks, impressions) for eps in (0.1, 1.0)]
    for eps, measured in zip((0.1, 1.0), errors, strict=True):
        std_each = math.sqrt(2) * 2 / eps  # Laplace with ε/2 per count
        predicted = math.hypot(std_each / clicks, std_each / impressions)  # delta method
        assert measured == pytest.approx(predicted, rel=0.1)
    assert errors[1] < errors[0] / 5


# --- the budget --------------------------------------------------------------------------


def test_accountant_enforces_the_limit_without_side_effects():
    accountant = Accountant(limit=Budget(epsilon=1.0))
    spent = Budget()
    for _ in range(4):
        spent = accountant.charge(spent, Budget(epsilon=0.25))
    assert spent.epsilon == pytest.approx(1.0)
    with pytest.raises(BudgetExceeded) as raised:
        accountant.charge(spent, Budget(epsilon=0.01))
    assert raised.value.spent == spent
    assert raised.value.cost == Budget(epsilon=0.01)
    assert raised.value.limit == accountant.limit
    assert "privacy budget exceeded" in str(raised.value)
    assert accountant.remaining(spent) == Budget(epsilon=0.0)
    assert not accountant.allows(spent, Budget(epsilon=0.01))


def test_budget_exceeded_is_a_forbidden_segue_error():
    error = BudgetExceeded(spent=Budget(), cost=Budget(epsilon=2.0), limit=Budget(epsilon=1.0))
    assert isinstance(error, Forbidden)
    assert isinstance(error, SegueError)
    assert error.code == "privacy_budget_exceeded"


def test_float_rounding_does_not_cost_the_last_release():
    accountant = Accountant(limit=Budget(epsilon=0.3))
    spent = accountant.charge(accountant.charge(Budget(), Budget(epsilon=0.1)), Budget(epsilon=0.2))
    assert spent.epsilon > 0.3  # 0.30000000000000004
    spent = accountant.charge(Budget(), spent)  # still within the limit


def test_accountant_composes_delta_too():
    accountant = Accountant(limit=Budget(epsilon=10.0, delta=1e-6))
    cost = Gaussian(epsilon=0.5, delta=4e-7).cost
    spent = accountant.charge(accountant.charge(Budget(), cost), cost)
    assert spent == Budget(epsilon=1.0, delta=8e-7)
    assert accountant.remaining(spent).delta == pytest.approx(2e-7)
    with pytest.raises(BudgetExceeded):
        accountant.charge(spent, cost)  # ε is plentiful, δ is not
    with pytest.raises(BudgetExceeded):
        Accountant(limit=Budget(epsilon=10.0)).charge(Budget(), cost)  # a pure-ε consumer


def test_sequential_and_parallel_composition():
    costs = [Budget(epsilon=0.5), Budget(epsilon=0.25, delta=1e-7), Budget(epsilon=0.1)]
    assert compose(costs) == Budget(epsilon=0.85, delta=1e-7)
    assert parallel(costs) == Budget(epsilon=0.5, delta=1e-7)
    assert compose([]) == Budget()
    assert parallel([]) == Budget()
    # a report of three variants (disjoint people), each with a count and a sum at ε = 0.2
    per_variant = compose([Budget(epsilon=0.2), Budget(epsilon=0.2)])
    assert parallel([per_variant] * 3) == per_variant


def test_invalid_budgets_and_mechanisms_are_refused():
    with pytest.raises(ValueError, match="epsilon"):
        Budget(epsilon=-0.1)
    with pytest.raises(ValueError, match="delta"):
        Budget(epsilon=1.0, delta=1.0)
    with pytest.raises(ValueError, match="epsilon"):
        Laplace(epsilon=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        Laplace(epsilon=math.nan)
    with pytest.raises(ValueError, match="delta"):
        Gaussian(epsilon=1.0, delta=0.0)
    with pytest.raises(ValueError, match="negative"):
        release_count(-1, epsilon=1.0, rng=np.random.default_rng())
    with pytest.raises(ValueError, match="contribution"):
        release_count(1, epsilon=1.0, rng=np.random.default_rng(), contribution=0)
