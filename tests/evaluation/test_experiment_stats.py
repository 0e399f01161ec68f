"""Experiment statistics against scipy and statsmodels, with hypothesis property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint
from statsmodels.stats.proportion import test_proportions_2indep as proportions_2indep_test
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from autopersona.evaluation import experiment as ex

counts = st.integers(min_value=2, max_value=5000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)
alphas = st.sampled_from([0.01, 0.05, 0.1, 0.2])


@settings(max_examples=150, deadline=None)
@given(t=counts, c=counts, alpha=alphas)
def test_wald_matches_statsmodels(t: tuple[int, int], c: tuple[int, int], alpha: float) -> None:
    r = ex.diff_proportions(t[0], t[1], c[0], c[1], alpha=alpha, method="wald")
    lo, hi = confint_proportions_2indep(t[0], t[1], c[0], c[1], method="wald", alpha=alpha)
    assert r.ci_low == pytest.approx(lo, abs=1e-12)
    assert r.ci_high == pytest.approx(hi, abs=1e-12)
    if r.se > 0:
        # statsmodels also computes a ratio and odds ratio, which divide by zero at p = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            sm = proportions_2indep_test(t[0], t[1], c[0], c[1], method="wald")
        assert r.p_value == pytest.approx(sm.pvalue, rel=1e-9, abs=1e-14)
        # the Wald p-value and interval agree
        assert (r.p_value < alpha) == (lo > 0 or hi < 0)


@settings(max_examples=150, deadline=None)
@given(t=counts, c=counts, alpha=alphas)
def test_newcombe_matches_statsmodels(t: tuple[int, int], c: tuple[int, int], alpha: float) -> None:
    r = ex.diff_proportions(t[0], t[1], c[0], c[1], alpha=alpha, method="newcomb")
    lo, hi = confint_proportions_2indep(t[0], t[1], c[0], c[1], method="newcomb", alpha=alpha)
    assert r.ci_low == pytest.approx(lo, abs=1e-10)
    assert r.ci_high == pytest.approx(hi, abs=1e-10)
    assert -1 <= r.ci_low <= r.diff <= r.ci_high <= 1


@settings(max_examples=100, deadline=None)
@given(c=counts, alpha=alphas)
def test_wilson_matches_statsmodels(c: tuple[int, int], alpha: float) -> None:
    lo, hi = proportion_confint(c[0], c[1], alpha=alpha, method="wilson")
    assert ex.wilson_interval(c[0], c[1], alpha) == pytest.approx((lo, hi), abs=1e-12)


samples = st.lists(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=3, max_size=60
).filter(lambda v: np.var(v) > 1e-6)


@settings(max_examples=150, deadline=None)
@given(a=samples, b=samples, alpha=alphas)
def test_welch_matches_scipy_and_statsmodels(a: list[float], b: list[float], alpha: float) -> None:
    r = ex.diff_means(a, b, alpha=alpha)
    sp = stats.ttest_ind(a, b, equal_var=False)
    assert r.t == pytest.approx(sp.statistic, rel=1e-9)
    assert r.p_value == pytest.approx(sp.pvalue, rel=1e-7, abs=1e-300)
    assert r.df == pytest.approx(sp.df, rel=1e-9)
    ci = sp.confidence_interval(1 - alpha)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-9)
    cm = CompareMeans(DescrStatsW(np.asarray(a)), DescrStatsW(np.asarray(b)))
    lo, hi = cm.tconfint_diff(alpha=alpha, usevar="unequal")
    assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), rel=1e-9, abs=1e-9)


def test_welch_rejects_tiny_arms_and_bad_alpha() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        ex.diff_means([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        ex.diff_means([1.0, 2.0], [1.0, 2.0], alpha=1.5)


def test_cuped_reduces_variance_by_corr_squared_and_keeps_the_effect() -> None:
    rng = np.random.default_rng(7)
    n = 4000
    pre = rng.gamma(2.0, 10.0, n)
    arm = rng.random(n) < 0.5
    y = 0.8 * pre + rng.normal(0, 8, n) + 2.0 * arm
    adj, c = ex.cuped(y, pre)
    assert c.theta == pytest.approx(np.cov(y, pre)[0, 1] / np.var(pre, ddof=1))
    assert c.variance_reduction == pytest.approx(np.corrcoef(y, pre)[0, 1] ** 2, rel=1e-9)
    raw = ex.diff_means(y[arm], y[~arm])
    cup = ex.diff_means(adj[arm], adj[~arm])
    assert cup.se < 0.7 * raw.se
    assert cup.ci_low < 2.0 < cup.ci_high
    # same estimate as OLS of y on arm and the centred covariate, up to theta's pooling
    assert cup.diff == pytest.approx(raw.diff - c.theta * (pre[arm].mean() - pre[~arm].mean()))


@settings(max_examples=100, deadline=None)
@given(
    obs=st.lists(st.integers(min_value=1, max_value=10_000), min_size=2, max_size=5),
    data=st.data(),
)
def test_srm_matches_scipy_chisquare(obs: list[int], data: st.DataObject) -> None:
    shares = data.draw(
        st.lists(st.floats(min_value=0.05, max_value=1.0), min_size=len(obs), max_size=len(obs))
    )
    r = ex.srm_check(obs, shares)
    exp = np.asarray(shares) / sum(shares) * sum(obs)
    sp = stats.chisquare(obs, exp)
    assert r.chi2 == pytest.approx(sp.statistic, rel=1e-9)
    assert r.p_value == pytest.approx(sp.pvalue, rel=1e-7, abs=1e-300)


def test_srm_flags_a_broken_split() -> None:
    assert not ex.srm_check([3300, 3350, 3350]).mismatch
    assert ex.srm_check([5000, 5000], [0.6, 0.4]).mismatch
    with pytest.raises(ValueError, match="two arms"):
        ex.srm_check([10])


pvals = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=40)


@settings(max_examples=15, deadline=None)  # multipletests costs ~50 ms a call
@given(p=pvals)
def test_holm_and_bh_match_multipletests(p: list[float]) -> None:
    for ours, theirs in (("holm", "holm"), ("bh", "fdr_bh")):
        got = ex.adjust_pvalues(p, ours)  # type: ignore[arg-type]
        want = multipletests(p, method=theirs)[1]
        assert got == pytest.approx(list(want), abs=1e-12)
        assert all(a >= b - 1e-15 for a, b in zip(got, p, strict=True))
    assert ex.adjust_pvalues(p, "none") == p


@settings(max_examples=100, deadline=None)
@given(
    effect=st.floats(min_value=0.01, max_value=1.5),
    n1=st.floats(min_value=5, max_value=1e5),
    ratio=st.floats(min_value=0.2, max_value=5),
    alpha=alphas,
)
def test_power_matches_normalindpower(effect: float, n1: float, ratio: float, alpha: float) -> None:
    want = NormalIndPower().power(effect, n1, alpha, ratio=ratio)
    assert ex.power(effect, n1, alpha, ratio) == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("effect", "alpha", "pw", "ratio"),
    [(0.1, 0.05, 0.8, 1.0), (0.25, 0.01, 0.9, 2.0), (0.05, 0.1, 0.5, 0.5)],
)
def test_sample_size_and_mde_match_zt_ind_solve_power(
    effect: float, alpha: float, pw: float, ratio: float
) -> None:
    n = ex.sample_size(effect, alpha, pw, ratio)
    want_n = zt_ind_solve_power(effect_size=effect, alpha=alpha, power=pw, ratio=ratio)
    assert n == pytest.approx(want_n, rel=1e-6)
    e = ex.mde(n, alpha, pw, ratio)
    want_e = zt_ind_solve_power(nobs1=n, alpha=alpha, power=pw, ratio=ratio)
    assert e == pytest.approx(want_e, rel=1e-4)  # statsmodels solves to ~1e-5
    assert e == pytest.approx(effect, rel=1e-6)
    assert ex.mde_proportion(0.1, n, alpha, pw, ratio) == pytest.approx(effect * 0.3, rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(t=counts, c=counts)
def test_prob_to_beat_exact_matches_monte_carlo(t: tuple[int, int], c: tuple[int, int]) -> None:
    exact = ex.prob_to_beat(t[0], t[1], c[0], c[1])
    mc = ex.prob_to_beat(t[0], t[1], c[0], c[1], draws=40_000, seed=1)
    assert 0.0 <= exact <= 1.0
    assert exact == pytest.approx(mc, abs=0.015)
    # symmetry: P(t > c) + P(c > t) = 1 for continuous posteriors
    assert exact + ex.prob_to_beat(c[0], c[1], t[0], t[1]) == pytest.approx(1.0, abs=1e-9)


def test_prob_to_beat_needs_draws_for_fractional_prior() -> None:
    with pytest.raises(ValueError, match="draws"):
        ex.prob_to_beat(3, 10, 2, 10, prior=(0.5, 0.5))
    assert 0.5 < ex.prob_to_beat(3, 10, 2, 10, prior=(0.5, 0.5), draws=20_000) < 1


def _null_paths(sims: int, looks: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.normal(0, 1, (sims, looks)).cumsum(axis=1)
    c = rng.normal(0, 1, (sims, looks)).cumsum(axis=1)
    n = np.arange(1, looks + 1)
    return (t - c) / n, np.broadcast_to(2.0 / n, (sims, looks))


def test_msprt_type_one_error_under_continuous_monitoring() -> None:
    """Looking after every pair of units for 400 pairs keeps P(reject) <= alpha."""
    sims, looks, alpha = 2000, 400, 0.05
    d, v = _null_paths(sims, looks, seed=20261130)
    rejected = 0
    naive = 0
    for i in range(sims):
        r = ex.msprt(d[i], v[i], tau=0.3, alpha=alpha)
        rejected += r.rejected_at is not None
        naive += bool((np.abs(d[i]) / np.sqrt(v[i]) > stats.norm.isf(alpha / 2)).any())
    rate = rejected / sims
    slack = 3 * math.sqrt(alpha * (1 - alpha) / sims)
    assert rate <= alpha + slack, rate
    # peeking with a fixed-horizon z-test after every look would not be valid
    assert naive / sims > 3 * alpha


def test_msprt_confidence_sequence_covers_and_detects() -> None:
    rng = np.random.default_rng(5)
    looks = 2000
    t = rng.normal(0.3, 1, looks).cumsum()
    c = rng.normal(0.0, 1, looks).cumsum()
    n = np.arange(1, looks + 1)
    r = ex.msprt((t - c) / n, 2.0 / n, tau=0.3)
    assert r.rejected_at is not None and r.rejected_at < looks - 1
    assert r.ci_low[-1] < 0.3 < r.ci_high[-1]
    assert all(b >= a for a, b in zip(r.ci_low, r.ci_low[1:], strict=False))
    assert all(p2 <= p1 for p1, p2 in zip(r.p_value, r.p_value[1:], strict=False))
    # a look excludes 0 from the sequence exactly when its p-value is <= alpha
    first_excl = next(
        i for i, (lo, hi) in enumerate(zip(r.ci_low, r.ci_high, strict=True)) if lo > 0 or hi < 0
    )
    assert first_excl == r.rejected_at


def test_msprt_validates_input() -> None:
    with pytest.raises(ValueError, match="positive"):
        ex.msprt([0.1], [0.0], tau=1.0)
    with pytest.raises(ValueError, match="same length"):
        ex.msprt([0.1, 0.2], [1.0], tau=1.0)


@settings(max_examples=100, deadline=None)
@given(
    y=st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=3, max_size=50),
    data=st.data(),
)
def test_cuped_properties(y: list[float], data: st.DataObject) -> None:
    x = data.draw(
        st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=len(y), max_size=len(y))
    )
    adj, c = ex.cuped(y, x)
    assert adj.mean() == pytest.approx(np.mean(y), abs=1e-6 * (1 + np.abs(y).max()))
    if c.variance_before > 1e-6 and np.var(x) > 1e-6:
        # theta minimises the adjusted variance: it never grows, and falls by corr^2
        assert -1e-9 <= c.variance_reduction <= 1 + 1e-9
        r = np.corrcoef(y, x)[0, 1]
        assert c.variance_reduction == pytest.approx(r * r, abs=1e-6)
