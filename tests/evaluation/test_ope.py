from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from statsmodels.stats.weightstats import DescrStatsW

from autopersona.evaluation.ope import (
    doubly_robust,
    evaluate_policy,
    ips,
    reward_model,
    snips,
)


# --------------------------------------------------------------------------- a known world
def means(x):
    """Mean reward of actions 0, 1, 2 at context x in [-1, 1]."""
    x = np.asarray(x, dtype=float)
    return np.column_stack([0.3 + 0.2 * x, 0.4 - 0.15 * x, 0.25 + 0 * x])


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def logging_probs(x):
    return softmax(np.column_stack([0.8 * x, 0 * x, -0.5 + 0 * x]))


def target_probs(x):
    """Epsilon-greedy on the true means: 0.8 on the best action, 0.1 on the others."""
    best = means(x).argmax(axis=1)
    p = np.full((len(best), 3), 0.1)
    p[np.arange(len(best)), best] = 0.8
    return p


def true_value():
    f = lambda x: float((target_probs([x]) * means([x])).sum())  # noqa: E731
    # x is uniform on [-1, 1]: E[f(x)] = (1/2) * integral; the greedy action switches at x=0.2857
    switch = 0.1 / 0.35
    a, _ = integrate.quad(f, -1, switch)
    b, _ = integrate.quad(f, switch, 1)
    return (a + b) / 2


def log_data(seed, n):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    mu = logging_probs(x)
    a = (rng.uniform(size=n)[:, None] > mu.cumsum(axis=1)).sum(axis=1)
    r = (rng.uniform(size=n) < means(x)[np.arange(n), a]).astype(float)
    return x, a, mu[np.arange(n), a], r, target_probs(x)


TRUE = true_value()


def test_true_value_by_monte_carlo():
    x = np.random.default_rng(0).uniform(-1, 1, 400_000)
    assert (target_probs(x) * means(x)).sum(axis=1).mean() == pytest.approx(TRUE, abs=1e-3)


def test_intervals_cover_the_true_value():
    reps, n = 200, 2000
    covered = {"ips": 0, "snips": 0, "dr": 0}
    values = {"ips": [], "snips": [], "dr": []}
    for seed in range(reps):
        _, a, mu, r, P = log_data(seed, n)
        pi = P[np.arange(n), a]
        q = reward_model(a, r, 3)
        for est in (ips(r, mu, pi), snips(r, mu, pi), doubly_robust(r, mu, a, P, q)):
            covered[est.estimator] += est.ci_low <= TRUE <= est.ci_high
            values[est.estimator].append(est.value)
    for name in covered:
        assert covered[name] / reps >= 0.9, (name, covered[name])
        # unbiased (or nearly): the mean over replications is within 3 standard errors
        v = np.array(values[name])
        assert abs(v.mean() - TRUE) < 3 * v.std(ddof=1) / np.sqrt(reps), name


def test_contextual_dr_covers_and_beats_ips():
    x, a, mu, r, P = log_data(2, 6000)
    logged = pd.DataFrame({"x": x, "action": a, "reward": r, "p": mu})
    policy = pd.DataFrame(P, columns=["0", "1", "2"])
    res = evaluate_policy(logged, "action", "reward", "p", policy, context=["x"])
    est = {e.estimator: e for e in res["estimates"]}
    assert res["reward_model"] == "cross-fitted LightGBM"
    for e in est.values():
        # (coverage itself is measured over replications above; z-scores here are ~0.1-0.2)
        assert abs(e.value - TRUE) < 3 * e.se, e
        assert e.ci_high - e.ci_low == pytest.approx(2 * 1.959964 * e.se)
    assert est["dr"].se < est["ips"].se


def test_ips_by_hand_on_a_tiny_log():
    logged = pd.DataFrame(
        {
            "offer": ["a", "b", "a", "b"],
            "converted": [1.0, 0.0, 0.0, 1.0],
            "p": [0.5, 0.5, 0.25, 0.8],
        }
    )
    policy = pd.DataFrame({"a": [1.0, 1.0, 0.5, 0.0], "b": [0.0, 0.0, 0.5, 1.0]})
    res = evaluate_policy(logged, "offer", "converted", "p", policy)
    est = {e.estimator: e for e in res["estimates"]}
    # weights 1/0.5, 0/0.5, 0.5/0.25, 1/0.8 -> 2, 0, 2, 1.25; weighted rewards 2, 0, 0, 1.25
    assert est["ips"].value == pytest.approx((2 + 0 + 0 + 1.25) / 4)
    assert est["snips"].value == pytest.approx(3.25 / 5.25)
    # per-action means: a 0.5, b 0.5 -> model part 0.5 every row
    dr = 0.5 + np.mean([2 * (1 - 0.5), 0, 2 * (0 - 0.5), 1.25 * (1 - 0.5)])
    assert est["dr"].value == pytest.approx(dr)
    uniform = evaluate_policy(logged, "offer", "converted", "p", "uniform")
    assert uniform["actions"] == ["a", "b"]
    u = {e.estimator: e for e in uniform["estimates"]}
    assert u["ips"].value == pytest.approx(np.mean([0.5 / 0.5, 0, 0, 0.5 / 0.8]))


def test_normal_interval_equals_statsmodels():
    _, a, mu, r, P = log_data(3, 500)
    pi = P[np.arange(500), a]
    est = ips(r, mu, pi, level=0.9)
    lo, hi = DescrStatsW(pi / mu * r).zconfint_mean(alpha=0.1)
    assert (est.ci_low, est.ci_high) == pytest.approx((lo, hi))


def test_bootstrap_is_seeded_and_close_to_normal():
    _, a, mu, r, P = log_data(4, 3000)
    pi = P[np.arange(3000), a]
    b1 = snips(r, mu, pi, ci="bootstrap", n_boot=300, seed=1)
    b2 = snips(r, mu, pi, ci="bootstrap", n_boot=300, seed=1)
    assert b1 == b2
    normal = snips(r, mu, pi)
    assert b1.value == normal.value
    assert b1.se == pytest.approx(normal.se, rel=0.2)
    assert b1.ci_low == pytest.approx(normal.ci_low, abs=0.01)
    assert b1.ci_high == pytest.approx(normal.ci_high, abs=0.01)
    with pytest.raises(ValueError, match="ci must be"):
        ips(r, mu, pi, ci="exact")  # type: ignore[arg-type]


rows = st.lists(
    st.tuples(
        st.floats(-5, 5, allow_nan=False),  # reward
        st.floats(0.01, 1.0),  # logging propensity
        st.floats(0.0, 1.0),  # target probability
    ),
    min_size=2,
    max_size=50,
)


@settings(max_examples=60, deadline=None)
@given(data=rows)
def test_snips_within_reward_range_and_dr_reduces_to_ips(data):
    r = np.array([d[0] for d in data])
    mu = np.array([d[1] for d in data])
    pi = np.array([d[2] for d in data])
    s = snips(r, mu, pi)
    if np.isfinite(s.value):
        assert r.min() - 1e-9 <= s.value <= r.max() + 1e-9
    # with a zero reward model DR is IPS
    k = np.zeros(len(r), dtype=int)
    P = np.column_stack([pi, 1 - pi])
    d = doubly_robust(r, mu, k, P, np.zeros((len(r), 2)))
    assert d.value == pytest.approx(ips(r, mu, pi).value, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(data=rows)
def test_ips_of_the_logging_policy_is_the_mean_reward(data):
    r = np.array([d[0] for d in data])
    mu = np.array([d[1] for d in data])
    assert ips(r, mu, mu).value == pytest.approx(r.mean(), abs=1e-9)
    assert snips(r, mu, mu).value == pytest.approx(r.mean(), abs=1e-9)


def test_ips_of_the_logging_policy_in_expectation():
    """Evaluating the logging policy itself, row by row, recovers its true value on average."""
    est = []
    for seed in range(100):
        _, _, mu, r, _ = log_data(seed, 500)
        est.append(ips(r, mu, mu).value)
    xs = np.random.default_rng(1).uniform(-1, 1, 200_000)
    truth = (logging_probs(xs) * means(xs)).sum(axis=1).mean()
    assert np.mean(est) == pytest.approx(truth, abs=0.01)


def test_bad_inputs_name_the_row_or_column():
    logged = pd.DataFrame({"a": ["x", "y"], "r": [1.0, 0.0], "p": [0.5, 0.0]})
    with pytest.raises(ValueError, match=r"p: row 1 is 0, not in"):
        evaluate_policy(logged, "a", "r", "p", "uniform")
    logged["p"] = [0.5, 0.5]
    with pytest.raises(ValueError, match="no column 'reward'"):
        evaluate_policy(logged, "a", "reward", "p", "uniform")
    with pytest.raises(ValueError, match=r"row 1 probabilities sum to 0\.9"):
        evaluate_policy(logged, "a", "r", "p", pd.DataFrame({"x": [1.0, 0.5], "y": [0.0, 0.4]}))
    with pytest.raises(ValueError, match="logged action"):
        evaluate_policy(logged, "a", "r", "p", pd.DataFrame({"x": [1.0, 1.0]}))
    with pytest.raises(ValueError, match="policy has 1 rows"):
        evaluate_policy(logged, "a", "r", "p", pd.DataFrame({"x": [1.0], "y": [0.0]}))
    logged["r"] = [1.0, np.nan]
    with pytest.raises(ValueError, match="r: row 1 is missing"):
        evaluate_policy(logged, "a", "r", "p", "uniform")


# --------------------------------------------------------------------------- obp as a reference
def _obp_ope():
    pytest.importorskip("obp", reason="obp (dev extra) is the reference implementation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import obp.ope

    return obp.ope


@pytest.mark.parametrize("seed", range(3))
def test_point_estimates_equal_obp(seed):
    ope = _obp_ope()
    rng = np.random.default_rng(seed)
    n, k = 800, 4
    x = rng.uniform(-1, 1, n)
    mu = softmax(np.column_stack([x, -x, 0 * x, 0.5 + 0 * x]))
    a = (rng.uniform(size=n)[:, None] > mu.cumsum(axis=1)).sum(axis=1)
    r = rng.integers(0, 2, n).astype(float)
    ps = mu[np.arange(n), a]
    P = rng.dirichlet(np.ones(k), n)
    Q = rng.uniform(size=(n, k))
    pi = P[np.arange(n), a]
    kw = {"reward": r, "action": a, "pscore": ps, "action_dist": P[:, :, None]}
    assert ips(r, ps, pi).value == pytest.approx(
        ope.InverseProbabilityWeighting().estimate_policy_value(**kw)
    )
    assert snips(r, ps, pi).value == pytest.approx(
        ope.SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kw)
    )
    assert doubly_robust(r, ps, a, P, Q).value == pytest.approx(
        ope.DoublyRobust().estimate_policy_value(**kw, estimated_rewards_by_reg_model=Q[:, :, None])
    )


def _obd_sample() -> Path:
    spec = importlib.util.find_spec("obp")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("obp (dev extra) ships the Open Bandit Dataset sample")
    root = Path(next(iter(spec.submodule_search_locations))) / "dataset" / "obd"
    if not (root / "random" / "all" / "all.csv").is_file():
        pytest.skip(f"Open Bandit Dataset sample not found under {root}")
    return root


def test_open_bandit_dataset_bts_value_from_random_logs():
    """Real logs (ZOZOTOWN, Open Bandit Dataset sample shipped with obp): the value of the
    Bernoulli Thompson sampling policy, estimated from the uniform-random policy's logs,
    agrees with its on-policy click rate measured in its own logs."""
    root = _obd_sample()
    cols = ["item_id", "position", "click", "propensity_score"]
    rnd = pd.read_csv(root / "random" / "all" / "all.csv", usecols=cols)
    bts = pd.read_csv(root / "bts" / "all" / "all.csv", usecols=cols)
    assert len(rnd) == len(bts) == 10_000
    # uniform target on uniform logs: every weight is 1, IPS is the logged click rate
    uni = ips(rnd["click"], rnd["propensity_score"], rnd["propensity_score"])
    assert uni.value == pytest.approx(rnd["click"].mean())
    # BTS's action distribution per position: its mean logged propensity of each item,
    # renormalised within the position (BTS ignores user context)
    pi = bts.groupby(["position", "item_id"])["propensity_score"].mean()
    pi = pi / pi.groupby(level=0).transform("sum")
    target = np.array(
        [pi.get((p, i), 0.0) for p, i in zip(rnd["position"], rnd["item_id"], strict=True)]
    )
    on_policy = bts["click"].mean()  # 0.0042
    logged = rnd.assign(target=target)
    for est in (ips(logged["click"], logged["propensity_score"], target),
                snips(logged["click"], logged["propensity_score"], target)):  # fmt: skip
        # measured: IPS 0.0061 [0.0025, 0.0096], SNIPS 0.0063 [0.0026, 0.0099]
        assert est.ci_low <= on_policy <= est.ci_high, est
        assert est.value > uni.value * 0.9


def test_snips_with_subnormal_target_probabilities_stays_a_weighted_mean() -> None:
    # found by the property test above: weights of a few subnormal ulps rounded w * r past
    # the largest reward, and their mean underflowed to zero
    r = np.array([0.0, 1.6875])
    mu = np.array([1.0, 1.0])
    pi = np.array([0.0, 5e-324])
    s = snips(r, mu, pi)
    assert s.value == 1.6875
    assert snips(r, mu, np.array([5e-324, 5e-324])).value == pytest.approx(0.84375)
