"""The strategy stage of the demo prints sends and suppressions per strategy."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from autopersona.store.warehouse import Warehouse
from autopersona.strategy import read_decisions
from autopersona.strategy.demo import demo_stage, route_events


def test_demo_stage_runs_batch_and_route_events(small_wh: Warehouse) -> None:
    console = Console(record=True, width=200)
    demo_stage(console, small_wh)
    assert "no motion data" in console.export_text()
    small_wh.con.execute(
        "INSERT INTO motion (vin, ts, lat, lon) VALUES ('V1', ?, 52.5, 13.4)",
        [datetime(2026, 2, 10, 10, tzinfo=UTC)],
    )
    evs = route_events(small_wh, datetime(2026, 2, 10, 11, tzinfo=UTC))
    assert [e["vin"] for e in evs] == ["V1", "V2"]  # the battery-electric vehicles
    demo_stage(console, small_wh)
    text = console.export_text()
    for sid in ("t2_bev_long_trip", "t2_brake_wear_commute", "t2_adas_trial_end", "lc_winback"):
        assert sid in text
    logged = read_decisions(small_wh.con)
    assert f"{len(logged)} decisions logged" in text
