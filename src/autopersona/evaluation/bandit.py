r"""Multi-armed bandits for offers and coupons: Beta-Bernoulli and linear Thompson sampling.

A strategy with several offers (coupons, messages) lets a bandit choose among them per
send, learning which converts while it spends most sends on the best one. Every policy:

* takes a ``seed`` and is reproducible from it;
* ``select(context)`` returns a :class:`Decision` — the arm and the **propensity** of that
  choice, which is logged with the send so that other policies can be evaluated later
  off-policy (:mod:`autopersona.evaluation.ope`);
* ``update(arm, reward, context)`` adds one observed reward;
* ``to_dict()`` / :func:`policy_from_dict` round-trip the whole state (posterior and random
  generator) through JSON, so a policy persists between runs and resumes identically.

Propensities of Thompson sampling
---------------------------------
Thompson sampling picks the arm whose posterior draw is largest, so the probability of a
choice, :math:`P(a = \arg\max_b \tilde\theta_b)`, has no closed form in general. It is
estimated by Monte Carlo: ``n_mc`` further joint draws from the same posterior, plus the
draw that made the decision (one more sample of the same process), so

.. math:: \hat p_a = \frac{\#\{\text{draws won by } a\} + 1[a \text{ chosen}]}{n_{mc} + 1}.

The chosen arm's estimate is never 0 and its standard error is at most
:math:`0.5/\sqrt{n_{mc}}` (about 0.011 at the default 2,000 draws). Arms that almost never
win get estimates near :math:`1/(n_{mc}+1)`; off-policy estimators that divide by them
should clip or self-normalise (SNIPS).

Examples
--------
>>> ts = BetaThompson(["10%", "20%"], seed=7)
>>> d = ts.select()
>>> d.arm in ("10%", "20%"), 0 < d.propensity <= 1
(True, True)
>>> ts.update(d.arm, 1.0)
>>> again = policy_from_dict(ts.to_dict())
>>> again.select() == ts.select()
True
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "BetaThompson",
    "Decision",
    "LinearThompson",
    "Policy",
    "allocation_figure",
    "load_policy",
    "policy_from_dict",
    "replay",
    "save_policy",
    "simulate",
]

FloatArray = npt.NDArray[np.float64]
Context = Mapping[str, float] | Sequence[float] | npt.NDArray[Any] | None


@dataclass(frozen=True)
class Decision:
    """An arm chosen by a policy with the (estimated) probability that it would be chosen."""

    arm: str
    propensity: float
    probabilities: dict[str, float] = field(default_factory=dict)


class Policy(Protocol):
    """What the delivery side needs from a bandit policy."""

    arms: list[str]

    def select(self, context: Context = None) -> Decision:
        """Choose an arm for one send."""
        ...

    def update(self, arm: str, reward: float, context: Context = None) -> None:
        """Learn from one observed reward."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        ...


def _check_arms(arms: Sequence[str]) -> list[str]:
    out = [str(a) for a in arms]
    if len(out) < 2:
        raise ValueError("a bandit needs at least two arms")
    if len(set(out)) != len(out):
        raise ValueError(f"arm names repeat: {out}")
    return out


def _mc_probabilities(
    arms: list[str], chosen: int, draws: FloatArray, n_mc: int
) -> tuple[float, dict[str, float]]:
    """Shares of the ``(n_mc, k)`` draws won by each arm, the deciding draw included."""
    wins = np.bincount(np.argmax(draws, axis=1), minlength=len(arms)).astype(np.float64)
    wins[chosen] += 1.0
    p = wins / (n_mc + 1)
    return float(p[chosen]), {a: float(v) for a, v in zip(arms, p, strict=True)}


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def _rng_from(state: dict[str, Any] | None, seed: int | None) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    if state is not None:
        rng.bit_generator.state = state
    return rng


class BetaThompson:
    """Thompson sampling with a Beta prior per arm for 0/1 (or [0, 1]) rewards.

    Each arm's success probability has a ``Beta(alpha, beta)`` prior; a reward ``r`` in
    [0, 1] adds ``r`` to the arm's alpha and ``1 - r`` to its beta. ``select`` draws one
    value per arm from the posteriors and plays the largest.

    Parameters
    ----------
    arms
        Offer names.
    alpha, beta
        Prior pseudo-counts of successes and failures (1, 1 is uniform).
    seed
        Seed of the random generator.
    n_mc
        Monte Carlo draws for the propensity (module docstring); 0 skips it (propensity NaN).

    Examples
    --------
    >>> ts = BetaThompson(["a", "b", "c"], seed=1)
    >>> for _ in range(200):
    ...     d = ts.select()
    ...     ts.update(d.arm, 1.0 if d.arm == "c" else 0.0)
    >>> max(ts.pulls(), key=ts.pulls().get)
    'c'
    """

    kind = "beta_thompson"

    def __init__(
        self,
        arms: Sequence[str],
        alpha: float = 1.0,
        beta: float = 1.0,
        seed: int | None = None,
        n_mc: int = 2000,
    ) -> None:
        if alpha <= 0 or beta <= 0:
            raise ValueError("alpha and beta must be positive")
        self.arms = _check_arms(arms)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.seed = seed
        self.n_mc = int(n_mc)
        self.successes = np.zeros(len(self.arms))
        self.failures = np.zeros(len(self.arms))
        self.rng = np.random.default_rng(seed)

    def _index(self, arm: str) -> int:
        try:
            return self.arms.index(str(arm))
        except ValueError:
            raise ValueError(f"unknown arm {arm!r} (arms: {', '.join(self.arms)})") from None

    def select(self, context: Context = None) -> Decision:
        """Draw from every posterior and play the largest draw.

        Parameters
        ----------
        context
            Ignored (the policy is not contextual); accepted for a common interface.

        Returns
        -------
        Decision
            The arm, its Monte Carlo propensity and every arm's probability.
        """
        a = self.alpha + self.successes
        b = self.beta + self.failures
        draw = self.rng.beta(a, b)
        chosen = int(np.argmax(draw))
        if self.n_mc <= 0:
            return Decision(self.arms[chosen], math.nan)
        draws = self.rng.beta(a, b, size=(self.n_mc, len(self.arms)))
        p, probs = _mc_probabilities(self.arms, chosen, draws, self.n_mc)
        return Decision(self.arms[chosen], p, probs)

    def update(self, arm: str, reward: float, context: Context = None) -> None:
        """Add one reward in [0, 1] to ``arm``'s posterior.

        Parameters
        ----------
        arm
            The arm played.
        reward
            Observed reward, 0 to 1.
        context
            Ignored.
        """
        r = float(reward)
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"reward {reward!r} for arm {arm!r} is outside [0, 1]")
        i = self._index(arm)
        self.successes[i] += r
        self.failures[i] += 1.0 - r

    def pulls(self) -> dict[str, float]:
        """Rewards observed per arm (successes plus failures).

        Returns
        -------
        dict
            Arm to count.
        """
        return {a: float(n) for a, n in zip(self.arms, self.successes + self.failures, strict=True)}

    def posterior_mean(self) -> dict[str, float]:
        """Posterior mean success probability per arm.

        Returns
        -------
        dict
            Arm to mean.
        """
        a = self.alpha + self.successes
        b = self.beta + self.failures
        return {arm: float(m) for arm, m in zip(self.arms, a / (a + b), strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state: parameters, counts and the random generator's state.

        Returns
        -------
        dict
            Accepted by :func:`policy_from_dict`.
        """
        return {
            "kind": self.kind,
            "arms": self.arms,
            "alpha": self.alpha,
            "beta": self.beta,
            "seed": self.seed,
            "n_mc": self.n_mc,
            "successes": self.successes.tolist(),
            "failures": self.failures.tolist(),
            "rng": _rng_state(self.rng),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> BetaThompson:
        """Rebuild a policy saved with :meth:`to_dict`.

        Parameters
        ----------
        state
            The saved state.

        Returns
        -------
        BetaThompson
            The policy, continuing where it stopped.
        """
        p = cls(state["arms"], state["alpha"], state["beta"], state["seed"], state["n_mc"])
        p.successes = np.asarray(state["successes"], dtype=np.float64)
        p.failures = np.asarray(state["failures"], dtype=np.float64)
        if p.successes.shape != (len(p.arms),) or p.failures.shape != (len(p.arms),):
            raise ValueError("saved counts do not match the arms")
        p.rng = _rng_from(state.get("rng"), state["seed"])
        return p


class LinearThompson:
    r"""Contextual Thompson sampling with a Bayesian linear reward model per arm.

    Each arm's expected reward is :math:`x^\top\theta_a` with prior
    :math:`\theta_a \sim N(0, \sigma_0^2 I)` (``prior_variance``) and Gaussian noise of
    variance :math:`\sigma^2` (``noise_variance``). The posterior has precision
    :math:`A_a = I/\sigma_0^2 + \sum x x^\top/\sigma^2` and mean :math:`A_a^{-1} b_a` with
    :math:`b_a = \sum r x/\sigma^2`. Because the score :math:`x^\top\tilde\theta_a` of a draw
    is itself normal, :math:`N(x^\top\mu_a, x^\top A_a^{-1} x)`, ``select`` draws that scalar
    per arm (exactly Thompson sampling, and cheap enough for Monte Carlo propensities).

    Parameters
    ----------
    arms
        Offer names.
    features
        Context feature names (contexts are mappings with these keys, or sequences in
        this order).
    prior_variance
        :math:`\sigma_0^2`; small values shrink towards 0 (a reward scale of about 1 suits 1).
    noise_variance
        :math:`\sigma^2`; 0.25 is the largest variance of a 0/1 reward.
    fit_intercept
        Add a constant 1 feature.
    seed, n_mc
        As for :class:`BetaThompson`.

    Examples
    --------
    >>> import numpy as np
    >>> lt = LinearThompson(["a", "b"], ["vip"], seed=0)
    >>> rng = np.random.default_rng(0)
    >>> for _ in range(300):
    ...     vip = float(rng.integers(0, 2))
    ...     d = lt.select({"vip": vip})
    ...     lt.update(d.arm, float(d.arm == ("b" if vip else "a")), {"vip": vip})
    >>> lt.select({"vip": 1.0}).arm, lt.select({"vip": 0.0}).arm
    ('b', 'a')
    """

    kind = "linear_thompson"

    def __init__(
        self,
        arms: Sequence[str],
        features: Sequence[str],
        prior_variance: float = 1.0,
        noise_variance: float = 0.25,
        fit_intercept: bool = True,
        seed: int | None = None,
        n_mc: int = 2000,
    ) -> None:
        if prior_variance <= 0 or noise_variance <= 0:
            raise ValueError("prior_variance and noise_variance must be positive")
        self.arms = _check_arms(arms)
        self.features = [str(f) for f in features]
        if not self.features and not fit_intercept:
            raise ValueError("no features and no intercept: nothing to learn from")
        self.prior_variance = float(prior_variance)
        self.noise_variance = float(noise_variance)
        self.fit_intercept = bool(fit_intercept)
        self.seed = seed
        self.n_mc = int(n_mc)
        d = len(self.features) + int(self.fit_intercept)
        self.precision = np.stack([np.eye(d) / self.prior_variance for _ in self.arms])
        self.b = np.zeros((len(self.arms), d))
        self.rng = np.random.default_rng(seed)

    def _x(self, context: Context) -> FloatArray:
        if context is None:
            if self.features:
                raise ValueError(f"a context with {', '.join(self.features)} is required")
            values: list[float] = []
        elif isinstance(context, Mapping):
            missing = [f for f in self.features if f not in context]
            if missing:
                raise ValueError(f"context lacks feature(s): {', '.join(missing)}")
            values = [float(context[f]) for f in self.features]
        else:
            values = [float(v) for v in np.asarray(context, dtype=np.float64).ravel()]
            if len(values) != len(self.features):
                raise ValueError(
                    f"context has {len(values)} values, expected {len(self.features)} "
                    f"({', '.join(self.features)})"
                )
        x = np.asarray(([1.0] if self.fit_intercept else []) + values, dtype=np.float64)
        if not np.isfinite(x).all():
            raise ValueError("context values must be finite numbers")
        return x

    def _index(self, arm: str) -> int:
        try:
            return self.arms.index(str(arm))
        except ValueError:
            raise ValueError(f"unknown arm {arm!r} (arms: {', '.join(self.arms)})") from None

    def score_distribution(self, context: Context) -> tuple[FloatArray, FloatArray]:
        """Posterior mean and standard deviation of each arm's expected reward at ``context``.

        Parameters
        ----------
        context
            Feature values.

        Returns
        -------
        tuple of numpy arrays
            Means and standard deviations, in the order of ``arms``.
        """
        x = self._x(context)
        means = np.empty(len(self.arms))
        sds = np.empty(len(self.arms))
        for i in range(len(self.arms)):
            cov_x = np.linalg.solve(self.precision[i], x)
            means[i] = cov_x @ self.b[i]
            sds[i] = math.sqrt(max(float(x @ cov_x), 0.0))
        return means, sds

    def select(self, context: Context = None) -> Decision:
        """Draw each arm's score from its posterior at ``context`` and play the largest.

        Parameters
        ----------
        context
            Feature values (mapping or sequence).

        Returns
        -------
        Decision
            The arm, its Monte Carlo propensity and every arm's probability.
        """
        means, sds = self.score_distribution(context)
        chosen = int(np.argmax(self.rng.normal(means, sds)))
        if self.n_mc <= 0:
            return Decision(self.arms[chosen], math.nan)
        draws = self.rng.normal(means, sds, size=(self.n_mc, len(self.arms)))
        p, probs = _mc_probabilities(self.arms, chosen, draws, self.n_mc)
        return Decision(self.arms[chosen], p, probs)

    def update(self, arm: str, reward: float, context: Context = None) -> None:
        """Add one observed reward of ``arm`` at ``context`` to its posterior.

        Parameters
        ----------
        arm
            The arm played.
        reward
            Observed reward.
        context
            The context it was played in.
        """
        r = float(reward)
        if not math.isfinite(r):
            raise ValueError(f"reward {reward!r} for arm {arm!r} is not a finite number")
        i = self._index(arm)
        x = self._x(context)
        self.precision[i] += np.outer(x, x) / self.noise_variance
        self.b[i] += r * x / self.noise_variance

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state: parameters, posterior and the random generator's state.

        Returns
        -------
        dict
            Accepted by :func:`policy_from_dict`.
        """
        return {
            "kind": self.kind,
            "arms": self.arms,
            "features": self.features,
            "prior_variance": self.prior_variance,
            "noise_variance": self.noise_variance,
            "fit_intercept": self.fit_intercept,
            "seed": self.seed,
            "n_mc": self.n_mc,
            "precision": self.precision.tolist(),
            "b": self.b.tolist(),
            "rng": _rng_state(self.rng),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> LinearThompson:
        """Rebuild a policy saved with :meth:`to_dict`.

        Parameters
        ----------
        state
            The saved state.

        Returns
        -------
        LinearThompson
            The policy, continuing where it stopped.
        """
        p = cls(
            state["arms"],
            state["features"],
            state["prior_variance"],
            state["noise_variance"],
            state["fit_intercept"],
            state["seed"],
            state["n_mc"],
        )
        precision = np.asarray(state["precision"], dtype=np.float64)
        b = np.asarray(state["b"], dtype=np.float64)
        if precision.shape != p.precision.shape or b.shape != p.b.shape:
            raise ValueError("saved posterior does not match the arms and features")
        p.precision, p.b = precision, b
        p.rng = _rng_from(state.get("rng"), state["seed"])
        return p


_KINDS: dict[str, Callable[[Mapping[str, Any]], Policy]] = {
    BetaThompson.kind: BetaThompson.from_dict,
    LinearThompson.kind: LinearThompson.from_dict,
}


def policy_from_dict(state: Mapping[str, Any]) -> Policy:
    """Rebuild any policy from its :meth:`to_dict` state (dispatching on ``kind``).

    Parameters
    ----------
    state
        A saved state.

    Returns
    -------
    Policy
        The policy.
    """
    kind = state.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"unknown policy kind {kind!r} (known: {', '.join(_KINDS)})")
    return _KINDS[str(kind)](state)


def save_policy(policy: Policy, path: str | Path) -> None:
    """Write a policy's state to a JSON file (atomically: a temporary file, then a rename).

    Parameters
    ----------
    policy
        Any policy with ``to_dict``.
    path
        Target file.

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "offers.json"
    >>> ts = BetaThompson(["a", "b"], seed=3)
    >>> ts.update("a", 1.0)
    >>> save_policy(ts, f)
    >>> load_policy(f).posterior_mean() == ts.posterior_mean()
    True
    """
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(policy.to_dict(), indent=1), encoding="utf-8")
    os.replace(tmp, target)


def load_policy(path: str | Path) -> Any:
    """Read a policy saved with :func:`save_policy`.

    Parameters
    ----------
    path
        The JSON file.

    Returns
    -------
    BetaThompson or LinearThompson
        The policy, continuing where it stopped.

    Raises
    ------
    ValueError
        The file is missing, not JSON, or not a saved policy (the message names it).
    """
    p = Path(path)
    try:
        state = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not JSON ({exc})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{p}: not a saved policy")
    try:
        return policy_from_dict(state)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{p}: not a saved policy ({exc})") from None


def simulate(
    policy: Policy,
    means: Mapping[str, float] | Callable[[FloatArray], Mapping[str, float]],
    rounds: int,
    contexts: npt.ArrayLike | None = None,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Play ``policy`` against Bernoulli rewards and log every round.

    Parameters
    ----------
    policy
        A bandit policy (updated in place).
    means
        Success probability per arm, or a function of the round's context giving them.
    rounds
        Number of rounds.
    contexts
        ``(rounds, n_features)`` contexts, one per round, for a contextual policy.
    seed
        Seed of the reward draws.

    Returns
    -------
    pandas.DataFrame
        ``round``, ``arm``, ``reward``, ``propensity``, ``expected`` (the played arm's
        mean) and ``regret`` (best mean minus the played arm's mean).

    Examples
    --------
    >>> log = simulate(BetaThompson(["a", "b"], seed=0), {"a": 0.1, "b": 0.6}, 300)
    >>> bool(log["arm"].eq("b").mean() > 0.8)
    True
    """
    rng = np.random.default_rng(seed)
    ctx = None if contexts is None else np.asarray(contexts, dtype=np.float64)
    if ctx is not None and len(ctx) < rounds:
        raise ValueError(f"{len(ctx)} contexts for {rounds} rounds")
    rows: list[tuple[int, str, float, float, float, float]] = []
    for t in range(rounds):
        x = None if ctx is None else ctx[t]
        m = means(x if x is not None else np.empty(0)) if callable(means) else means
        d = policy.select(x)
        mean = float(m[d.arm])
        reward = float(rng.uniform() < mean)
        policy.update(d.arm, reward, x)
        rows.append((t, d.arm, reward, d.propensity, mean, max(m.values()) - mean))
    return pd.DataFrame(
        rows, columns=["round", "arm", "reward", "propensity", "expected", "regret"]
    )


def replay(
    policy: Policy,
    arms: npt.ArrayLike,
    rewards: npt.ArrayLike,
    shares: Mapping[str, float] | None = None,
    contexts: npt.ArrayLike | None = None,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Replay a policy on a randomised log (Li et al. 2011): an unbiased offline run.

    The log's rows are taken in order; the policy chooses an arm, and when it matches the
    logged arm the row's reward is revealed and learnt from (a *valid* round), otherwise the
    row is skipped. When the log's arms were drawn uniformly at random, the valid rounds are
    distributed as an online run of the policy, so their mean reward estimates its value
    without bias. Logs with unequal (known) arm shares are first made uniform by rejection:
    a row of arm ``a`` is kept with probability ``min(shares) / shares[a]``.

    Parameters
    ----------
    policy
        A bandit policy whose arms are the log's arm values (updated in place).
    arms
        Logged arm of each row, in time order.
    rewards
        Logged reward of each row.
    shares
        Randomisation share of each arm; ``None`` means uniform.
    contexts
        ``(n, n_features)`` contexts for a contextual policy.
    seed
        Seed of the rejection step.

    Returns
    -------
    pandas.DataFrame
        The valid rounds: ``round`` (0, 1, ...), ``row`` (log position), ``arm``, ``reward``,
        ``propensity``.

    References
    ----------
    Li, L., Chu, W., Langford, J., & Wang, X. (2011). Unbiased offline evaluation of
    contextual-bandit-based news article recommendation algorithms. *WSDM*, 297-306.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> logged = rng.choice(["a", "b"], 4000)
    >>> reward = rng.uniform(size=4000) < np.where(logged == "b", 0.3, 0.1)
    >>> valid = replay(BetaThompson(["a", "b"], seed=0, n_mc=0), logged, reward)
    >>> bool(valid["arm"].eq("b").mean() > 0.8)
    True
    """
    a = np.asarray(arms).astype(str)
    r = np.asarray(rewards, dtype=np.float64)
    if len(a) != len(r):
        raise ValueError(f"arms and rewards differ in length ({len(a)}, {len(r)})")
    unknown = sorted(set(a) - set(policy.arms))
    if unknown:
        raise ValueError(f"logged arm(s) {', '.join(unknown)} are not arms of the policy")
    ctx = None if contexts is None else np.asarray(contexts, dtype=np.float64)
    keep = np.ones(len(a), dtype=bool)
    if shares is not None:
        missing = [x for x in policy.arms if x not in shares or shares[x] <= 0]
        if missing:
            raise ValueError(f"no positive share for arm(s) {', '.join(missing)}")
        smallest = min(float(shares[x]) for x in policy.arms)
        accept = np.array([smallest / float(shares[x]) for x in a])
        keep = np.random.default_rng(seed).uniform(size=len(a)) < accept
    rows: list[tuple[int, int, str, float, float]] = []
    for i in np.flatnonzero(keep):
        x = None if ctx is None else ctx[i]
        d = policy.select(x)
        if d.arm != a[i]:
            continue
        policy.update(d.arm, float(r[i]), x)
        rows.append((len(rows), int(i), d.arm, float(r[i]), d.propensity))
    return pd.DataFrame(rows, columns=["round", "row", "arm", "reward", "propensity"])


def allocation_figure(
    log: pd.DataFrame,
    arm: str = "arm",
    time: str = "round",
    window: int | None = None,
    title: str = "Bandit allocation over time",
) -> Figure:
    """Stacked share of sends per arm over time (cumulative, or over a moving window).

    Parameters
    ----------
    log
        One row per send, with the arm and a time order column.
    arm, time
        Column names.
    window
        Rows in a moving window; ``None`` plots the cumulative share.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        A figure drawn with the Agg backend (not shown).
    """
    from matplotlib.figure import Figure

    for c in (arm, time):
        if c not in log.columns:
            raise ValueError(f"log has no column {c!r}")
    ordered = log.sort_values(time, kind="mergesort")
    onehot = pd.get_dummies(ordered[arm].astype(str)).astype(np.float64)
    if window is None:
        share = onehot.cumsum().div(np.arange(1, len(onehot) + 1), axis=0)
    else:
        share = onehot.rolling(window, min_periods=1).mean()
    fig = Figure(figsize=(7.0, 3.5))
    ax = fig.add_subplot()
    x = ordered[time].to_numpy()
    ax.stackplot(x, *[share[c].to_numpy() for c in share.columns], labels=list(share.columns))
    ax.set_ylim(0, 1)
    ax.set_xlabel(time)
    ax.set_ylabel("share of sends" + ("" if window is None else f" (last {window})"))
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    fig.tight_layout()
    return fig
