"""The engine end to end on a tiny warehouse: triggers, guards, holds, the decision log."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from autopersona.store.warehouse import Warehouse
from autopersona.strategy import EventError, StrategyEngine, idempotency_key, read_decisions

from .stratcheck import T0, route, small_catalogue


def engine(wh: Warehouse, channels: str | None = None) -> StrategyEngine:
    return StrategyEngine(wh, small_catalogue(channels), profile_ttl_s=0)


def logged(wh: Warehouse) -> list:
    return read_decisions(wh.con)


def withdraw(wh: Warehouse, account: str, channel: str, ts: datetime) -> None:
    wh.con.execute(
        "INSERT INTO consents VALUES (?, 'marketing', ?, false, ?, 'preference_centre')",
        [account, channel, ts],
    )


def test_event_fires_only_when_route_exceeds_range(small_wh: Warehouse) -> None:
    eng = engine(small_wh)
    noon_berlin = "2026-02-10T11:00:00+00:00"
    sent = eng.on_event(route("V1", noon_berlin, 400, 150))
    top = [d for d in sent if d.strategy_id == "ev_route"]
    assert [(d.status, d.channel, d.trigger) for d in top] == [("send", "head_unit", "event")]
    assert top[0].title == "Charge on the way"
    assert top[0].body == "400 km planned, 150 km left in your S9."
    assert eng.on_event(route("V2", "2026-02-10T17:00:00Z", 100, 150))[0].strategy_id == (
        "ev_route_low"  # no condition on the low-priority play; ev_route's condition is false
    )
    assert eng.on_event(route("V3", noon_berlin, 400, 150)) == []  # ICE: not in the audience
    assert eng.on_event({"vin": "V1", "type": "door_opened", "ts": noon_berlin}) == []
    assert len(logged(small_wh)) == 3


def test_arbitration_keeps_the_higher_priority(small_wh: Warehouse) -> None:
    out = engine(small_wh).on_event(route("V1", "2026-02-10T11:00:00Z"))
    by = {d.strategy_id: d for d in out}
    assert by["ev_route"].status == "send"
    assert (by["ev_route_low"].status, by["ev_route_low"].guard) == ("suppressed", "arbitration")
    assert "ev_route (priority 90)" in by["ev_route_low"].reason


@pytest.mark.parametrize(
    ("vin", "ts", "expected"),
    [
        # Berlin: head unit quiet 22:00-07:00, app 22:00-08:00 local
        ("V1", "2026-02-10T22:30:00Z", ("suppressed", "quiet_hours", None)),  # 23:30 CET
        ("V1", "2026-03-28T05:30:00Z", ("suppressed", "quiet_hours", None)),  # 06:30 CET
        ("V1", "2026-03-29T05:30:00Z", ("send", None, "head_unit")),  # 07:30 CEST, after DST
        # New York: 06:30 EST the day before DST, 07:30 EDT on the change day (2026-03-08)
        ("V2", "2026-03-07T11:30:00Z", ("suppressed", "quiet_hours", None)),
        ("V2", "2026-03-08T11:30:00Z", ("send", None, "head_unit")),
    ],
)
def test_quiet_hours_in_local_time_across_dst(
    small_wh: Warehouse, vin: str, ts: str, expected: tuple[str, str | None, str | None]
) -> None:
    d = next(x for x in engine(small_wh).on_event(route(vin, ts)) if x.strategy_id == "ev_route")
    assert (d.status, d.guard, d.channel) == expected


def test_quiet_head_unit_falls_back_to_app(small_wh: Warehouse) -> None:
    # 07:30 Berlin in winter (06:30 UTC): head unit free from 07:00, app quiet until 08:00
    d = engine(small_wh).on_event(route("V1", "2026-02-10T06:30:00Z"))[0]
    assert (d.status, d.channel) == ("send", "head_unit")
    # 06:30 Berlin: both quiet; quiet until 07:00 local = 06:00 UTC
    d = engine(small_wh).on_event(route("V1", "2026-02-12T05:30:00Z"))[0]
    assert d.guard == "quiet_hours" and "until 2026-02-12T06:00:00+00:00" in d.reason


def test_withdrawn_consent_stops_sends_at_the_next_event(small_wh: Warehouse) -> None:
    eng = engine(small_wh)
    t = datetime(2026, 2, 10, 11, tzinfo=UTC)
    first = eng.on_event(route("V1", t.isoformat()))[0]
    assert (first.status, first.channel) == ("send", "head_unit")
    withdraw(small_wh, "OWN-1", "head_unit", t + timedelta(minutes=1))
    nxt = eng.on_event(route("V1", (t + timedelta(days=2)).isoformat()))[0]
    assert (nxt.status, nxt.channel) == ("send", "app_push")  # falls back to the app
    withdraw(small_wh, "APP-1", "app", t + timedelta(days=2, minutes=1))
    last = eng.on_event(route("V1", (t + timedelta(days=4)).isoformat()))[0]
    assert (last.status, last.guard, last.channel) == ("suppressed", "consent", None)
    assert "withdrawn (account OWN-1" in last.reason and "withdrawn (account APP-1" in last.reason


def test_driving_safety_holds_until_parked_then_releases_or_expires(small_wh: Warehouse) -> None:
    eng = engine(small_wh)
    t = datetime(2026, 2, 10, 11, tzinfo=UTC)
    held = eng.on_event(route("V1", t.isoformat(), speed_mps=22.0))[0]
    assert (held.status, held.guard, held.channel) == ("held", "driving_safety", "head_unit")
    assert held.not_after == t + timedelta(hours=12)
    assert eng.release_held("V1", 15.0, t + timedelta(minutes=5)) == []  # still moving
    rel = eng.release_held("V1", 0.0, t + timedelta(minutes=20))
    assert [(d.status, d.idempotency_key) for d in rel] == [("send", held.idempotency_key)]
    assert eng.release_held("V1", 0.0, t + timedelta(minutes=25)) == []  # released once
    # a second hold that is never released in time expires
    t2 = t + timedelta(days=2)
    held2 = eng.on_event(route("V1", t2.isoformat(), speed_mps=30.0))[0]
    assert held2.status == "held"
    exp = eng.release_held("V1", 0.0, t2 + timedelta(hours=13))
    assert [(d.status, d.guard) for d in exp] == [("expired", "driving_safety")]
    statuses = Counter(d.status for d in logged(small_wh) if d.strategy_id == "ev_route")
    assert statuses == {"held": 2, "send": 1, "expired": 1}


def test_batch_expires_overdue_holds(small_wh: Warehouse) -> None:
    eng = engine(small_wh)
    t = datetime(2026, 2, 10, 11, tzinfo=UTC)
    held = eng.on_event(route("V1", t.isoformat(), speed_mps=22.0))[0]
    out = eng.run_batch(t + timedelta(days=1))
    exp = [d for d in out if d.status == "expired"]
    assert [d.idempotency_key for d in exp] == [held.idempotency_key]


def test_same_event_twice_is_a_duplicate(small_wh: Warehouse) -> None:
    eng = engine(small_wh)
    ev = route("V1", "2026-02-10T11:00:00Z")
    ev["event_id"] = "E-1"
    first = eng.on_event(ev)[0]
    again = eng.on_event(ev)[0]
    assert first.status == "send" and (again.status, again.guard) == ("suppressed", "duplicate")
    assert (
        first.idempotency_key == again.idempotency_key == idempotency_key("ev_route", "V1", "E-1")
    )


@pytest.mark.parametrize(
    ("vin", "late_local", "next_day_utc"),
    [
        # New York, 23:30 / 23:50 EST, then 00:10 the next local day
        ("V2", ["2026-02-11T04:30:00Z", "2026-02-11T04:50:00Z"], "2026-02-11T05:10:00Z"),
        # Berlin on the DST night: 23:30 / 23:50 CET on 28 March, then 00:10 CET on 29 March
        ("V1", ["2026-03-28T22:30:00Z", "2026-03-28T22:50:00Z"], "2026-03-28T23:10:00Z"),
    ],
)
def test_person_cap_counts_the_local_calendar_day(
    small_wh: Warehouse, vin: str, late_local: list[str], next_day_utc: str
) -> None:
    eng = engine(small_wh, "engine_channels")  # one message per person per local day
    a = eng.on_event(route(vin, late_local[0]))
    b = eng.on_event(route(vin, late_local[1]))
    c = eng.on_event(route(vin, next_day_utc))
    top = [next(d for d in ds if d.strategy_id == "ev_route") for ds in (a, b, c)]
    assert [(d.status, d.guard) for d in top] == [
        ("send", None),
        ("suppressed", "cap_person_day"),
        ("send", None),
    ]


def test_batch_schedule_arms_variants_and_rerun(small_wh: Warehouse) -> None:
    eng = engine(small_wh)
    at = datetime(2026, 2, 11, 12, tzinfo=UTC)  # Wednesday: the week starts on 2026-02-09
    out = eng.run_batch(at)
    assert {d.trigger_key for d in out} == {"2026-02-09"}
    assert {d.person_id for d in out} == {"V1", "V2", "V3"}
    for d in out:
        want = (
            "control"
            if eng.arms.uniform("arm", "weekly_all", "", d.person_id) < 0.5
            else ("treatment")
        )
        assert d.arm == want
        if d.arm == "control":
            assert (d.status, d.guard) == ("suppressed", "holdout")
    v1 = next(d for d in out if d.person_id == "V1")
    assert v1.status == "suppressed" and v1.guard == "consent"  # V1 has no sms/email consent
    v3 = next(d for d in out if d.person_id == "V3")
    assert v3.title == "Other" and v3.body == "Hello"
    v2 = next(d for d in out if d.person_id == "V2")
    assert v3.channel == "email"  # channel rule for economy cars (its control arm logs it)
    assert v2.channel == "email" and "sms: quiet hours" in v2.reason  # 07:00 in New York
    assert len(logged(small_wh)) == 3
    again = eng.run_batch(at + timedelta(hours=1))
    held_out_or_sent = {d.person_id for d in out if d.status == "send" or d.guard == "holdout"}
    assert {d.person_id for d in again if d.guard == "duplicate"} == held_out_or_sent


def test_log_runs_in_the_callers_transaction(small_wh: Warehouse) -> None:
    eng = engine(small_wh)
    cur = small_wh.con.cursor()
    cur.execute("BEGIN TRANSACTION")
    out = eng.on_event(route("V1", "2026-02-10T11:00:00Z"), con=cur)
    assert out
    cur.execute("ROLLBACK")
    assert logged(small_wh) == []
    cur.execute("BEGIN TRANSACTION")
    out = eng.on_event(route("V1", "2026-02-10T11:00:00Z"), con=cur, log=False)
    assert eng.log(out, cur) == len(out)
    cur.execute("COMMIT")
    assert {d.decision_id for d in logged(small_wh)} == {d.decision_id for d in out}
    top = next(d for d in logged(small_wh) if d.strategy_id == "ev_route")
    assert top.offer == {"code": "T1"}


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "route_planned"}, "vin"),
        ({"vin": "V1"}, "type"),
        ({"vin": "V1", "type": "route_planned", "ts": "yesterday"}, "ts"),
        ({"vin": "V1", "type": "route_planned", "payload": [1]}, "payload"),
        ({"vin": "V1", "type": "route_planned", "payload": {"route_km": 3}}, "remaining_range_km"),
        (
            {
                "vin": "V1",
                "type": "route_planned",
                "payload": {"route_km": "far", "remaining_range_km": 3},
            },
            "route_km",
        ),
        ({"vin": "V1", "type": "x", "payload": {"speed_mps": "fast"}}, "speed_mps"),
        ("not an event", "object"),
    ],
)
def test_malformed_events_raise_event_error(small_wh: Warehouse, event: object, field: str) -> None:
    with pytest.raises(EventError, match=field):
        engine(small_wh).on_event(event)  # type: ignore[arg-type]
    assert logged(small_wh) == []


def test_plan_counts_audience_and_consent(small_wh: Warehouse) -> None:
    rows = {r["strategy_id"]: r for r in engine(small_wh).plan(T0 + timedelta(days=1))}
    assert rows["ev_route"]["audience"] == 2 and rows["ev_route"]["triggered"] is None
    assert rows["weekly_all"]["audience"] == 3
    assert rows["weekly_all"]["no_consent"] == 1  # V1: no sms / email consent
    assert rows["weekly_all"]["by_channel"] == {"sms": 1, "email": 1}  # V3: e-mail first


def test_micro_batch_matches_one_by_one(small_wh: Warehouse, tmp_path: object) -> None:
    t = datetime(2026, 2, 10, 11, tzinfo=UTC)
    events: list[object] = []
    for i in range(12):
        vin = ["V1", "V2", "V3"][i % 3]
        ev = route(vin, (t + timedelta(hours=7 * i)).isoformat(), 400 if i % 4 else 50, 150)
        ev["payload"]["speed_mps"] = 25.0 if i == 7 else 0.0  # type: ignore[index]
        events.append(ev)
    events.insert(5, {"vin": "V1", "type": "route_planned", "payload": {"route_km": 1}})
    batch = engine(small_wh).on_events(events)
    assert isinstance(batch[5], EventError)
    with Warehouse(":memory:") as other:
        from .stratcheck import fill

        fill(other)
        eng = engine(other)
        one: list[object] = []
        for ev in events:
            try:
                one.append(eng.on_event(ev))  # type: ignore[arg-type]
            except EventError as exc:
                one.append(exc)

    def key(r: object) -> object:
        if isinstance(r, EventError):
            return str(r)
        return [(d.strategy_id, d.status, d.guard, d.channel, d.idempotency_key) for d in r]  # type: ignore[attr-defined]

    assert [key(r) for r in batch] == [key(r) for r in one]
    assert any(d.status == "held" for r in batch if isinstance(r, list) for d in r)


def test_unlogged_release_is_not_repeated(small_wh: Warehouse) -> None:
    eng = engine(small_wh)
    t = datetime(2026, 2, 10, 11, tzinfo=UTC)
    held = eng.on_event(route("V1", t.isoformat(), speed_mps=22.0))[0]
    assert held.status == "held"
    assert eng.release_held("V2", 0.0, t) == []  # nothing held there
    first = eng.release_held("V1", 0.0, t + timedelta(minutes=3), log=False)
    again = eng.release_held("V1", 0.0, t + timedelta(minutes=4), log=False)
    assert [d.status for d in first] == ["send"] and again == []
    eng.log(first)
    fresh = engine(small_wh)  # a restarted engine reads the log: nothing left to release
    assert fresh.release_held("V1", 0.0, t + timedelta(minutes=5)) == []


@pytest.mark.parametrize("response", ["clicked", "voice_reply"])
def test_fatigue_rests_people_who_never_respond(small_wh: Warehouse, response: str) -> None:
    t = datetime(2026, 2, 10, 11, tzinfo=UTC)
    rows = [
        (f"F{i}", "V1", t - timedelta(days=i + 1), "old", None, "treatment", "app", "sent", None)
        for i in range(6)
    ]
    small_wh.con.executemany(
        "INSERT INTO marketing_feedback (event_id, person_id, ts, campaign_id, decision_id, arm, "
        "channel, event_type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    d = engine(small_wh).on_event(route("V1", t.isoformat()))[0]
    assert (d.status, d.guard) == ("suppressed", "fatigue")
    assert "6 messages in 30 days without a response" in d.reason
    small_wh.con.execute(
        "INSERT INTO marketing_feedback (event_id, person_id, ts, campaign_id, decision_id, arm, "
        "channel, event_type, value) VALUES ('C1', 'V1', ?, 'old', NULL, 'treatment', 'app', "
        "?, NULL)",
        [t - timedelta(days=3, hours=12), response],
    )
    d = engine(small_wh).on_event(route("V1", (t + timedelta(days=2)).isoformat()))[0]
    assert d.status == "send"  # only 3 unanswered since the click or spoken reply


def test_person_of_a_vehicle_follows_the_persons_table(small_wh: Warehouse) -> None:
    # what the live engine partitions its workers by: both vehicles of a person name it
    eng = engine(small_wh)
    assert eng.person_of("V1") == "V1"  # no persons yet: the VIN stands for its owner
    small_wh.con.execute("CREATE TABLE persons (person_id VARCHAR, vins VARCHAR[])")
    small_wh.con.execute("INSERT INTO persons VALUES ('P-7', ['V1', 'V2'])")
    eng.invalidate()  # the directory is cached for profile_ttl_s
    assert [eng.person_of(v) for v in ("V1", "V2", "V3")] == ["P-7", "P-7", "V3"]
