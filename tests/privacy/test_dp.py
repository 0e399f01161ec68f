"""Differential privacy: released counts carry the declared noise, budgets refuse when spent."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

with warnings.catch_warnings():
    # typer 0.20 imports a helper click 8.5 deprecates; not ours to fix, and only at import
    warnings.filterwarnings(
        "ignore", message=r"'click\.utils\.get_\w+' is deprecated", category=DeprecationWarning
    )
    from typer.testing import CliRunner

    from autopersona.cli import app
from autopersona.privacy.dp import (
    FUNNEL_STEPS,
    LEDGER_TABLE,
    BudgetExceeded,
    BudgetLedger,
    discrete_laplace_variance,
    dp_counts,
    dp_histogram,
    funnel_report,
    segment_size_report,
    tag_distribution_report,
)
from autopersona.store.profiles import DuckDBProfileStore
from autopersona.store.warehouse import Warehouse


def _chi2_vs_dlaplace(noise: np.ndarray, scale: float) -> float:
    """p-value of a chi-square goodness-of-fit test of integer noise against discrete Laplace."""
    dist = stats.dlaplace(a=1.0 / scale)
    edge = int(np.ceil(3 * scale))  # inner cells; both tails pooled into one cell each
    ks = np.arange(-edge, edge + 1)
    observed = [np.sum(noise < -edge)] + [np.sum(noise == k) for k in ks] + [np.sum(noise > edge)]
    probs = [dist.cdf(-edge - 1), *list(dist.pmf(ks)), dist.sf(edge)]
    expected = np.asarray(probs) * len(noise)
    return float(stats.chisquare(observed, expected).pvalue)


def _variance_z(noise: np.ndarray, scale: float) -> float:
    """z statistic of the sample variance against the declared variance (4th-moment SE)."""
    n = len(noise)
    var = discrete_laplace_variance(scale)
    m4 = float(np.mean((noise - noise.mean()) ** 4))
    se = np.sqrt((m4 - var**2) / n)
    return float((noise.var(ddof=1) - var) / se)


def test_histogram_noise_has_the_declared_discrete_laplace_scale() -> None:
    data = ["high"] * 70 + ["mid"] * 25 + ["low"] * 5
    truth = np.array([70, 25, 5])
    eps = 0.5
    releases = [dp_histogram(data, ["high", "mid", "low"], eps) for _ in range(2000)]
    scale = releases[0].scale
    assert scale == pytest.approx(1 / eps)
    noise = np.array([[r.counts[c] for c in ("high", "mid", "low")] for r in releases]) - truth
    flat = noise.ravel()
    # mean zero, variance 2e^{-1/s}/(1-e^{-1/s})^2 (≈ 2 s^2), distribution discrete Laplace(s)
    assert abs(flat.mean()) < 4 * np.sqrt(discrete_laplace_variance(scale) / len(flat))
    assert abs(_variance_z(flat, scale)) < 4
    print(
        f"dp histogram: eps {eps}, scale {scale}, {len(flat)} noise draws: variance "
        f"{flat.var(ddof=1):.3f} vs declared {discrete_laplace_variance(scale):.3f} "
        f"(z {_variance_z(flat, scale):+.2f}), chi-square vs discrete Laplace p = "
        f"{_chi2_vs_dlaplace(flat, scale):.3f}; at 1.3x the scale p = "
        f"{_chi2_vs_dlaplace(flat, scale * 1.3):.1e}"
    )
    assert _chi2_vs_dlaplace(flat, scale) > 1e-3
    # the same test rejects a scale off by 30%: it can fail
    assert _chi2_vs_dlaplace(flat, scale * 1.3) < 1e-6
    assert abs(_variance_z(flat, scale * 1.3)) > 6
    # the three counts are noised independently
    assert abs(np.corrcoef(noise.T)[0, 1]) < 0.1


def test_counts_noise_scales_with_the_declared_sensitivity() -> None:
    truth = {"sent": 400, "delivered": 380, "clicked": 40}
    rel = [dp_counts(truth, sensitivity=3, epsilon=1.5) for _ in range(2000)]
    assert rel[0].scale == pytest.approx(2.0)
    noise = np.array([[r.counts[k] - v for k, v in truth.items()] for r in rel]).ravel()
    assert abs(_variance_z(noise, 2.0)) < 4
    assert _chi2_vs_dlaplace(noise, 2.0) > 1e-3
    assert rel[0].std == pytest.approx(np.sqrt(discrete_laplace_variance(2.0)))


def test_budget_is_spent_by_sequential_composition_then_refuses() -> None:
    con = duckdb.connect()
    ledger = BudgetLedger(con, default_budget=1.0)
    for _ in range(4):
        dp_histogram(["a"], ["a", "b"], 0.25, ledger=ledger, dataset="d1", report="r")
    assert ledger.spent("d1") == pytest.approx(1.0)
    assert ledger.remaining("d1") == pytest.approx(0.0)
    with pytest.raises(BudgetExceeded, match=r"dataset 'd1'.*needs epsilon 0.01.*spent 1 in 4"):
        dp_histogram(["a"], ["a", "b"], 0.01, ledger=ledger, dataset="d1", report="r")
    # a refusal records nothing; another dataset has its own budget
    assert len(ledger.entries("d1")) == 4
    dp_counts({"x": 3}, 1, 0.5, ledger=ledger, dataset="d2")
    assert ledger.spent("d2") == pytest.approx(0.5)
    # a budget can be raised, not lowered below what is spent
    with pytest.raises(BudgetExceeded):
        ledger.set_budget("d1", 0.5)
    ledger.set_budget("d1", 1.2)
    dp_histogram(["a"], ["a"], 0.2, ledger=ledger, dataset="d1")
    assert ledger.datasets() == ["d1", "d2"]


def test_bad_epsilon_and_categories_are_errors() -> None:
    with pytest.raises(ValueError, match="epsilon must be a positive"):
        dp_histogram(["a"], ["a"], 0.0)
    with pytest.raises(ValueError, match="epsilon must be a positive"):
        dp_counts({"a": 1}, 1, float("inf"))
    with pytest.raises(ValueError, match="without repeats"):
        dp_histogram(["a"], ["a", "a"], 1.0)
    with pytest.raises(ValueError, match="sensitivity"):
        dp_counts({"a": 1}, 0, 1.0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=0.7), min_size=1, max_size=12))
def test_ledger_never_spends_past_the_budget(epsilons: list[float]) -> None:
    ledger = BudgetLedger(duckdb.connect(), default_budget=1.0)
    accepted = 0.0
    for e in epsilons:
        try:
            ledger.charge("d", "r", e, "test")
            accepted += e
        except BudgetExceeded:
            assert accepted + e > 1.0
    assert ledger.spent("d") == pytest.approx(accepted)
    assert ledger.spent("d") <= 1.0 + 1e-9


# ---------------------------------------------------------------------------- reports + CLI
def _assignments(values: dict[str, str], tag: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "entity_type": "vin",
                "entity": e,
                "tag_id": tag,
                "value": v,
                "score": None,
                "reasons": "{}",
                "as_of": datetime(2026, 1, 5, tzinfo=UTC),
                "catalogue_version": "c1",
                "model_version": None,
            }
            for e, v in values.items()
        ]
    )


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "wh.duckdb"
    with Warehouse(path) as wh:
        ps = DuckDBProfileStore(wh.con)
        tiers = {f"V{i}": ["luxury", "mid", "economy"][i % 3] for i in range(60)}
        ps.write(_assignments(tiers, "l1_vehicle_tier"))
        energy = {f"V{i}": "BEV" if i < 20 else "ICE" for i in range(60)}
        ps.write(_assignments(energy, "l1_energy_type"))
    return path


def test_reports_from_the_profile_store_and_funnel(filled: Path) -> None:
    with Warehouse(filled) as wh:
        ps = DuckDBProfileStore(wh.con)
        ledger = BudgetLedger(wh.con, default_budget=10.0)
        rel = tag_distribution_report(
            ps, "l1_vehicle_tier", 2.0, ledger, categories=["luxury", "mid", "economy"]
        )
        assert set(rel.counts) >= {"luxury", "mid", "economy", "(other)"}
        assert abs(rel.counts["luxury"] - 20) < 25  # scale 0.5: |noise| >= 25 has p ~ 1e-22
        seg = segment_size_report(
            ps,
            {
                "lux_bev": {"l1_vehicle_tier": "luxury", "l1_energy_type": "BEV"},
                "ice": {"l1_energy_type": "ICE"},
            },
            1.0,
            ledger,
        )
        assert seg.sensitivity == 2 and seg.scale == 2.0
        assert abs(seg.counts["ice"] - 40) < 60
        wh.con.execute(
            "INSERT INTO marketing_feedback (event_id, person_id, ts, campaign_id, event_type) "
            "SELECT 'e' || i, 'P' || (i % 30), TIMESTAMPTZ '2026-01-01', 'c1', "
            "CASE WHEN i < 50 THEN 'sent' ELSE 'clicked' END FROM range(60) t(i)"
        )
        fun = funnel_report(wh, 1.0, ledger, campaign="c1")
        assert fun.sensitivity == len(FUNNEL_STEPS) == 10 and list(fun.counts)[:2] == [
            "assigned",
            "sent",
        ]
        got = ledger.entries()
        assert list(got["report"]) == [
            "tag_distribution:l1_vehicle_tier",
            "segment_sizes",
            "funnel:c1",
        ]
        assert ledger.spent("profiles") == pytest.approx(3.0)
        assert wh.count(LEDGER_TABLE) == 3


def test_cli_report_and_budget_refuse_once_spent(filled: Path) -> None:
    runner = CliRunner()
    base = ["--warehouse", str(filled)]
    r = runner.invoke(app, ["privacy", "budget", "--dataset", "profiles", "--set", "1", *base])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        ["privacy", "report", "--tag", "l1_vehicle_tier", "--epsilon", "0.6", "--json", *base],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["remaining_epsilon"] == pytest.approx(0.4)
    assert out["scale"] == pytest.approx(1 / 0.6)
    r = runner.invoke(
        app, ["privacy", "report", "--tag", "l1_vehicle_tier", "--epsilon", "0.6", *base]
    )
    assert r.exit_code == 3
    assert "privacy budget spent" in r.stderr and "only 0.4 of 1 is left" in r.stderr
    r = runner.invoke(app, ["privacy", "budget", "--json", *base])
    assert json.loads(r.stdout) == [
        {"dataset": "profiles", "budget": 1.0, "spent": 0.6, "remaining": 0.4, "releases": 1}
    ]
    r = runner.invoke(app, ["privacy", "report", "--tag", "nope", "--epsilon", "0.1", *base])
    assert r.exit_code == 2 and "unknown tag 'nope'" in r.stderr


def test_cli_report_counts_only_people_consented_for_analytics(filled: Path) -> None:
    from autopersona.privacy.consent import record_consent

    with Warehouse(filled) as wh:
        # V0..V9 (luxury every third) belong to accounts that consent to analytics
        for i in range(10):
            wh.con.execute(
                "INSERT INTO accounts (account_id, source, vin) VALUES (?, 'owner', ?)",
                [f"OWN-{i}", f"V{i}"],
            )
            record_consent(
                wh, f"OWN-{i}", "analytics", "any", True, datetime(2026, 1, 1, tzinfo=UTC)
            )
    runner = CliRunner()
    base = ["--tag", "l1_vehicle_tier", "--epsilon", "2", "--json", "--warehouse", str(filled)]
    r = runner.invoke(
        app, ["privacy", "budget", "--dataset", "profiles", "--set", "10", "-w", str(filled)]
    )
    assert r.exit_code == 0, r.output
    consented = json.loads(runner.invoke(app, ["privacy", "report", *base]).stdout)
    everyone = json.loads(runner.invoke(app, ["privacy", "report", "--everyone", *base]).stdout)
    # true counts: 4 luxury among the consented ten, 20 among all sixty (noise sd ~0.7)
    assert abs(consented["counts"]["luxury"] - 4) < 6
    assert abs(everyone["counts"]["luxury"] - 20) < 6
    r = runner.invoke(app, ["privacy", "consent", "OWN-3", "--json", "-w", str(filled)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (
        out["consent"]["analytics"]["sms"] is True and out["consent"]["marketing"]["sms"] is False
    )
    assert len(out["history"]) == 1
