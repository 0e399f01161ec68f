"""Helpers of the strategy tests: a tiny hand-made warehouse and the engine's catalogues."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from autopersona.store.profiles import open_store
from autopersona.store.warehouse import Warehouse
from autopersona.strategy.spec import StrategyCatalogue, load_strategies

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2025, 6, 1, tzinfo=UTC)


def small_catalogue(channels: str | None = None) -> StrategyCatalogue:
    """The engine-test strategies with the built-in (or a fixture) channels file."""
    ch = FIXTURES / channels / "channels.yaml" if channels else None
    return load_strategies(FIXTURES / "engine", channels=ch)


def fill(wh: Warehouse) -> None:
    """Three vehicles in three time zones, their accounts, consents and tier tags."""
    wh.con.execute(
        "INSERT INTO vehicles (vin, brand, model, energy_type, msrp_cny, range_km, timezone) "
        "VALUES ('V1', 'Aurelis', 'S9', 'BEV', 600000, 650, 'Europe/Berlin'), "
        "('V2', 'Meridian', 'M5', 'BEV', 250000, 580, 'America/New_York'), "
        "('V3', 'Zhiyuan', 'C3', 'ICE', 90000, 650, 'Asia/Shanghai')"
    )
    wh.con.execute(
        "INSERT INTO accounts (account_id, source, vin, timezone) VALUES "
        "('OWN-1', 'owner', 'V1', 'Europe/Berlin'), ('APP-1', 'app', 'V1', NULL), "
        "('OWN-2', 'owner', 'V2', 'America/New_York'), ('DLR-2', 'dealer_crm', 'V2', NULL), "
        "('OWN-3', 'owner', 'V3', 'Asia/Shanghai'), ('DLR-3', 'dealer_crm', 'V3', NULL)"
    )
    rows = []
    for acc, ch in (
        ("OWN-1", "head_unit"),
        ("APP-1", "app"),
        ("OWN-2", "head_unit"),
        ("DLR-2", "sms"),
        ("DLR-2", "email"),
        ("OWN-3", "head_unit"),
        ("DLR-3", "sms"),
        ("DLR-3", "email"),
    ):
        rows.append((acc, "marketing", ch, True, T0, "test"))
    wh.con.executemany("INSERT INTO consents VALUES (?, ?, ?, ?, ?, ?)", rows)
    tiers = {"V1": "luxury", "V2": "mid", "V3": "economy"}
    df = pd.DataFrame(
        [
            {
                "entity_type": "vin",
                "entity": v,
                "tag_id": "l1_vehicle_tier",
                "value": t,
                "score": 1.0,
                "reasons": "{}",
                "as_of": T0,
                "catalogue_version": "test",
                "model_version": None,
            }
            for v, t in tiers.items()
        ]
    )
    open_store(warehouse=wh).write(df)


def route(vin: str, ts: str, route_km: float = 400, left: float = 150, **extra: object) -> dict:
    """A route_planned event."""
    payload: dict[str, object] = {"route_km": route_km, "remaining_range_km": left, **extra}
    return {"vin": vin, "type": "route_planned", "ts": ts, "payload": payload}
