"""Differential privacy for released reports: calibrated noise and a per-consumer budget.

A report that leaves segue (a KPI table, a CSV export, a dashboard for an outside party) can
be released with noise, so that what it shows is almost the same whether or not any one
person's data was used — (ε, δ)-differential privacy, with neighbouring datasets differing by
the presence of one person (add/remove).

* **Sensitivity** is how much one person can move a released number. A count of people is
  1; a count of events is the most events one person may contribute (the caller caps it,
  e.g. at most ``k`` exposures per person per report, and passes ``contribution=k``); a sum
  is ``max(|lower|, |upper|)`` after each person's value has been clipped to
  ``[lower, upper]``. Clipping happens here, before the noise, so a big spender cannot
  stand out.
* **Mechanisms**: with ``δ = 0`` the Laplace mechanism, noise of scale ``Δ/ε`` (variance
  ``2(Δ/ε)²``); with ``δ > 0`` the Gaussian mechanism with the *analytic* calibration of
  Balle & Wang (2018): the smallest σ for which
  ``Φ(Δ/2σ - εσ/Δ) - e^ε Φ(-Δ/2σ - εσ/Δ) ≤ δ``, found by bisection. It is exact for every
  ε (the classic ``σ = Δ sqrt(2 ln(1.25/δ))/ε`` holds only for ε < 1 and adds noise).
* **Post-processing** never weakens the guarantee: rates and means computed from noisy
  counts and sums (:func:`noisy_rate`, :func:`noisy_mean`) cost nothing more than the
  releases they are computed from, and neither do the statistics in
  :mod:`segue.experiments.stats` run on them (their intervals do not include the noise;
  :attr:`Release.std` says how much to widen them by).
* **Composition**: releases about the same people add up (sequential composition:
  ε₁ + ε₂, δ₁ + δ₂, :func:`compose`); releases about disjoint people, such as the variants of
  one experiment, cost only the largest of them (parallel composition, :func:`parallel`).
  The :class:`Accountant` checks a consumer's spent total plus a request's cost against the
  consumer's limit; storing the total is the caller's job, so the accountant stays pure.

Randomness comes from an injected ``numpy.random.Generator``. A seeded generator makes tests
repeatable; releases to real consumers must use an unpredictable seed
(``numpy.random.default_rng()``), or the noise can be replayed and removed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence

import msgspec
import numpy as np
from numpy.typing import NDArray

from segue.errors import Forbidden

__all__ = [
    "Accountant",
    "Budget",
    "BudgetExceeded",
    "Gaussian",
    "Laplace",
    "Release",
    "clip",
    "compose",
    "noisy_mean",
    "noisy_rate",
    "parallel",
    "release_count",
    "release_sum",
    "sum_sensitivity",
]

_TOLERANCE = 1e-9  # relative slack when comparing budgets, so three charges of 0.1 fit in 0.3
_BELOW_1 = math.nextafter(1.0, 0.0)  # a composed δ saturates here rather than reaching 1
_BISECTIONS = 200  # on log σ: far below a float's resolution


def _positive(value: float, name: str) -> float:
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return float(value)


class Budget(msgspec.Struct, frozen=True, kw_only=True):
    """An amount of privacy loss (ε, δ): the cost of a release, a limit, or a running total.

    Attributes:
        epsilon: the ε spent or allowed (0 or more).
        delta: the δ spent or allowed (0 or more, below 1).
    """

    epsilon: float = 0.0
    delta: float = 0.0

    def __post_init__(self) -> None:
        """Reject budgets that no mechanism could mean.

        Raises:
            ValueError: ε negative or not finite, or δ outside [0, 1).
        """
        if not (math.isfinite(self.epsilon) and self.epsilon >= 0.0):
            raise ValueError(f"epsilon must be finite and not negative, got {self.epsilon}")
        if not 0.0 <= self.delta < 1.0:
            raise ValueError(f"delta must be in [0, 1), got {self.delta}")

    def __add__(self, other: Budget) -> Budget:
        """Sequential composition: two releases about the same people cost ε₁+ε₂, δ₁+δ₂."""
        return Budget(
            epsilon=self.epsilon + other.epsilon, delta=min(self.delta + other.delta, _BELOW_1)
        )

    def covers(self, other: Budget) -> bool:
        """Whether ``other`` fits within this budget, up to float rounding (0.1 + 0.2 ≤ 0.3)."""
        slack = 1.0 + _TOLERANCE
        return other.epsilon <= self.epsilon * slack and other.delta <= self.delta * slack


def compose(costs: Iterable[Budget]) -> Budget:
    """Sequential composition of releases about the same people: the sum of their costs."""
    total = Budget()
    for cost in costs:
        total = total + cost
    return total


def parallel(costs: Iterable[Budget]) -> Budget:
    """Parallel composition of releases about disjoint people: the largest ε and δ.

    Use it for cells that no person can appear in twice, such as the variants of one
    experiment (assignment is sticky) — never for days, metrics or placements, where one
    person shows up in several cells.
    """
    epsilon = delta = 0.0
    for cost in costs:
        epsilon, delta = max(epsilon, cost.epsilon), max(delta, cost.delta)
    return Budget(epsilon=epsilon, delta=delta)


class BudgetExceeded(Forbidden):
    """A report consumer asked for more privacy loss than its limit allows.

    Nothing was released and nothing should be charged: the caller keeps the old total.

    Attributes:
        spent: what the consumer had spent before the request.
        cost: what the request would have cost.
        limit: the consumer's limit.
    """

    code = "privacy_budget_exceeded"

    def __init__(self, *, spent: Budget, cost: Budget, limit: Budget) -> None:
        super().__init__(
            f"privacy budget exceeded: spent ε={spent.epsilon:g}, δ={spent.delta:g}; "
            f"this report costs ε={cost.epsilon:g}, δ={cost.delta:g}; "
            f"the limit is ε={limit.epsilon:g}, δ={limit.delta:g}"
        )
        self.spent = spent
        self.cost = cost
        self.limit = limit


class Accountant(msgspec.Struct, frozen=True, kw_only=True):
    """Enforces one consumer's privacy limit under sequential composition (pure: no storage).

    The caller loads the consumer's spent total, calls :meth:`charge` *before* releasing,
    and stores the returned total atomically with the release (a compare-and-set on the
    stored total keeps two concurrent requests from both spending the last of a budget).

    Attributes:
        limit: the most ε and δ the consumer may ever spend.
    """

    limit: Budget

    def charge(self, spent: Budget, cost: Budget) -> Budget:
        """Add a request's cost to what was spent, if the limit allows it.

        Args:
            spent: the consumer's total so far.
            cost: the request's cost (for a report: :func:`compose` / :func:`parallel`
                of its releases' costs).

        Returns:
            The new total to store.

        Raises:
            BudgetExceeded: the new total would exceed the limit in ε or in δ.
        """
        total = spent + cost
        if not self.limit.covers(total):
            raise BudgetExceeded(spent=spent, cost=cost, limit=self.limit)
        return total

    def allows(self, spent: Budget, cost: Budget) -> bool:
        """Whether :meth:`charge` would succeed."""
        return self.limit.covers(spent + cost)

    def remaining(self, spent: Budget) -> Budget:
        """What is left of the limit after ``spent`` (never negative)."""
        return Budget(
            epsilon=max(0.0, self.limit.epsilon - spent.epsilon),
            delta=max(0.0, self.limit.delta - spent.delta),
        )


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _gaussian_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    """The smallest δ for which N(0, σ²) noise is (ε, δ)-DP (Balle & Wang 2018, Thm. 8).

    ``e^ε Φ(·)`` is formed in logarithms; if ``Φ`` underflows the subtracted term is taken
    as 0 (and it is capped below overflow), which overstates δ and so only ever asks for
    more noise.
    """
    a = sensitivity / (2.0 * sigma)
    b = epsilon * sigma / sensitivity
    tail = _normal_cdf(-a - b)
    subtracted = math.exp(min(epsilon + math.log(tail), 700.0)) if tail > 0.0 else 0.0
    return _normal_cdf(a - b) - subtracted


class Laplace(msgspec.Struct, frozen=True, kw_only=True):
    """The Laplace mechanism: noise of scale ``sensitivity / epsilon``; (ε, 0)-DP.

    Attributes:
        epsilon: the privacy loss of one release.
        sensitivity: the most one person can change the value (L1).
    """

    epsilon: float
    sensitivity: float = 1.0

    def __post_init__(self) -> None:
        """Validate the calibration.

        Raises:
            ValueError: ε or the sensitivity is not a positive finite number.
        """
        _positive(self.epsilon, "epsilon")
        _positive(self.sensitivity, "sensitivity")

    @property
    def scale(self) -> float:
        """The Laplace scale ``b = Δ/ε``."""
        return self.sensitivity / self.epsilon

    @property
    def std(self) -> float:
        """Standard deviation of the noise, ``√2 · b``."""
        return math.sqrt(2.0) * self.scale

    @property
    def cost(self) -> Budget:
        """What one release costs."""
        return Budget(epsilon=float(self.epsilon))

    def release(self, value: float, rng: np.random.Generator) -> float:
        """``value`` plus fresh noise; the value must already respect the sensitivity."""
        return float(value) + float(rng.laplace(0.0, self.scale))


class Gaussian(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """The Gaussian mechanism with analytic calibration; (ε, δ)-DP for every ε > 0.

    Attributes:
        epsilon: the ε of one release.
        delta: the δ of one release, in (0, 1).
        sensitivity: the most one person can change the value (L2; for one number the
            same as L1).
    """

    epsilon: float
    delta: float
    sensitivity: float = 1.0

    def __post_init__(self) -> None:
        """Validate the calibration.

        Raises:
            ValueError: ε or the sensitivity is not positive and finite, or δ not in (0, 1).
        """
        _positive(self.epsilon, "epsilon")
        _positive(self.sensitivity, "sensitivity")
        if not 0.0 < self.delta < 1.0:
            raise ValueError(f"delta must be in (0, 1) for the Gaussian mechanism: {self.delta}")

    @functools.cached_property
    def sigma(self) -> float:
        """The smallest noise standard deviation that is (ε, δ)-DP, by bisection on log σ.

        Computed once per mechanism (``dict=True`` lets the frozen struct cache it).
        """
        low = high = self.sensitivity
        while _gaussian_delta(low, self.epsilon, self.sensitivity) <= self.delta:
            low /= 2.0
        while _gaussian_delta(high, self.epsilon, self.sensitivity) > self.delta:
            high *= 2.0
        for _ in range(_BISECTIONS):
            middle = math.sqrt(low * high)
            if middle in (low, high):
                break
            if _gaussian_delta(middle, self.epsilon, self.sensitivity) > self.delta:
                low = middle
            else:
                high = middle
        return high

    @property
    def std(self) -> float:
        """Standard deviation of the noise, σ."""
        return self.sigma

    @property
    def cost(self) -> Budget:
        """What one release costs."""
        return Budget(epsilon=float(self.epsilon), delta=float(self.delta))

    def release(self, value: float, rng: np.random.Generator) -> float:
        """``value`` plus fresh noise; the value must already respect the sensitivity."""
        return float(value) + float(rng.normal(0.0, self.sigma))


class Release(msgspec.Struct, frozen=True, kw_only=True):
    """One noisy number ready to publish.

    Attributes:
        value: the noisy value (may be negative or fractional for a count: publish it
            as is, or post-process it — rounding and clamping are free).
        std: standard deviation of the noise that was added, for error bars.
        cost: the privacy loss of this release, to charge to the consumer.
    """

    value: float
    std: float
    cost: Budget


def _mechanism(epsilon: float, delta: float, sensitivity: float) -> Laplace | Gaussian:
    if delta == 0.0:
        return Laplace(epsilon=epsilon, sensitivity=sensitivity)
    return Gaussian(epsilon=epsilon, delta=delta, sensitivity=sensitivity)


def _release(value: float, mechanism: Laplace | Gaussian, rng: np.random.Generator) -> Release:
    return Release(value=mechanism.release(value, rng), std=mechanism.std, cost=mechanism.cost)


def release_count(
    count: int,
    *,
    epsilon: float,
    rng: np.random.Generator,
    delta: float = 0.0,
    contribution: int = 1,
) -> Release:
    """A count (people, exposures, clicks, conversions) with noise calibrated to it.

    Args:
        count: the true count.
        epsilon: the ε to spend on it.
        rng: the source of noise.
        delta: 0 for the Laplace mechanism, otherwise the δ of the Gaussian mechanism.
        contribution: the most the caller lets one person add to the count (1 when people
            are counted; ``k`` when events are counted and each person's are capped at k).

    Returns:
        The noisy count, its noise's standard deviation and its cost.

    Raises:
        ValueError: a negative count, a contribution below 1, or a bad ε or δ.
    """
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    if contribution < 1:
        raise ValueError(f"contribution must be at least 1, got {contribution}")
    return _release(float(count), _mechanism(epsilon, delta, float(contribution)), rng)


def clip(
    values: Sequence[float] | NDArray[np.float64], lower: float, upper: float
) -> NDArray[np.float64]:
    """Each person's value limited to ``[lower, upper]`` — what bounds a sum's sensitivity.

    Raises:
        ValueError: ``lower`` above ``upper`` or a bound not finite.
    """
    if not (math.isfinite(lower) and math.isfinite(upper) and lower <= upper):
        raise ValueError(f"clip bounds must be finite with lower <= upper: [{lower}, {upper}]")
    return np.clip(np.asarray(values, dtype=np.float64), lower, upper)


def sum_sensitivity(lower: float, upper: float) -> float:
    """How much adding or removing one person with a value in ``[lower, upper]`` moves a sum."""
    return max(abs(lower), abs(upper))


def release_sum(
    values: Sequence[float] | NDArray[np.float64],
    *,
    lower: float,
    upper: float,
    epsilon: float,
    rng: np.random.Generator,
    delta: float = 0.0,
) -> Release:
    """A sum of per-person values (revenue, time on page), clipped, then noised.

    Args:
        values: one value per person — aggregate a person's orders or page views first, so
            that clipping bounds what the *person* contributes.
        lower: the smallest value a person may contribute (usually 0).
        upper: the largest (e.g. a high percentile of order value, fixed in configuration,
            never read from the data itself, which would leak it).
        epsilon: the ε to spend.
        rng: the source of noise.
        delta: 0 for the Laplace mechanism, otherwise the δ of the Gaussian mechanism.

    Returns:
        The noisy sum of the clipped values, its noise's standard deviation and its cost.

    Raises:
        ValueError: bad bounds (both 0 gives nothing to protect, and is refused), ε or δ.
    """
    clipped = clip(values, lower, upper)
    sensitivity = sum_sensitivity(lower, upper)
    return _release(float(clipped.sum()), _mechanism(epsilon, delta, sensitivity), rng)


def noisy_rate(numerator: float, denominator: float) -> float:
    """A rate from a noisy numerator and denominator, clamped to [0, 1] (post-processing).

    The denominator is taken as at least 1 (noise can push a small count to 0 or below) and
    the numerator as at least 0, so the answer is always a rate. Costs nothing beyond the two
    releases, which themselves compose: the rate costs ε_numerator + ε_denominator.
    """
    return min(1.0, max(0.0, numerator) / max(1.0, denominator))


def noisy_mean(total: float, count: float, *, lower: float, upper: float) -> float:
    """A mean (revenue per visitor) from a noisy clipped sum and a noisy count.

    Clamped to the clipping range ``[lower, upper]`` every true mean lies in; the count is
    taken as at least 1. Post-processing: no privacy cost beyond the two releases.
    """
    return min(upper, max(lower, total / max(1.0, count)))
