"""BG/NBD and Gamma-Gamma: CDNOW golden values, the maths as properties, the summary step."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize
from scipy.special import hyp2f1

from autopersona.models.clv import (
    BetaGeo,
    GammaGamma,
    _bgnbd_terms,
    _gg_terms,
    customer_lifetime_value,
    summary_from_transactions,
)

CDNOW = Path(__file__).resolve().parents[1] / "data" / "cdnow"
# Fader, Hardie & Lee (2005a), CDNOW 2,357-customer sample, 39-week calibration.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BGNBD_LL = -9582.4
# Fader, Hardie & Lee (2005b), same customers: 946 with repeat purchases.
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


def _fixed_bg(r: float, alpha: float, a: float, b: float) -> BetaGeo:
    m = BetaGeo()
    m.r_, m.alpha_, m.a_, m.b_ = r, alpha, a, b
    m.params_ = {"r": r, "alpha": alpha, "a": a, "b": b}
    return m


def _fixed_gg(p: float, q: float, v: float) -> GammaGamma:
    g = GammaGamma()
    g.p_, g.q_, g.v_ = p, q, v
    g.params_ = {"p": p, "q": q, "v": v}
    return g


@pytest.fixture(scope="module")
def published_summary() -> pd.DataFrame:
    """Fader & Hardie's CDNOW summary (x, t_x, T in weeks, zbar), as shipped in lifetimes."""
    df = pd.read_csv(CDNOW / "cdnow_customers_summary_with_transactions.csv", index_col="ID")
    return df.rename(columns={"x": "frequency", "t_x": "recency", "zbar": "monetary_value"})


@pytest.fixture(scope="module")
def cdnow_transactions() -> pd.DataFrame:
    tx = pd.read_csv(
        CDNOW / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "id", "date", "cds", "amount"],
        dtype={"date": str},
    )
    tx["date"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    return tx


@pytest.fixture(scope="module")
def our_summary(cdnow_transactions: pd.DataFrame) -> pd.DataFrame:
    return summary_from_transactions(
        cdnow_transactions, "id", "date", "amount", until="1997-09-30", unit="week"
    )


# --------------------------------------------------------------------------- golden
class TestCdnowGolden:
    def test_summary_step_reproduces_published_summary(
        self, our_summary: pd.DataFrame, published_summary: pd.DataFrame
    ) -> None:
        assert len(our_summary) == 2357
        assert int((our_summary["frequency"] > 0).sum()) == 946
        ours = our_summary.reindex(published_summary.index)
        assert (ours["frequency"] == published_summary["frequency"]).all()
        # the published file has 2 decimals (rounded half-up; numpy rounds half-even)
        for c in ("recency", "T", "monetary_value"):
            assert np.abs(ours[c] - published_summary[c]).max() <= 0.005 + 1e-9, c
        assert our_summary.attrs["until"] == pd.Timestamp("1997-09-30")

    @pytest.mark.parametrize("source", ["published", "ours"])
    def test_bgnbd_matches_published_parameters(
        self, source: str, published_summary: pd.DataFrame, our_summary: pd.DataFrame
    ) -> None:
        data = published_summary if source == "published" else our_summary
        m = BetaGeo().fit(data)
        assert m.converged_
        for k, v in PUBLISHED_BGNBD.items():
            assert m.params_[k] == pytest.approx(v, rel=2e-3), k
            assert round(m.params_[k], 3) == v, k
        assert m.log_likelihood_ == pytest.approx(PUBLISHED_BGNBD_LL, abs=0.05)
        assert m.n_customers_ == 2357

    def test_gamma_gamma_matches_published_parameters(self, our_summary: pd.DataFrame) -> None:
        g = GammaGamma().fit(our_summary)
        assert g.converged_
        assert g.n_customers_ == 946
        assert g.n_skipped_ == 2357 - 946
        for k, v in PUBLISHED_GG.items():
            assert round(g.params_[k], 2) == v, k

    def test_gamma_gamma_on_rounded_summary(self, published_summary: pd.DataFrame) -> None:
        # zbar rounded to cents moves v to 15.448 (lifetimes reports 15.45)
        g = GammaGamma().fit(published_summary)
        for k, v in PUBLISHED_GG.items():
            assert g.params_[k] == pytest.approx(v, abs=0.01), k

    def test_predictions_match_lifetimes(self) -> None:
        # reference values from lifetimes 0.11.3 with the same parameters
        m = _fixed_bg(0.243, 4.414, 0.793, 2.426)
        x = np.array([0, 2, 2, 10, 50, 3])
        tx = np.array([0, 30.43, 5, 20, 38, 1])
        T = np.array([38.86] * 5 + [60])
        np.testing.assert_allclose(
            m.conditional_expected_purchases(39, x, tx, T),
            [0.195098052, 1.22602817, 0.208695728, 0.286341235, 33.3911980, 0.00309241985],
            rtol=1e-7,
        )
        np.testing.assert_allclose(
            m.p_alive(x, tx, T),
            [1.0, 0.72657857, 0.12367892, 0.03934596, 0.95943828, 0.00181229],
            rtol=1e-5,
        )
        np.testing.assert_allclose(
            m.expected_purchases([1, 52.0, 500]), [0.05326789, 1.4460506, 4.88786816], rtol=1e-7
        )
        assert -m.log_likelihood(x, tx, T).sum() == pytest.approx(97.02492585245, rel=1e-12)
        g = _fixed_gg(6.25, 3.74, 15.44)
        np.testing.assert_allclose(
            g.conditional_expected_average_profit([2, 10], [22.35, 22.35]),
            [24.66371391, 22.8904813],
            rtol=1e-8,
        )

    def test_clv_end_to_end(self, our_summary: pd.DataFrame) -> None:
        bg = BetaGeo().fit(our_summary)
        gg = GammaGamma().fit(our_summary)
        s = our_summary
        clv = customer_lifetime_value(
            bg, gg, s["frequency"], s["recency"], s["T"], s["monetary_value"],
            periods=12, period_length=30 / 7, discount_rate=0.01,
        )  # fmt: skip
        assert clv.shape == (2357,)
        assert np.all(np.isfinite(clv)) and np.all(clv >= 0)
        # a higher discount rate lowers every CLV; more periods raise it
        lower = customer_lifetime_value(
            bg, gg, s["frequency"], s["recency"], s["T"], s["monetary_value"],
            periods=12, period_length=30 / 7, discount_rate=0.05,
        )  # fmt: skip
        assert np.all(lower <= clv + 1e-12)
        assert clv.sum() > lower.sum()


# --------------------------------------------------------------------------- properties
params_st = st.tuples(
    st.floats(0.1, 3.0),  # r
    st.floats(0.5, 20.0),  # alpha
    st.floats(0.3, 3.0),  # a
    st.floats(0.3, 5.0),  # b
)


class TestBgnbdMaths:
    @settings(max_examples=25, deadline=None)
    @given(params=params_st, T=st.floats(0.2, 4.0))
    def test_likelihood_is_a_distribution_over_histories(
        self, params: tuple[float, float, float, float], T: float
    ) -> None:
        """sum_x P(X(T) = x) = 1, with P(X(T)=x) = int_0^T L(x, t_x, T) t_x^(x-1)/(x-1)! dt_x.

        The likelihood of the x purchase times depends on them only through t_x, so
        integrating out t_1 < ... < t_{x-1} gives the factor t_x^(x-1)/(x-1)!.
        """
        r, alpha, a, b = params
        T = min(T, alpha)  # keeps the count distribution's tail below 1e-12 at x = 400
        m = _fixed_bg(r, alpha, a, b)
        nodes, weights = np.polynomial.legendre.leggauss(80)
        t = (nodes + 1.0) * T / 2.0
        w = weights * T / 2.0
        xs = np.arange(1, 401, dtype=float)[:, None]
        ll = m.log_likelihood(np.broadcast_to(xs, (400, 80)).ravel(), np.tile(t, 400), T)
        log_dens = ll.reshape(400, 80) + (xs - 1) * np.log(t) - np.vectorize(math.lgamma)(xs)
        total = float(np.exp(m.log_likelihood(0, 0.0, T))[0] + (np.exp(log_dens) @ w).sum())
        assert total == pytest.approx(1.0, abs=1e-7)

    @pytest.mark.parametrize(
        ("x", "tx", "T"), [(0, 0.0, 5.0), (1, 2.0, 5.0), (3, 4.5, 6.0), (2, 0.5, 8.0)]
    )
    def test_likelihood_equals_direct_integral(self, x: int, tx: float, T: float) -> None:
        """The closed form against the model's definition, integrated over lambda and p.

        L = E[(1-p)^x] E[lam^x e^(-lam T)] + E[p (1-p)^(x-1)] E[lam^x e^(-lam t_x)] for
        lam ~ Gamma(r, alpha) and p ~ Beta(a, b) (independent), each a 1-d integral.
        """
        r, alpha, a, b = 1.7, 3.0, 1.4, 2.5
        m = _fixed_bg(r, alpha, a, b)
        log_gamma_norm = r * math.log(alpha) - math.lgamma(r)
        log_beta_norm = -(math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))

        def e_lam(c: float) -> float:
            f = lambda lam: math.exp(  # noqa: E731
                log_gamma_norm + (r - 1 + x) * math.log(lam) - lam * (alpha + c)
            )
            return float(integrate.quad(f, 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)[0])

        def e_p(k: int, j: int) -> float:  # E[p^k (1-p)^j]
            f = lambda p: math.exp(  # noqa: E731
                log_beta_norm + (a - 1 + k) * math.log(p) + (b - 1 + j) * math.log1p(-p)
            )
            return float(integrate.quad(f, 0, 1, epsabs=0, epsrel=1e-12, limit=200)[0])

        direct = e_p(0, x) * e_lam(T) + (e_p(1, x - 1) * e_lam(tx) if x > 0 else 0.0)
        assert float(np.exp(m.log_likelihood(x, tx, T))[0]) == pytest.approx(direct, rel=1e-9)

    @settings(max_examples=50, deadline=None)
    @given(
        params=params_st,
        x=st.integers(0, 60),
        frac=st.floats(0.0, 1.0),
        T=st.floats(0.1, 200.0),
        more=st.floats(0.0, 50.0),
    )
    def test_p_alive(
        self,
        params: tuple[float, float, float, float],
        x: int,
        frac: float,
        T: float,
        more: float,
    ) -> None:
        m = _fixed_bg(*params)
        tx = 0.0 if x == 0 else max(frac * T, 1e-6)
        p = float(m.p_alive(x, tx, T)[0])
        assert 0.0 <= p <= 1.0
        if x == 0:
            assert p == 1.0
        else:
            # a longer silence since the last purchase can only lower P(alive)
            assert float(m.p_alive(x, tx, T + more)[0]) <= p + 1e-12

    @settings(max_examples=40, deadline=None)
    @given(params=params_st, t=st.floats(0.01, 100.0), x=st.integers(0, 30), T=st.floats(1, 80))
    def test_conditional_expectation(
        self, params: tuple[float, float, float, float], t: float, x: int, T: float
    ) -> None:
        r, alpha, a, b = params
        m = _fixed_bg(r, alpha, a, b)
        # a brand-new customer (x = 0, T = 0) expects the population's E[X(t)]
        assert m.conditional_expected_purchases(t, 0, 0.0, 0.0)[0] == pytest.approx(
            m.expected_purchases(t)[0], rel=1e-9
        )
        tx = T / 2 if x else 0.0
        e = m.conditional_expected_purchases([t, 2 * t], x, tx, T)
        assert 0.0 <= e[0] <= e[1]
        if abs(a - 1) < 1e-3:  # the paper's form is 0/0 at a = 1; see test_a_equal_one
            return
        # Euler's transformation equals the paper's form of equation (10)
        z = t / (alpha + T + t)
        paper = (
            (a + b + x - 1)
            / (a - 1)
            * (
                1
                - ((alpha + T) / (alpha + T + t)) ** (r + x)
                * hyp2f1(r + x, b + x, a + b + x - 1, z)
            )
        )
        assert e[0] == pytest.approx(paper * m.p_alive(x, tx, T)[0], rel=1e-7, abs=1e-12)

    @pytest.mark.parametrize("x", [0, 3])
    def test_a_equal_one_is_the_continuous_limit(self, x: int) -> None:
        def e(a: float) -> float:
            return float(
                _fixed_bg(0.5, 4.0, a, 2.0).conditional_expected_purchases(20, x, 5.0, 30.0)[0]
            )

        assert e(1.0) == pytest.approx((e(1 - 1e-3) + e(1 + 1e-3)) / 2, rel=1e-5)
        assert e(1.0 - 1e-5) == pytest.approx(e(1.0), rel=1e-4)

    @settings(max_examples=20, deadline=None)
    @given(params=params_st)
    def test_gradient_matches_finite_differences(
        self, params: tuple[float, float, float, float]
    ) -> None:
        x = np.array([0, 1, 2, 7, 3.0])
        tx = np.array([0, 3.0, 10.0, 30.0, 0.5])
        T = np.array([39.0, 20.0, 30.0, 38.0, 1.0])
        p0 = np.array(params)

        def f(p: np.ndarray) -> float:
            return float(_bgnbd_terms(p, x, tx, T)[0].sum())

        grad = np.array([g.sum() for g in _bgnbd_terms(p0, x, tx, T)[1:]])
        num = optimize.approx_fprime(p0, f, 1e-7 * np.maximum(1.0, p0))
        np.testing.assert_allclose(grad, num, rtol=1e-4, atol=1e-4)


class TestGammaGammaMaths:
    @settings(max_examples=25, deadline=None)
    @given(
        p=st.floats(0.5, 10.0),
        q=st.floats(1.5, 10.0),
        v=st.floats(1.0, 100.0),
        x=st.integers(1, 20),
    )
    def test_density_integrates_to_one_with_the_right_mean(
        self, p: float, q: float, v: float, x: int
    ) -> None:
        g = _fixed_gg(p, q, v)

        def dens(z: float) -> float:
            return float(np.exp(g.log_likelihood(x, z))[0])

        total, _ = integrate.quad(dens, 0, np.inf, limit=200)
        assert total == pytest.approx(1.0, abs=1e-6)
        if q > 2.5:  # the mean converges fast enough to integrate numerically
            mean, _ = integrate.quad(lambda z: z * dens(z), 0, np.inf, limit=200)
            assert mean == pytest.approx(g.mean_spend(), rel=1e-5)

    @settings(max_examples=30, deadline=None)
    @given(
        p=st.floats(0.5, 10.0),
        q=st.floats(1.1, 10.0),
        v=st.floats(1.0, 100.0),
        x=st.integers(1, 50),
        m=st.floats(0.5, 500.0),
    )
    def test_expected_profit_is_a_weighted_mean(
        self, p: float, q: float, v: float, x: int, m: float
    ) -> None:
        g = _fixed_gg(p, q, v)
        e = float(g.conditional_expected_average_profit(x, m)[0])
        lo, hi = sorted((m, g.mean_spend()))
        assert lo - 1e-9 <= e <= hi + 1e-9

    def test_gradient_matches_finite_differences(self) -> None:
        x = np.array([1, 2, 5, 9.0])
        m = np.array([20.0, 35.5, 12.0, 80.0])
        for p0 in (np.array([6.25, 3.74, 15.44]), np.array([0.7, 1.3, 2.0])):

            def f(p: np.ndarray) -> float:
                return float(_gg_terms(p, x, m)[0].sum())

            grad = np.array([gi.sum() for gi in _gg_terms(p0, x, m)[1:]])
            num = optimize.approx_fprime(p0, f, 1e-7 * np.maximum(1.0, p0))
            np.testing.assert_allclose(grad, num, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- recovery
def test_bgnbd_and_gamma_gamma_recover_simulated_parameters() -> None:
    rng = np.random.default_rng(7)
    n, T = 20000, 52.0
    r, alpha, a, b = 0.8, 6.0, 0.9, 3.0
    lam = rng.gamma(r, 1 / alpha, n)
    drop = rng.beta(a, b, n)
    arrivals = rng.poisson(lam * T)
    death = rng.geometric(drop)  # dies after this repeat purchase
    x = np.minimum(arrivals, death)
    # the x-th of `arrivals` uniform times on (0, T)
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), arrivals - x + 1), 0.0)
    summary = pd.DataFrame({"frequency": x, "recency": tx, "T": T})
    m = BetaGeo().fit(summary)
    for k, v in {"r": r, "alpha": alpha, "a": a, "b": b}.items():
        assert m.params_[k] == pytest.approx(v, rel=0.15), k

    p, q, v = 4.0, 3.0, 20.0
    nu = rng.gamma(q, 1 / v, n)
    xs = rng.integers(1, 10, n)
    zbar = rng.gamma(p * xs, 1 / (nu * xs))  # mean of x Gamma(p, nu) values
    g = GammaGamma().fit(pd.DataFrame({"frequency": xs, "monetary_value": zbar}))
    for k, val in {"p": p, "q": q, "v": v}.items():
        assert g.params_[k] == pytest.approx(val, rel=0.15), k


# --------------------------------------------------------------------------- summary step
class TestSummary:
    def test_same_day_counts_once_and_amounts_add(self) -> None:
        tx = pd.DataFrame(
            {
                "c": ["a", "a", "a", "a", "b"],
                "d": pd.to_datetime(
                    ["2024-01-01 09:00", "2024-01-01 18:00", "2024-01-08 10:00",
                     "2024-01-08 11:00", "2024-01-02 00:00"]
                ),
                "v": [1.0, 2.0, 3.0, 4.0, 5.0],
            }
        )  # fmt: skip
        s = summary_from_transactions(tx, "c", "d", "v", until="2024-01-15")
        assert s.loc["a"].tolist() == [1, 7.0, 14.0, 7.0]
        assert s.loc["b"].tolist() == [0, 0.0, 13.0, 0.0]
        w = summary_from_transactions(tx, "c", "d", until="2024-01-15", unit="week")
        assert list(w.columns) == ["frequency", "recency", "T"]
        assert w.loc["a", "T"] == pytest.approx(2.0)

    def test_until_cuts_calibration_and_drops_later_customers(self) -> None:
        tx = pd.DataFrame(
            {
                "c": [1, 1, 2],
                "d": pd.to_datetime(["2024-01-01", "2024-03-01", "2024-02-15"]),
            }
        )
        s = summary_from_transactions(tx, "c", "d", until="2024-02-01")
        assert s.index.tolist() == [1]
        assert s.loc[1, "frequency"] == 0 and s.loc[1, "T"] == 31.0
        # default until: the last day
        assert summary_from_transactions(tx, "c", "d").loc[1, "frequency"] == 1

    def test_bad_inputs(self) -> None:
        tx = pd.DataFrame({"c": [1], "d": ["2024-01-01"]})
        with pytest.raises(TypeError, match="datetime64"):
            summary_from_transactions(tx, "c", "d")
        tx["d"] = pd.to_datetime(tx["d"])
        with pytest.raises(KeyError, match="'amount'"):
            summary_from_transactions(tx, "c", "d", "amount")
        with pytest.raises(ValueError, match="unit"):
            summary_from_transactions(tx, "c", "d", unit="month")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="no transactions"):
            summary_from_transactions(tx, "c", "d", until="2023-01-01")


class TestEstimatorContract:
    def test_sklearn_clone_and_params(self) -> None:
        from sklearn.base import clone

        for est in (BetaGeo(penalizer=0.1), GammaGamma(tol=1e-8)):
            c = clone(est)
            assert c.get_params() == est.get_params()
            assert not hasattr(c, "params_")
        m = BetaGeo().set_params(max_iter=5)
        assert m.max_iter == 5
        assert repr(m) == "BetaGeo(penalizer=0.0, tol=1e-08, max_iter=5)"
        with pytest.raises(ValueError, match="invalid parameter"):
            m.set_params(learning_rate=1)

    def test_unfitted_and_invalid(self) -> None:
        with pytest.raises(AttributeError, match="not fitted"):
            BetaGeo().p_alive(0, 0, 1)
        with pytest.raises(ValueError, match="recency"):
            BetaGeo().fit(np.array([[1, 5.0, 3.0]]))
        with pytest.raises(ValueError, match="frequency"):
            BetaGeo().fit(np.array([[1.5, 1.0, 3.0]]))
        with pytest.raises(KeyError, match="recency"):
            BetaGeo().fit(pd.DataFrame({"frequency": [1], "T": [2.0]}))
        with pytest.raises(ValueError, match="nothing to fit"):
            GammaGamma().fit(pd.DataFrame({"frequency": [0], "monetary_value": [0.0]}))
        with pytest.raises(ValueError, match="infinite"):
            _fixed_gg(1.0, 0.9, 1.0).conditional_expected_average_profit(1, 1.0)

    def test_weights_equal_repeated_rows(self, published_summary: pd.DataFrame) -> None:
        head = published_summary.iloc[:300]
        w = np.arange(300) % 3 + 1
        weighted = BetaGeo().fit(head, sample_weight=w)
        repeated = BetaGeo().fit(head.loc[head.index.repeat(w)])
        for k in PUBLISHED_BGNBD:
            assert weighted.params_[k] == pytest.approx(repeated.params_[k], rel=1e-5)

    def test_penalizer_shrinks(self, published_summary: pd.DataFrame) -> None:
        plain = BetaGeo().fit(published_summary)
        pen = BetaGeo(penalizer=0.1).fit(published_summary)
        assert sum(v**2 for v in pen.params_.values()) < sum(v**2 for v in plain.params_.values())
