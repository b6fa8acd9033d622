"""Lift of a variant over its holdout: intervals, p-values, CUPED, sequential tests, SRM.

Every function takes per-arm sufficient statistics (counts, sums, sums of squares) or, for
CUPED, per-unit values, and returns plain numbers; nothing here reads a store or a clock.
"t" is the treatment (a variant), "c" the control (the holdout).

Choices, and why:

* **Relative lift** is ``treatment / control - 1``. For rates (:func:`rate_lift`) the
  interval is the delta method on the *log* of the ratio (Katz): it never goes below -100 %,
  is asymmetric like the ratio itself and covers well at the counts reports see; its
  p-value is the Wald test of the log ratio. For means (:func:`mean_lift`,
  :func:`cuped_lift`) it is Fieller's interval, whose p-value is the Welch z-test of the
  difference: it keeps its coverage on skewed metrics like revenue where the symmetric
  delta-method interval of the ratio undercovers (0.939 against 0.950 at 200 units per arm
  in our simulations), and handles a control mean near 0 by widening to infinity instead of
  dividing by it. While both bounds are finite, "p < 1 - confidence" and "the interval
  excludes 0" agree; an infinite bound (the control mean too uncertain to bound a ratio of
  means) can come with a small p-value, which then is the answer to read.
* **Normal quantiles**, not Student's t: reports compare hundreds to millions of units, where
  the two differ by less than 1 % (1.960 against 1.972 at 200 units); below two units per
  arm nothing is estimated.
* **Sequential tests** are the mixture sequential probability ratio test (mSPRT) with a
  normal mixture over the difference in means (Johari, Pekelis, Walsh 2017; Robbins 1970).
  Its p-value stays valid however often one looks, because ``1/Λₙ`` is the reciprocal of a
  nonnegative martingale under the null and Ville's inequality bounds the chance that it
  *ever* drops below α. The confidence sequence inverts the same test for every lift.
* **Nothing raises on empty or degenerate data**: a report calls this on day one with no
  traffic. When a lift cannot be estimated the answer is a documented sentinel with the
  widest sensible bounds (``-1``/``+inf`` for rates, ``±inf`` for means) and a p-value of 1,
  or of the difference in means when only the ratio is undefined (control mean 0).
  (``msgspec.json`` encodes an infinite bound as ``null``.) Only inputs that are wrong, not
  merely small (negative counts, more successes than trials, mismatched lengths, a
  confidence outside (0, 1)), raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import msgspec
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_RELATIVE_EFFECT",
    "Interval",
    "confidence_sequence",
    "cuped_lift",
    "mean_lift",
    "rate_lift",
    "sequential_p_value",
    "srm_p_value",
]

#: the sequential tests' mixing prior: a typical effect is this fraction of the mean
DEFAULT_RELATIVE_EFFECT = 0.1

_NORMAL = NormalDist()
_SQRT2 = math.sqrt(2.0)
_FIRST_STEP = 1e-9  # the confidence sequence's first probe, as a share of the way to k = ±inf
_GROWTH = 1.25  # and the factor each further probe goes out by (~93 probes to the limit)
_BISECTIONS = 40  # then halvings between the last accepted and first rejected probe

Floats = NDArray[np.float64]


class Interval(msgspec.Struct, frozen=True):
    """A relative lift with its confidence interval and p-value.

    Attributes:
        estimate: relative lift, ``treatment / control - 1`` (0.12 is +12 %).
        low: lower confidence bound of the lift (``-1`` or ``-inf`` when unknown).
        high: upper confidence bound of the lift (``+inf`` when unknown).
        p_value: two-sided p-value of "no difference" (1.0 when nothing is known).
    """

    estimate: float
    low: float
    high: float
    p_value: float


def _unknown_rate() -> Interval:
    return Interval(estimate=0.0, low=-1.0, high=math.inf, p_value=1.0)


def _unknown_mean(estimate: float = 0.0, p_value: float = 1.0) -> Interval:
    return Interval(estimate=estimate, low=-math.inf, high=math.inf, p_value=p_value)


def _quantile(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return _NORMAL.inv_cdf(0.5 + confidence / 2.0)


def _two_sided(z: float) -> float:
    """P(|Z| ≥ |z|) for a standard normal Z, accurate far into the tail (erfc, not 1 - Φ)."""
    return math.erfc(abs(z) / _SQRT2)


def _count(value: int, name: str) -> int:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return int(value)


def _moments(total: float, sumsq: float, n: int) -> tuple[float, float]:
    """Mean and unbiased variance from sufficient statistics (variance 0 below two units).

    The variance is clamped at 0: ``sumsq - total²/n`` can come out a hair negative in
    floating point when every value is equal.
    """
    if n <= 0:
        return 0.0, 0.0
    total, sumsq = float(total), float(sumsq)
    mean = total / n
    if n < 2:
        return mean, 0.0
    return mean, max(0.0, (sumsq - total * mean) / (n - 1))


def rate_lift(
    successes_t: int, n_t: int, successes_c: int, n_c: int, *, confidence: float = 0.95
) -> Interval:
    """Relative lift of a rate (CTR, conversion, bounce) with a Katz log-ratio interval.

    ``log(p_t / p_c)`` is asymptotically normal with variance
    ``(1 - p_t)/(n_t p_t) + (1 - p_c)/(n_c p_c)`` (delta method); the interval is built there
    and exponentiated, so it is never below -100 %. When any cell of the 2×2 table is empty
    (no successes or no failures in an arm) every cell gets +0.5 (Haldane–Anscombe), which
    keeps the estimate and its interval finite.

    Args:
        successes_t: units of the treatment that converted (at most ``n_t``).
        n_t: units in the treatment (exposures, visitors, sessions).
        successes_c: units of the control that converted (at most ``n_c``).
        n_c: units in the control.
        confidence: coverage of the interval, e.g. 0.95.

    Returns:
        The lift. With an empty arm, or no success in either arm, the lift is not estimable:
        ``Interval(0.0, -1.0, inf, 1.0)``.

    Raises:
        ValueError: a negative count, more successes than units, or a bad ``confidence``.
    """
    z = _quantile(confidence)
    s_t, m_t = _count(successes_t, "successes_t"), _count(n_t, "n_t")
    s_c, m_c = _count(successes_c, "successes_c"), _count(n_c, "n_c")
    if s_t > m_t or s_c > m_c:
        raise ValueError("successes cannot exceed the number of units in an arm")
    if m_t == 0 or m_c == 0 or s_t + s_c == 0:
        return _unknown_rate()
    a_t, a_c, b_t, b_c = float(s_t), float(s_c), float(m_t), float(m_c)
    if 0 in (s_t, s_c, m_t - s_t, m_c - s_c):
        a_t, a_c, b_t, b_c = a_t + 0.5, a_c + 0.5, b_t + 1.0, b_c + 1.0
    p_t, p_c = a_t / b_t, a_c / b_c
    log_ratio = math.log(p_t) - math.log(p_c)
    # (1-p)/(n p) = (1-p)/successes; every cell is now positive, so 0 < p < 1 and se > 0
    se = math.sqrt((1.0 - p_t) / a_t + (1.0 - p_c) / a_c)
    return Interval(
        estimate=math.expm1(log_ratio),
        low=math.expm1(log_ratio - z * se),
        high=_expm1_capped(log_ratio + z * se),
        p_value=_two_sided(log_ratio / se),
    )


def _expm1_capped(x: float) -> float:
    return math.inf if x > 700.0 else math.expm1(x)


def _fieller(a: float, b: float, var_a: float, var_b: float, cov_ab: float, z: float) -> Interval:
    """Fieller interval of ``a / b - 1`` for jointly normal estimates ``a`` and ``b``.

    The interval is every ratio ``k`` for which ``a - k b`` (mean 0 when ``k`` is the true
    ratio) is within ``z`` standard errors of 0: ``(a - k b)² ≤ z² (V_a - 2k C + k² V_b)``,
    a quadratic in ``k``. At ``k = 1`` that is the z-test of ``a - b``, the p-value reported,
    so a bounded interval excludes 0 exactly when the p-value is below ``1 - confidence``.
    When ``b`` itself is not significantly different from 0 the set is unbounded (the whole
    line, or two rays that may leave out ``k = 1`` while the p-value is small) and the bounds
    are ``±inf``, the smallest interval that holds it: two rays do not fit in one interval.
    """
    diff_var = var_a - 2.0 * cov_ab + var_b
    if not diff_var > 0.0 or not math.isfinite(diff_var):  # nothing varies: noise unknown
        return _unknown_mean(a / b - 1.0 if b != 0.0 else 0.0)
    p_value = _two_sided((a - b) / math.sqrt(diff_var))
    if b == 0.0:
        return _unknown_mean(0.0, p_value)
    g = z * z
    quad = b * b - g * var_b
    half = a * b - g * cov_ab
    const = a * a - g * var_a
    disc = half * half - quad * const
    if quad <= 0.0 or disc < 0.0:  # the denominator could still be 0: no finite bounds
        return _unknown_mean(a / b - 1.0, p_value)
    root = math.sqrt(disc)
    return Interval(a / b - 1.0, (half - root) / quad - 1.0, (half + root) / quad - 1.0, p_value)


def mean_lift(
    sum_t: float,
    sumsq_t: float,
    n_t: int,
    sum_c: float,
    sumsq_c: float,
    n_c: int,
    *,
    confidence: float = 0.95,
) -> Interval:
    """Relative lift of a mean (revenue per visitor, time on page) with Fieller's interval.

    The interval holds every ratio ``k = 1 + lift`` with
    ``|ȳ_t - k ȳ_c| ≤ z sqrt(v_t + k² v_c)`` (``v`` the variance of each arm's mean), and
    the p-value is the Welch z-test of ``ȳ_t - ȳ_c``. Unlike the delta method's symmetric
    ``r ± z sqrt(v_t + r² v_c)/ȳ_c`` (which it matches for large samples) it keeps its
    coverage on skewed metrics such as revenue, and while its bounds are finite it agrees
    with the p-value by construction.

    Args:
        sum_t: sum of the metric over the treatment's units.
        sumsq_t: sum of its squares.
        n_t: units in the treatment.
        sum_c: sum of the metric over the control's units.
        sumsq_c: sum of its squares.
        n_c: units in the control.
        confidence: coverage of the interval, e.g. 0.95.

    Returns:
        The lift. The bounds are ``±inf`` (with the p-value still computed) while the
        control mean is not significantly different from 0; the estimate is 0.0 when the
        control mean is exactly 0. With fewer than two units in an arm, or no variation in
        either arm (the noise cannot be estimated), the p-value is 1.

    Raises:
        ValueError: a negative count or a bad ``confidence``.
    """
    z = _quantile(confidence)
    n_t, n_c = _count(n_t, "n_t"), _count(n_c, "n_c")
    mean_t, var_t = _moments(sum_t, sumsq_t, n_t)
    mean_c, var_c = _moments(sum_c, sumsq_c, n_c)
    if n_t < 2 or n_c < 2:
        both = n_t > 0 and n_c > 0 and mean_c != 0.0
        return _unknown_mean(mean_t / mean_c - 1.0 if both else 0.0)
    return _fieller(mean_t, mean_c, var_t / n_t, var_c / n_c, 0.0, z)


def _as_floats(values: Sequence[float], name: str) -> Floats:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers")
    return array


def cuped_lift(
    y_t: Sequence[float],
    x_t: Sequence[float],
    y_c: Sequence[float],
    x_c: Sequence[float],
    *,
    confidence: float = 0.95,
) -> tuple[Interval, float]:
    """Relative lift of a mean with CUPED variance reduction by a pre-period covariate.

    CUPED (Deng, Xu, Kohavi, Walker 2013) compares ``ȳ - θ (x̄_arm - x̄)`` instead of ``ȳ``,
    where ``x`` is each unit's value of a covariate measured *before* assignment (so it is
    independent of the arm) and ``x̄`` the mean over both arms. The expectation is
    unchanged, and the variance shrinks by about ρ², the squared correlation of ``x`` and
    ``y``. ``θ = Cov(x, y) / Var(x)`` is pooled within arms (each arm centred on its own
    means, so a treatment effect on ``y`` does not leak into ``θ``) and then held fixed. The
    interval is Fieller's (as :func:`mean_lift`) for the ratio of the adjusted means, whose
    variances and covariance follow from the four means (ȳ_t, x̄_t, ȳ_c, x̄_c) — the shared
    ``x̄`` makes the adjusted arms slightly correlated.

    Args:
        y_t: the metric of each treatment unit.
        x_t: the same units' pre-period covariate, aligned with ``y_t``.
        y_c: the metric of each control unit.
        x_c: the same units' pre-period covariate, aligned with ``y_c``.
        confidence: coverage of the interval, e.g. 0.95.

    Returns:
        ``(interval, reduction)``: the lift, and the share of the variance of the difference
        in means that CUPED removed, in [0, 1]. With fewer than two units in an arm or a
        constant covariate, the result is :func:`mean_lift` of ``y`` alone and 0.

    Raises:
        ValueError: a covariate not aligned with its metric, or a bad ``confidence``.
    """
    z = _quantile(confidence)
    yt, xt = _as_floats(y_t, "y_t"), _as_floats(x_t, "x_t")
    yc, xc = _as_floats(y_c, "y_c"), _as_floats(x_c, "x_c")
    if yt.shape != xt.shape or yc.shape != xc.shape:
        raise ValueError("each covariate must have one value per unit of its metric")
    n_t, n_c = yt.size, yc.size
    if n_t < 2 or n_c < 2:
        sums = (float(yt.sum()), float(yt @ yt), n_t, float(yc.sum()), float(yc @ yc), n_c)
        return mean_lift(*sums, confidence=confidence), 0.0
    dxt, dxc = xt - xt.mean(), xc - xc.mean()
    sxx = float(dxt @ dxt + dxc @ dxc)
    theta = float(dxt @ (yt - yt.mean()) + dxc @ (yc - yc.mean())) / sxx if sxx > 0.0 else 0.0
    w_t, w_c = n_t / (n_t + n_c), n_c / (n_t + n_c)
    means = np.array([yt.mean(), xt.mean(), yc.mean(), xc.mean()])
    cov = np.zeros((4, 4))
    cov[:2, :2] = np.cov(np.vstack([yt, xt])) / n_t
    cov[2:, 2:] = np.cov(np.vstack([yc, xc])) / n_c
    # adjusted means as linear maps of the four means: x̄_t - x̄ = w_c Δx, x̄_c - x̄ = -w_t Δx
    to_t = np.array([1.0, -theta * w_c, 0.0, theta * w_c])
    to_c = np.array([0.0, theta * w_t, 1.0, -theta * w_t])
    interval = _fieller(
        float(to_t @ means),
        float(to_c @ means),
        float(to_t @ cov @ to_t),
        float(to_c @ cov @ to_c),
        float(to_t @ cov @ to_c),
        z,
    )
    plain = float(cov[0, 0] + cov[2, 2])
    adjusted = float((to_t - to_c) @ cov @ (to_t - to_c))
    reduction = 1.0 - adjusted / plain if plain > 0.0 else 0.0
    return interval, min(1.0, max(0.0, reduction))


def _log_mixture_ratio(diff: float, var: float, tau2: float) -> float:
    """log Λ of the normal-mixture SPRT for a normal mean ``diff`` with variance ``var``.

    ``Λ = ∫ N(diff; θ, V) / N(diff; 0, V) dN(θ; 0, τ²)
        = sqrt(V / (V + τ²)) · exp(τ² diff² / (2 V (V + τ²)))``.
    """
    total = var + tau2
    return 0.5 * math.log(var / total) + tau2 * diff * diff / (2.0 * var * total)


class _Arms(msgspec.Struct, frozen=True):
    mean_t: float
    var_t: float
    n_t: int
    mean_c: float
    var_c: float
    n_c: int

    @property
    def usable(self) -> bool:
        return self.n_t >= 2 and self.n_c >= 2 and self.var_t / self.n_t + self.var_c / self.n_c > 0

    def tau2(self, given: float | None) -> float:
        if given is not None:
            if not given > 0.0:
                raise ValueError(f"tau2 must be positive, got {given}")
            return float(given)
        pooled_mean = (self.mean_t * self.n_t + self.mean_c * self.n_c) / (self.n_t + self.n_c)
        scale = pooled_mean * pooled_mean
        if scale == 0.0:  # a metric centred on 0: fall back to the spread
            scale = (self.var_t + self.var_c) / 2.0
        return DEFAULT_RELATIVE_EFFECT**2 * scale


def _arms(sum_t: float, sumsq_t: float, n_t: int, sum_c: float, sumsq_c: float, n_c: int) -> _Arms:
    n_t, n_c = _count(n_t, "n_t"), _count(n_c, "n_c")
    mean_t, var_t = _moments(sum_t, sumsq_t, n_t)
    mean_c, var_c = _moments(sum_c, sumsq_c, n_c)
    return _Arms(mean_t, var_t, n_t, mean_c, var_c, n_c)


def sequential_p_value(
    sum_t: float,
    sumsq_t: float,
    n_t: int,
    sum_c: float,
    sumsq_c: float,
    n_c: int,
    *,
    tau2: float | None = None,
) -> float:
    """Always-valid p-value of "equal means" by the normal-mixture SPRT (mSPRT).

    The difference of the arm means ``d`` has variance ``V = s_t²/n_t + s_c²/n_c``; under
    a ``N(0, τ²)`` mixture over the true difference the likelihood ratio against "no
    difference" is ``Λ = sqrt(V/(V+τ²)) exp(τ² d² / (2V(V+τ²)))`` and the p-value is
    ``min(1, 1/Λ)``. Under the null ``Λ`` is a nonnegative martingale in the information
    ``1/V``, so ``P(p ever ≤ α) ≤ α`` (Ville) however many times the report is opened.
    The caller may report the running minimum over looks — still valid, and it never goes
    up. The sample variances are plugged in for the true ones, which is accurate once each
    arm holds a few hundred units; assumes the split between arms does not change.

    Args:
        sum_t: sum of the metric over the treatment's units (successes, for a rate).
        sumsq_t: sum of its squares (successes again, for a 0/1 metric).
        n_t: units in the treatment.
        sum_c: sum of the metric over the control's units.
        sumsq_c: sum of its squares.
        n_c: units in the control.
        tau2: variance of the mixing prior over the difference, in squared metric units:
            the size of effect the test is tuned to find soonest. By default
            ``(DEFAULT_RELATIVE_EFFECT · pooled mean)²`` — tuned for lifts of about 10 %;
            any fixed value keeps the test valid, only its power changes.

    Returns:
        The p-value in (0, 1]; 1.0 with fewer than two units in an arm or no variance.

    Raises:
        ValueError: a negative count or a non-positive ``tau2``.
    """
    arms = _arms(sum_t, sumsq_t, n_t, sum_c, sumsq_c, n_c)
    if not arms.usable:
        return 1.0
    var = arms.var_t / arms.n_t + arms.var_c / arms.n_c
    log_lr = _log_mixture_ratio(arms.mean_t - arms.mean_c, var, arms.tau2(tau2))
    return 1.0 if log_lr <= 0.0 else math.exp(-log_lr)


def confidence_sequence(
    sum_t: float,
    sumsq_t: float,
    n_t: int,
    sum_c: float,
    sumsq_c: float,
    n_c: int,
    *,
    tau2: float | None = None,
    confidence: float = 0.95,
) -> Interval:
    """Always-valid interval of the relative lift: covers at every look at once.

    For a candidate lift ``r`` (slope ``k = 1 + r``) the hypothesis ``μ_t = k μ_c`` says the
    normalised contrast ``(ȳ_t - k ȳ_c) / sqrt(1 + k²)`` has mean 0; its variance
    ``(v_t + k² v_c) / (1 + k²)`` stays between the arms' variances for every ``k``. The
    sequence is every ``r`` whose mSPRT (mixing variance ``τ²/2``) has not rejected at level
    ``1 - confidence`` — a sequential Fieller interval. At ``r = 0`` that test *is*
    :func:`sequential_p_value` with the same ``τ²``, so the interval excludes 0 exactly when
    that p-value is below ``1 - confidence``. Bounds are searched on the angle ``atan(k)``
    outward from the estimate in growing steps, then bisected; an infinite bound means the
    control mean is not yet known to differ from 0.

    Args:
        sum_t: sum of the metric over the treatment's units.
        sumsq_t: sum of its squares.
        n_t: units in the treatment.
        sum_c: sum of the metric over the control's units.
        sumsq_c: sum of its squares.
        n_c: units in the control.
        tau2: mixing variance of the difference in means, as in :func:`sequential_p_value`.
        confidence: the chance that the interval covers the true lift at every look.

    Returns:
        The lift, the sequence's bounds at this look and :func:`sequential_p_value`. With
        fewer than two units in an arm, no variance or a control mean of 0: the point
        estimate (0.0 when undefined) between ``-inf`` and ``inf`` with p-value 1.

    Raises:
        ValueError: a negative count, a non-positive ``tau2`` or a bad ``confidence``.
    """
    _quantile(confidence)
    arms = _arms(sum_t, sumsq_t, n_t, sum_c, sumsq_c, n_c)
    p_value = sequential_p_value(sum_t, sumsq_t, n_t, sum_c, sumsq_c, n_c, tau2=tau2)
    if not arms.usable or arms.mean_c == 0.0:
        both = arms.n_t > 0 and arms.n_c > 0 and arms.mean_c != 0.0
        return _unknown_mean(arms.mean_t / arms.mean_c - 1.0 if both else 0.0, p_value)
    prior = arms.tau2(tau2) / 2.0
    bound = math.log(1.0 / (1.0 - confidence))
    v_t, v_c = arms.var_t / arms.n_t, arms.var_c / arms.n_c

    def outside(phi: float) -> bool:
        cos, sin = math.cos(phi), math.sin(phi)
        contrast = arms.mean_t * cos - arms.mean_c * sin
        return _log_mixture_ratio(contrast, v_t * cos * cos + v_c * sin * sin, prior) >= bound

    ratio = arms.mean_t / arms.mean_c
    centre = math.atan(ratio)
    high = _edge(outside, centre, math.pi / 2.0)
    low = _edge(outside, centre, -math.pi / 2.0)
    return Interval(
        estimate=ratio - 1.0,
        low=-math.inf if low is None else math.tan(low) - 1.0,
        high=math.inf if high is None else math.tan(high) - 1.0,
        p_value=p_value,
    )


def _edge(outside: Callable[[float], bool], centre: float, limit: float) -> float | None:
    """The nearest angle from ``centre`` towards ``limit`` that is rejected, or None.

    Steps grow geometrically (factor ``_GROWTH``) from ``_FIRST_STEP`` so a bound right next
    to the estimate (big samples) and one far away (small samples) are both found in a few
    dozen evaluations; a rejected band narrower than a step can be stepped over, which only
    widens the interval. ``limit`` itself (``k = ±inf``) is never evaluated.
    """
    span = limit - centre
    inside, step = centre, _FIRST_STEP
    while step < 1.0:
        probe = centre + span * step
        if outside(probe):
            break
        inside, step = probe, step * _GROWTH
    else:
        return None
    out = probe
    for _ in range(_BISECTIONS):
        middle = (inside + out) / 2.0
        if outside(middle):
            out = middle
        else:
            inside = middle
    return out


def _chi2_sf(statistic: float, df: int) -> float:
    """P(χ²_df ≥ statistic) for an integer ``df`` ≥ 1, exactly.

    Uses ``Q(s + 1, y) = Q(s, y) + yˢ e⁻ʸ / Γ(s + 1)`` (the regularised upper incomplete
    gamma with ``y = statistic / 2``) from ``Q(1, y) = e⁻ʸ`` for even ``df`` and
    ``Q(½, y) = erfc(√y)`` for odd ``df``; the terms are Poisson-like masses, summed from
    logarithms so nothing overflows.
    """
    if statistic <= 0.0:
        return 1.0
    y = statistic / 2.0
    log_y = math.log(y)
    if df % 2 == 0:
        total = sum(math.exp(i * log_y - y - math.lgamma(i + 1.0)) for i in range(df // 2))
    else:
        total = math.erfc(math.sqrt(y)) + sum(
            math.exp((i - 0.5) * log_y - y - math.lgamma(i + 0.5)) for i in range(1, df // 2 + 1)
        )
    return min(1.0, max(0.0, total))


def srm_p_value(observed: Sequence[int], weights: Sequence[float]) -> float:
    """Sample-ratio mismatch: chi-square goodness of fit of the split to its design.

    A small p-value (the usual alarm is below 0.001) means assignment, logging or
    filtering is broken and the experiment's lift cannot be trusted.

    Args:
        observed: units seen in each arm.
        weights: the designed share of each arm, in the same order (any positive scale).

    Returns:
        The p-value; 1.0 with no units or fewer than two arms with weight; 0.0 when an arm
        designed to get nothing got units.

    Raises:
        ValueError: lengths differ, a negative count or weight, or all weights are 0.
    """
    if len(observed) != len(weights):
        raise ValueError("observed and weights must have one entry per arm")
    counts = [_count(value, "observed") for value in observed]
    if any(w < 0.0 or not math.isfinite(w) for w in weights):
        raise ValueError("weights must be finite and not negative")
    weight_total = float(sum(weights))
    if weight_total <= 0.0 and counts:
        raise ValueError("at least one arm must have a positive weight")
    total = sum(counts)
    if total == 0:
        return 1.0
    if any(count > 0 and w == 0.0 for count, w in zip(counts, weights, strict=True)):
        return 0.0
    cells = [(count, total * w / weight_total) for count, w in zip(counts, weights, strict=True)]
    cells = [(count, expected) for count, expected in cells if expected > 0.0]
    if len(cells) < 2:
        return 1.0
    statistic = sum((count - expected) ** 2 / expected for count, expected in cells)
    return _chi2_sf(statistic, len(cells) - 1)
