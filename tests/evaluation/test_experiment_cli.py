"""``autopersona experiment analyze``: Hillstrom golden values, CUPED, corrections, bad input.

No slice of Hillstrom is kept in tests/data: the data has no formal licence (the data
README), so the golden test reads the team's copy through the ``shared_data`` fixture and
skips without it; the other tests write their own small files.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

with warnings.catch_warnings():
    # click 8.5 deprecates a name typer imports at import time (not our code)
    warnings.simplefilter("ignore", DeprecationWarning)
    from typer.testing import CliRunner

    from autopersona.cli import app

from autopersona.evaluation.analyze import AnalysisError, analyze

runner = CliRunner()

# ../shared/data/README.md, Hillstrom reference values
README_RATES = {
    "Mens E-Mail": {"visit": 0.182757, "conversion": 0.012531, "spend": 1.422617},
    "Womens E-Mail": {"visit": 0.151400, "conversion": 0.008837, "spend": 1.077202},
    "No E-Mail": {"visit": 0.106167, "conversion": 0.005726, "spend": 0.652789},
}
README_MENS_UPLIFT = {"visit": 0.076590, "conversion": 0.006805, "spend": 0.769827}
README_SIZES = {"Mens E-Mail": 21_307, "Womens E-Mail": 21_387, "No E-Mail": 21_306}


def _run(*args: str) -> Any:
    return runner.invoke(app, ["experiment", "analyze", *args])


def _json(*args: str) -> dict[str, Any]:
    res = _run(*args, "--json")
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.stdout)
    return out


_CACHE: dict[Path, tuple[dict[str, Any], pd.DataFrame]] = {}


@pytest.fixture
def hillstrom_result(shared_data: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """The CLI's JSON on the real file (computed once per session) and the file itself."""
    path = shared_data / "hillstrom" / "hillstrom.csv"
    if path in _CACHE:
        return _CACHE[path]
    res = _json(
        "--data",
        str(path),
        "--arm",
        "segment",
        "--control",
        "No E-Mail",
        "--outcome",
        "visit,conversion,spend",
    )
    _CACHE[path] = (res, pd.read_csv(path))
    return _CACHE[path]


def test_hillstrom_reproduces_readme(hillstrom_result: tuple[dict[str, Any], pd.DataFrame]) -> None:
    res, _df = hillstrom_result
    assert {a["arm"]: a["n"] for a in res["arms"]} == README_SIZES
    assert res["arms"][0]["arm"] == "No E-Mail"
    assert not res["srm"]["mismatch"]
    by = {o["outcome"]: o for o in res["outcomes"]}
    assert [by[k]["kind"] for k in ("visit", "conversion", "spend")] == ["rate", "rate", "mean"]
    for name in ("visit", "conversion", "spend"):
        level = "rate" if name != "spend" else "mean"
        for a in by[name]["arms"]:
            assert round(a[level], 6) == README_RATES[a["arm"]][name]
        mens = next(c for c in by[name]["comparisons"] if c["arm"] == "Mens E-Mail")
        assert round(mens["diff"], 6) == README_MENS_UPLIFT[name]
        assert mens["significant"]
    # totals in the README
    assert sum(a["successes"] for a in by["visit"]["arms"]) == 9394
    assert sum(a["successes"] for a in by["conversion"]["arms"]) == 578
    assert round(sum(a["sum"] for a in by["spend"]["arms"]), 2) == 67258.13


def test_hillstrom_intervals_equal_statsmodels_and_scipy(
    hillstrom_result: tuple[dict[str, Any], pd.DataFrame],
) -> None:
    res, df = hillstrom_result
    ctl = df[df.segment == "No E-Mail"]
    by = {o["outcome"]: o for o in res["outcomes"]}
    for arm in ("Mens E-Mail", "Womens E-Mail"):
        trt = df[df.segment == arm]
        for name in ("visit", "conversion"):
            c = next(c for c in by[name]["comparisons"] if c["arm"] == arm)
            lo, hi = confint_proportions_2indep(
                int(trt[name].sum()), len(trt), int(ctl[name].sum()), len(ctl), method="wald"
            )
            assert (c["ci_low"], c["ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
        c = next(c for c in by["spend"]["comparisons"] if c["arm"] == arm)
        sp = stats.ttest_ind(trt.spend, ctl.spend, equal_var=False)
        ci = sp.confidence_interval(0.95)
        assert (c["ci_low"], c["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)
        assert c["p_value"] == pytest.approx(sp.pvalue, rel=1e-8)


def test_hillstrom_newcombe_and_cuped(shared_data: Path) -> None:
    path = shared_data / "hillstrom" / "hillstrom.csv"
    res = _json(
        "--data", str(path), "--arm", "segment", "--control", "No E-Mail",
        "--outcome", "visit", "--covariate", "history", "--ci", "newcomb", "--correction", "bh",
    )  # fmt: skip
    df = pd.read_csv(path)
    ctl, trt = df[df.segment == "No E-Mail"], df[df.segment == "Womens E-Mail"]
    out = res["outcomes"][0]
    c = next(c for c in out["comparisons"] if c["arm"] == "Womens E-Mail")
    lo, hi = confint_proportions_2indep(
        int(trt.visit.sum()), len(trt), int(ctl.visit.sum()), len(ctl), method="newcomb"
    )
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
    theta = np.cov(df.visit, df.history)[0, 1] / df.history.var()
    assert out["cuped"]["theta"] == pytest.approx(theta, rel=1e-10)
    assert 0 < out["cuped"]["variance_reduction"] < 0.05  # history barely predicts a visit


def test_cuped_narrows_the_interval_with_a_good_covariate(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    n = 3000
    pre = rng.gamma(2.0, 20.0, n)
    arm = rng.choice(["ctl", "b"], n)
    y = 0.9 * pre + rng.normal(0, 10, n) + 3.0 * (arm == "b")
    p = tmp_path / "exp.parquet"
    pd.DataFrame({"arm": arm, "revenue": y, "pre_revenue": pre}).to_parquet(p)
    res = _json(
        "--data", str(p), "--arm", "arm", "--control", "ctl",
        "--outcome", "revenue", "--covariate", "pre_revenue",
    )  # fmt: skip
    raw = res["outcomes"][0]["comparisons"][0]
    cup = res["outcomes"][0]["cuped"]["comparisons"][0]
    assert res["outcomes"][0]["cuped"]["variance_reduction"] > 0.8
    assert (cup["ci_high"] - cup["ci_low"]) < 0.5 * (raw["ci_high"] - raw["ci_low"])
    assert cup["ci_low"] < 3.0 < cup["ci_high"]


def test_holm_correction_over_all_comparisons() -> None:
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {
            "arm": np.repeat(["a", "b", "c"], 400),
            "y1": rng.random(1200) < np.repeat([0.1, 0.15, 0.1], 400),
            "y2": rng.normal(0, 1, 1200),
        }
    )
    r = analyze(df, arm="arm", control="a", outcomes=["y1", "y2"], correction="holm")
    comps = [c for o in r["outcomes"] for c in o["comparisons"]]
    assert len(comps) == 4
    ps = sorted(c["p_value"] for c in comps)
    smallest = min(comps, key=lambda c: c["p_value"])
    assert smallest["p_adjusted"] == pytest.approx(min(1.0, 4 * ps[0]))
    assert r["outcomes"][0]["kind"] == "rate"  # booleans are a rate
    assert "prob_to_beat" in r["outcomes"][0]["comparisons"][0]


def test_srm_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "srm.csv"
    pd.DataFrame({"g": ["c"] * 600 + ["t"] * 400, "y": [0, 1] * 500}).to_csv(p, index=False)
    res = _json("--data", str(p), "--arm", "g", "--control", "c", "--outcome", "y")
    assert res["srm"]["mismatch"]
    ok = _json(
        "--data", str(p), "--arm", "g", "--control", "c", "--outcome", "y", "--planned", "3,2"
    )  # fmt: skip
    assert not ok["srm"]["mismatch"]


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    p = tmp_path / "small.csv"
    pd.DataFrame(
        {"arm": ["a", "b"] * 10, "conv": [0, 1] * 10, "spend": np.arange(20.0), "txt": ["x"] * 20}
    ).to_csv(p, index=False)
    return p


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arm", "nope", "--control", "a", "--outcome", "conv"], "column 'nope' not found"),
        (["--arm", "arm", "--control", "a", "--outcome", "missing"], "column 'missing' not found"),
        (["--arm", "arm", "--control", "zz", "--outcome", "conv"], "has no value 'zz'"),
        (["--arm", "arm", "--control", "a", "--outcome", "spend:rate"], "'spend' is not binary"),
        (["--arm", "arm", "--control", "a", "--outcome", "txt"], "'txt': 'x' (row 1)"),
        (["--arm", "arm", "--control", "a", "--outcome", "conv:median"], "rate or mean"),
        (["--arm", "arm", "--control", "a", "--outcome", "conv", "--ci", "exact"], "--ci"),
        (["--arm", "arm", "--control", "a", "--outcome", "conv", "--correction", "x"], "holm"),
    ],
)
def test_bad_input_names_file_and_column(small_csv: Path, args: list[str], message: str) -> None:
    res = _run("--data", str(small_csv), *args)
    assert res.exit_code == 2
    assert message in res.stderr
    if "column" in message:
        assert str(small_csv) in res.stderr


def test_missing_outcome_value_is_an_error_with_the_row(tmp_path: Path) -> None:
    p = tmp_path / "gap.csv"
    p.write_text("arm,y\na,1\nb,\na,0\nb,1\n")
    res = _run("--data", str(p), "--arm", "arm", "--control", "a", "--outcome", "y")
    assert res.exit_code == 2
    assert f"{p}: column 'y': missing value (row 2)" in res.stderr
    with pytest.raises(AnalysisError, match="fewer than 2"):
        analyze(pd.DataFrame({"g": ["a", "a", "b"], "y": [1, 0, 1]}), arm="g", control="a",
                outcomes=["y"])  # fmt: skip


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    res = _run("--data", str(tmp_path / "no.csv"), "--arm", "a", "--control", "x", "--outcome", "y")
    assert res.exit_code == 2
    assert "no such file" in res.stderr


def test_human_output_prints_tables(small_csv: Path) -> None:
    res = _run("--data", str(small_csv), "--arm", "arm", "--control", "a", "--outcome", "conv")
    assert res.exit_code == 0, res.output
    assert "conv (rate) vs a" in res.stdout


def test_power_command_matches_statsmodels() -> None:
    from statsmodels.stats.power import zt_ind_solve_power

    res = runner.invoke(
        app,
        ["experiment", "power", "--base-rate", "0.1", "--lift", "0.01", "--ratio", "2", "--json"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    sd = (0.1 * 0.9) ** 0.5
    want = zt_ind_solve_power(effect_size=0.01 / sd, alpha=0.05, power=0.8, ratio=2)
    assert out["n_control"] == int(np.ceil(want)) or abs(out["n_control"] - want) < 1.01
    res = runner.invoke(app, ["experiment", "power", "--base-rate", "0.1", "--n", "5000", "--json"])
    mde = json.loads(res.stdout)["mde"]
    assert mde == pytest.approx(zt_ind_solve_power(nobs1=5000, alpha=0.05, power=0.8) * sd, 1e-4)
    bad = runner.invoke(app, ["experiment", "power", "--base-rate", "0.1"])
    assert bad.exit_code == 2 and "exactly one" in bad.stderr


def _seq(*args: str) -> dict[str, Any]:
    res = runner.invoke(app, ["experiment", "sequential", *args, "--json"])
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def test_sequential_on_hillstrom(shared_data: Path) -> None:
    path = shared_data / "hillstrom" / "hillstrom.csv"
    res = _seq(
        "--data", str(path), "--arm", "segment", "--control", "No E-Mail",
        "--outcome", "visit", "--looks", "10",
    )  # fmt: skip
    mens = next(a for a in res["arms"] if a["arm"] == "Mens E-Mail")
    last = mens["looks"][-1]
    assert last["rows"] == 64_000 and round(last["estimate"], 6) == 0.076590
    # the confidence sequence is wider than the fixed-horizon Wald interval and contains it
    df = pd.read_csv(path)
    t, c = df[df.segment == "Mens E-Mail"].visit, df[df.segment == "No E-Mail"].visit
    lo, hi = confint_proportions_2indep(t.sum(), len(t), c.sum(), len(c), method="wald")
    assert last["ci_low"] < lo and hi < last["ci_high"]
    assert mens["rejected_at_rows"] is not None and mens["rejected_at_rows"] < 64_000
    ps = [look["p_value"] for look in mens["looks"]]
    assert ps == sorted(ps, reverse=True)


def test_sequential_aa_tests_rarely_reject(tmp_path: Path) -> None:
    """A/A data with 20 looks: the always-valid test rejects in at most ~alpha of runs."""
    from autopersona.evaluation.analyze import sequential

    rng = np.random.default_rng(42)
    runs, rejected = 300, 0
    for _ in range(runs):
        n = 2000
        df = pd.DataFrame({"g": rng.choice(["a", "b"], n), "y": rng.random(n) < 0.2})
        r = sequential(df, arm="g", control="a", outcome="y", looks=20, tau=0.05)
        rejected += r["arms"][0]["rejected_at_rows"] is not None
    assert rejected / runs <= 0.05 + 3 * (0.05 * 0.95 / runs) ** 0.5


def test_sequential_bad_input(small_csv: Path) -> None:
    res = runner.invoke(
        app,
        ["experiment", "sequential", "--data", str(small_csv), "--arm", "arm",
         "--control", "zz", "--outcome", "conv"],
    )  # fmt: skip
    assert res.exit_code == 2 and "has no value 'zz'" in res.stderr
    res = runner.invoke(
        app,
        ["experiment", "sequential", "--data", str(small_csv), "--arm", "arm",
         "--control", "a", "--outcome", "conv", "--time", "when"],
    )  # fmt: skip
    assert res.exit_code == 2 and "column 'when' not found" in res.stderr
