"""``bandit simulate`` and ``bandit evaluate`` through typer's CliRunner, on their own app."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

with warnings.catch_warnings():
    # click 8.5 deprecates a name typer imports at import time (not our code)
    warnings.simplefilter("ignore", DeprecationWarning)
    import typer
    from typer.testing import CliRunner

    from autopersona.evaluation.bandit_cli import register

ARMS = {"5%": 0.04, "10%": 0.07, "20%": 0.12}
ARMS_OPT = ",".join(f"{k}={v}" for k, v in ARMS.items())


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()

    @a.callback()
    def _root() -> None:
        pass

    register(a)
    return a


def run(app: typer.Typer, *args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def ok_json(app: typer.Typer, *args: str | Path) -> dict[str, Any]:
    res = run(app, *args, "--json")
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.stdout)
    return out


@pytest.fixture(scope="module")
def uniform_log(app, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bandit") / "uniform.csv"
    out = ok_json(
        app, "bandit", "simulate", "--arms", ARMS_OPT, "--rounds", "4000", "--policy", "uniform",
        "--seed", "3", "--out", path,
    )  # fmt: skip
    assert sum(out["pulls"].values()) == 4000
    return path


def evaluate(app, log, policy="uniform", *extra):
    return ok_json(
        app, "bandit", "evaluate", "--logged", log, "--action", "arm", "--reward", "reward",
        "--propensity", "propensity", "--policy", policy, *extra,
    )  # fmt: skip


def test_uniform_policy_on_a_uniform_log(app, uniform_log):
    out = evaluate(app, uniform_log)
    log = pd.read_csv(uniform_log)
    est = {e["estimator"]: e for e in out["estimates"]}
    # the target is the logging policy: IPS is the plain mean reward
    assert est["ips"]["value"] == pytest.approx(log["reward"].mean())
    truth = np.mean(list(ARMS.values()))
    for e in est.values():
        assert e["ci_low"] <= truth <= e["ci_high"], e
    assert out["actions"] == sorted(ARMS)


def test_policy_file_always_best_offer(app, uniform_log, tmp_path):
    n = len(pd.read_csv(uniform_log))
    policy = tmp_path / "best.csv"
    pd.DataFrame({"5%": 0.0, "10%": 0.0, "20%": np.ones(n)}).to_csv(policy, index=False)
    out = evaluate(app, uniform_log, str(policy), "--ci", "bootstrap", "--n-boot", "200")
    for e in out["estimates"]:
        assert e["method"] == "bootstrap"
        assert e["ci_low"] <= ARMS["20%"] <= e["ci_high"], e


def test_thompson_log_and_figure(app, tmp_path):
    log, fig = tmp_path / "ts.parquet", tmp_path / "alloc.png"
    out = ok_json(
        app, "bandit", "simulate", "--arms", ARMS_OPT, "--rounds", "1500", "--seed", "1",
        "--out", log, "--figure", fig,
    )  # fmt: skip
    assert max(out["pulls"], key=out["pulls"].get) == "20%"
    assert fig.stat().st_size > 1000
    df = pd.read_parquet(log)
    assert ((df["propensity"] > 0) & (df["propensity"] <= 1)).all()
    # the best offer's value from Thompson's own log: the policy mostly logs that arm
    n = len(df)
    policy = tmp_path / "best.csv"
    pd.DataFrame({"5%": 0.0, "10%": 0.0, "20%": np.ones(n)}).to_csv(policy, index=False)
    est = {e["estimator"]: e for e in evaluate(app, log, str(policy))["estimates"]}
    assert est["snips"]["ci_low"] <= ARMS["20%"] <= est["snips"]["ci_high"]


def test_context_reward_model(app, tmp_path):
    rng = np.random.default_rng(0)
    n = 2000
    x = rng.uniform(-1, 1, n)
    arm = rng.choice(["a", "b"], n)
    reward = (rng.uniform(size=n) < np.where(arm == "a", 0.5 + 0.4 * x, 0.5 - 0.4 * x)).astype(int)
    log = tmp_path / "ctx.csv"
    pd.DataFrame({"x": x, "arm": arm, "reward": reward, "propensity": 0.5}).to_csv(log, index=False)
    out = evaluate(app, log, "uniform", "--context", "x")
    assert out["reward_model"] == "cross-fitted LightGBM"
    est = {e["estimator"]: e for e in out["estimates"]}
    assert est["dr"]["ci_low"] <= 0.5 <= est["dr"]["ci_high"]


def test_errors_name_file_row_column(app, uniform_log, tmp_path):
    base = ["bandit", "evaluate", "--logged", uniform_log, "--action", "arm", "--reward"]
    res = run(app, *base, "gain", "--propensity", "propensity")
    assert res.exit_code == 2 and "column 'gain' not found" in res.stderr
    policy = tmp_path / "short.csv"
    pd.DataFrame({"5%": [1.0], "10%": [0.0], "20%": [0.0]}).to_csv(policy, index=False)
    res = run(app, *base, "reward", "--propensity", "propensity", "--policy", policy)
    assert res.exit_code == 2 and f"{policy}: policy has 1 rows" in res.stderr
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"arm": ["a", "b"], "reward": [1, 0], "propensity": [0.5, 1.5]}).to_csv(
        bad, index=False
    )
    res = run(app, "bandit", "evaluate", "--logged", bad, "--action", "arm", "--reward",
              "reward", "--propensity", "propensity")  # fmt: skip
    assert res.exit_code == 2 and f"{bad}: propensity: row 1 is 1.5" in res.stderr
    res = run(app, "bandit", "simulate", "--arms", "a=0.1,b=2")
    assert res.exit_code == 2 and "'b=2'" in res.stderr
