"""Cleaning rules declared in contracts: GPS drift, CAN jumps, monotonic odometer, ffill, as-of."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autopersona.ingest.engine import ingest
from autopersona.store.warehouse import Warehouse

T0 = pd.Timestamp("2026-01-05 08:00:00", tz="UTC")


def _motion(n: int = 60, spike_at: int | None = None) -> pd.DataFrame:
    ts = [T0 + pd.Timedelta(seconds=i) for i in range(n)]
    lat = 31.2 + np.arange(n) * 10 / 111_195  # 10 m/s northwards
    if spike_at is not None:
        lat[spike_at] += 500 / 111_195  # one fix 500 m away and back
    return pd.DataFrame({"vin": "V1", "ts": ts, "lat": lat, "lon": 121.4, "speed_mps": 10.0})


def test_gps_drift_spike_is_quarantined(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "motion.parquet"
    _motion(spike_at=30).to_parquet(p)
    rep = ingest([p], wh)
    assert (rep.loaded, rep.quarantined) == (59, 1)
    row, field, reason = wh.sql("SELECT row_number, field, reason FROM _quarantine")[0]
    assert (row, field) == (31, "lat")
    assert reason == "GPS drift: implied speed 510.0 m/s in, 490.0 m/s out (limit 90)"


def test_fast_but_consistent_motion_is_not_drift(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "motion.parquet"
    df = _motion()
    df["lat"] = 31.2 + np.arange(len(df)) * 80 / 111_195  # 80 m/s, under the 90 m/s limit
    df.to_parquet(p)
    assert ingest([p], wh).quarantined == 0


def _signals(soc: list[float | None], odo: list[float] | None = None) -> pd.DataFrame:
    n = len(soc)
    return pd.DataFrame(
        {
            "vin": "V1",
            "ts": [T0 + pd.Timedelta(seconds=10 * i) for i in range(n)],
            "soc_pct": soc,
            "odometer_km": odo if odo is not None else [1000.0 + 0.1 * i for i in range(n)],
        }
    )


def test_can_signal_jump_is_quarantined_but_a_real_drop_is_kept(
    wh: Warehouse, tmp_path: Path
) -> None:
    p = tmp_path / "vehicle_signals.parquet"
    soc = [80.0, 79.9, 79.8, 30.0, 79.7, 79.6, 79.5]
    _signals(soc).to_parquet(p)
    rep = ingest([p], wh)
    assert rep.quarantined == 1
    assert (
        wh.sql("SELECT reason FROM _quarantine")[0][0]
        == "signal jump in soc_pct: 79.8 -> 30.0 -> 79.7"
    )


def test_odometer_going_backwards_is_quarantined(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "vehicle_signals.parquet"
    _signals([80.0] * 5, odo=[100.0, 100.5, 99.0, 101.0, 101.5]).to_parquet(p)
    rep = ingest([p], wh)
    assert rep.quarantined == 1
    assert (
        wh.sql("SELECT reason FROM _quarantine")[0][0]
        == "odometer_km went backwards: 99.0 after 100.5"
    )


# asserts on the clear vehicle ids of its rows: in clear (AUTOPERSONA_PSEUDONYMISE=0)
@pytest.mark.usefixtures("clear_identifiers")
def test_ffill_carries_the_previous_value_within_a_vehicle(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "vehicle_signals.parquet"
    df = pd.concat([_signals([80.0, None, None, 79.0]), _signals([None, 50.0]).assign(vin="V2")])
    df.to_parquet(p)
    ingest([p], wh)
    got = wh.sql("SELECT vin, soc_pct FROM vehicle_signals ORDER BY vin, ts")
    assert got == [
        ("V1", 80.0),
        ("V1", 80.0),
        ("V1", 80.0),
        ("V1", 79.0),
        ("V2", None),
        ("V2", 50.0),
    ]


# asserts on the clear vehicle ids of its rows: in clear (AUTOPERSONA_PSEUDONYMISE=0)
@pytest.mark.usefixtures("clear_identifiers")
def test_fill_rule_uses_the_declared_default(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "vehicles.csv"
    p.write_text("vin,energy_type,adas_equipped\nV1,BEV,\nV2,ICE,true\n")
    ingest([p], wh)
    assert wh.sql("SELECT vin, adas_equipped FROM vehicles ORDER BY vin") == [
        ("V1", False),
        ("V2", True),
    ]


def test_asof_alignment_view(wh: Warehouse, tmp_path: Path) -> None:
    m = tmp_path / "motion.parquet"
    _motion(n=100).to_parquet(m)
    s = tmp_path / "vehicle_signals.parquet"
    _signals([90.0 - i for i in range(5)]).to_parquet(s)  # every 10 s for 40 s
    ingest([m, s], wh)
    rows = wh.sql(
        "SELECT epoch(ts - TIMESTAMPTZ '2026-01-05 08:00:00+00')::INT, soc_pct "
        "FROM motion_aligned ORDER BY ts"
    )
    got = dict(rows)
    assert got[0] == 90.0 and got[9] == 90.0 and got[10] == 89.0 and got[45] == 86.0
    assert got[70] == 86.0  # 30 s after the last sample: still within tolerance
    assert got[71] is None  # older than the 30 s tolerance: not attached


# asserts on the clear vehicle ids of its rows: in clear (AUTOPERSONA_PSEUDONYMISE=0)
@pytest.mark.usefixtures("clear_identifiers")
def test_quarantined_rows_keep_the_raw_record(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "motion.parquet"
    _motion(spike_at=10).to_parquet(p)
    ingest([p], wh)
    import json

    raw = json.loads(wh.sql("SELECT raw FROM _quarantine")[0][0])
    assert raw["vin"] == "V1"
    assert math.isclose(raw["lat"], 31.2 + 10 * 10 / 111_195 + 500 / 111_195)


@pytest.mark.parametrize("n_vehicles", [1, 3])
def test_cleaning_is_per_vehicle(wh: Warehouse, tmp_path: Path, n_vehicles: int) -> None:
    # two vehicles far apart, rows interleaved: no drift across vehicles
    frames = [_motion().assign(vin=f"V{k}", lon=121.4 + k) for k in range(n_vehicles)]
    df = pd.concat(frames).sort_values("ts", kind="stable")
    p = tmp_path / "motion.parquet"
    df.to_parquet(p)
    assert ingest([p], wh).quarantined == 0
