"""Funnel metrics: DuckDB SQL against the pandas reference, and hand-checked small cases."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from autopersona.evaluation.funnel import funnel_from_events, funnel_metrics, funnel_sql
from autopersona.store.warehouse import Warehouse
from evaluation.eventkit import load_events, random_events


@pytest.mark.parametrize(
    "by",
    [
        ("strategy", "channel", "segment", "day"),
        ("strategy", "arm"),
        ("day",),
        ("channel", "segment"),
    ],
)
def test_sql_matches_pandas(wh: Warehouse, by: tuple[str, ...]) -> None:
    ev = random_events(600, seed=len(by))
    load_events(wh, ev)
    seg = pd.DataFrame({"person_id": [f"P{i}" for i in range(0, 200, 2)], "segment": "even"})
    sql = funnel_metrics(wh, by, segments=seg)
    ref = funnel_from_events(ev, by, segments=seg)
    if "day" in by:
        sql["day"] = pd.to_datetime(sql["day"]).dt.date
    pd.testing.assert_frame_equal(
        sql.reset_index(drop=True), ref[list(sql.columns)], check_dtype=False, atol=1e-9
    )


def test_hand_checked_case(wh: Warehouse) -> None:
    t = pd.Timestamp("2026-03-02 08:00", tz="UTC")

    def e(i: str, person: str, step: str, value: float | None = None) -> dict[str, object]:
        return {
            "event_id": f"{i}-{step}",
            "person_id": person,
            "ts": t,
            "campaign_id": "c",
            "decision_id": i,
            "arm": "treatment",
            "channel": "app",
            "event_type": step,
            "value": value,
        }

    rows = [e("a", "P1", s) for s in ("sent", "delivered", "exposed", "clicked")]
    rows += [e("a", "P1", "converted", 100.0), e("a", "P1", "redeemed")]
    rows += [e("b", "P1", s) for s in ("sent", "delivered", "exposed", "clicked")]
    rows += [e("b", "P1", "converted", 50.0)]
    rows += [e("c", "P2", s) for s in ("sent", "delivered")]
    rows += [e("d", "P3", "sent")]
    load_events(wh, pd.DataFrame(rows))
    r = funnel_metrics(wh, ("strategy",)).iloc[0]
    assert (r.sent, r.delivered, r.exposed, r.clicked, r.converted) == (4, 3, 2, 2, 2)
    assert r.send_success == pytest.approx(0.75)
    assert r.exposure_rate == pytest.approx(2 / 3)
    assert r.ctr == 1.0
    assert r.cvr == 0.5
    assert r.order_value == 75.0
    assert r.redemption_rate == 0.5
    assert r.revenue_per_message == 37.5
    assert r.buyers == 1 and r.repurchase_rate == 1.0


def test_empty_and_bad_arguments(wh: Warehouse) -> None:
    assert funnel_metrics(wh).empty
    with pytest.raises(ValueError, match="choose from"):
        funnel_sql(("weekday",))
    with pytest.raises(ValueError, match="segment"):
        funnel_metrics(wh, segments=pd.DataFrame({"person_id": ["x"]}))


def test_hillstrom_shaped_events_without_decisions(wh: Warehouse) -> None:
    # Hillstrom's mapping: assigned + sent (+ visited, converted) per customer, no decision id
    rows = []
    for i, (arm, visit, conv) in enumerate(
        [("Mens E-Mail", 1, 1), ("Mens E-Mail", 1, 0), ("No E-Mail", 0, 0), ("No E-Mail", 1, 1)]
    ):
        ch = "none" if arm == "No E-Mail" else "email"
        steps = ["assigned"] + (["sent"] if ch == "email" else []) + (["visited"] if visit else [])
        steps += ["converted"] if conv else []
        for s in steps:
            rows.append(
                {
                    "event_id": f"h{i}-{s}",
                    "person_id": f"h{i}",
                    "ts": pd.Timestamp("2008-03-20", tz="UTC"),
                    "campaign_id": "hill",
                    "decision_id": None,
                    "arm": arm,
                    "channel": ch,
                    "event_type": s,
                    "value": 30.0 if s == "converted" else None,
                }
            )
    load_events(wh, pd.DataFrame(rows))
    f = funnel_metrics(wh, ("arm",)).set_index("arm")
    assert f.loc["Mens E-Mail", "sent"] == 2 and f.loc["Mens E-Mail", "visited"] == 2
    assert f.loc["Mens E-Mail", "cvr"] == 0.5
    assert f.loc["No E-Mail", "sent"] == 0 and pd.isna(f.loc["No E-Mail", "cvr"])
    assert f.loc["No E-Mail", "converted"] == 1


def test_hillstrom_through_the_warehouse(wh: Warehouse, shared_data: Path) -> None:
    """Ingested with the built-in mapping, the funnel and lift reproduce the data README."""
    from autopersona.evaluation.report import lift_table
    from autopersona.ingest.engine import ingest
    from autopersona.ingest.mapping import resolve_mapping

    path = shared_data / "hillstrom" / "hillstrom.csv"
    ingest([path], wh, mapping=resolve_mapping("hillstrom"), progress=False, keep_going=False)
    f = funnel_metrics(wh, ("arm",)).set_index("arm")
    assert f.loc["Mens E-Mail", "sent"] == 21_307
    assert round(f.loc["Mens E-Mail", "cvr"], 6) == 0.012531
    assert round(f.loc["Womens E-Mail", "revenue_per_message"], 6) == 1.077202
    assert int(f["visited"].sum()) == 9394 and int(f["converted"].sum()) == 578
    lt = lift_table(wh, control=["No E-Mail"]).set_index("arm")
    mens = lt.loc["Mens E-Mail"]
    assert round(mens["control_rate"], 6) == 0.005726
    assert round(mens["lift"], 6) == 0.006805
    lo, hi = confint_proportions_2indep(267, 21_307, 122, 21_306, method="wald")
    assert (mens["ci_low"], mens["ci_high"]) == pytest.approx((lo, hi), abs=1e-12)


def test_voice_dwell_referral_and_ltv(wh: Warehouse) -> None:
    """The new interaction and value metrics, by hand on a small case."""
    t = pd.Timestamp("2026-03-02 08:00", tz="UTC")

    def e(
        i: str, person: str, step: str, value: float | None = None, dwell: float | None = None
    ) -> dict[str, object]:
        return {
            "event_id": f"{i}-{step}",
            "person_id": person,
            "ts": t,
            "campaign_id": "c",
            "decision_id": i,
            "arm": "treatment",
            "channel": "head_unit",
            "event_type": step,
            "value": value,
            "dwell_s": dwell,
        }

    rows = [e("a", "P1", s) for s in ("sent", "delivered")]
    rows += [e("a", "P1", "exposed", dwell=10.0), e("a", "P1", "clicked", dwell=30.0)]
    rows += [e("a", "P1", "voice_reply"), e("a", "P1", "converted", 200.0)]
    rows += [e("a", "P1", "referral", 80.0)]
    rows += [e("b", "P2", s) for s in ("sent", "delivered")]
    rows += [e("b", "P2", "exposed", dwell=4.0), e("b", "P2", "voice_reply")]
    rows += [e("c", "P3", s) for s in ("sent", "delivered", "exposed")]  # no dwell recorded
    rows += [e("d", "P3", s) for s in ("sent", "delivered")]
    load_events(wh, pd.DataFrame(rows))
    r = funnel_metrics(wh, ("strategy",)).iloc[0]
    assert (r.exposed, r.voice_replies) == (3, 2)
    assert r.voice_reply_rate == pytest.approx(2 / 3)
    assert r.mean_dwell_s == pytest.approx((40.0 + 4.0) / 2)  # c has no dwell
    assert (r.referrals, r.referral_value, r.persons) == (1, 80.0, 3)
    assert r.referral_rate == pytest.approx(1 / 4)
    assert r.ltv_change == pytest.approx((200.0 + 80.0) / 3)
    ev = pd.DataFrame(rows)
    ref = funnel_from_events(ev, ("strategy",)).iloc[0]
    for col in ("voice_reply_rate", "mean_dwell_s", "referral_rate", "ltv_change"):
        assert ref[col] == pytest.approx(r[col])


def test_new_metrics_against_a_plain_pandas_computation(wh: Warehouse) -> None:
    """Voice-reply rate, dwell, referral rate and LTV change per channel, recomputed directly."""
    ev = random_events(800, seed=7)
    load_events(wh, ev)
    got = funnel_metrics(wh, ("channel",)).set_index("channel")
    msg = ev[ev["decision_id"].notna()]
    for ch, g in msg.groupby("channel"):
        per = g.groupby("decision_id")
        types = per["event_type"].agg(set)
        sent = types.map(lambda s: "sent" in s)
        exposed = types.map(lambda s: "sent" in s and "exposed" in s)
        voice = types.map(lambda s: "sent" in s and "voice_reply" in s)
        referred = types.map(lambda s: "sent" in s and "referral" in s)
        dwell = per["dwell_s"].sum(min_count=1)[exposed]
        assert got.loc[ch, "voice_reply_rate"] == pytest.approx(voice.sum() / exposed.sum())
        assert got.loc[ch, "mean_dwell_s"] == pytest.approx(dwell.mean())
        assert got.loc[ch, "referral_rate"] == pytest.approx(referred.sum() / sent.sum())
        value = g.loc[g["event_type"].isin(["converted", "referral"]), "value"].sum()
        assert got.loc[ch, "ltv_change"] == pytest.approx(value / g["person_id"].nunique())
