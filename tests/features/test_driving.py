"""Driving features: dictionary consistency, bad input, incremental builds, CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from autopersona.cli import app
from autopersona.features.build import build_features, period_floor
from autopersona.features.dictionary import domains, feature_dictionary
from autopersona.features.driving import driving_features
from autopersona.features.engines import DuckDBEngine
from autopersona.ingest.engine import ingest
from autopersona.store.warehouse import Warehouse

# Feature steps group by whatever identifies a vehicle; these tests score them against the
# simulator's truth and name vehicles by their clear VINs: in clear (AUTOPERSONA_PSEUDONYMISE=0;
# features on pseudonyms: tests/privacy/test_pseudo_pipeline.py).
pytestmark = pytest.mark.usefixtures("clear_identifiers_module")

T0 = pd.Timestamp("2026-01-05 08:00:00", tz="UTC")  # a Monday


def _motion(
    vin: str,
    n: int,
    *,
    speed: float = 10.0,
    accel: list[float] | None = None,
    start: pd.Timestamp = T0,
    imu: bool = True,
) -> pd.DataFrame:
    a = np.zeros(n) if accel is None else np.asarray(accel, dtype=float)
    return pd.DataFrame(
        {
            "vin": vin,
            "ts": [start + pd.Timedelta(seconds=i) for i in range(n)],
            "lat": 31.2 + np.arange(n) * speed / 111_195,
            "lon": 121.4,
            "speed_mps": speed,
            "accel_long_mps2": a if imu else np.nan,
            "accel_lat_mps2": 0.0 if imu else np.nan,
        }
    )


def _load(wh: Warehouse, tmp: Path, **tables: pd.DataFrame) -> None:
    for name, df in tables.items():
        p = tmp / f"{name}.parquet"
        df.to_parquet(p)
        ingest([p], wh, keep_going=False)


def test_every_output_column_is_declared(wh: Warehouse, tmp_path: Path) -> None:
    _load(wh, tmp_path, motion=_motion("V1", 120))
    df = driving_features(DuckDBEngine(wh))
    declared = [f.name for f in domains()["driving"].features]
    assert [c for c in df.columns if c not in ("vin", "period_start")] == declared
    assert all(f.unit and f.definition for f in feature_dictionary().values())


def test_harsh_events_are_runs_not_samples(wh: Warehouse, tmp_path: Path) -> None:
    accel = [0.0] * 100
    accel[10:13] = [3.0, 3.2, 3.1]  # one event over three fixes
    accel[50] = -3.0  # one braking
    accel[60] = -2.6
    accel[62] = -2.7  # two brakings: 2 s apart is a new run
    accel[80] = 2.4  # below the 2.5 threshold
    _load(
        wh,
        tmp_path,
        motion=_motion("V1", 100, accel=accel),
        vehicles=pd.DataFrame({"vin": ["V1"], "energy_type": ["BEV"], "body_type": ["sedan"]}),
    )
    r = driving_features(DuckDBEngine(wh)).iloc[0]
    assert (r.harsh_accel_events, r.harsh_brake_events, r.harsh_corner_events) == (1, 3, 0)
    # distance from the speed integral (no odometer): 100 s at 10 m/s = 1 km
    assert r.distance_km == pytest.approx(1.0)
    assert r.harsh_brake_per_100km == pytest.approx(300.0)


def test_class_thresholds_apply(wh: Warehouse, tmp_path: Path) -> None:
    accel = [0.0] * 50
    accel[20] = 2.4  # harsh for an SUV (2.3), not for a sedan (2.5)
    _load(
        wh,
        tmp_path,
        motion=pd.concat([_motion("SUV1", 50, accel=accel), _motion("CAR1", 50, accel=accel)]),
        vehicles=pd.DataFrame(
            {"vin": ["SUV1", "CAR1"], "energy_type": ["ICE", "ICE"], "body_type": ["suv", "sedan"]}
        ),
    )
    df = driving_features(DuckDBEngine(wh)).set_index("vin")
    assert df.loc["SUV1", "harsh_accel_events"] == 1
    assert df.loc["CAR1", "harsh_accel_events"] == 0


def test_bad_input_gives_defined_results(wh: Warehouse, tmp_path: Path) -> None:
    single = _motion("ONE", 1)
    parked = _motion("PARK", 300, speed=0.0)
    no_imu = _motion("NOIMU", 200, imu=False)
    unsorted = _motion("BACK", 100).sample(frac=1.0, random_state=1)
    _load(wh, tmp_path, motion=pd.concat([single, parked, no_imu, unsorted]))
    df = driving_features(DuckDBEngine(wh)).set_index("vin")
    assert set(df.index) == {"ONE", "PARK", "NOIMU", "BACK"}
    # a single fix, or a parked week: no distance, so no per-100 km rates (null, not inf)
    for vin in ("ONE", "PARK"):
        assert df.loc[vin, "distance_km"] < 1.0
        assert pd.isna(df.loc[vin, "harsh_brake_per_100km"])
        assert pd.isna(df.loc[vin, "aggressiveness_index"])
    assert df.loc["PARK", "moving_s"] == 0 and pd.isna(df.loc["PARK", "mean_speed_kmh"])
    # missing IMU: event counts are zero, IMU means are null
    assert df.loc["NOIMU", "harsh_accel_events"] == 0
    assert pd.isna(df.loc["NOIMU", "accel_abs_mean"])
    # input order does not matter
    assert df.loc["BACK", "samples"] == 100 and df.loc["BACK", "distance_km"] == pytest.approx(1.0)


def test_night_share_uses_local_time_across_dst(wh: Warehouse, tmp_path: Path) -> None:
    # 2026-03-08 is the US spring-forward day: 06:30 UTC is 22:30 PST the day before (night);
    # 14:30 UTC is 07:30 PDT (day).
    start_night = pd.Timestamp("2026-03-08 06:30:00", tz="UTC")
    start_day = pd.Timestamp("2026-03-09 14:30:00", tz="UTC")
    m = pd.concat([_motion("LA", 600, start=start_night), _motion("LA", 600, start=start_day)])
    _load(
        wh,
        tmp_path,
        motion=m,
        vehicles=pd.DataFrame(
            {"vin": ["LA"], "energy_type": ["BEV"], "timezone": ["America/Los_Angeles"]}
        ),
    )
    df = driving_features(DuckDBEngine(wh), period="month")
    assert df.iloc[0].night_share == pytest.approx(0.5)


def test_incremental_build_equals_full_and_is_idempotent(
    wh: Warehouse, tmp_path: Path, grant_consent: Callable[..., None]
) -> None:
    weeks = [T0 + pd.Timedelta(days=7 * k) for k in range(3)]
    m = pd.concat([_motion(v, 200, start=w) for w in weeks for v in ("A", "B")])
    _load(wh, tmp_path, motion=m)
    grant_consent(wh, vins=["A", "B"])  # the build keeps consenting vehicles only
    full = build_features(wh, full=True, only=["driving"])
    assert full.rows == {"driving": 6}
    all_rows = wh.frame(
        "SELECT * EXCLUDE (computed_at) FROM features_driving ORDER BY vin, period_start"
    )
    again = build_features(wh, only=["driving"])  # from the latest stored week only
    assert again.since == period_floor(weeks[-1], "week").isoformat()
    assert again.rows == {"driving": 2}
    build_features(wh, since=weeks[1].date(), only=["driving"])
    after = wh.frame(
        "SELECT * EXCLUDE (computed_at) FROM features_driving ORDER BY vin, period_start"
    )
    pd.testing.assert_frame_equal(all_rows, after)


def test_cli_build_and_list(tmp_path: Path, grant_consent: Callable[..., None]) -> None:
    db = tmp_path / "w.duckdb"
    with Warehouse(db) as wh:
        _load(wh, tmp_path, motion=_motion("V1", 120))
        grant_consent(wh, vins=["V1"])
    r = CliRunner().invoke(app, ["features", "build", "-w", str(db), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert rows["driving"] == 1
    assert set(rows) == {"driving", "cabin", "service", "charging", "commerce", "mobility"}
    r = CliRunner().invoke(app, ["features", "build", "-w", str(db), "--since", "yesterday"])
    assert r.exit_code == 2 and "is not a date" in r.output
    r = CliRunner().invoke(app, ["features", "list", "--json", "--domain", "driving"])
    names = {f["name"] for f in json.loads(r.stdout)}
    assert {"harsh_brake_per_100km", "aggressiveness_index", "night_share"} <= names


def test_the_pass_is_order_and_batch_free(wh: Warehouse, tmp_path: Path) -> None:
    """Small batches, parallel row-id ranges and shuffled rows give the single-stream result.

    A (vehicle, hour) then spans batches and streams (partial rows add up), and harsh events
    span batch edges (the candidates are ordered before their edges are found).
    """
    rng = np.random.default_rng(7)
    accel = rng.normal(0.0, 1.6, 900).tolist()  # many harsh fixes and runs
    m = pd.concat(
        [
            _motion(v, 900, speed=s, accel=accel, start=T0 + pd.Timedelta(minutes=50 + 40 * k))
            for k, (v, s) in enumerate([("A", 12.0), ("B", 25.0), ("C", 3.0)])
        ]
    )
    m["following_distance_m"] = np.where(np.arange(len(m)) % 3 == 0, np.nan, 14.0)
    _load(
        wh,
        tmp_path,
        motion=m.sample(frac=1.0, random_state=3),
        vehicles=pd.DataFrame({"vin": ["A", "B"], "energy_type": ["BEV", "ICE"]}),
    )
    eng = DuckDBEngine(wh)
    whole = driving_features(eng)
    eng.batch_rows = 64
    wh.con.execute("SET threads = 4")
    assert len(eng._row_ranges("motion")) == 4
    split = driving_features(eng)
    pd.testing.assert_frame_equal(whole, split, rtol=1e-9)
    assert whole["harsh_accel_events"].sum() > 10 and set(whole["vin"]) == {"A", "B", "C"}
