r"""Uplift (incrementality) models and their evaluation: T- and X-learners, Qini and AUUC.

An uplift model estimates, for a person with features :math:`x`, the conditional average
treatment effect :math:`\tau_t(x) = E[Y \mid x, T=t] - E[Y \mid x, T=c]` of sending treatment
``t`` instead of the control ``c``. It is fitted on a randomised experiment (e.g. an A/B test
with a holdout) and used to target only the people whom the message moves.

Learners
--------
Both learners handle more than one treatment: every treatment arm is compared with the
control separately (one CATE column per treatment), and :meth:`TLearner.best_treatment`
sends each person to the arm with the largest predicted uplift (or to the control when no
arm is predicted to help). Base learners are LightGBM gradient-boosted trees, classifiers
for a 0/1 outcome (probabilities) and regressors otherwise.

* **T-learner** — one outcome model per arm, :math:`\hat\tau_t(x) = \hat\mu_t(x) - \hat\mu_c(x)`.
* **X-learner** (Künzel et al. 2019) — the T-learner's outcome models impute individual
  effects, :math:`D^t_i = Y_i - \hat\mu_c(x_i)` for treated and
  :math:`D^c_i = \hat\mu_t(x_i) - Y_i` for control rows; two effect regressions
  :math:`\hat\tau^t, \hat\tau^c` are fitted on them and blended,
  :math:`\hat\tau(x) = g(x)\,\hat\tau^c(x) + (1 - g(x))\,\hat\tau^t(x)` with the propensity
  :math:`g(x) = P(T=t \mid x, T \in \{t, c\})`. In a randomised experiment ``g`` is the arm's
  share (``propensity="share"``, the default); ``propensity="model"`` fits a classifier.

Curves and scores
-----------------
Rows are ranked by predicted uplift (highest first); ties form one step, as in ROC curves.
For the top :math:`k` rows let :math:`N_t(k), N_c(k)` be the numbers of treated and control
rows and :math:`R_t(k), R_c(k)` the sums of their outcomes.

* **Qini curve** (Radcliffe 2007): :math:`Q(k) = R_t(k) - R_c(k)\,N_t(k)/N_c(k)` — the
  incremental responders among the treated of the top :math:`k` (0 while :math:`N_c(k)=0`).
* **Uplift curve**: :math:`U(k) = (R_t(k)/N_t(k) - R_c(k)/N_c(k))\,k` — the uplift of the top
  :math:`k` applied to :math:`k` people (a ratio with an empty group counts as 0).
* The **random** line joins :math:`(0, 0)` to the curve's end :math:`(n, Q(n))`.
* **Qini coefficient**: area between the model's Qini curve and the random line, divided by
  the same area for the *perfect* ranking on the observed data (treated responders first,
  control responders last; ``score = y·t - y·(1-t)``). 1 is perfect, 0 is random, negative
  is worse than random (on small samples a ranking can beat the "perfect" one, because
  :math:`N_t/N_c` varies along the curve, and score above 1). This is scikit-uplift's ``qini_auc_score`` (``negative_effect=True``).
* **AUUC**: the same normalised area for the uplift curve. Its perfect ranking puts treated
  responders first, then control non-responders, then treated non-responders before
  control responders when the control has more responders than the treated arm has
  non-responders (and the reverse otherwise) — scikit-uplift's ``uplift_auc_score``.

Areas are trapezoids over the number of people targeted.

References
----------
Radcliffe, N. J. (2007). Using control groups to target on predicted lift. *Direct
Marketing Analytics Journal*, 1, 14-21.

Künzel, S. R., Sekhon, J. S., Bickel, P. J., & Yu, B. (2019). Metalearners for estimating
heterogeneous treatment effects using machine learning. *PNAS*, 116(10), 4156-4165.

Examples
--------
>>> import numpy as np
>>> y = np.array([1, 0, 1, 0, 0, 1])
>>> t = np.array([1, 1, 0, 0, 1, 0])
>>> x, q = qini_curve(y, np.array([0.9, 0.8, 0.1, 0.7, 0.6, 0.2]), t)
>>> x.tolist(), q.round(3).tolist()
([0, 1, 2, 3, 4, 5, 6], [0.0, 1.0, 1.0, 1.0, 1.0, -0.5, -1.0])
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ArmScore",
    "TLearner",
    "XLearner",
    "auuc",
    "evaluate_uplift",
    "perfect_qini_curve",
    "perfect_uplift_curve",
    "qini_coefficient",
    "qini_curve",
    "qini_figure",
    "uplift_curve",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Outcome = Literal["auto", "binary", "continuous"]

DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.9,
    "n_jobs": 1,
    "verbose": -1,
}


# --------------------------------------------------------------------------- curves
def _as_curve_inputs(
    y: npt.ArrayLike, uplift: npt.ArrayLike, treatment: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, IntArray]:
    ya = np.asarray(y, dtype=np.float64).ravel()
    ua = np.asarray(uplift, dtype=np.float64).ravel()
    ta_raw = np.asarray(treatment).ravel()
    if not (len(ya) == len(ua) == len(ta_raw)):
        raise ValueError(
            f"y, uplift and treatment differ in length ({len(ya)}, {len(ua)}, {len(ta_raw)})"
        )
    if len(ya) == 0:
        raise ValueError("no rows to evaluate")
    if not np.isin(ta_raw, [0, 1]).all():
        raise ValueError("treatment must be 0 (control) or 1 (treated)")
    if not (np.isfinite(ya).all() and np.isfinite(ua).all()):
        raise ValueError("y and uplift must be finite numbers")
    return ya, ua, ta_raw.astype(np.int64)


def _steps(
    y: FloatArray, uplift: FloatArray, treatment: IntArray
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Cumulative counts and outcome sums at each distinct score (highest first)."""
    order = np.argsort(-uplift, kind="mergesort")
    y, uplift, treatment = y[order], uplift[order], treatment[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(uplift)), len(uplift) - 1]
    n_all = (last_of_tie + 1).astype(np.int64)
    n_t = np.cumsum(treatment, dtype=np.float64)[last_of_tie]
    n_c = n_all - n_t
    r_t = np.cumsum(y * treatment)[last_of_tie]
    r_c = np.cumsum(y * (1 - treatment))[last_of_tie]
    return n_all, n_t, n_c, r_t, r_c


def _ratio(a: FloatArray, b: FloatArray) -> FloatArray:
    out = np.zeros_like(a, dtype=np.float64)
    np.divide(a, b, out=out, where=b != 0)
    return out


def qini_curve(
    y: npt.ArrayLike, uplift: npt.ArrayLike, treatment: npt.ArrayLike
) -> tuple[IntArray, FloatArray]:
    """Qini curve: people targeted (highest predicted uplift first) and incremental responders.

    Parameters
    ----------
    y
        Observed outcomes (0/1 or amounts).
    uplift
        Predicted uplift; higher means target first.
    treatment
        1 for treated rows, 0 for control rows.

    Returns
    -------
    tuple of numpy arrays
        ``x`` (number of people targeted, starting at 0) and ``Q(x)`` (module docstring).
    """
    ya, ua, ta = _as_curve_inputs(y, uplift, treatment)
    n_all, n_t, n_c, r_t, r_c = _steps(ya, ua, ta)
    q = r_t - r_c * _ratio(n_t, n_c)
    return np.r_[0, n_all].astype(np.int64), np.r_[0.0, q]


def uplift_curve(
    y: npt.ArrayLike, uplift: npt.ArrayLike, treatment: npt.ArrayLike
) -> tuple[IntArray, FloatArray]:
    """Uplift curve: people targeted and ``(rate_treated - rate_control) * targeted``.

    Parameters
    ----------
    y, uplift, treatment
        As for :func:`qini_curve`.

    Returns
    -------
    tuple of numpy arrays
        ``x`` (starting at 0) and ``U(x)``.
    """
    ya, ua, ta = _as_curve_inputs(y, uplift, treatment)
    n_all, n_t, n_c, r_t, r_c = _steps(ya, ua, ta)
    u = (_ratio(r_t, n_t) - _ratio(r_c, n_c)) * n_all
    return np.r_[0, n_all].astype(np.int64), np.r_[0.0, u]


def perfect_qini_curve(y: npt.ArrayLike, treatment: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
    """Qini curve of the best ranking of the observed rows (treated responders first).

    Parameters
    ----------
    y, treatment
        As for :func:`qini_curve`.

    Returns
    -------
    tuple of numpy arrays
        The curve's points.
    """
    ya = np.asarray(y, dtype=np.float64).ravel()
    ta = np.asarray(treatment).ravel()
    return qini_curve(ya, ya * ta - ya * (1 - ta), ta)


def perfect_uplift_curve(y: npt.ArrayLike, treatment: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
    """Uplift curve of the best ranking of the observed 0/1 outcomes (module docstring).

    Parameters
    ----------
    y, treatment
        As for :func:`uplift_curve`; ``y`` must be 0/1.

    Returns
    -------
    tuple of numpy arrays
        The curve's points.
    """
    ya = np.asarray(y, dtype=np.float64).ravel()
    ta = np.asarray(treatment, dtype=np.float64).ravel()
    if not np.isin(ya, [0.0, 1.0]).all():
        raise ValueError("the perfect uplift curve is defined for 0/1 outcomes")
    control_responders = float(np.sum((ya == 1) & (ta == 0)))
    treated_non_responders = float(np.sum((ya == 0) & (ta == 1)))
    tiebreak = ya if control_responders > treated_non_responders else ta
    score = 2.0 * (ya == ta) + tiebreak
    return uplift_curve(ya, score, ta)


def _area(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    return float(np.sum((xa[1:] - xa[:-1]) * (ya[1:] + ya[:-1]) / 2.0))


def _normalised(curve: tuple[IntArray, FloatArray], perfect: tuple[IntArray, FloatArray]) -> float:
    x, c = curve
    xp, cp = perfect
    random = _area([0, xp[-1]], [0.0, cp[-1]])
    best = _area(xp, cp) - random
    if best == 0.0:
        return math.nan
    return (_area(x, c) - random) / best


def qini_coefficient(y: npt.ArrayLike, uplift: npt.ArrayLike, treatment: npt.ArrayLike) -> float:
    """Normalised area between the Qini curve and the random line (1 perfect, 0 random).

    Parameters
    ----------
    y, uplift, treatment
        As for :func:`qini_curve`.

    Returns
    -------
    float
        The coefficient; NaN when the perfect ranking is no better than random.

    Examples
    --------
    >>> qini_coefficient([1, 0, 0, 1], [0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0])
    1.0
    >>> qini_coefficient([1, 0, 0, 1], [0.1, 0.9, 0.5, 0.95], [1, 1, 0, 0])
    -0.5
    """
    return _normalised(qini_curve(y, uplift, treatment), perfect_qini_curve(y, treatment))


def auuc(y: npt.ArrayLike, uplift: npt.ArrayLike, treatment: npt.ArrayLike) -> float:
    """Normalised area under the uplift curve above the random line (1 perfect, 0 random).

    Parameters
    ----------
    y, uplift, treatment
        As for :func:`uplift_curve`; ``y`` must be 0/1.

    Returns
    -------
    float
        The score; NaN when the perfect ranking is no better than random.
    """
    return _normalised(uplift_curve(y, uplift, treatment), perfect_uplift_curve(y, treatment))


# --------------------------------------------------------------------------- features
class _Features:
    """Column order and fixed categories of the training frame, reapplied at prediction."""

    def __init__(self, X: pd.DataFrame | npt.ArrayLike) -> None:
        frame = _frame(X)
        self.columns: list[str] = [str(c) for c in frame.columns]
        self.categories: dict[str, pd.Index] = {}
        for c in frame.columns:
            col = frame[c]
            if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
                values = col.dropna().astype(str)
                self.categories[str(c)] = pd.Index(sorted(values.unique()))

    def transform(self, X: pd.DataFrame | npt.ArrayLike) -> pd.DataFrame:
        frame = _frame(X)
        frame.columns = [str(c) for c in frame.columns]
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"feature column(s) missing: {', '.join(missing)}")
        out: dict[str, Any] = {}
        for c in self.columns:
            col = frame[c]
            if c in self.categories:
                text = col.astype("string")
                out[c] = pd.Categorical(text, categories=self.categories[c])
            else:
                try:
                    out[c] = pd.to_numeric(col).astype(np.float64)
                except (TypeError, ValueError):
                    raise ValueError(f"feature column {c!r} is not numeric") from None
        return pd.DataFrame(out, index=frame.index)


def _frame(X: pd.DataFrame | npt.ArrayLike) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X.reset_index(drop=True)
    arr = np.asarray(X)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


class _Constant:
    """Stand-in model when an arm has a single outcome value (nothing to learn)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, X: pd.DataFrame) -> FloatArray:
        return np.full(len(X), self.value, dtype=np.float64)


def _is_binary(y: FloatArray) -> bool:
    return bool(np.isin(y, [0.0, 1.0]).all())


class _Outcome:
    """One fitted LightGBM outcome model (classifier probability or regression)."""

    def __init__(self, binary: bool, params: dict[str, Any], seed: int | None) -> None:
        self.binary = binary
        self.params = {**params, "random_state": seed}
        self.model: Any = None

    def fit(self, X: pd.DataFrame, y: FloatArray) -> _Outcome:
        import lightgbm as lgb

        if len(np.unique(y)) < 2:
            self.model = _Constant(float(y[0]) if len(y) else 0.0)
        elif self.binary:
            self.model = lgb.LGBMClassifier(**self.params).fit(X, y.astype(np.int64))
        else:
            self.model = lgb.LGBMRegressor(**self.params).fit(X, y)
        return self

    def predict(self, X: pd.DataFrame) -> FloatArray:
        if self.binary and not isinstance(self.model, _Constant):
            return np.asarray(self.model.predict_proba(X)[:, 1], dtype=np.float64)
        return np.asarray(self.model.predict(X), dtype=np.float64)


def _regressor(X: pd.DataFrame, y: FloatArray, params: dict[str, Any], seed: int | None) -> Any:
    return _Outcome(False, params, seed).fit(X, y)


# --------------------------------------------------------------------------- learners
class _UpliftLearner:
    """Shared input checks, arm bookkeeping, prediction frame and targeting."""

    def __init__(
        self,
        control: Hashable = 0,
        outcome: Outcome = "auto",
        params: dict[str, Any] | None = None,
        seed: int | None = 0,
    ) -> None:
        self.control = control
        self.outcome = outcome
        self.params = params
        self.seed = seed

    # fitted attributes (set by fit)
    treatments_: list[Hashable]
    binary_: bool
    features_: _Features

    def _prepare(
        self, X: pd.DataFrame | npt.ArrayLike, treatment: npt.ArrayLike, y: npt.ArrayLike
    ) -> tuple[pd.DataFrame, npt.NDArray[Any], FloatArray]:
        t = np.asarray(pd.Series(np.asarray(treatment, dtype=object)).to_numpy())
        ya = np.asarray(y, dtype=np.float64).ravel()
        frame = _frame(X)
        if not (len(frame) == len(t) == len(ya)):
            raise ValueError(
                f"X, treatment and y differ in length ({len(frame)}, {len(t)}, {len(ya)})"
            )
        if not np.isfinite(ya).all():
            raise ValueError("the outcome has missing or infinite values")
        if pd.isna(t).any():
            raise ValueError("the treatment has missing values")
        arms = list(pd.unique(t))
        if self.control not in arms:
            raise ValueError(
                f"control value {self.control!r} not among the treatment values "
                f"({', '.join(map(str, arms))})"
            )
        treatments = [a for a in arms if a != self.control]
        if not treatments:
            raise ValueError("no treated rows: every row has the control value")
        self.treatments_ = sorted(treatments, key=str)
        if self.outcome == "auto":
            self.binary_ = _is_binary(ya)
        else:
            self.binary_ = self.outcome == "binary"
            if self.binary_ and not _is_binary(ya):
                raise ValueError("outcome='binary' but y has values other than 0 and 1")
        self.features_ = _Features(frame)
        return self.features_.transform(frame), t, ya

    def _params(self) -> dict[str, Any]:
        return {**DEFAULT_PARAMS, **(self.params or {})}

    def predict(self, X: pd.DataFrame | npt.ArrayLike) -> FloatArray:
        """Predicted uplift, one column per treatment (order of ``treatments_``).

        Parameters
        ----------
        X
            Features with the training columns.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_rows, n_treatments)``.
        """
        raise NotImplementedError

    def predict_frame(self, X: pd.DataFrame | npt.ArrayLike) -> pd.DataFrame:
        """:meth:`predict` as a frame whose columns are the treatment values.

        Parameters
        ----------
        X
            Features with the training columns.

        Returns
        -------
        pandas.DataFrame
            One uplift column per treatment.
        """
        return pd.DataFrame(self.predict(X), columns=pd.Index(self.treatments_))

    def best_treatment(
        self, X: pd.DataFrame | npt.ArrayLike, threshold: float = 0.0
    ) -> npt.NDArray[Any]:
        """The arm with the largest predicted uplift per row, or the control below ``threshold``.

        Parameters
        ----------
        X
            Features with the training columns.
        threshold
            Minimum predicted uplift (e.g. the cost of a message in outcome units) for a
            treatment to be chosen.

        Returns
        -------
        numpy.ndarray
            Arm values (objects).
        """
        tau = self.predict(X)
        best = np.argmax(tau, axis=1)
        arms = np.array(self.treatments_, dtype=object)[best]
        keep = tau[np.arange(len(tau)), best] > threshold
        return np.where(keep, arms, np.array(self.control, dtype=object))


class TLearner(_UpliftLearner):
    """Two-model uplift: an outcome model per arm, uplift = treated minus control prediction.

    Parameters
    ----------
    control
        The control value of the treatment column; every other value is a treatment.
    outcome
        ``"binary"`` (LightGBM classifiers, probabilities), ``"continuous"`` (regressors) or
        ``"auto"`` (binary when the outcome is 0/1).
    params
        LightGBM parameters overriding :data:`DEFAULT_PARAMS`.
    seed
        Random state of the base learners.

    Attributes
    ----------
    treatments_ : list
        Treatment values, one CATE column each.
    models_ : dict
        Fitted outcome model per arm (control included).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(size=(2000, 1))
    >>> t = rng.integers(0, 2, 2000)
    >>> y = (rng.uniform(size=2000) < 0.2 + 0.5 * t * (x[:, 0] > 0.5)).astype(int)
    >>> m = TLearner(params={"n_estimators": 30}).fit(x, t, y)
    >>> tau = m.predict(np.array([[0.2], [0.8]]))[:, 0]
    >>> bool(tau[1] > tau[0] + 0.2)
    True
    """

    models_: dict[Hashable, Any]

    def fit(
        self, X: pd.DataFrame | npt.ArrayLike, treatment: npt.ArrayLike, y: npt.ArrayLike
    ) -> TLearner:
        """Fit one outcome model per arm.

        Parameters
        ----------
        X
            Features (a frame; text columns are categorical).
        treatment
            Arm of each row.
        y
            Outcome of each row.

        Returns
        -------
        TLearner
            ``self``.
        """
        Xf, t, ya = self._prepare(X, treatment, y)
        params = self._params()
        self.models_ = {}
        for arm in [self.control, *self.treatments_]:
            rows = t == arm
            self.models_[arm] = _Outcome(self.binary_, params, self.seed).fit(Xf[rows], ya[rows])
        return self

    def predict(self, X: pd.DataFrame | npt.ArrayLike) -> FloatArray:
        """Predicted uplift, one column per treatment (order of ``treatments_``).

        Parameters
        ----------
        X
            Features with the training columns.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_rows, n_treatments)``.
        """
        Xf = self.features_.transform(X)
        base = self.models_[self.control].predict(Xf)
        return np.column_stack([self.models_[a].predict(Xf) - base for a in self.treatments_])


class XLearner(_UpliftLearner):
    """X-learner uplift (Künzel et al. 2019): imputed individual effects, blended by propensity.

    Parameters
    ----------
    control, outcome, params, seed
        As for :class:`TLearner`.
    propensity
        ``"share"`` (the arm's share of treated-or-control training rows — right for a
        randomised experiment) or ``"model"`` (a LightGBM classifier of arm on features).

    Attributes
    ----------
    treatments_ : list
        Treatment values, one CATE column each.
    outcome_models_ : dict
        Stage-1 outcome model per arm.
    effect_models_ : dict
        Per treatment, the pair ``(tau_treated, tau_control)`` of stage-2 effect regressions.
    propensity_ : dict
        Per treatment, the share (float) or the fitted classifier.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> x = rng.uniform(size=(2000, 1))
    >>> t = rng.choice(["none", "mail"], 2000)
    >>> y = (rng.uniform(size=2000) < 0.2 + 0.5 * (t == "mail") * (x[:, 0] > 0.5)).astype(int)
    >>> m = XLearner(control="none", params={"n_estimators": 30}).fit(x, t, y)
    >>> m.best_treatment(np.array([[0.1], [0.9]]), threshold=0.1).tolist()
    ['none', 'mail']
    """

    outcome_models_: dict[Hashable, Any]
    effect_models_: dict[Hashable, tuple[Any, Any]]
    propensity_: dict[Hashable, Any]

    def __init__(
        self,
        control: Hashable = 0,
        outcome: Outcome = "auto",
        params: dict[str, Any] | None = None,
        seed: int | None = 0,
        propensity: Literal["share", "model"] = "share",
    ) -> None:
        super().__init__(control=control, outcome=outcome, params=params, seed=seed)
        self.propensity = propensity

    def fit(
        self, X: pd.DataFrame | npt.ArrayLike, treatment: npt.ArrayLike, y: npt.ArrayLike
    ) -> XLearner:
        """Fit outcome models, effect regressions and propensities.

        Parameters
        ----------
        X
            Features (a frame; text columns are categorical).
        treatment
            Arm of each row.
        y
            Outcome of each row.

        Returns
        -------
        XLearner
            ``self``.
        """
        import lightgbm as lgb

        if self.propensity not in ("share", "model"):
            raise ValueError(f"propensity must be 'share' or 'model', not {self.propensity!r}")
        Xf, t, ya = self._prepare(X, treatment, y)
        params = self._params()
        self.outcome_models_ = {}
        for arm in [self.control, *self.treatments_]:
            rows = t == arm
            self.outcome_models_[arm] = _Outcome(self.binary_, params, self.seed).fit(
                Xf[rows], ya[rows]
            )
        ctrl = t == self.control
        mu_c = self.outcome_models_[self.control]
        self.effect_models_ = {}
        self.propensity_ = {}
        for arm in self.treatments_:
            trt = t == arm
            d_t = ya[trt] - mu_c.predict(Xf[trt])
            d_c = self.outcome_models_[arm].predict(Xf[ctrl]) - ya[ctrl]
            self.effect_models_[arm] = (
                _regressor(Xf[trt], d_t, params, self.seed),
                _regressor(Xf[ctrl], d_c, params, self.seed),
            )
            share = float(trt.sum() / (trt.sum() + ctrl.sum()))
            if self.propensity == "share":
                self.propensity_[arm] = share
            else:
                both = trt | ctrl
                clf_params = {**params, "random_state": self.seed}
                self.propensity_[arm] = lgb.LGBMClassifier(**clf_params).fit(
                    Xf[both], trt[both].astype(np.int64)
                )
        return self

    def _g(self, arm: Hashable, Xf: pd.DataFrame) -> FloatArray:
        p = self.propensity_[arm]
        if isinstance(p, float):
            return np.full(len(Xf), p)
        return np.clip(np.asarray(p.predict_proba(Xf)[:, 1], dtype=np.float64), 0.01, 0.99)

    def predict(self, X: pd.DataFrame | npt.ArrayLike) -> FloatArray:
        """Predicted uplift, one column per treatment (order of ``treatments_``).

        Parameters
        ----------
        X
            Features with the training columns.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_rows, n_treatments)``.
        """
        Xf = self.features_.transform(X)
        cols = []
        for arm in self.treatments_:
            tau_t, tau_c = self.effect_models_[arm]
            g = self._g(arm, Xf)
            cols.append(g * tau_c.predict(Xf) + (1.0 - g) * tau_t.predict(Xf))
        return np.column_stack(cols)


# --------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class ArmScore:
    """Held-out scores of one treatment against the control."""

    treatment: Hashable
    n_treated: int
    n_control: int
    observed_uplift: float
    qini: float
    auuc: float | None
    curve_x: list[int] = field(repr=False)
    curve_q: list[float] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no curve points; NaN becomes None).

        Returns
        -------
        dict
            ``treatment``, counts, observed uplift, ``qini_coefficient``, ``auuc``.
        """

        def clean(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "treatment": self.treatment,
            "n_treated": self.n_treated,
            "n_control": self.n_control,
            "observed_uplift": clean(self.observed_uplift),
            "qini_coefficient": clean(self.qini),
            "auuc": clean(self.auuc),
        }


def evaluate_uplift(
    y: npt.ArrayLike,
    uplift: npt.ArrayLike,
    treatment: npt.ArrayLike,
    control: Hashable,
    treatments: Sequence[Hashable],
) -> list[ArmScore]:
    """Qini coefficient and AUUC of each treatment's uplift column on its arm plus control.

    Parameters
    ----------
    y
        Outcomes.
    uplift
        Predicted uplift, shape ``(n, len(treatments))`` (as :meth:`TLearner.predict`).
    treatment
        Arm of each row.
    control
        The control value.
    treatments
        The treatment values, in the order of ``uplift``'s columns.

    Returns
    -------
    list of ArmScore
        One per treatment; ``auuc`` is None for a non-binary outcome.
    """
    ya = np.asarray(y, dtype=np.float64).ravel()
    u = np.asarray(uplift, dtype=np.float64)
    if u.ndim == 1:
        u = u.reshape(-1, 1)
    t = np.asarray(treatment, dtype=object)
    if u.shape != (len(ya), len(treatments)):
        raise ValueError(f"uplift has shape {u.shape}, expected {(len(ya), len(treatments))}")
    ctrl = t == control
    binary = _is_binary(ya)
    scores = []
    for j, arm in enumerate(treatments):
        rows = (t == arm) | ctrl
        yy, uu, tt = ya[rows], u[rows, j], (t[rows] == arm).astype(np.int64)
        n_t, n_c = int(tt.sum()), int((1 - tt).sum())
        if n_t == 0 or n_c == 0:
            raise ValueError(f"treatment {arm!r}: the held-out rows need treated and control rows")
        x, q = qini_curve(yy, uu, tt)
        scores.append(
            ArmScore(
                treatment=arm,
                n_treated=n_t,
                n_control=n_c,
                observed_uplift=float(yy[tt == 1].mean() - yy[tt == 0].mean()),
                qini=qini_coefficient(yy, uu, tt),
                auuc=auuc(yy, uu, tt) if binary else None,
                curve_x=x.tolist(),
                curve_q=q.tolist(),
            )
        )
    return scores


# --------------------------------------------------------------------------- plot
def qini_figure(scores: Sequence[ArmScore], title: str = "Qini curve") -> Figure:
    """Qini curves (fraction targeted vs incremental responders per treated) with random lines.

    Parameters
    ----------
    scores
        From :func:`evaluate_uplift`.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        A figure drawn with the Agg backend (not shown).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    for s in scores:
        x = np.asarray(s.curve_x, dtype=np.float64)
        q = np.asarray(s.curve_q, dtype=np.float64)
        frac = x / x[-1]
        (line,) = ax.plot(frac, q, label=f"{s.treatment} (Qini {s.qini:.3f})")
        ax.plot([0.0, 1.0], [0.0, q[-1]], linestyle="--", color=line.get_color(), alpha=0.6)
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_xlabel("fraction targeted (highest predicted uplift first)")
    ax.set_ylabel("incremental responders")
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig
