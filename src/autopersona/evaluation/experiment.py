r"""Statistics of A/B experiments: one function per test, on counts or summary statistics.

Every function takes plain numbers (counts, means, variances) or arrays and returns a small
frozen dataclass, so the same code serves the analyst CLI, the closed loop and SQL
aggregates computed in DuckDB.

Formulas
--------
Difference in proportions ``d = p_t - p_c`` with ``p = x / n``:

* **Wald**: ``d ± z (p_t(1-p_t)/n_t + p_c(1-p_c)/n_c)^½``; two-sided p-value of
  ``d / se`` on the standard normal (statsmodels ``confint_proportions_2indep`` and
  ``test_proportions_2indep`` with ``method="wald"``).
* **Newcombe** (hybrid score, method 10): Wilson intervals ``[l_t, u_t]``, ``[l_c, u_c]``
  of each rate, ``d - ((p_t-l_t)² + (u_c-p_c)²)^½ … d + ((u_t-p_t)² + (p_c-l_c)²)^½``
  (statsmodels ``method="newcomb"``).

Difference in means, **Welch**: ``se² = s_t²/n_t + s_c²/n_c``, Welch–Satterthwaite
``df = se⁴ / ((s_t²/n_t)²/(n_t-1) + (s_c²/n_c)²/(n_c-1))``, ``t = d / se`` on Student's t
(scipy ``ttest_ind(equal_var=False)``).

**CUPED**: with a pre-period covariate ``x``, ``theta = cov(y, x) / var(x)`` over all units
and ``y' = y - theta (x - mean(x))``; the variance falls by the factor ``1 - corr(y, x)²``.

**Sample-ratio mismatch**: Pearson chi-square of the arm counts against the planned shares
(``k - 1`` degrees of freedom); a p-value under 0.001 flags a broken assignment.

**Sequential (always valid)**: the mixture SPRT with a normal mixing distribution
``N(theta0, tau²)`` on the effect.  For an estimate ``d`` with variance ``V`` after ``n``
units, the mixture likelihood ratio is

.. math:: \Lambda = \sqrt{V / (V + \tau^2)}\,
          \exp\left(\frac{\tau^2 (d - \theta_0)^2}{2 V (V + \tau^2)}\right)

and the always-valid p-value is the running minimum of ``min(1, 1/Λ)``.  Inverting
``Λ < 1/α`` gives the confidence sequence ``d ± r``,
``r² = 2 V (V + τ²) / τ² · (log(1/α) + ½ log((V + τ²) / V))``, intersected over looks.
Under the null, ``P(any look has p ≤ α) ≤ α`` however often one looks (Ville's
inequality), exactly for Gaussian data of known variance.

**Multiple comparisons**: Holm's step-down and Benjamini–Hochberg's step-up adjusted
p-values (statsmodels ``multipletests`` with ``holm`` and ``fdr_bh``).

**Power**: two-sided z-test of a standardised effect ``e`` with ``n_1`` and ``n_2 = r n_1``
units: ``power = Φ(e √m - z) + Φ(-e √m - z)`` with ``m = n_1 n_2 / (n_1 + n_2)`` and
``z = Φ⁻¹(1 - α/2)`` (statsmodels ``NormalIndPower``); the sample size and the minimum
detectable effect solve it for ``n_1`` or ``e``.

**Probability to beat**: with Beta(a, b) priors, ``P(p_t > p_c)`` from the exact sum
(Evan Miller's closed form for integer posterior parameters) or Monte Carlo with a seed.

Examples
--------
>>> r = diff_proportions(30, 100, 20, 100)
>>> round(r.diff, 2), round(r.ci_low, 4), round(r.ci_high, 4)
(0.1, -0.0192, 0.2192)
>>> round(welch(1.0, 1.0, 50, 0.5, 2.0, 60).df, 1)
105.4
>>> [round(p, 3) for p in adjust_pvalues([0.01, 0.04, 0.03], "holm")]
[0.03, 0.06, 0.06]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

__all__ = [
    "Correction",
    "Cuped",
    "MeanDiff",
    "PropDiff",
    "PropMethod",
    "SequentialResult",
    "Srm",
    "adjust_pvalues",
    "cuped",
    "diff_means",
    "diff_proportions",
    "mde",
    "mde_proportion",
    "msprt",
    "power",
    "prob_to_beat",
    "sample_size",
    "srm_check",
    "welch",
    "wilson_interval",
]

PropMethod = Literal["wald", "newcomb"]
Correction = Literal["holm", "bh", "none"]


def _z(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return float(stats.norm.isf(alpha / 2))


class _Result:
    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (floats, ints, strings)."""
        return asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True)
class PropDiff(_Result):
    """Difference of two rates (treatment minus control) with interval and p-value."""

    n_t: int
    n_c: int
    rate_t: float
    rate_c: float
    diff: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    method: str
    alpha: float

    @property
    def relative(self) -> float:
        """Relative lift ``diff / rate_c`` (NaN when the control rate is 0)."""
        return self.diff / self.rate_c if self.rate_c > 0 else math.nan


def _check_counts(x: int, n: int, what: str) -> None:
    if n <= 0 or x < 0 or x > n:
        raise ValueError(f"{what}: need 0 <= successes <= n and n > 0, got {x} of {n}")


def wilson_interval(x: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of one rate ``x / n``.

    >>> [round(v, 4) for v in wilson_interval(3, 10)]
    [0.1078, 0.6032]
    """
    _check_counts(x, n, "wilson_interval")
    z = _z(alpha)
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def diff_proportions(
    x_t: int, n_t: int, x_c: int, n_c: int, alpha: float = 0.05, method: PropMethod = "wald"
) -> PropDiff:
    """Difference of rates ``x_t/n_t - x_c/n_c`` with a Wald or Newcombe interval.

    The p-value is the two-sided Wald z-test with unpooled variance (it agrees with the
    Wald interval: it is below ``alpha`` exactly when the interval excludes 0).
    """
    _check_counts(x_t, n_t, "treatment")
    _check_counts(x_c, n_c, "control")
    z = _z(alpha)
    p_t, p_c = x_t / n_t, x_c / n_c
    d = p_t - p_c
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    if method == "wald":
        lo, hi = d - z * se, d + z * se
    elif method == "newcomb":
        l_t, u_t = wilson_interval(x_t, n_t, alpha)
        l_c, u_c = wilson_interval(x_c, n_c, alpha)
        lo = d - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2)
        hi = d + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2)
        lo, hi = max(lo, -1.0), min(hi, 1.0)  # rounding can step past the bounds
    else:
        raise ValueError(f"unknown interval method {method!r} (use wald or newcomb)")
    p_value = float(2 * stats.norm.sf(abs(d) / se)) if se > 0 else float(d == 0)
    return PropDiff(n_t, n_c, p_t, p_c, d, se, lo, hi, p_value, method, alpha)


@dataclass(frozen=True)
class MeanDiff(_Result):
    """Difference of two means (treatment minus control), Welch's t-test."""

    n_t: int
    n_c: int
    mean_t: float
    mean_c: float
    diff: float
    se: float
    df: float
    t: float
    ci_low: float
    ci_high: float
    p_value: float
    alpha: float


def welch(
    mean_t: float,
    var_t: float,
    n_t: int,
    mean_c: float,
    var_c: float,
    n_c: int,
    alpha: float = 0.05,
) -> MeanDiff:
    """Welch's t-test from summary statistics (sample variances with ``ddof=1``)."""
    if n_t < 2 or n_c < 2:
        raise ValueError(f"Welch's t needs at least 2 units per arm, got {n_t} and {n_c}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    a, b = var_t / n_t, var_c / n_c
    se = math.sqrt(a + b)
    d = mean_t - mean_c
    if se == 0:
        p = 1.0 if d == 0 else 0.0
        return MeanDiff(n_t, n_c, mean_t, mean_c, d, 0.0, math.nan, math.nan, d, d, p, alpha)
    df = (a + b) ** 2 / (a * a / (n_t - 1) + b * b / (n_c - 1))
    t = d / se
    q = float(stats.t.isf(alpha / 2, df))
    p_value = float(2 * stats.t.sf(abs(t), df))
    return MeanDiff(n_t, n_c, mean_t, mean_c, d, se, df, t, d - q * se, d + q * se, p_value, alpha)


def diff_means(y_t: ArrayLike, y_c: ArrayLike, alpha: float = 0.05) -> MeanDiff:
    """Welch's t-test of two samples of values."""
    t = np.asarray(y_t, dtype=float)
    c = np.asarray(y_c, dtype=float)
    if t.size < 2 or c.size < 2:
        raise ValueError(f"Welch's t needs at least 2 units per arm, got {t.size} and {c.size}")
    return welch(
        float(t.mean()),
        float(t.var(ddof=1)),
        t.size,
        float(c.mean()),
        float(c.var(ddof=1)),
        c.size,
        alpha,
    )


@dataclass(frozen=True)
class Cuped(_Result):
    """CUPED adjustment: ``theta`` and the share of variance it removes."""

    theta: float
    covariate_mean: float
    variance_before: float
    variance_after: float

    @property
    def variance_reduction(self) -> float:
        """``1 - var(y') / var(y)`` (``corr(y, x)²`` on the data ``theta`` was fitted on)."""
        if self.variance_before == 0:
            return 0.0
        return 1.0 - self.variance_after / self.variance_before


def cuped(y: ArrayLike, x: ArrayLike) -> tuple[np.ndarray[Any, np.dtype[np.float64]], Cuped]:
    """Adjust the outcome ``y`` with the pre-period covariate ``x`` (pooled over arms).

    >>> y_adj, c = cuped([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0])
    >>> round(c.theta, 3), round(c.variance_reduction, 3)
    (0.743, 0.966)
    """
    ya = np.asarray(y, dtype=float)
    xa = np.asarray(x, dtype=float)
    if ya.shape != xa.shape or ya.size < 2:
        raise ValueError("cuped needs outcome and covariate of the same length >= 2")
    vx = float(xa.var(ddof=1))
    theta = float(np.cov(ya, xa, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    mx = float(xa.mean())
    adj = ya - theta * (xa - mx)
    return adj, Cuped(theta, mx, float(ya.var(ddof=1)), float(adj.var(ddof=1)))


@dataclass(frozen=True)
class Srm(_Result):
    """Sample-ratio-mismatch check of the arm sizes against the planned split."""

    observed: list[int]
    expected: list[float]
    chi2: float
    p_value: float
    threshold: float

    @property
    def mismatch(self) -> bool:
        """True when the p-value is below the threshold (the split is not as planned)."""
        return self.p_value < self.threshold


def srm_check(
    counts: Sequence[int], planned: Sequence[float] | None = None, threshold: float = 0.001
) -> Srm:
    """Chi-square test of ``counts`` against ``planned`` shares (default: equal).

    >>> srm_check([5000, 5000]).mismatch, srm_check([5000, 4600]).mismatch
    (False, True)
    """
    obs = np.asarray(counts, dtype=float)
    if obs.size < 2:
        raise ValueError("a sample-ratio check needs at least two arms")
    shares = np.ones(obs.size) if planned is None else np.asarray(planned, dtype=float)
    if shares.shape != obs.shape or (shares <= 0).any():
        raise ValueError("planned shares must be positive, one per arm")
    exp = shares / shares.sum() * obs.sum()
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    p = float(stats.chi2.sf(chi2, obs.size - 1))
    return Srm([int(v) for v in obs], [float(v) for v in exp], chi2, p, threshold)


@dataclass(frozen=True)
class SequentialResult(_Result):
    """Always-valid p-values and confidence sequence of the mSPRT, one entry per look."""

    estimate: list[float]
    p_value: list[float]
    ci_low: list[float]
    ci_high: list[float]
    tau: float
    alpha: float

    @property
    def rejected_at(self) -> int | None:
        """Index of the first look whose always-valid p-value is at most ``alpha``."""
        for i, p in enumerate(self.p_value):
            if p <= self.alpha:
                return i
        return None


def msprt(
    estimates: ArrayLike,
    variances: ArrayLike,
    tau: float,
    alpha: float = 0.05,
    theta0: float = 0.0,
) -> SequentialResult:
    """Mixture SPRT over a sequence of looks at an effect estimate and its variance.

    ``estimates[i]`` and ``variances[i]`` are the effect (e.g. a difference of means) and
    its sampling variance after the ``i``-th look; ``tau`` is the standard deviation of
    the normal mixing distribution (a plausible effect size).  See the module doc.
    """
    d = np.asarray(estimates, dtype=float)
    v = np.asarray(variances, dtype=float)
    if d.shape != v.shape or d.ndim != 1:
        raise ValueError("estimates and variances must be 1-d of the same length")
    if tau <= 0 or (v <= 0).any():
        raise ValueError("tau and every variance must be positive")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    t2 = tau * tau
    log_lr = 0.5 * np.log(v / (v + t2)) + t2 * (d - theta0) ** 2 / (2 * v * (v + t2))
    p = np.minimum.accumulate(np.minimum(1.0, np.exp(-log_lr)))
    r = np.sqrt(2 * v * (v + t2) / t2 * (math.log(1 / alpha) + 0.5 * np.log((v + t2) / v)))
    lo = np.maximum.accumulate(d - r)
    hi = np.minimum.accumulate(d + r)
    return SequentialResult(d.tolist(), p.tolist(), lo.tolist(), hi.tolist(), tau, alpha)


def adjust_pvalues(p_values: Sequence[float], method: Correction = "holm") -> list[float]:
    """Holm (family-wise) or Benjamini–Hochberg (false discovery rate) adjusted p-values."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0 or method == "none":
        return [float(v) for v in p]
    if ((p < 0) | (p > 1) | np.isnan(p)).any():
        raise ValueError("p-values must be in [0, 1]")
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * ps)
    elif method == "bh":
        adj = np.minimum.accumulate(m / np.arange(m, 0, -1) * ps[::-1])[::-1]
    else:
        raise ValueError(f"unknown correction {method!r} (use holm, bh or none)")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return [float(v) for v in out]


def _eff_n(n1: float, ratio: float) -> float:
    return 1.0 / (1.0 / n1 + 1.0 / (n1 * ratio))


def power(effect: float, n1: float, alpha: float = 0.05, ratio: float = 1.0) -> float:
    """Power of the two-sided two-sample z-test of a standardised effect (``d / sigma``)."""
    z = _z(alpha)
    s = abs(effect) * math.sqrt(_eff_n(n1, ratio))
    return float(stats.norm.sf(z - s) + stats.norm.cdf(-z - s))


def sample_size(
    effect: float, alpha: float = 0.05, target_power: float = 0.8, ratio: float = 1.0
) -> float:
    """Units in arm 1 (arm 2 has ``ratio`` times as many) to reach ``target_power``."""
    if effect == 0 or not alpha < target_power < 1:
        raise ValueError("need a non-zero effect and alpha < power < 1")
    return float(
        optimize.brentq(lambda n: power(effect, n, alpha, ratio) - target_power, 1e-6, 1e12)
    )


def mde(n1: float, alpha: float = 0.05, target_power: float = 0.8, ratio: float = 1.0) -> float:
    """Minimum detectable standardised effect with ``n1`` and ``ratio * n1`` units."""
    if n1 <= 0 or not alpha < target_power < 1:
        raise ValueError("need n1 > 0 and alpha < power < 1")
    return float(optimize.brentq(lambda e: power(e, n1, alpha, ratio) - target_power, 1e-12, 1e3))


def mde_proportion(
    base_rate: float,
    n1: float,
    alpha: float = 0.05,
    target_power: float = 0.8,
    ratio: float = 1.0,
) -> float:
    """Minimum detectable absolute difference of rates around ``base_rate``.

    Uses the standard deviation ``(p (1 - p))^½`` of the base rate.
    """
    if not 0 < base_rate < 1:
        raise ValueError("base_rate must be in (0, 1)")
    return mde(n1, alpha, target_power, ratio) * math.sqrt(base_rate * (1 - base_rate))


def prob_to_beat(
    x_t: int,
    n_t: int,
    x_c: int,
    n_c: int,
    prior: tuple[float, float] = (1.0, 1.0),
    *,
    draws: int | None = None,
    seed: int = 0,
) -> float:
    """Posterior probability that the treatment rate exceeds the control rate.

    Beta(a, b) priors on each rate.  ``draws=None`` is exact (needs an integer
    posterior ``alpha`` of the treatment); otherwise Monte Carlo with ``seed``.

    >>> round(prob_to_beat(30, 100, 20, 100), 4)
    0.9476
    """
    _check_counts(x_t, n_t, "treatment")
    _check_counts(x_c, n_c, "control")
    a0, b0 = prior
    at, bt = a0 + x_t, b0 + n_t - x_t
    ac, bc = a0 + x_c, b0 + n_c - x_c
    if draws is not None:
        rng = np.random.default_rng(seed)
        return float((rng.beta(at, bt, draws) > rng.beta(ac, bc, draws)).mean())
    if at != int(at):
        raise ValueError("the exact formula needs an integer posterior alpha; pass draws=")
    i = np.arange(int(at))
    log_terms = (
        special.betaln(ac + i, bc + bt)
        - np.log(bt + i)
        - special.betaln(1 + i, bt)
        - special.betaln(ac, bc)
    )
    # P(p_t > p_c) = sum_{i < at} B(ac+i, bc+bt) / ((bt+i) B(1+i, bt) B(ac, bc))
    return float(min(1.0, max(0.0, math.exp(special.logsumexp(log_terms)))))
