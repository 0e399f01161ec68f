"""``autopersona report``: one self-contained HTML page with funnel, lift and plug-in figures."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd
import pytest

from autopersona.evaluation import experiment as ex
from autopersona.evaluation.report import Report, build_report, lift_table
from autopersona.store.warehouse import Warehouse
from evaluation.eventkit import load_events, random_events

with warnings.catch_warnings():
    # click 8.5 deprecates a name typer imports at import time (not our code)
    warnings.simplefilter("ignore", DeprecationWarning)
    from typer.testing import CliRunner

    from autopersona.cli import app


def _events() -> pd.DataFrame:
    ev = random_events(400, seed=5)
    # every person of campaign s1 is assigned; the holdout gets no message
    assigned = pd.DataFrame(
        {
            "event_id": [f"a{i}" for i in range(300)],
            "person_id": [f"H{i}" for i in range(300)],
            "ts": pd.Timestamp("2026-03-01", tz="UTC"),
            "campaign_id": "s1",
            "decision_id": None,
            "arm": "holdout",
            "channel": "none",
            "event_type": "assigned",
            "value": None,
        }
    )
    return pd.concat([ev, assigned], ignore_index=True)


@pytest.fixture
def wh_path(tmp_path: Path) -> Path:
    p = tmp_path / "wh.duckdb"
    with Warehouse(p) as wh:
        load_events(wh, _events())
    return p


def test_lift_table_matches_a_pandas_count(wh_path: Path) -> None:
    ev = _events()
    with Warehouse(wh_path, read_only=True) as wh:
        lt = lift_table(wh)
    s1 = ev[ev.campaign_id == "s1"]
    per = s1.groupby(["arm", "person_id"])["event_type"].apply(lambda t: (t == "converted").any())
    counts = per.groupby("arm").agg(["size", "sum"])
    row = lt[(lt.campaign == "s1") & (lt.arm == "precision") & (lt.control == "holdout")].iloc[0]
    want = ex.diff_proportions(
        int(counts.loc["precision", "sum"]),
        int(counts.loc["precision", "size"]),
        int(counts.loc["holdout", "sum"]),
        int(counts.loc["holdout", "size"]),
    )
    assert row.lift == pytest.approx(want.diff)
    assert (row.ci_low, row.ci_high) == pytest.approx((want.ci_low, want.ci_high))
    # s2 has no control arm: only the precision-vs-baseline row among recipients
    assert lt[lt.campaign == "s2"]["control"].tolist() == ["baseline (recipients)"]
    s2 = ev[ev.campaign_id == "s2"]
    flags = s2.groupby(["arm", "person_id"])["event_type"].agg(
        sent=lambda t: (t == "sent").any(), conv=lambda t: (t == "converted").any()
    )
    rec = flags[flags["sent"]].groupby("arm")["conv"].agg(["size", "sum"])
    want = ex.diff_proportions(
        int(rec.loc["precision", "sum"]),
        int(rec.loc["precision", "size"]),
        int(rec.loc["baseline", "sum"]),
        int(rec.loc["baseline", "size"]),
    )
    head = lt[lt.campaign == "s2"].iloc[0]
    assert (head.lift, head.ci_low, head.ci_high) == pytest.approx(
        (want.diff, want.ci_low, want.ci_high)
    )


def test_report_cli_writes_a_self_contained_page(wh_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "r" / "report.html"
    res = CliRunner().invoke(app, ["report", "--out", str(out), "--warehouse", str(wh_path)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    for section in ("Funnel", "Lift"):  # our own figures (providers may add more)
        body = page.split(f"<h2>{section}</h2>")[1].split("</section>")[0]
        assert body.count("data:image/png;base64,") == 1
    for section in ("Funnel", "Lift", "Uplift", "Bandits"):
        assert f"<h2>{section}</h2>" in page
    funnel = page.split("<h2>Funnel</h2>")[1].split("</section>")[0]
    for metric in ("voice_reply_rate", "mean_dwell_s", "referral_rate", "ltv_change"):
        assert metric in funnel  # the interaction and value layers are reported
    # no external asset: no src/href pointing anywhere, no scripts
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    assert "<script" not in page and "<link" not in page
    bad = CliRunner().invoke(app, ["report", "--out", str(out), "--warehouse", "nope.duckdb"])
    assert bad.exit_code == 2 and "no such warehouse" in bad.stderr


def test_providers_plug_figures_into_their_sections(wh_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def qini(report: Report, wh: Warehouse) -> None:
        fig, ax = plt.subplots()
        ax.plot([0, 0.5, 1], [0, 0.3, 0.4])
        report.add_figure("Uplift", fig, "Qini curve (test provider)")

    with Warehouse(wh_path, read_only=True) as wh:
        rep = build_report(wh, providers=[qini])
    page = rep.to_html()
    uplift = page.split("<h2>Uplift</h2>")[1].split("</section>")[0]
    assert "Qini curve (test provider)" in uplift and "data:image/png" in uplift
    assert "Qini curves of the uplift models appear here" not in page
    assert plt.get_fignums() == []  # figures are closed once embedded


def test_empty_warehouse_report_explains(wh: Warehouse) -> None:
    page = build_report(wh, providers=[]).to_html()
    assert "marketing_feedback is empty" in page
    assert "no campaign has a control arm" in page
    assert "Qini curves of the uplift models appear here" in page  # the empty slot says so
