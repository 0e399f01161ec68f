r"""Customer lifetime value: BG/NBD purchases, Gamma-Gamma spend, discounted CLV.

The BG/NBD model (Fader, Hardie & Lee 2005a) describes repeat purchasing of a
non-contractual customer base: while alive a customer buys as a Poisson process with rate
:math:`\lambda \sim \mathrm{Gamma}(r, \alpha)`, and after every purchase drops out with
probability :math:`p \sim \mathrm{Beta}(a, b)`. The Gamma-Gamma model (Fader, Hardie &
Lee 2005b) describes the value of a customer's transactions: each is
:math:`\mathrm{Gamma}(p, \nu)` with :math:`\nu \sim \mathrm{Gamma}(q, \gamma)`, independent
of the purchase process. Both are fitted by maximum likelihood over log-parameters with
analytic gradients (BFGS), on the per-customer summary
``(frequency, recency, T, monetary_value)`` that :func:`summary_from_transactions` builds.

Conventions are the literature's (and ``lifetimes``'): *frequency* is the number of repeat
purchase days in the calibration period (purchases on the same day count once, their
amounts summed); *recency* is the time from the first to the last purchase; *T* the time
from the first purchase to the end of calibration; *monetary value* the mean of the repeat
purchase days' totals (0 when there is none).

References
----------
Fader, P. S., Hardie, B. G. S., & Lee, K. L. (2005a). "Counting your customers" the easy
way: An alternative to the Pareto/NBD model. *Marketing Science*, 24(2), 275-284.

Fader, P. S., Hardie, B. G. S., & Lee, K. L. (2005b). RFM and CLV: Using iso-value curves
for customer base analysis. *Journal of Marketing Research*, 42(4), 415-430.

Fader, P. S., Hardie, B. G. S. (2013). The Gamma-Gamma model of monetary value.
http://www.brucehardie.com/notes/025/

Examples
--------
>>> import pandas as pd
>>> tx = pd.DataFrame({
...     "customer": ["a", "a", "a", "b", "b", "c"],
...     "date": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-15",
...                             "2024-01-03", "2024-02-20", "2024-01-10"]),
...     "amount": [10.0, 5.0, 20.0, 8.0, 12.0, 30.0]})
>>> summary_from_transactions(tx, "customer", "date", "amount", until="2024-03-01")
          frequency  recency     T  monetary_value
customer
a                 1     14.0  60.0            20.0
b                 1     48.0  58.0            12.0
c                 0      0.0  51.0             0.0
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

__all__ = [
    "BetaGeo",
    "ConvergenceWarning",
    "GammaGamma",
    "customer_lifetime_value",
    "summary_from_transactions",
]

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike
#: Length of one time unit of the summary, in days.
UNIT_DAYS: dict[str, float] = {"day": 1.0, "week": 7.0}


class ConvergenceWarning(UserWarning):
    """The likelihood optimiser stopped without reporting convergence."""


# --------------------------------------------------------------------------- summary data
def summary_from_transactions(
    transactions: pd.DataFrame,
    customer: str,
    date: str,
    amount: str | None = None,
    *,
    until: str | pd.Timestamp | None = None,
    unit: Literal["day", "week"] = "day",
) -> pd.DataFrame:
    """Per-customer frequency, recency, T (and monetary value) for the calibration period.

    Times are whole days (timestamps are floored to the day) divided by the length of
    ``unit``. Customers whose first purchase is after ``until`` are left out; purchases
    after ``until`` are ignored.

    Parameters
    ----------
    transactions
        One row per transaction (or order line).
    customer, date, amount
        Column names; ``amount`` is optional (no ``monetary_value`` column without it).
        ``date`` must be ``datetime64``.
    until
        Last day of the calibration period (inclusive); default the last transaction day.
    unit
        ``"day"`` or ``"week"`` (7 days), the unit of recency and T.

    Returns
    -------
    pandas.DataFrame
        Indexed by customer (sorted): ``frequency`` (int, repeat purchase days),
        ``recency``, ``T`` and, with ``amount``, ``monetary_value`` (mean total of the repeat
        purchase days, 0 without repeats). ``attrs`` hold ``until`` (a Timestamp) and
        ``unit``.

    Examples
    --------
    >>> tx = pd.DataFrame({"id": [1, 1, 1], "day": pd.to_datetime(
    ...     ["1997-01-01", "1997-01-01", "1997-01-15"]), "usd": [10.0, 5.0, 20.0]})
    >>> summary_from_transactions(tx, "id", "day", "usd", until="1997-01-29", unit="week")
        frequency  recency    T  monetary_value
    id
    1           1      2.0  4.0            20.0
    """
    if unit not in UNIT_DAYS:
        raise ValueError(f"unit must be one of {sorted(UNIT_DAYS)}, got {unit!r}")
    for c in (customer, date, *(() if amount is None else (amount,))):
        if c not in transactions.columns:
            raise KeyError(f"column {c!r} not in the transactions")
    if not pd.api.types.is_datetime64_any_dtype(transactions[date].dtype):
        raise TypeError(f"column {date!r} must be datetime64, got {transactions[date].dtype}")
    cols = [customer, date] + ([] if amount is None else [amount])
    tx = transactions[cols].dropna(subset=[customer, date])
    day = tx[date].dt.floor("D")
    end = day.max() if until is None else pd.Timestamp(until).floor("D")
    keep = (day <= end).to_numpy()
    tx, day = tx.loc[keep], day.loc[keep]
    if tx.empty:
        raise ValueError(f"no transactions on or before {end.date()}")
    by_day = (
        pd.DataFrame(
            {
                "c": tx[customer].to_numpy(),
                "d": day.to_numpy(),
                "v": tx[amount].to_numpy(dtype="float64") if amount else 0.0,
            }
        )
        .groupby(["c", "d"], sort=True)["v"]
        .sum()
        .reset_index()
    )
    g = by_day.groupby("c", sort=True)
    first = g["d"].transform("min")
    n_days = g["d"].size()
    first_day = g["d"].min()
    last_day = g["d"].max()
    scale = UNIT_DAYS[unit]
    out = pd.DataFrame(
        {
            "frequency": (n_days - 1).astype("int64"),
            "recency": (last_day - first_day).dt.days.astype("float64") / scale,
            "T": (end - first_day).dt.days.astype("float64") / scale,
        }
    )
    if amount is not None:
        repeat = by_day.loc[(by_day["d"] > first).to_numpy()]
        mean = repeat.groupby("c", sort=True)["v"].mean()
        out["monetary_value"] = mean.reindex(out.index, fill_value=0.0).astype("float64")
    out.index.name = customer
    out.attrs["until"] = end
    out.attrs["unit"] = unit
    return out


# --------------------------------------------------------------------------- helpers
def _columns(X: Any, names: tuple[str, ...]) -> list[FloatArray]:
    """Columns of a frame (by name) or of an (n, k) array (by position), as float arrays."""
    if isinstance(X, pd.DataFrame):
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise KeyError(f"X lacks column(s) {missing}; it needs {list(names)}")
        cols = [X[c].to_numpy(dtype="float64") for c in names]
    else:
        arr = np.asarray(X, dtype="float64")
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise ValueError(f"X must be a frame or an (n, {len(names)}) array of {names}")
        cols = [arr[:, i] for i in range(len(names))]
    for n, c in zip(names, cols, strict=True):
        if not np.all(np.isfinite(c)):
            raise ValueError(f"{n} has missing or infinite values")
    return cols


def _collapse(cols: list[FloatArray], weights: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Merge identical rows, summing their weights (the likelihood only needs each once)."""
    order = np.lexsort(cols[::-1])
    sorted_cols = [c[order] for c in cols]
    new = np.ones(len(order), dtype=bool)
    new[1:] = np.any([c[1:] != c[:-1] for c in sorted_cols], axis=0)
    starts = np.flatnonzero(new)
    w = np.add.reduceat(weights[order], starts) if len(order) else weights
    return [c[starts] for c in sorted_cols], np.asarray(w, dtype="float64")


#: Largest gradient component (mean log-likelihood, log-parameters) accepted as converged
#: when BFGS stops on precision loss right at the optimum.
_CONVERGED_GRAD = 1e-5


def _minimize(
    fun: Callable[[FloatArray], tuple[float, FloatArray]],
    x0: FloatArray,
    tol: float,
    max_iter: int,
    what: str,
) -> tuple[FloatArray, int, bool]:
    """BFGS on log-parameters; returns the optimum, iterations and whether it converged.

    BFGS rather than L-BFGS-B: for 3-4 parameters its overhead is pure numpy, while
    L-BFGS-B's tiny BLAS calls cost milliseconds each when OpenBLAS threads compete for a
    busy CPU. Non-finite objective values (an overflowing trial step) are replaced by a
    steep bowl around the origin so that the line search backs off.
    """

    def guarded(v: FloatArray) -> tuple[float, FloatArray]:
        with np.errstate(all="ignore"):
            f, g = fun(v)
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            return 1e10 * (1.0 + float(v @ v)), 2e10 * v
        return f, g

    res = optimize.minimize(
        guarded, x0, jac=True, method="BFGS", options={"maxiter": max_iter, "gtol": tol}
    )
    converged = bool(res.success) or float(np.max(np.abs(res.jac))) <= _CONVERGED_GRAD
    if not converged:
        warnings.warn(
            f"{what} fit did not converge: {res.message}", ConvergenceWarning, stacklevel=3
        )
    return np.asarray(res.x, dtype="float64"), int(res.nit), converged


def _check_is_fitted(model: Any, attr: str) -> None:
    if not hasattr(model, attr):
        raise AttributeError(f"{type(model).__name__} is not fitted yet; call fit first")


# --------------------------------------------------------------------------- BG/NBD
def _bgnbd_terms(
    params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per-customer log-likelihood and its gradient in (r, alpha, a, b)."""
    r, alpha, a, b = params
    has = x > 0
    bx1 = np.where(has, b + x - 1.0, 1.0)
    A1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    A2 = betaln(a, b + x) - betaln(a, b)
    A3 = -(r + x) * np.log(alpha + T)
    A4 = np.where(has, np.log(a) - np.log(bx1) - (r + x) * np.log(alpha + tx), -np.inf)
    M = np.logaddexp(A3, A4)
    ll = A1 + A2 + M
    w3 = np.exp(A3 - M)
    w4 = np.exp(A4 - M)
    d_r = (
        digamma(r + x)
        - digamma(r)
        + np.log(alpha)
        - w3 * np.log(alpha + T)
        - w4 * np.log(alpha + tx)
    )
    d_alpha = r / alpha - (r + x) * (w3 / (alpha + T) + w4 / (alpha + tx))
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + x)
    d_a = psi_ab - psi_abx + w4 / a
    d_b = psi_ab + digamma(b + x) - digamma(b) - psi_abx - w4 / bx1
    return ll, d_r, d_alpha, d_a, d_b


class _Estimator:
    """scikit-learn's parameter protocol (``get_params``/``set_params``, so ``clone`` works).

    Written out rather than inherited to keep ``sklearn`` (0.5 s to import) off the CLI path.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters by name."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> Any:
        """Set constructor parameters; returns ``self``."""
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for {type(self).__name__}: {valid}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


#: Half-width of the interval around a = 1 where E[Y(t)] is interpolated (0/0 at a = 1).
_A_ONE = 1e-4


def _expected_if_alive(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t: FloatArray, T: FloatArray
) -> FloatArray:
    r"""Expected purchases in (T, T + t] of a customer alive at T with x repeat purchases.

    FHL (2005a) eq. (10) without the P(alive) factor:
    :math:`\frac{a+b+x-1}{a-1}\left[1 - \left(\frac{\alpha+T}{\alpha+T+t}\right)^{r+x}
    {}_2F_1(r+x, b+x; a+b+x-1; z)\right]`, :math:`z = t/(\alpha+T+t)`. Euler's
    transformation turns the bracketed term into :math:`(1-z)^{a-1}\,{}_2F_1(a+b-1-r, a-1;
    a+b+x-1; z)`, whose parameters do not grow with x. The expression is 0/0 at a = 1 (its
    limit is finite): within ``_A_ONE`` of 1 it is interpolated linearly in a.
    """
    if abs(a - 1.0) < _A_ONE:
        lo = _expected_body(r, alpha, 1.0 - _A_ONE, b, x, t, T)
        hi = _expected_body(r, alpha, 1.0 + _A_ONE, b, x, t, T)
        w = (a - (1.0 - _A_ONE)) / (2.0 * _A_ONE)
        return np.asarray((1.0 - w) * lo + w * hi, dtype="float64")
    return _expected_body(r, alpha, a, b, x, t, T)


def _expected_body(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t: FloatArray, T: FloatArray
) -> FloatArray:
    z = t / (alpha + T + t)
    c = a + b + x - 1.0
    head = (1.0 - z) ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
    return np.asarray(c / (a - 1.0) * (1.0 - head), dtype="float64")


class BetaGeo(_Estimator):
    r"""BG/NBD model of repeat purchases (Fader, Hardie & Lee 2005a), fitted by maximum likelihood.

    Parameters
    ----------
    penalizer
        L2 penalty on the parameters (added to the mean negative log-likelihood), as in
        ``lifetimes``; 0 gives the plain maximum-likelihood estimate.
    tol
        Gradient tolerance of BFGS: largest gradient component of the mean negative
        log-likelihood with respect to the log-parameters.
    max_iter
        Iteration cap of BFGS.

    Attributes
    ----------
    r_, alpha_, a_, b_ : float
        Fitted parameters; ``alpha_`` is in the time unit of the data.
    params_ : dict[str, float]
        The four of them by name.
    log_likelihood_ : float
        Total log-likelihood at the optimum (unpenalised).
    n_customers_ : int
        Customers (rows, or total weight) in the fit.
    n_iter_ : int
        Optimiser iterations.
    converged_ : bool
        Whether the optimiser reported convergence.

    Examples
    --------
    Simulated customers (r=0.5, alpha=4, a=0.8, b=2.5) over a 39-week calibration:

    >>> rng = np.random.default_rng(0)
    >>> n, T = 5000, 39.0
    >>> lam, p = rng.gamma(0.5, 1 / 4.0, n), rng.beta(0.8, 2.5, n)
    >>> bought = rng.poisson(lam * T)                  # purchases if never dropping out
    >>> x = np.minimum(bought, rng.geometric(p))       # drops out after a repeat purchase
    >>> tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), bought - x + 1), 0.0)
    >>> m = BetaGeo().fit(pd.DataFrame({"frequency": x, "recency": tx, "T": T}))
    >>> {k: round(v, 2) for k, v in m.params_.items()}
    {'r': 0.5, 'alpha': 3.92, 'a': 0.75, 'b': 2.37}
    >>> float(m.p_alive(0, 0.0, T)[0])
    1.0
    >>> m.conditional_expected_purchases(10, 3, 30.0, 39.0).round(3)
    array([0.552])
    """

    def __init__(self, penalizer: float = 0.0, tol: float = 1e-8, max_iter: int = 1000) -> None:
        self.penalizer = penalizer
        self.tol = tol
        self.max_iter = max_iter

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: None = None, *, sample_weight: ArrayLike | None = None) -> BetaGeo:
        """Fit r, alpha, a, b by maximum likelihood.

        Parameters
        ----------
        X
            A frame with columns ``frequency``, ``recency``, ``T`` (as from
            :func:`summary_from_transactions`) or an ``(n, 3)`` array in that order.
        y
            Ignored (scikit-learn convention).
        sample_weight
            Number of customers each row stands for (default 1).

        Returns
        -------
        BetaGeo
            ``self``, fitted.
        """
        x, tx, T = _columns(X, ("frequency", "recency", "T"))
        if np.any(x < 0) or np.any(x != np.round(x)):
            raise ValueError("frequency must be a non-negative integer")
        if np.any(tx < 0) or np.any(tx > T):
            raise ValueError("recency must satisfy 0 <= recency <= T")
        if np.any((x > 0) & (tx <= 0)):
            raise ValueError("recency must be > 0 when frequency > 0")
        w = np.ones_like(x) if sample_weight is None else np.asarray(sample_weight, dtype="float64")
        if w.shape != x.shape or np.any(w < 0):
            raise ValueError("sample_weight must be non-negative, one per row")
        if len(x) == 0 or w.sum() <= 0:
            raise ValueError("nothing to fit: no customers")
        (x, tx, T), w = _collapse([x, tx, T], w)
        # Rescale time so that the largest T is 10: better conditioned; alpha scales back.
        scale = 10.0 / max(float(T.max()), 1e-12)
        txs, Ts = tx * scale, T * scale
        total = float(w.sum())
        pen = float(self.penalizer)

        def objective(logp: FloatArray) -> tuple[float, FloatArray]:
            p = np.exp(logp)
            ll, *grads = _bgnbd_terms(p, x, txs, Ts)
            f = -float(w @ ll) / total + pen * float(p @ p)
            g = np.array([-float(w @ gi) / total for gi in grads]) * p + 2.0 * pen * p * p
            return f, g

        best, n_iter, converged = _minimize(
            objective, np.zeros(4), self.tol, self.max_iter, "BG/NBD"
        )
        r, alpha, a, b = np.exp(best)
        self.r_, self.alpha_, self.a_, self.b_ = float(r), float(alpha / scale), float(a), float(b)
        self.params_ = {"r": self.r_, "alpha": self.alpha_, "a": self.a_, "b": self.b_}
        self.log_likelihood_ = float(w @ _bgnbd_terms(self._p(), x, tx, T)[0])
        self.n_customers_ = round(total)
        self.n_iter_ = n_iter
        self.converged_ = converged
        return self

    def _p(self) -> FloatArray:
        _check_is_fitted(self, "params_")
        return np.array([self.r_, self.alpha_, self.a_, self.b_])

    # ------------------------------------------------------------------ predictions
    def log_likelihood(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        r"""Per-customer log-likelihood :math:`\ln L(r, \alpha, a, b \mid x, t_x, T)`.

        Examples
        --------
        >>> m = BetaGeo()
        >>> m.r_, m.alpha_, m.a_, m.b_ = 0.243, 4.414, 0.793, 2.426
        >>> m.params_ = {}
        >>> m.log_likelihood(0, 0.0, 38.86).round(4)
        array([-0.5547])
        """
        x, tx, T_ = (np.atleast_1d(np.asarray(v, dtype="float64")) for v in (frequency, recency, T))
        return _bgnbd_terms(self._p(), x, tx, T_)[0]

    def expected_purchases(self, t: ArrayLike) -> FloatArray:
        r"""Expected purchases of a new customer in ``t`` periods, :math:`E[X(t)]`.

        Examples
        --------
        >>> m = BetaGeo()
        >>> m.r_, m.alpha_, m.a_, m.b_ = 0.243, 4.414, 0.793, 2.426
        >>> m.params_ = {}
        >>> m.expected_purchases([0.0, 52.0]).round(3)
        array([0.   , 1.446])
        """
        r, alpha, a, b = self._p()
        t_ = np.atleast_1d(np.asarray(t, dtype="float64"))
        zero = np.zeros_like(t_)
        return _expected_if_alive(r, alpha, a, b, zero, t_, zero) + 0.0

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        r"""Probability that a customer with history ``(x, t_x, T)`` is still alive at T.

        Always 1 for customers without repeat purchases (in BG/NBD a customer can only drop
        out right after a purchase).

        Examples
        --------
        >>> m = BetaGeo()
        >>> m.r_, m.alpha_, m.a_, m.b_ = 0.243, 4.414, 0.793, 2.426
        >>> m.params_ = {}
        >>> m.p_alive([0, 2, 2], [0.0, 30.43, 5.0], [38.86, 38.86, 38.86]).round(3)
        array([1.   , 0.727, 0.124])
        """
        r, alpha, a, b = self._p()
        x, tx, T_ = np.broadcast_arrays(
            *(np.atleast_1d(np.asarray(v, dtype="float64")) for v in (frequency, recency, T))
        )
        return self._p_alive(r, alpha, a, b, x, tx, T_)

    @staticmethod
    def _p_alive(
        r: float, alpha: float, a: float, b: float, x: FloatArray, tx: FloatArray, T: FloatArray
    ) -> FloatArray:
        has = x > 0
        bx1 = np.where(has, b + x - 1.0, 1.0)
        log_odds = np.log(a) - np.log(bx1) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
        return np.where(has, expit(-log_odds), 1.0)

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        r"""Expected purchases in the next ``t`` periods, :math:`E[Y(t) \mid x, t_x, T]`.

        Equation (10) of Fader, Hardie & Lee (2005a).

        Examples
        --------
        >>> m = BetaGeo()
        >>> m.r_, m.alpha_, m.a_, m.b_ = 0.243, 4.414, 0.793, 2.426
        >>> m.params_ = {}
        >>> m.conditional_expected_purchases(39, [0, 2], [0.0, 30.43], [38.86, 38.86]).round(3)
        array([0.195, 1.226])
        """
        r, alpha, a, b = self._p()
        t_, x, tx, T_ = np.broadcast_arrays(
            *(np.atleast_1d(np.asarray(v, dtype="float64")) for v in (t, frequency, recency, T))
        )
        body = _expected_if_alive(r, alpha, a, b, x, t_, T_)
        return np.asarray(body * self._p_alive(r, alpha, a, b, x, tx, T_), dtype="float64")


# --------------------------------------------------------------------------- Gamma-Gamma
def _gg_terms(
    params: FloatArray, x: FloatArray, m: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per-customer log-density of the mean spend and its gradient in (p, q, v)."""
    p, q, v = params
    px = p * x
    lvxm = np.log(v + x * m)
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * lvxm
    )
    psi = digamma(px + q)
    d_p = x * (psi - digamma(px) + np.log(m) + np.log(x) - lvxm)
    d_q = psi - digamma(q) + np.log(v) - lvxm
    d_v = q / v - (px + q) / (v + x * m)
    return ll, d_p, d_q, d_v


class GammaGamma(_Estimator):
    r"""Gamma-Gamma model of average transaction value (Fader, Hardie & Lee 2005b).

    Fitted on customers with at least one repeat purchase and a positive monetary value;
    others are skipped (their count is ``n_skipped_``). The density of a customer's mean
    spend :math:`\bar z` over :math:`x` transactions is

    .. math:: f(\bar z \mid p, q, \gamma, x) = \frac{\Gamma(px+q)}{\Gamma(px)\Gamma(q)}
        \frac{\gamma^q \bar z^{px-1} x^{px}}{(\gamma + x\bar z)^{px+q}}.

    Parameters
    ----------
    penalizer
        L2 penalty on the parameters (0: plain maximum likelihood).
    tol
        Gradient tolerance of BFGS (as in :class:`BetaGeo`).
    max_iter
        Iteration cap of BFGS.

    Attributes
    ----------
    p_, q_, v_ : float
        Fitted parameters (``v_`` is the paper's :math:`\gamma`, in money units).
    params_ : dict[str, float]
    log_likelihood_ : float
    n_customers_ : int
        Customers used.
    n_skipped_ : int
        Rows skipped (no repeat purchase or non-positive monetary value).
    n_iter_ : int
    converged_ : bool

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"frequency": [1, 2, 3, 0, 4, 2, 1, 6],
    ...                   "monetary_value": [20.0, 35.0, 12.5, 0.0, 18.0, 60.0, 25.0, 30.0]})
    >>> g = GammaGamma().fit(X)
    >>> g.n_customers_, g.n_skipped_
    (7, 1)
    >>> float(g.conditional_expected_average_profit(0, 0.0)[0]) == g.mean_spend()
    True
    """

    def __init__(self, penalizer: float = 0.0, tol: float = 1e-8, max_iter: int = 1000) -> None:
        self.penalizer = penalizer
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X: Any, y: None = None, *, sample_weight: ArrayLike | None = None) -> GammaGamma:
        """Fit p, q, v by maximum likelihood.

        Parameters
        ----------
        X
            A frame with columns ``frequency`` and ``monetary_value`` or an ``(n, 2)`` array.
        y
            Ignored.
        sample_weight
            Number of customers each row stands for (default 1).

        Returns
        -------
        GammaGamma
            ``self``, fitted.
        """
        x, m = _columns(X, ("frequency", "monetary_value"))
        w = np.ones_like(x) if sample_weight is None else np.asarray(sample_weight, dtype="float64")
        if w.shape != x.shape or np.any(w < 0):
            raise ValueError("sample_weight must be non-negative, one per row")
        use = (x > 0) & (m > 0)
        self.n_skipped_ = int((~use).sum())
        x, m, w = x[use], m[use], w[use]
        if len(x) == 0 or w.sum() <= 0:
            raise ValueError("nothing to fit: no customer with repeat purchases and spend > 0")
        (x, m), w = _collapse([x, m], w)
        # Spend in units of its mean: v scales back, p and q are unit-free.
        scale = 1.0 / float(np.average(m, weights=w))
        ms = m * scale
        total = float(w.sum())
        pen = float(self.penalizer)

        def objective(logp: FloatArray) -> tuple[float, FloatArray]:
            p = np.exp(logp)
            ll, *grads = _gg_terms(p, x, ms)
            f = -float(w @ ll) / total + pen * float(p @ p)
            g = np.array([-float(w @ gi) / total for gi in grads]) * p + 2.0 * pen * p * p
            return f, g

        best, n_iter, converged = _minimize(
            objective, np.zeros(3), self.tol, self.max_iter, "Gamma-Gamma"
        )
        p, q, v = np.exp(best)
        self.p_, self.q_, self.v_ = float(p), float(q), float(v / scale)
        self.params_ = {"p": self.p_, "q": self.q_, "v": self.v_}
        self.log_likelihood_ = float(w @ _gg_terms(self._p(), x, m)[0])
        self.n_customers_ = round(total)
        self.n_iter_ = n_iter
        self.converged_ = converged
        return self

    def _p(self) -> FloatArray:
        _check_is_fitted(self, "params_")
        return np.array([self.p_, self.q_, self.v_])

    def log_likelihood(self, frequency: ArrayLike, monetary_value: ArrayLike) -> FloatArray:
        """Per-customer log-density of the observed mean spend (``frequency`` > 0).

        Examples
        --------
        >>> g = GammaGamma()
        >>> g.p_, g.q_, g.v_, g.params_ = 6.25, 3.74, 15.44, {}
        >>> g.log_likelihood(2, 22.35).round(4)
        array([-3.5513])
        """
        x, m = (np.atleast_1d(np.asarray(v, dtype="float64")) for v in (frequency, monetary_value))
        return _gg_terms(self._p(), x, m)[0]

    def mean_spend(self) -> float:
        r"""Population mean transaction value :math:`p\gamma/(q-1)` (infinite if q <= 1).

        Examples
        --------
        >>> g = GammaGamma()
        >>> g.p_, g.q_, g.v_, g.params_ = 6.25, 3.74, 15.44, {}
        >>> round(g.mean_spend(), 2)
        35.22
        """
        p, q, v = self._p()
        return float(p * v / (q - 1.0)) if q > 1.0 else float("inf")

    def conditional_expected_average_profit(
        self, frequency: ArrayLike, monetary_value: ArrayLike
    ) -> FloatArray:
        r"""Expected mean transaction value given ``x`` transactions averaging :math:`\bar z`.

        :math:`E[Z \mid p, q, \gamma, x, \bar z] = p(\gamma + x\bar z)/(px + q - 1)`, a
        weighted mean of the population mean and the customer's own; customers without
        repeat purchases get the population mean. Needs q > 1.

        Examples
        --------
        >>> g = GammaGamma()
        >>> g.p_, g.q_, g.v_, g.params_ = 6.25, 3.74, 15.44, {}
        >>> g.conditional_expected_average_profit([0, 2, 10], [0.0, 22.35, 22.35]).round(2)
        array([35.22, 24.66, 22.89])
        """
        p, q, v = self._p()
        if q <= 1.0:
            raise ValueError(f"the expected spend is infinite: q = {q:g} <= 1")
        x, m = np.broadcast_arrays(
            *(np.atleast_1d(np.asarray(a, dtype="float64")) for a in (frequency, monetary_value))
        )
        x = np.where(x > 0, x, 0.0)
        m = np.where(x > 0, m, 0.0)
        return np.asarray(p * (v + x * m) / (p * x + q - 1.0), dtype="float64")


# --------------------------------------------------------------------------- CLV
def customer_lifetime_value(
    transactions_model: BetaGeo,
    spend_model: GammaGamma,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    *,
    periods: int = 12,
    period_length: float = 1.0,
    discount_rate: float = 0.01,
    margin: float = 1.0,
) -> FloatArray:
    r"""Discounted expected profit of each customer over ``periods`` future periods.

    .. math:: \mathrm{CLV} = m \, E[Z] \sum_{i=1}^{n}
        \frac{E[Y(i\,\ell)] - E[Y((i-1)\,\ell)]}{(1+d)^i}

    with :math:`E[Y(\cdot)]` the BG/NBD conditional expected purchases, :math:`E[Z]` the
    Gamma-Gamma expected average profit, :math:`\ell` the period length in the data's time
    unit (e.g. ``30/7`` for months on weekly data), :math:`d` the discount rate per period
    and :math:`m` the margin.

    Parameters
    ----------
    transactions_model, spend_model
        Fitted models.
    frequency, recency, T, monetary_value
        Customer summaries in the unit the models were fitted on.
    periods
        Number of discounting periods.
    period_length
        Length of one period in the data's time unit.
    discount_rate
        Discount rate per period.
    margin
        Profit margin applied to revenue (1: value is revenue).

    Returns
    -------
    numpy.ndarray
        CLV per customer.

    Examples
    --------
    >>> bg = BetaGeo(); bg.r_, bg.alpha_, bg.a_, bg.b_, bg.params_ = 0.243, 4.414, 0.793, 2.426, {}
    >>> gg = GammaGamma(); gg.p_, gg.q_, gg.v_, gg.params_ = 6.25, 3.74, 15.44, {}
    >>> customer_lifetime_value(bg, gg, [0, 2], [0.0, 30.43], [38.86, 38.86], [0.0, 22.35],
    ...                         periods=12, period_length=30 / 7, discount_rate=0.01).round(2)
    array([ 8.27, 35.88])
    """
    if periods < 1:
        raise ValueError("periods must be >= 1")
    if period_length <= 0:
        raise ValueError("period_length must be > 0")
    if discount_rate <= -1:
        raise ValueError("discount_rate must be > -1")
    x, tx, T_, m = np.broadcast_arrays(
        *(
            np.atleast_1d(np.asarray(v, dtype="float64"))
            for v in (frequency, recency, T, monetary_value)
        )
    )
    value = spend_model.conditional_expected_average_profit(x, m) * margin
    prev = np.zeros_like(x)
    total = np.zeros_like(x)
    for i in range(1, periods + 1):
        cum = transactions_model.conditional_expected_purchases(i * period_length, x, tx, T_)
        total += (cum - prev) / (1.0 + discount_rate) ** i
        prev = cum
    return np.asarray(total * value, dtype="float64")
