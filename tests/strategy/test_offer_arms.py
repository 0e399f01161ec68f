"""Offer arms chosen by Thompson sampling on the feedback, in batch and live decisions."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydantic
import pytest
import yaml
from typer.testing import CliRunner

from autopersona.cli import app
from autopersona.store.warehouse import Warehouse
from autopersona.strategy import StrategyEngine, load_strategies
from autopersona.strategy.decision import (
    Decision,
    idempotency_key,
    read_decisions,
    write_decisions,
)
from autopersona.strategy.offers import LiveOfferArms, arm_counts, assign_offer_arms
from autopersona.strategy.spec import StrategySpec

from .stratcheck import FIXTURES, fill, route

runner = CliRunner()
T0 = datetime(2026, 2, 11, 9, tzinfo=UTC)
ARMS = [
    {"id": "five_off", "offer": {"discount_pct": 5}},
    {"id": "twenty_off", "offer": {"discount_pct": 20}},
]


def _catalogue(
    tmp_path: Path, arms: list[dict[str, object]] | None = None, strategy: str = "weekly_all"
) -> Path:
    """The engine fixture strategies, with offer arms on ``strategy``."""
    data = yaml.safe_load((FIXTURES / "engine" / "strategies.yaml").read_text())
    for s in data["strategies"]:
        if s["id"] == strategy:
            s["offer"] = {"code": "W1", "discount_pct": 10}
            s["offer_arms"] = arms if arms is not None else ARMS
    folder = tmp_path / "cat"
    folder.mkdir(exist_ok=True)
    (folder / "strategies.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def _spec(**over: object) -> StrategySpec:
    base = load_strategies(FIXTURES / "engine").strategies["weekly_all"].model_dump()
    base.update(over)
    return StrategySpec.model_validate(base)


def test_offer_arm_declarations_are_checked() -> None:
    with pytest.raises(pydantic.ValidationError, match="two or more arms"):
        _spec(offer_arms=ARMS[:1])
    shown = {"variants": [{"title": "Save", "body": "${offer_discount_pct}% off"}]}
    with pytest.raises(pydantic.ValidationError, match="changes discount_pct shown by"):
        _spec(offer={"discount_pct": 10}, content=shown, offer_arms=ARMS)
    own = [{**a, "title": "Save", "body": "${offer_discount_pct}% off, ${brand}"} for a in ARMS]
    with pytest.raises(pydantic.ValidationError, match="unknown template field"):
        _spec(offer={"discount_pct": 10}, content=shown, offer_arms=own)
    ok = [{**a, "title": "Save", "body": "${offer_discount_pct}% off"} for a in ARMS]
    assert len(_spec(offer={"discount_pct": 10}, content=shown, offer_arms=ok).offer_arms) == 2
    # strategies without arms keep their digest
    plain = load_strategies(FIXTURES / "engine").strategies["weekly_all"]
    assert plain.digest() == _spec().digest()


def _decision(i: int, arm: str | None, ts: datetime, spec_offer: dict[str, object]) -> Decision:
    person = f"P{i}"
    offer = {**spec_offer, "offer_arm": arm} if arm else dict(spec_offer)
    return Decision(
        decision_id=f"d{ts:%m%d}-{i}",
        idempotency_key=idempotency_key("weekly_all", person, ts.date().isoformat()),
        person_id=person,
        vin=f"V{i}",
        strategy_id="weekly_all",
        trigger="schedule",
        trigger_key=ts.date().isoformat(),
        channel="sms",
        status="send",
        guard=None,
        reason="test",
        arm="treatment",
        priority=50,
        expected_value=0.0,
        title="t",
        body="Hello",
        offer=offer,
        created_at=ts,
    )


def test_thompson_sampling_follows_the_feedback(tmp_path: Path) -> None:
    cat = load_strategies(_catalogue(tmp_path))
    spec = cat.strategies["weekly_all"]
    rates = {"five_off": 0.04, "twenty_off": 0.30}
    with Warehouse(":memory:") as wh:
        past = [
            _decision(i, "five_off" if i % 2 else "twenty_off", T0, spec.offer) for i in range(400)
        ]
        write_decisions(wh.con, past)
        rows = []
        for d in past:
            arm = str(d.offer["offer_arm"])
            n_conv = round(rates[arm] * 200)
            k = int(d.decision_id.rsplit("-", 1)[1]) // 2
            steps = ["sent"] + (["converted"] if k < n_conv else [])
            rows += [(f"{d.decision_id}-{s}", d.person_id, T0, "weekly_all", d.decision_id, s)
                     for s in steps]  # fmt: skip
        wh.con.executemany(
            "INSERT INTO marketing_feedback (event_id, person_id, ts, campaign_id, decision_id, "
            "event_type) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        counts = arm_counts(wh.con, "weekly_all").set_index("arm")
        assert counts.loc["five_off"].tolist() == [200, 8]
        assert counts.loc["twenty_off"].tolist() == [200, 60]
        week = T0 + timedelta(days=7)
        new = [_decision(1000 + i, None, week, spec.offer) for i in range(300)]
        new.append(dataclasses.replace(_decision(2000, None, week, spec.offer), arm="control"))
        got, summary = assign_offer_arms(wh.con, cat, new, as_of=week)
        again, _ = assign_offer_arms(wh.con, cat, new, as_of=week)
        assert got == again  # seeded by strategy and as-of time
    arms = [d.offer.get("offer_arm") for d in got[:300]]
    assert arms.count("twenty_off") > 0.9 * 300  # the converting coupon takes the sends
    assert got[300].offer == spec.offer  # the control arm is never sent: offer untouched
    d = next(x for x in got if x.offer.get("offer_arm") == "twenty_off")
    assert d.offer["discount_pct"] == 20 and d.offer["code"] == "W1"
    assert 0.9 < float(d.offer["offer_propensity"]) <= 1.0
    s = summary["weekly_all"]
    assert s["posterior_mean"]["twenty_off"] == pytest.approx(61 / 202)
    assert sum(s["assigned"].values()) == 300


def test_no_evidence_explores_every_arm(tmp_path: Path) -> None:
    cat = load_strategies(_catalogue(tmp_path))
    spec = cat.strategies["weekly_all"]
    with Warehouse(":memory:") as wh:
        new = [_decision(i, None, T0, spec.offer) for i in range(200)]
        got, summary = assign_offer_arms(wh.con, cat, new, as_of=T0)
    share = sum(d.offer["offer_arm"] == "twenty_off" for d in got) / len(got)
    assert 0.35 < share < 0.65
    assert summary["weekly_all"]["evidence"] == []


def test_batch_run_cli_logs_the_chosen_arms(tmp_path: Path) -> None:
    own = [
        {**a, "title": "Save ${offer_discount_pct}%", "body": "Code ${offer_code}"} for a in ARMS
    ]
    folder = _catalogue(tmp_path, own)
    db = tmp_path / "wh.duckdb"
    with Warehouse(db) as wh:
        fill(wh)
    common = ["--warehouse", str(db), "--catalogue", str(folder)]
    res = runner.invoke(app, ["strategies", "run", *common, "--as-of", "2026-02-11", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out["offer_arms"]) == {"weekly_all"}
    with Warehouse(db) as wh:
        logged = [d for d in read_decisions(wh.con) if d.strategy_id == "weekly_all"]
    sent = [d for d in logged if d.status in ("send", "held") and d.arm != "control"]
    assert sent, [(d.status, d.guard, d.arm) for d in logged]
    assert sum(out["offer_arms"]["weekly_all"]["assigned"].values()) == len(sent)
    for d in sent:
        arm = d.offer["offer_arm"]
        pct = {"five_off": 5, "twenty_off": 20}[str(arm)]
        assert d.offer["discount_pct"] == pct and d.title == f"Save {pct}%"
        assert d.body == "Code W1" and 0 < float(d.offer["offer_propensity"]) <= 1
    for d in logged:
        if d not in sent:
            assert "offer_arm" not in d.offer


def _feedback(wh: Warehouse, strategy: str, rates: dict[str, float], n: int = 200) -> None:
    """``n`` sent messages per arm of ``strategy`` in the log, converting at ``rates``."""
    decisions, rows = [], []
    for j, (arm, rate) in enumerate(rates.items()):
        for i in range(n):
            d = dataclasses.replace(
                _decision(j * n + i, arm, T0, {"code": "W1"}),
                strategy_id=strategy,
                decision_id=f"past-{arm}-{i}",
                idempotency_key=f"past-{arm}-{i}",
            )
            decisions.append(d)
            steps = ["sent"] + (["converted"] if i < round(rate * n) else [])
            rows += [(f"{d.decision_id}-{s}", d.person_id, T0, strategy, d.decision_id, s)
                     for s in steps]  # fmt: skip
    write_decisions(wh.con, decisions)
    wh.con.executemany(
        "INSERT INTO marketing_feedback (event_id, person_id, ts, campaign_id, decision_id, "
        "event_type) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def test_live_arms_follow_the_feedback_refreshed_after_a_while(tmp_path: Path) -> None:
    cat = load_strategies(_catalogue(tmp_path))
    spec = cat.strategies["weekly_all"]
    now = [0.0]
    live = LiveOfferArms(cat, refresh_s=60.0, clock=lambda: now[0])
    new = [_decision(1000 + i, None, T0, spec.offer) for i in range(300)]
    with Warehouse(":memory:") as wh:
        _feedback(wh, "weekly_all", {"five_off": 0.30, "twenty_off": 0.04})
        first = live.assign(wh.con, new)
        assert live.assign(wh.con, new) == first  # seeded by each message's key
        # the evidence turns round; the cached posterior holds until refresh_s has passed
        wh.con.execute("DELETE FROM marketing_feedback")
        wh.con.execute("DELETE FROM strategy_decisions")
        _feedback(wh, "weekly_all", {"five_off": 0.04, "twenty_off": 0.30})
        now[0] = 59.0
        assert live.assign(wh.con, new) == first
        now[0] = 61.0
        later = live.assign(wh.con, new)
    share = [sum(d.offer["offer_arm"] == "twenty_off" for d in x) / 300 for x in (first, later)]
    assert share[0] < 0.1 < 0.9 < share[1]
    d = next(x for x in later if x.offer["offer_arm"] == "twenty_off")
    assert d.offer["discount_pct"] == 20 and d.offer["code"] == "W1"
    assert 0.9 < float(d.offer["offer_propensity"]) <= 1.0
    # control-arm and suppressed messages keep the strategy's offer; an arm is never redrawn
    held_out = dataclasses.replace(new[0], arm="control")
    dropped = dataclasses.replace(new[1], status="suppressed")
    assert live.assign(wh.con, [held_out, dropped, d]) == [held_out, dropped, d]


def test_live_events_carry_the_arm_into_the_message_and_the_log(tmp_path: Path) -> None:
    own = [
        {**a, "title": "Save ${offer_discount_pct}%", "body": "Code ${offer_code}"} for a in ARMS
    ]
    cat = load_strategies(_catalogue(tmp_path, own, strategy="ev_route"))
    with Warehouse(":memory:") as wh:
        fill(wh)
        _feedback(wh, "ev_route", {"five_off": 0.02, "twenty_off": 0.40})
        eng = StrategyEngine(wh, cat, profile_ttl_s=0)
        out = eng.on_event(route("V1", "2026-02-10T11:00:00Z"))
        logged = {d.decision_id: d for d in read_decisions(wh.con)}
    top = next(d for d in out if d.strategy_id == "ev_route")
    assert top.status == "send"
    pct = {"five_off": 5, "twenty_off": 20}[str(top.offer["offer_arm"])]
    assert (top.title, top.body, top.offer["discount_pct"]) == (f"Save {pct}%", "Code W1", pct)
    assert logged[top.decision_id].offer == top.offer  # the arm is in the decision log
    low = next(d for d in out if d.strategy_id == "ev_route_low")
    assert "offer_arm" not in low.offer  # a strategy without arms keeps its offer
