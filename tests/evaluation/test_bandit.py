from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from autopersona.evaluation.bandit import (
    BetaThompson,
    LinearThompson,
    allocation_figure,
    load_policy,
    policy_from_dict,
    replay,
    save_policy,
    simulate,
)

MEANS = {"5%": 0.04, "10%": 0.07, "20%": 0.12}


class Uniform:
    """Reference policy: every arm with probability 1/k."""

    def __init__(self, arms, seed):
        self.arms = list(arms)
        self.rng = np.random.default_rng(seed)

    def select(self, context=None):
        from autopersona.evaluation.bandit import Decision

        return Decision(str(self.rng.choice(self.arms)), 1 / len(self.arms))

    def update(self, arm, reward, context=None):
        pass

    def to_dict(self):
        return {}


@pytest.fixture(scope="module")
def ts_log():
    return simulate(BetaThompson(list(MEANS), seed=11, n_mc=200), MEANS, 4000, seed=5)


def test_thompson_best_arm_gets_most_pulls(ts_log):
    share = ts_log["arm"].value_counts(normalize=True)
    assert share.idxmax() == "20%"
    assert share["20%"] > 0.6
    late = ts_log[ts_log["round"] >= 2000]["arm"].eq("20%").mean()
    assert late > 0.8


def test_thompson_regret_is_sublinear(ts_log):
    regret = ts_log["regret"].cumsum().to_numpy()
    quarters = np.diff(np.r_[0.0, regret[[999, 1999, 2999, 3999]]])
    # sublinear growth: the last quarter adds much less regret than the first
    # (seed 11: 7.4, 4.0, 4.4, 2.1; linear growth would keep them equal)
    assert quarters[-1] < 0.5 * quarters[0]
    assert regret[-1] - regret[1999] < 0.8 * regret[1999]
    uniform = simulate(Uniform(MEANS, 3), MEANS, 4000, seed=5)["regret"].sum()
    assert regret[-1] < 0.25 * uniform


def exact_two_arm(a1, b1, a2, b2):
    """P(theta_1 > theta_2) for independent Beta posteriors, by quadrature."""
    val, _ = integrate.quad(lambda x: stats.beta.pdf(x, a1, b1) * stats.beta.cdf(x, a2, b2), 0, 1)
    return val


@pytest.mark.parametrize(("s", "f"), [((3, 5), (10, 10)), ((30, 2), (25, 6)), ((0, 0), (1, 0))])
def test_mc_propensity_matches_exact_probability(s, f):
    ts = BetaThompson(["a", "b"], seed=2, n_mc=20000)
    ts.successes = np.array([s[0], s[1]], dtype=float)
    ts.failures = np.array([f[0], f[1]], dtype=float)
    exact = exact_two_arm(1 + s[0], 1 + f[0], 1 + s[1], 1 + f[1])
    d = ts.select()
    se = math.sqrt(exact * (1 - exact) / 20000)
    assert d.probabilities["a"] == pytest.approx(exact, abs=4 * se + 1e-4)
    # frequency of choices under a frozen posterior agrees with the propensity
    ts.n_mc = 0
    picks = np.mean([ts.select().arm == "a" for _ in range(4000)])
    assert picks == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 4000) + 1e-3)


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=2, max_size=5),
    seed=st.integers(0, 1000),
)
def test_probabilities_are_a_distribution(counts, seed):
    ts = BetaThompson([f"arm{i}" for i in range(len(counts))], seed=seed, n_mc=300)
    ts.successes = np.array([c[0] for c in counts], dtype=float)
    ts.failures = np.array([c[1] for c in counts], dtype=float)
    d = ts.select()
    assert sum(d.probabilities.values()) == pytest.approx(1.0)
    assert d.propensity == d.probabilities[d.arm] >= 1 / 301


@pytest.mark.parametrize("kind", ["beta", "linear"])
def test_state_round_trips_through_json(kind):
    if kind == "beta":
        p = BetaThompson(["a", "b", "c"], alpha=2, beta=3, seed=4, n_mc=100)
        ctx = [None] * 30
    else:
        p = LinearThompson(["a", "b"], ["x", "y"], seed=4, n_mc=100)
        rng = np.random.default_rng(0)
        ctx = [{"x": float(u), "y": float(v)} for u, v in rng.normal(size=(30, 2))]
    for c in ctx[:20]:
        d = p.select(c)
        p.update(d.arm, float(d.arm == "a"), c)
    saved = json.loads(json.dumps(p.to_dict()))
    q = policy_from_dict(saved)
    assert type(q) is type(p)
    for c in ctx[20:]:
        dp, dq = p.select(c), q.select(c)
        assert dp == dq
        p.update(dp.arm, 1.0, c)
        q.update(dq.arm, 1.0, c)
    assert json.dumps(p.to_dict()) == json.dumps(q.to_dict())


def contextual_means(x):
    """Offer 'a' suits x0 > 0, offer 'b' suits x0 < 0; 'c' is mediocre everywhere."""
    return {"a": 0.2 + 0.15 * x[0], "b": 0.2 - 0.15 * x[0], "c": 0.18}


@pytest.fixture(scope="module")
def contexts():
    rng = np.random.default_rng(8)
    return np.column_stack([rng.uniform(-1, 1, 3000), rng.normal(size=3000)])


def test_linear_thompson_learns_context(contexts):
    lt = LinearThompson(["a", "b", "c"], ["x0", "x1"], seed=3, n_mc=100)
    log = simulate(lt, contextual_means, 3000, contexts=contexts, seed=1)
    late = log["round"] >= 2000
    x0 = contexts[: len(log), 0]
    best = np.where(x0 > 0, "a", "b")
    clear = np.abs(x0) > 0.3
    assert (log["arm"].to_numpy()[late & clear] == best[late & clear]).mean() > 0.85
    regret = log["regret"].cumsum().to_numpy()
    assert regret[-1] - regret[1499] < 0.6 * regret[1499]
    # the contextual policy beats the context-free one on this environment
    beta = simulate(
        BetaThompson(["a", "b", "c"], seed=3, n_mc=0),
        contextual_means,
        3000,
        contexts=contexts,
        seed=1,
    )
    assert regret[-1] < 0.5 * beta["regret"].sum()
    assert ((log["propensity"] > 0) & (log["propensity"] <= 1)).all()


def test_linear_posterior_matches_ridge_regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    r = X @ np.array([0.5, -0.3]) + 0.1 + rng.normal(scale=0.5, size=200)
    lt = LinearThompson(["a", "b"], ["u", "v"], prior_variance=2.0, noise_variance=0.25)
    for x, y in zip(X, r, strict=True):
        lt.update("a", y, x)
    design = np.column_stack([np.ones(200), X])
    ridge = np.linalg.solve(design.T @ design + 0.25 / 2.0 * np.eye(3), design.T @ r)
    means, sds = lt.score_distribution([1.0, 2.0])
    assert means[0] == pytest.approx(ridge @ [1.0, 1.0, 2.0])
    assert means[1] == 0.0 and sds[1] == pytest.approx(math.sqrt(2.0 * 6))


def test_bad_inputs():
    ts = BetaThompson(["a", "b"], seed=0)
    with pytest.raises(ValueError, match="unknown arm 'z'"):
        ts.update("z", 1.0)
    with pytest.raises(ValueError, match="outside"):
        ts.update("a", 2.0)
    with pytest.raises(ValueError, match="at least two arms"):
        BetaThompson(["a"])
    lt = LinearThompson(["a", "b"], ["age"], seed=0)
    with pytest.raises(ValueError, match="lacks feature"):
        lt.select({"income": 1.0})
    with pytest.raises(ValueError, match="expected 1"):
        lt.select([1.0, 2.0])
    with pytest.raises(ValueError, match="unknown policy kind"):
        policy_from_dict({"kind": "epsilon"})


def test_allocation_figure(ts_log):
    fig = allocation_figure(ts_log)
    ax = fig.axes[0]
    assert len(ax.collections) == 3
    assert ax.get_ylim() == (0.0, 1.0)
    fig = allocation_figure(ts_log, window=200)
    assert "last 200" in fig.axes[0].get_ylabel()
    with pytest.raises(ValueError, match="no column 'when'"):
        allocation_figure(ts_log, time="when")


def test_save_and_load_between_runs(tmp_path):
    f = tmp_path / "coupons.json"
    first = BetaThompson(list(MEANS), seed=9, n_mc=50)
    simulate(first, MEANS, 300, seed=1)
    save_policy(first, f)
    # a later run resumes from the file and continues exactly like the original would
    resumed = load_policy(f)
    a = simulate(first, MEANS, 200, seed=2)
    b = simulate(resumed, MEANS, 200, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not (tmp_path / "coupons.json.tmp").exists()
    f.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a saved policy"):
        load_policy(f)
    f.write_text("{oops")
    with pytest.raises(ValueError, match="not JSON"):
        load_policy(f)
    with pytest.raises(ValueError, match="no such file"):
        load_policy(tmp_path / "missing.json")


class Fixed:
    """Reference policy that always plays one arm."""

    def __init__(self, arms, arm):
        self.arms, self.arm = list(arms), arm

    def select(self, context=None):
        from autopersona.evaluation.bandit import Decision

        return Decision(self.arm, 1.0)

    def update(self, arm, reward, context=None):
        pass

    def to_dict(self):
        return {}


def randomised_log(shares, n, seed):
    rng = np.random.default_rng(seed)
    names = list(shares)
    arms = rng.choice(names, n, p=[shares[a] for a in names])
    rewards = (rng.uniform(size=n) < np.array([MEANS[a] for a in arms])).astype(float)
    return arms, rewards


def test_replay_of_a_fixed_policy_is_unbiased():
    est = []
    for seed in range(30):
        arms, rewards = randomised_log(dict.fromkeys(MEANS, 1 / 3), 3000, seed)
        valid = replay(Fixed(MEANS, "10%"), arms, rewards)
        assert (valid["arm"] == "10%").all()
        assert len(valid) == (arms == "10%").sum()
        est.append(valid["reward"].mean())
    assert np.mean(est) == pytest.approx(MEANS["10%"], abs=3 * np.std(est) / np.sqrt(30))


def test_replay_thompson_and_rejection_of_unequal_shares():
    shares = {"5%": 0.6, "10%": 0.3, "20%": 0.1}
    arms, rewards = randomised_log(shares, 30000, 4)
    uniform = replay(Uniform(MEANS, 0), arms, rewards, shares=shares, seed=1)
    freq = uniform["arm"].value_counts(normalize=True)
    assert freq.to_numpy() == pytest.approx([1 / 3] * 3, abs=0.03)
    assert uniform["reward"].mean() == pytest.approx(np.mean(list(MEANS.values())), abs=0.01)
    ts = replay(BetaThompson(list(MEANS), seed=0, n_mc=0), arms, rewards, shares=shares, seed=1)
    assert ts["arm"].iloc[len(ts) // 2 :].eq("20%").mean() > 0.7
    assert ts["reward"].mean() > uniform["reward"].mean()
    with pytest.raises(ValueError, match="not arms of the policy"):
        replay(BetaThompson(["5%", "10%"]), arms, rewards)
    with pytest.raises(ValueError, match="no positive share"):
        replay(BetaThompson(list(MEANS)), arms, rewards, shares={"5%": 1.0})
