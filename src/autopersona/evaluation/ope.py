r"""Off-policy evaluation: the value a target policy would have had, from another policy's logs.

Logged data has, per row :math:`i`, the action :math:`a_i` the logging policy took, its
propensity :math:`\mu_i = \mu(a_i \mid x_i) > 0` and the reward :math:`r_i`. A target policy
gives probabilities :math:`\pi(a \mid x_i)` for every action; with the importance weight
:math:`w_i = \pi(a_i \mid x_i)/\mu_i`:

* **IPS** (inverse propensity scoring): :math:`\hat V = \frac1n\sum_i w_i r_i` — unbiased
  when every action the target can take had a positive logging propensity.
* **SNIPS** (self-normalised IPS): :math:`\hat V = \sum_i w_i r_i / \sum_i w_i` — slightly
  biased, much lower variance, always within the range of the observed rewards.
* **DR** (doubly robust): with a reward model :math:`\hat q(x, a)`,
  :math:`\hat V = \frac1n\sum_i \big[\sum_a \pi(a \mid x_i)\,\hat q(x_i, a)
  + w_i\,(r_i - \hat q(x_i, a_i))\big]` — unbiased if either the propensities or the reward
  model are right, and lower variance than IPS when the model is good. The reward model is
  the per-action mean reward without context, or, with context columns, a LightGBM
  regression on context and action, **cross-fitted** (each fold's predictions come from a
  model fitted on the other folds) so that the model does not see the rows it corrects.

Confidence intervals
--------------------
``ci="normal"``: each estimator is a mean of per-row terms (IPS: :math:`w_i r_i`; DR: the
bracket above; SNIPS after linearisation: :math:`\hat V + w_i (r_i - \hat V)/\bar w`), so
:math:`\hat V \pm z_{1-\alpha/2}\, s/\sqrt n` with :math:`s` the terms' sample standard
deviation. ``ci="bootstrap"``: rows are resampled ``n_boot`` times with the given ``seed``
and the estimator recomputed; the interval is the percentile interval and the standard
error the bootstrap standard deviation (the DR reward model is held fixed).

References
----------
Horvitz, D. G., & Thompson, D. J. (1952). A generalization of sampling without replacement
from a finite universe. *JASA*, 47(260), 663-685.

Swaminathan, A., & Joachims, T. (2015). The self-normalized estimator for counterfactual
learning. *NeurIPS 28*.

Dudík, M., Langford, J., & Li, L. (2011). Doubly robust policy evaluation and learning.
*ICML*.

Examples
--------
>>> import numpy as np
>>> r = np.array([1.0, 0.0, 1.0, 0.0])
>>> mu = np.array([0.5, 0.5, 0.25, 0.75])
>>> pi = np.array([1.0, 0.0, 1.0, 0.5])  # target probability of each logged action
>>> round(ips(r, mu, pi).value, 4)
1.5
>>> round(snips(r, mu, pi).value, 4)
0.9
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

__all__ = [
    "Estimate",
    "doubly_robust",
    "evaluate_policy",
    "ips",
    "reward_model",
    "snips",
]

FloatArray = npt.NDArray[np.float64]
CI = Literal["normal", "bootstrap"]


@dataclass(frozen=True)
class Estimate:
    """A policy value estimate with its standard error and confidence interval."""

    estimator: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    level: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (NaN becomes None).

        Returns
        -------
        dict
            The estimate's fields.
        """

        def clean(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "estimator": self.estimator,
            "value": clean(self.value),
            "se": clean(self.se),
            "ci_low": clean(self.ci_low),
            "ci_high": clean(self.ci_high),
            "n": self.n,
            "level": self.level,
            "method": self.method,
        }


def _vec(x: npt.ArrayLike, name: str) -> FloatArray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if not np.isfinite(a).all():
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise ValueError(f"{name}: row {bad} is missing or not a finite number")
    return a


def _inputs(
    rewards: npt.ArrayLike, propensities: npt.ArrayLike, target: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    r = _vec(rewards, "reward")
    mu = _vec(propensities, "propensity")
    pi = _vec(target, "target probability")
    if not (len(r) == len(mu) == len(pi)):
        raise ValueError(
            f"rewards, propensities and target probabilities differ in length "
            f"({len(r)}, {len(mu)}, {len(pi)})"
        )
    if len(r) < 2:
        raise ValueError("at least two logged rows are needed")
    bad = np.flatnonzero((mu <= 0) | (mu > 1))
    if len(bad):
        raise ValueError(f"propensity: row {int(bad[0])} is {float(mu[bad[0]]):g}, not in (0, 1]")
    bad = np.flatnonzero((pi < 0) | (pi > 1))
    if len(bad):
        raise ValueError(
            f"target probability: row {int(bad[0])} is {float(pi[bad[0]]):g}, not in [0, 1]"
        )
    return r, mu, pi


def _estimate(
    name: str,
    value: float,
    terms: FloatArray,
    stat: Callable[[npt.NDArray[np.int64]], float],
    level: float,
    ci: CI,
    n_boot: int,
    seed: int | None,
) -> Estimate:
    n = len(terms)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), not {level}")
    if ci == "normal":
        se = float(np.std(terms, ddof=1) / math.sqrt(n))
        z = float(stats.norm.ppf(0.5 + level / 2))
        return Estimate(name, value, se, value - z * se, value + z * se, n, level, ci)
    if ci == "bootstrap":
        rng = np.random.default_rng(seed)
        boot = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)])
        boot = boot[np.isfinite(boot)]
        lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
        return Estimate(
            name, value, float(np.std(boot, ddof=1)), float(lo), float(hi), n, level, ci
        )
    raise ValueError(f"ci must be 'normal' or 'bootstrap', not {ci!r}")


def ips(
    rewards: npt.ArrayLike,
    propensities: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    level: float = 0.95,
    ci: CI = "normal",
    n_boot: int = 1000,
    seed: int | None = 0,
) -> Estimate:
    """Inverse propensity scoring estimate of the target policy's mean reward.

    Parameters
    ----------
    rewards
        Logged rewards.
    propensities
        Logging probability of each logged action, in (0, 1].
    target
        Target policy's probability of each logged action.
    level, ci, n_boot, seed
        Confidence level and interval method (module docstring).

    Returns
    -------
    Estimate
        Value, standard error and interval.
    """
    r, mu, pi = _inputs(rewards, propensities, target)
    terms = pi / mu * r
    return _estimate(
        "ips", float(terms.mean()), terms, lambda i: float(terms[i].mean()), level, ci, n_boot, seed
    )


def snips(
    rewards: npt.ArrayLike,
    propensities: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    level: float = 0.95,
    ci: CI = "normal",
    n_boot: int = 1000,
    seed: int | None = 0,
) -> Estimate:
    """Self-normalised IPS estimate (NaN when the target gives every logged action weight 0).

    Parameters
    ----------
    rewards, propensities, target
        As for :func:`ips`.
    level, ci, n_boot, seed
        Confidence level and interval method (module docstring).

    Returns
    -------
    Estimate
        Value, standard error and interval.
    """
    r, mu, pi = _inputs(rewards, propensities, target)
    w = pi / mu
    if w.sum() == 0:
        nan = math.nan
        return Estimate("snips", nan, nan, nan, nan, len(r), level, ci)
    # The estimate does not change with the weights' scale; scaled to a largest weight of 1
    # it stays a convex combination of the rewards even when a target probability is
    # subnormal (w * r and w.mean() would round or underflow there).
    w = w / w.max()
    value = float((w * r).sum() / w.sum())
    terms = value + w * (r - value) / w.mean()

    def stat(i: npt.NDArray[np.int64]) -> float:
        s = w[i].sum()
        return float((w[i] * r[i]).sum() / s) if s > 0 else math.nan

    return _estimate("snips", value, terms, stat, level, ci, n_boot, seed)


def doubly_robust(
    rewards: npt.ArrayLike,
    propensities: npt.ArrayLike,
    actions: npt.ArrayLike,
    target_probs: npt.ArrayLike,
    q_hat: npt.ArrayLike,
    *,
    level: float = 0.95,
    ci: CI = "normal",
    n_boot: int = 1000,
    seed: int | None = 0,
) -> Estimate:
    """Doubly robust estimate from a reward model and the target's full action probabilities.

    Parameters
    ----------
    rewards, propensities
        As for :func:`ips`.
    actions
        Column index (0..k-1) of each logged action in ``target_probs`` and ``q_hat``.
    target_probs
        ``(n, k)`` target probabilities of every action per row (rows sum to 1).
    q_hat
        ``(n, k)`` predicted reward of every action per row (:func:`reward_model`).
    level, ci, n_boot, seed
        Confidence level and interval method (module docstring).

    Returns
    -------
    Estimate
        Value, standard error and interval.
    """
    a = np.asarray(actions, dtype=np.int64).ravel()
    P = np.asarray(target_probs, dtype=np.float64)
    Q = np.asarray(q_hat, dtype=np.float64)
    if P.ndim != 2 or P.shape != Q.shape or P.shape[0] != len(a):
        raise ValueError(
            f"target_probs {P.shape} and q_hat {Q.shape} must both be (n_rows={len(a)}, k)"
        )
    if len(a) and (a.min() < 0 or a.max() >= P.shape[1]):
        raise ValueError("actions must index the columns of target_probs")
    rows = np.arange(len(a))
    r, mu, pi = _inputs(rewards, propensities, P[rows, a])
    if not np.isfinite(Q).all():
        raise ValueError("q_hat has missing or infinite values")
    terms = (P * Q).sum(axis=1) + pi / mu * (r - Q[rows, a])
    return _estimate(
        "dr", float(terms.mean()), terms, lambda i: float(terms[i].mean()), level, ci, n_boot, seed
    )


def reward_model(
    actions: npt.ArrayLike,
    rewards: npt.ArrayLike,
    n_actions: int,
    context: pd.DataFrame | None = None,
    *,
    folds: int = 2,
    seed: int | None = 0,
) -> FloatArray:
    """Predicted reward of every action for every logged row, for :func:`doubly_robust`.

    Without ``context``: each action's mean logged reward (the overall mean for an action
    never logged). With ``context``: a LightGBM regression on the context columns and the
    action (categorical), cross-fitted over ``folds`` random folds.

    Parameters
    ----------
    actions
        Column index (0..n_actions-1) of each logged action.
    rewards
        Logged rewards.
    n_actions
        Number of actions.
    context
        Context columns, one row per logged row (numbers or text).
    folds, seed
        Cross-fitting folds and their random split.

    Returns
    -------
    numpy.ndarray
        ``(n, n_actions)`` predicted rewards.

    Examples
    --------
    >>> reward_model([0, 0, 1, 1], [1.0, 0.0, 1.0, 1.0], 3).tolist()[0]
    [0.5, 1.0, 0.75]
    """
    a = np.asarray(actions, dtype=np.int64).ravel()
    r = _vec(rewards, "reward")
    if len(a) != len(r):
        raise ValueError(f"actions and rewards differ in length ({len(a)}, {len(r)})")
    if context is None:
        overall = float(r.mean())
        means = np.array(
            [r[a == k].mean() if (a == k).any() else overall for k in range(n_actions)]
        )
        return np.tile(means, (len(a), 1))
    import lightgbm as lgb

    if len(context) != len(a):
        raise ValueError(f"context has {len(context)} rows, the log {len(a)}")
    if folds < 2:
        raise ValueError("folds must be at least 2")
    X = _context_frame(context)
    cats = pd.CategoricalDtype(list(range(n_actions)))

    def design(action: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]) -> pd.DataFrame:
        d = X.iloc[rows].reset_index(drop=True).copy()
        d["__action__"] = pd.Series(action, dtype=cats)
        return d

    fold = np.random.default_rng(seed).permutation(len(a)) % folds
    out = np.empty((len(a), n_actions))
    params: dict[str, Any] = {
        "n_estimators": 100,
        "learning_rate": 0.05,
        "num_leaves": 15,
        "n_jobs": 1,
    }
    for f in range(folds):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        model = lgb.LGBMRegressor(**params, random_state=seed, verbose=-1)
        model.fit(design(a[train], train), r[train])
        for k in range(n_actions):
            pred = model.predict(design(np.full(len(test), k), test))
            out[test, k] = np.asarray(pred, dtype=np.float64)
    return out


def _context_frame(context: pd.DataFrame) -> pd.DataFrame:
    out: dict[str, Any] = {}
    for c in context.columns:
        col = context[c].reset_index(drop=True)
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            out[str(c)] = col.astype(np.float64)
        else:
            out[str(c)] = col.astype("string").astype("category")
    return pd.DataFrame(out)


def evaluate_policy(
    logged: pd.DataFrame,
    action: str,
    reward: str,
    propensity: str,
    policy: Literal["uniform"] | pd.DataFrame,
    context: Sequence[str] = (),
    *,
    level: float = 0.95,
    ci: CI = "normal",
    n_boot: int = 1000,
    seed: int | None = 0,
    folds: int = 2,
) -> dict[str, Any]:
    """IPS, SNIPS and DR estimates of a target policy on a logged table.

    Parameters
    ----------
    logged
        One row per logged decision.
    action, reward, propensity
        Column names in ``logged``.
    policy
        ``"uniform"`` (every action seen in the log with equal probability) or a frame,
        row-aligned with ``logged``, with one probability column per action (column names
        are the action values as text; every row sums to 1).
    context
        Context columns for the DR reward model (none: per-action means).
    level, ci, n_boot, seed
        Confidence level and interval method.
    folds
        Cross-fitting folds of the contextual reward model.

    Returns
    -------
    dict
        ``n``, ``actions``, ``logged_mean_reward`` and ``estimates`` (list of
        :class:`Estimate` for ips, snips, dr).
    """
    for c in (action, reward, propensity, *context):
        if c not in logged.columns:
            raise ValueError(f"logged data has no column {c!r}")
    acts = logged[action].astype("string")
    if acts.isna().any():
        raise ValueError(f"{action}: row {int(np.flatnonzero(acts.isna())[0])} has no action")
    if isinstance(policy, str):
        if policy != "uniform":
            raise ValueError(f"policy must be 'uniform' or a table, not {policy!r}")
        names = sorted(acts.unique())
        P = np.full((len(logged), len(names)), 1.0 / len(names))
    else:
        names = [str(c) for c in policy.columns]
        if len(policy) != len(logged):
            raise ValueError(f"policy has {len(policy)} rows, the logged data {len(logged)}")
        unknown = sorted(set(acts.unique()) - set(names))
        if unknown:
            raise ValueError(
                f"policy has no probability column for logged action(s): {', '.join(unknown)}"
            )
        P = np.column_stack([_vec(policy[c], f"policy column {c!r}") for c in policy.columns])
        if (P < 0).any() or (P > 1).any():
            row = int(np.flatnonzero(((P < 0) | (P > 1)).any(axis=1))[0])
            raise ValueError(f"policy: row {row} has a probability outside [0, 1]")
        sums = P.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
        if len(bad):
            raise ValueError(
                f"policy: row {int(bad[0])} probabilities sum to {sums[bad[0]]:.6g}, not 1"
            )
    index = {n: i for i, n in enumerate(names)}
    a = np.array([index[v] for v in acts], dtype=np.int64)
    r = _vec(logged[reward].to_numpy(), f"{reward}")
    mu = _vec(logged[propensity].to_numpy(), f"{propensity}")
    bad = np.flatnonzero((mu <= 0) | (mu > 1))
    if len(bad):
        row = int(bad[0])
        raise ValueError(f"{propensity}: row {row} is {float(mu[row]):g}, not in (0, 1]")
    pi = P[np.arange(len(a)), a]
    q = reward_model(
        a, r, len(names), logged[list(context)] if context else None, folds=folds, seed=seed
    )
    kw: dict[str, Any] = {"level": level, "ci": ci, "n_boot": n_boot, "seed": seed}
    return {
        "n": len(logged),
        "actions": names,
        "logged_mean_reward": float(r.mean()),
        "reward_model": "per-action mean" if not context else "cross-fitted LightGBM",
        "estimates": [
            ips(r, mu, pi, **kw),
            snips(r, mu, pi, **kw),
            doubly_robust(r, mu, a, P, q, **kw),
        ],
    }
