"""Attribution report provider: touches from ``marketing_feedback`` up to the first conversion."""

from __future__ import annotations

import pandas as pd
import pytest

from autopersona.evaluation.attribution import attribute, paths
from autopersona.evaluation.attribution_report import add_figures, touches_from_feedback
from autopersona.evaluation.report import Report
from autopersona.store.warehouse import Warehouse

T0 = pd.Timestamp("2026-03-01", tz="UTC")


def event(i, person, hours, channel, kind, camp="c1"):
    return {
        "event_id": f"e{i}",
        "person_id": person,
        "ts": T0 + pd.Timedelta(hours=hours),
        "campaign_id": camp,
        "decision_id": None,
        "arm": "precision",
        "channel": channel,
        "event_type": kind,
        "value": 10.0 if kind == "converted" else None,
    }


EVENTS = [
    ("p1", 0, "email", "sent"),
    ("p1", 1, "email", "delivered"),  # not a touch: the same message
    ("p1", 5, "app", "sent"),
    ("p1", 6, "app", "converted"),
    ("p1", 9, "sms", "sent"),  # after the conversion: not part of the journey
    ("p2", 2, "sms", "sent"),
    ("p2", 3, "app", "sent"),
    ("p3", 4, "none", "converted"),  # organic: no touch before it
    ("p4", 1, "sms", "sent"),
    ("p4", 8, "sms", "converted"),
]


@pytest.fixture
def loaded(wh: Warehouse) -> Warehouse:
    ev = pd.DataFrame(
        [event(i, *e[:2], e[2], e[3]) for i, e in enumerate(EVENTS)]
        + [event(99, "p2", 4, "email", "sent", camp="c2")]  # journeys span campaigns
    )
    wh.con.register("_ev", ev)
    wh.con.execute(
        "INSERT INTO marketing_feedback BY NAME SELECT event_id, person_id, ts, campaign_id, "
        "decision_id, arm, channel, event_type, value FROM _ev"
    )
    wh.con.unregister("_ev")
    return wh


def test_touches_stop_at_the_first_conversion(loaded):
    touches, organic = touches_from_feedback(loaded)
    assert organic == 1
    journeys = touches.groupby("person_id")["channel"].agg(tuple).to_dict()
    assert journeys == {
        "p1": ("email", "app"),
        "p2": ("sms", "app", "email"),
        "p4": ("sms",),
    }
    conv = touches.groupby("person_id")["converted"].max().to_dict()
    assert conv == {"p1": 1, "p2": 0, "p4": 1}


def test_provider_adds_figure_and_shares(loaded):
    rep = Report("t")
    add_figures(rep, loaded)
    fig, table = rep.sections["Attribution"]
    assert "2 converting journeys of 3" in fig.caption and "1 organic" in fig.caption
    touches, _ = touches_from_feedback(loaded)
    expected = attribute(paths(touches, "person_id", "channel", "ts", "converted"))
    assert expected.loc["sms", "last_touch"] == 1.0 and expected.loc["app", "last_touch"] == 1.0
    assert "position_based" in table.body


def test_provider_without_conversions(wh):
    rep = Report("t")
    add_figures(rep, wh)
    assert "No conversion follows a message" in rep.sections["Attribution"][0].body
