"""``uplift fit`` through typer's CliRunner, on its own app."""

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

    from autopersona.evaluation.uplift_cli import register


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


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(2)
    n = 5000
    df = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n).round(),
            "plan": rng.choice(["basic", "premium"], n),
            "arm": rng.choice(["none", "coupon", "mail"], n),
        }
    )
    p = 0.1 + 0.3 * ((df["arm"] == "coupon") & (df["age"] < 40))
    p += 0.2 * ((df["arm"] == "mail") & (df["plan"] == "premium"))
    df["bought"] = (rng.uniform(size=n) < p).astype(int)
    path = tmp_path_factory.mktemp("uplift") / "exp.csv"
    df.to_csv(path, index=False)
    return path


def test_uplift_fit_json(app, experiment, tmp_path):
    fig = tmp_path / "qini.png"
    args = ["uplift", "fit", "--data", experiment, "--treatment", "arm", "--control", "none"]
    args += ["--outcome", "bought", "--features", "age,plan", "--learner", "t", "--seed", "1"]
    res = run(app, *args, "--figure", fig, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_train"] + out["n_test"] == 5000
    assert out["n_test"] == 1500
    arms = {t["treatment"]: t for t in out["treatments"]}
    assert set(arms) == {"coupon", "mail"}
    for t in arms.values():
        assert t["qini_coefficient"] > 0.1
        assert 0 < t["auuc"] <= 1
    tgt = out["targeting"]
    assert sum(tgt["share_by_arm"].values()) == pytest.approx(1.0)
    # sending each person the offer that moves them beats any single arm for everyone
    assert tgt["targeted_mean_outcome"]["value"] > max(tgt["observed_mean_outcome_by_arm"].values())
    assert fig.stat().st_size > 1000
    again = run(app, *args, "--json")
    assert json.loads(again.stdout)["treatments"] == out["treatments"]
    table = run(app, *args)
    assert table.exit_code == 0 and "Qini" in table.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--control", "nobody"], "control value 'nobody' not found"),
        ([], "give --control"),
        (["--control", "none", "--features", "age,height"], "column 'height' not found"),
        (["--control", "none", "--learner", "s"], "--learner 's'"),
    ],
)
def test_uplift_fit_errors(app, experiment, extra, message):
    args = ["uplift", "fit", "--data", experiment, "--treatment", "arm", "--outcome", "bought"]
    if "--features" not in extra:
        args += ["--features", "age,plan"]
    res = run(app, *args, *extra)
    assert res.exit_code == 2
    assert message in res.stderr
    assert str(experiment) in res.stderr


def test_uplift_fit_bad_outcome(app, tmp_path):
    p = tmp_path / "bad.csv"
    pd.DataFrame({"t": [0, 1, 0, 1], "y": ["1", "x", "0", "1"], "f": [1, 2, 3, 4]}).to_csv(
        p, index=False
    )
    res = run(app, "uplift", "fit", "--data", p, "--treatment", "t", "--outcome", "y",
              "--features", "f")  # fmt: skip
    assert res.exit_code == 2
    assert "column 'y': row 2 value 'x' is not a number" in res.stderr
