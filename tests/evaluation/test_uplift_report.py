"""Report providers (uplift, bandit replay) on a small randomised campaign in a warehouse."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from autopersona.evaluation.bandit_report import add_figures as add_bandit_figures
from autopersona.evaluation.bandit_report import campaign_replays, campaign_units
from autopersona.evaluation.report import Report
from autopersona.evaluation.uplift_report import add_figures as add_uplift_figures
from autopersona.evaluation.uplift_report import campaign_uplift, person_features
from autopersona.store.warehouse import Warehouse


def campaign(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A three-arm e-mail test: 'vip' persons answer the coupon, young ones the news."""
    rng = np.random.default_rng(seed)
    pid = [f"c-{i}" for i in range(n)]
    vip = rng.integers(0, 2, n)
    age = rng.uniform(18, 80, n).round()
    arm = rng.choice(["none", "coupon", "news"], n)
    p = 0.05 + 0.25 * ((arm == "coupon") & (vip == 1)) + 0.1 * ((arm == "news") & (age < 40))
    conv = rng.uniform(size=n) < p
    t0 = pd.Timestamp("2026-03-01", tz="UTC")
    rows = []
    for i in range(n):
        base = {"person_id": pid[i], "campaign_id": "spring", "decision_id": None, "arm": arm[i]}
        rows.append({**base, "event_id": f"{i}-a", "ts": t0, "channel": "none",
                     "event_type": "assigned", "value": None})  # fmt: skip
        if arm[i] != "none":
            rows.append({**base, "event_id": f"{i}-s", "ts": t0, "channel": "email",
                         "event_type": "sent", "value": None})  # fmt: skip
        if conv[i]:
            rows.append({**base, "event_id": f"{i}-c", "ts": t0 + pd.Timedelta(days=1),
                         "channel": "email" if arm[i] != "none" else "none",
                         "event_type": "converted", "value": 50.0})  # fmt: skip
    accounts = pd.DataFrame(
        {
            "account_id": pid,
            "source": "ecommerce",
            "gender": rng.choice(["F", "M"], n),
            "attributes": [
                json.dumps({"vip": int(v), "age": float(a)}) for v, a in zip(vip, age, strict=True)
            ],
        }
    )
    return pd.DataFrame(rows), accounts


def load(wh: Warehouse, events: pd.DataFrame, accounts: pd.DataFrame) -> None:
    wh.con.register("_ev", events)
    wh.con.execute(
        "INSERT INTO marketing_feedback BY NAME SELECT event_id, person_id, ts, campaign_id, "
        "decision_id, arm, channel, event_type, value FROM _ev"
    )
    wh.con.unregister("_ev")
    wh.con.register("_acc", accounts)
    wh.con.execute(
        "INSERT INTO accounts (account_id, source, gender, attributes) "
        "SELECT account_id, source, gender, attributes FROM _acc"
    )
    wh.con.unregister("_acc")


@pytest.fixture
def loaded(wh: Warehouse) -> Warehouse:
    load(wh, *campaign(3000, 0))
    return wh


def _html(report: Report) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return report.to_html()


def test_units_and_features(loaded):
    units = campaign_units(loaded)
    assert len(units) == 3000
    assert set(units["arm"]) == {"none", "coupon", "news"}
    assert not units.loc[units["arm"] == "none", "sent"].any()
    feats = person_features(loaded, units["person_id"])
    assert set(feats.columns) == {"vip", "age", "gender"}
    assert len(feats) == 3000


def test_uplift_provider_scores_each_treatment(loaded):
    (res,), notes = campaign_uplift(loaded)
    assert notes == []
    assert (res.campaign, res.outcome, res.control, res.n_test) == (
        "spring",
        "converted",
        "none",
        900,
    )
    assert set(res.features) == {"vip", "age", "gender"}
    assert {s.treatment for s in res.scores} == {"coupon", "news"}
    assert all(s.qini > 0.05 for s in res.scores), res.scores
    rep = Report("t")
    add_uplift_figures(rep, loaded)
    assert [i.kind for i in rep.sections["Uplift"]] == ["figure", "table"]  # no visited events
    assert "coupon" in rep.sections["Uplift"][1].body
    assert "Qini curves" in rep.sections["Uplift"][0].caption and "coupon" in _html(rep)


def test_uplift_provider_explains_missing_features(wh):
    events, _ = campaign(800, 1)
    load(wh, events, pd.DataFrame(columns=["account_id", "source", "gender", "attributes"]))
    rep = Report("t")
    add_uplift_figures(rep, wh)
    (note,) = rep.sections["Uplift"]
    assert "cover 0% of persons" in note.body


def test_bandit_provider_replays_thompson(loaded):
    ((camp, n, valid, table),) = campaign_replays(loaded)
    assert (camp, n) == ("spring", 3000)
    t = table.set_index("arm")
    # the coupon arm converts best (about 0.175 vs 0.10 and 0.05); the replay leans to it
    assert t["conversion"].drop("Thompson replay").idxmax() == "coupon"
    assert t.loc["coupon", "share of replay rounds"] > 0.5
    assert t.loc["Thompson replay", "conversion"] == valid["reward"].mean()
    again = campaign_replays(loaded)[0][3]
    pd.testing.assert_frame_equal(again, table)  # reproducible
    rep = Report("t")
    add_bandit_figures(rep, loaded)
    fig, tab = rep.sections["Bandits"]
    assert fig.kind == "figure" and "valid replay rounds" in fig.caption
    assert tab.kind == "table"


def test_bandit_provider_on_empty_warehouse(wh):
    rep = Report("t")
    add_bandit_figures(rep, wh)
    assert "No campaign" in rep.sections["Bandits"][0].body
