"""The strategy stage of ``autopersona demo``: run the strategies over the demo fleet."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from autopersona.store.warehouse import Warehouse
    from autopersona.strategy.decision import Decision

__all__ = ["demo_stage", "route_events"]


def route_events(wh: Warehouse, at: datetime) -> list[dict[str, Any]]:
    """One synthetic ``route_planned`` event per battery-electric vehicle at ``at``.

    The remaining range is the rated range times the vehicle's latest state of charge (or a
    third of it when no signal is stored); the planned route is 1.2 × the remaining range
    for every second vehicle (beyond range) and 0.5 × for the others.  Every third vehicle
    is moving (20 m/s) when it plans.
    """
    rows = wh.sql(
        """SELECT v.vin, v.range_km,
                  (SELECT s.soc_pct FROM vehicle_signals s WHERE s.vin = v.vin
                   AND s.soc_pct IS NOT NULL ORDER BY s.ts DESC LIMIT 1)
           FROM vehicles v WHERE v.energy_type = 'BEV' AND v.range_km > 0 ORDER BY v.vin"""
    )
    out = []
    for i, (vin, range_km, soc) in enumerate(rows):
        remaining = float(range_km) * (float(soc) / 100 if soc is not None else 1 / 3)
        out.append(
            {
                "vin": vin,
                "type": "route_planned",
                "ts": (at + timedelta(minutes=i)).isoformat(),
                "event_id": f"demo-route-{i}",
                "payload": {
                    "route_km": round(remaining * (1.2 if i % 2 == 0 else 0.5), 1),
                    "remaining_range_km": round(remaining, 1),
                    "speed_mps": 20.0 if i % 3 == 0 else 0.0,
                },
            }
        )
    return out


def demo_stage(console: Console, wh: Warehouse) -> list[Decision]:
    """Refresh profiles if needed, run batch triggers and live route events, print a table.

    Returns every decision (sends, suppressions, holds and releases) for delivery.
    The as-of time is 09:00 UTC on the day after the data ends (the profile stage refreshes
    as of that day's start).  Profiles are refreshed (rule and
    score tags) when the store has none; persons come from identity links when present.
    """
    from autopersona.store.profiles import open_store, refresh
    from autopersona.strategy.cli import print_summary
    from autopersona.strategy.engine import StrategyEngine, summarise
    from autopersona.tags.report import data_end

    row = wh.sql("SELECT max(ts) FROM motion")[0][0]
    if row is None:
        console.print("strategies: no motion data, nothing to evaluate")
        return []
    # the morning after the data ends: profiles refreshed as of that day are current then
    at = data_end(wh) + timedelta(hours=9)
    ps = open_store(warehouse=wh)
    if ps.count() == 0:
        refresh(wh, ps, as_of=at, due_only=False)
    console.rule("[bold]Strategy[/] · scenario–strategy matrix over the fleet")
    eng = StrategyEngine(wh, profiles=ps, clock=lambda: at)
    decisions: list[Decision] = eng.run_batch(at)
    for ev in route_events(wh, at):
        decisions.extend(eng.on_event(ev))
    released = [
        d
        for ev in route_events(wh, at)
        for d in eng.release_held(ev["vin"], 0.0, at + timedelta(minutes=30))
    ]
    decisions.extend(released)
    ids = [s.id for s in eng.catalogue.enabled()]
    print_summary(console, summarise(decisions, ids), f"Decisions as of {at.isoformat()}")
    sends = sum(1 for d in decisions if d.status == "send")
    console.print(
        f"{len(decisions)} decisions logged in strategy_decisions: {sends} to send, "
        f"{len(released)} held head-unit messages released after parking"
    )
    return decisions
