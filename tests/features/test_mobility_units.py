"""Mobility steps on small synthetic vehicles: rules, bad input, purposes, the dictionary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from autopersona.features.locations import LocationParams, assign_locations
from autopersona.features.mobility import (
    MOBILITY_FEATURES,
    REPORT_COLUMNS,
    STAY_OUT_COLUMNS,
    TRIP_OUT_COLUMNS,
    WEEKLY_COLUMNS,
    MobilityParams,
    VehicleMobility,
    vehicle_mobility,
)
from autopersona.features.purpose import (
    N_SYMBOLS,
    PURPOSES,
    encode_trips,
    fit_purpose_model,
    name_states,
    prior_model,
)
from autopersona.features.runner import run_per_vehicle
from autopersona.features.trips import (
    TripParams,
    clean_fixes,
    haversine_m,
    segment_trips,
    window_overlap_s,
)

# Feature steps group by whatever identifies a vehicle; these tests score them against the
# simulator's truth and name vehicles by their clear VINs: in clear (AUTOPERSONA_PSEUDONYMISE=0;
# features on pseudonyms: tests/privacy/test_pseudo_pipeline.py).
pytestmark = pytest.mark.usefixtures("clear_identifiers_module")

TZ = "Asia/Shanghai"
HOME = (31.2000, 121.4000)
WORK = (31.2600, 121.4700)  # ~9.5 km away
SHOP = (31.1800, 121.3500)


def _drive(
    start: pd.Timestamp,
    a: tuple[float, float],
    b: tuple[float, float],
    step_s: int = 10,
    speed: float = 12.0,
) -> pd.DataFrame:
    """Fixes every ``step_s`` seconds on the straight line a -> b at ``speed`` m/s."""
    dist = float(haversine_m(a[0], a[1], b[0], b[1]))
    n = max(int(dist / speed / step_s), 2) + 1
    f = np.linspace(0.0, 1.0, n)
    v = np.full(n, speed)
    v[0] = v[-1] = 0.0
    return pd.DataFrame(
        {
            "ts": [start + pd.Timedelta(seconds=step_s * i) for i in range(n)],
            "lat": a[0] + f * (b[0] - a[0]),
            "lon": a[1] + f * (b[1] - a[1]),
            "speed_mps": v,
        }
    )


def _local(day: str, hour: float) -> pd.Timestamp:
    return (pd.Timestamp(day, tz=TZ) + pd.Timedelta(hours=hour)).tz_convert("UTC")


def commuter_week(vin: str = "V1") -> pd.DataFrame:
    """Mon-Fri home->work at 08:00 and back at 17:30, a Saturday shopping trip (local)."""
    parts = []
    for d in range(5):
        day = str((pd.Timestamp("2026-01-05") + pd.Timedelta(days=d)).date())
        parts.append(_drive(_local(day, 8.0), HOME, WORK))
        parts.append(_drive(_local(day, 17.5), WORK, HOME))
    parts.append(_drive(_local("2026-01-10", 10.0), HOME, SHOP))
    parts.append(_drive(_local("2026-01-10", 12.0), SHOP, HOME))
    df = pd.concat(parts, ignore_index=True)
    df.insert(0, "vin", vin)
    return df


@pytest.fixture(scope="module")
def week() -> pd.DataFrame:
    return commuter_week()


@pytest.fixture(scope="module")
def base(week: pd.DataFrame) -> VehicleMobility:
    return vehicle_mobility(week, timezone=TZ)


def _frames_equal(a: VehicleMobility, b: VehicleMobility) -> None:
    for name in ("trips", "stays", "locations", "weekly"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


# ----------------------------------------------------------------------------- happy path
def test_synthetic_commuter(base: VehicleMobility) -> None:
    vm = base
    trips, weekly, locs = vm.trips, vm.weekly, vm.locations
    assert list(trips.columns) == TRIP_OUT_COLUMNS
    assert list(vm.stays.columns) == STAY_OUT_COLUMNS
    assert list(vm.report.columns) == REPORT_COLUMNS
    assert len(trips) == 12
    assert trips["start_hour_local"].tolist()[:2] == [8, 17]
    assert trips["weekday_local"].tolist()[:2] == [0, 0]
    assert not trips["night"].any()
    # distances: haversine sum = straight line; speed integral within the step error
    line = float(haversine_m(*HOME, *WORK)) / 1000
    assert trips["distance_km"].iloc[0] == pytest.approx(line, rel=1e-6)
    assert trips["speed_distance_km"].iloc[0] == pytest.approx(line, rel=0.02)
    assert trips["dwell_s"].iloc[-1] != trips["dwell_s"].iloc[-1]  # NaN for the last trip
    home = locs[locs["label"] == "home"]
    work = locs[locs["label"] == "work"]
    assert float(haversine_m(home.lat.iloc[0], home.lon.iloc[0], *HOME)) < 20
    assert float(haversine_m(work.lat.iloc[0], work.lon.iloc[0], *WORK)) < 20
    assert trips["dest_kind"].iloc[:10].tolist() == ["work", "home"] * 5
    assert (trips["purpose"].iloc[:10] == "commute").all()
    assert (trips["purpose"].iloc[10:] == "leisure").all()
    assert weekly[["period", "n_trips"]].values.tolist() == [["2026-W02", 12]]
    w = weekly.iloc[0]
    # three OD pairs: 5 x H->W, 5 x W->H, 1 x H->S, 1 x S->H
    p = np.array([5, 5, 1, 1]) / 12
    h = float(-(p * np.log2(p)).sum())
    assert w["od_entropy_bits"] == pytest.approx(h)
    assert w["trip_regularity"] == pytest.approx(1 - h / math.log2(12))
    assert w["commute_share"] == pytest.approx(10 / 12)
    assert w["reason"] is None or w["reason"] != w["reason"]
    assert list(weekly.columns) == WEEKLY_COLUMNS


def test_dwell_weighted_stay_sits_on_the_parked_fix(base: VehicleMobility) -> None:
    stays = base.stays
    work_id = base.locations.loc[base.locations["label"] == "work", "location_id"].iloc[0]
    at_work = stays[stays["location_id"] == work_id]
    d = haversine_m(at_work["lat"], at_work["lon"], *WORK)
    assert (d < 5).all()  # the approach fixes (up to 100 m away) weigh seconds, the stay hours


def test_night_and_workday_windows_use_local_time() -> None:
    mon = 4 * 86400  # 1970-01-05 was a Monday
    # Friday 20:00 -> Monday 08:00: three nights of 8 h, no workday time
    fri = mon + 4 * 86400
    assert window_overlap_s([fri + 20 * 3600], [fri + 3 * 86400 + 8 * 3600], 22, 6)[0] == 24 * 3600
    assert (
        window_overlap_s([fri + 20 * 3600], [fri + 3 * 86400 + 8 * 3600], 9, 17, (0, 1, 2, 3, 4))[0]
        == 0
    )
    # a daylight-saving day does not break anything
    t = pd.DatetimeIndex(["2026-03-29 00:30", "2026-03-29 03:30"], tz="UTC").as_unit("ns").asi8
    fx = clean_fixes(
        pd.DataFrame({"ts": pd.to_datetime(t, utc=True), "lat": [48.0, 48.1], "lon": [11.0, 11.0]})
    )[0]
    trips, _ = segment_trips(fx, timezone="Europe/Berlin", params=TripParams(gap_s=1e6))
    assert trips["start_hour_local"].tolist() == [1]


# ----------------------------------------------------------------------------- bad input
def test_single_fix() -> None:
    one = pd.DataFrame(
        {"vin": ["V"], "ts": [_local("2026-01-06", 9.0)], "lat": [31.0], "lon": [121.0]}
    )
    vm = vehicle_mobility(one, timezone=TZ)
    r = vm.report.iloc[0]
    assert (r["status"], r["n_fixes_used"], r["n_trips"]) == ("no_trips", 1, 0)
    assert "1 usable fix" in r["reason"]
    assert len(vm.trips) == 0 and len(vm.stays) == 0
    w = vm.weekly.iloc[0]
    assert (w["period"], w["n_trips"], w["distance_km"]) == ("2026-W02", 0, 0.0)
    assert math.isnan(w["commute_share"]) and math.isnan(w["night_trip_share"])
    assert math.isnan(w["radius_of_gyration_km"]) and math.isnan(w["home_lat"])
    assert "1 usable fix" in w["reason"]


def test_no_fixes_is_skipped_and_counted() -> None:
    for frame in (pd.DataFrame(), pd.DataFrame({"ts": [], "lat": [], "lon": []})):
        vm = vehicle_mobility(frame, vin="V")
        assert vm.report["status"].iloc[0] == "skipped"
        assert len(vm.trips) == len(vm.weekly) == 0
    bad = pd.DataFrame(
        {"ts": [pd.NaT, _local("2026-01-06", 9)], "lat": [31.0, np.nan], "lon": [121.0, 121.0]}
    )
    vm = vehicle_mobility(bad, vin="V")
    assert vm.report[["status", "n_invalid", "reason"]].iloc[0].tolist() == [
        "skipped",
        2,
        "no usable fixes",
    ]
    out = run_per_vehicle(_report_of, [bad, commuter_week("V2")], workers=1)
    assert out["status"].tolist() == ["skipped", "ok"]


def _report_of(df: pd.DataFrame) -> pd.DataFrame:
    return vehicle_mobility(df, vin=str(df["vin"].iloc[0]) if "vin" in df else "V").report


def test_parked_all_week() -> None:
    """A tracker pinging every 10 min from one spot for a week: no trip, one long stay."""
    ts = pd.date_range(_local("2026-01-05", 0.0), periods=7 * 144, freq="10min")
    rng = np.random.default_rng(0)
    parked = pd.DataFrame(
        {
            "vin": "P",
            "ts": ts,
            "lat": HOME[0] + rng.normal(0, 2e-5, len(ts)),
            "lon": HOME[1] + rng.normal(0, 2e-5, len(ts)),
            "speed_mps": 0.0,
        }
    )
    vm = vehicle_mobility(parked, timezone=TZ)
    r = vm.report.iloc[0]
    assert r["status"] == "no_trips" and r["n_trips"] == 0
    assert r["n_short_dropped"] == len(ts)  # every 10-min gap splits: all segments are 1 fix
    assert r["reason"].startswith("no trips:")
    assert len(vm.stays) == 1 and bool(vm.stays["open_end"].iloc[0])
    assert vm.stays["dwell_s"].iloc[0] == pytest.approx((len(ts) - 1) * 600)
    assert vm.locations["label"].tolist() == ["home"]  # 7 nights there
    w = vm.weekly.iloc[0]
    assert (w["n_trips"], w["distance_km"], w["n_stays"]) == (0, 0.0, 1)
    assert w["radius_of_gyration_km"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(w["trip_regularity"]) and "no trips this week" in w["reason"]
    # pinging every minute instead: one zero-distance segment, dropped and counted
    dense = parked.set_index("ts").resample("1min").ffill().reset_index()
    vm = vehicle_mobility(dense.iloc[:3000], timezone=TZ)
    assert (vm.report["n_trips"].iloc[0], vm.report["n_short_dropped"].iloc[0]) == (0, 1)


def test_unsorted_and_time_going_backwards(week: pd.DataFrame, base: VehicleMobility) -> None:
    shuffled = week.sample(frac=1.0, random_state=1).reset_index(drop=True)
    vm = vehicle_mobility(shuffled, timezone=TZ)
    _frames_equal(vm, base)
    assert vm.report["n_out_of_order"].iloc[0] > 0
    # a block delivered late (clock went back): same result, counted
    late = pd.concat([week.iloc[200:], week.iloc[:200]], ignore_index=True)
    vm = vehicle_mobility(late, timezone=TZ)
    _frames_equal(vm, base)
    assert vm.report["n_out_of_order"].iloc[0] == 200


def test_duplicate_timestamps(week: pd.DataFrame, base: VehicleMobility) -> None:
    dup = week.iloc[::7].copy()
    exact = pd.concat([week, dup], ignore_index=True)
    vm = vehicle_mobility(exact, timezone=TZ)
    _frames_equal(vm, base)
    assert vm.report["n_duplicate_ts"].iloc[0] == len(dup)
    # same time, another position, later in the input: the first one is kept
    moved = dup.assign(lat=dup["lat"] + 0.01)
    vm = vehicle_mobility(pd.concat([week, moved], ignore_index=True), timezone=TZ)
    _frames_equal(vm, base)
    assert vm.report["n_duplicate_ts"].iloc[0] == len(dup)


def test_missing_imu_and_speed(week: pd.DataFrame, base: VehicleMobility) -> None:
    imu = week.assign(accel_long_mps2=np.nan, accel_lat_mps2=np.nan, yaw_rate_dps=np.nan)
    vm = vehicle_mobility(imu, timezone=TZ)
    _frames_equal(vm, base)
    no_speed = week.drop(columns=["speed_mps"])
    vm = vehicle_mobility(no_speed, timezone=TZ)
    assert len(vm.trips) == len(base.trips)
    assert vm.trips["speed_distance_km"].isna().all() and vm.trips["max_speed_mps"].isna().all()
    assert "no speed" in vm.report["reason"].iloc[0]
    assert vm.trips["distance_km"].tolist() == base.trips["distance_km"].tolist()
    null_speed = week.assign(speed_mps=np.nan)
    assert vehicle_mobility(null_speed, timezone=TZ).trips["speed_distance_km"].isna().all()


def test_invalid_positions_and_zone(week: pd.DataFrame, base: VehicleMobility) -> None:
    extra = pd.DataFrame(
        {
            "vin": "V1",
            "ts": [_local("2026-01-07", 3.0)] * 2,
            "lat": [np.nan, 95.0],
            "lon": [121.0, 121.0],
        }
    )
    vm = vehicle_mobility(pd.concat([week, extra], ignore_index=True), timezone=TZ)
    _frames_equal(vm, base)
    assert vm.report["n_invalid"].iloc[0] == 2
    vm = vehicle_mobility(week, timezone="Mars/Olympus")
    assert vm.report["timezone"].iloc[0] == "UTC"
    assert "unknown time zone" in vm.report["reason"].iloc[0]
    assert vm.trips["start_hour_local"].iloc[0] == 0  # 08:00 Shanghai is 00:00 UTC


def test_position_jump_run_is_dropped(week: pd.DataFrame, base: VehicleMobility) -> None:
    glitch = week.copy()
    glitch.loc[100:103, "lat"] = 0.0  # four fixes at latitude 0 in the middle of a trip
    vm = vehicle_mobility(glitch, timezone=TZ)
    assert vm.report["n_jumps"].iloc[0] == 4
    assert vm.trips["distance_km"].max() < 12
    off = vehicle_mobility(
        glitch, timezone=TZ, params=MobilityParams(trips=TripParams(max_jump_speed_mps=None))
    )
    assert off.trips["distance_km"].max() > 1000


def test_ignition_off_splits_a_short_stop() -> None:
    a = _drive(_local("2026-01-06", 9.0), HOME, SHOP)
    stop_at = a["ts"].iloc[-1]
    b = _drive(stop_at + pd.Timedelta(seconds=200), SHOP, WORK)  # 200 s < gap_s
    motion = pd.concat([a, b], ignore_index=True)
    assert len(vehicle_mobility(motion, vin="V", timezone=TZ).trips) == 1
    signals = pd.DataFrame(
        {"ts": [stop_at, stop_at + pd.Timedelta(seconds=190)], "ignition_on": [False, True]}
    )
    trips = vehicle_mobility(motion, signals, vin="V", timezone=TZ).trips
    assert len(trips) == 2
    assert trips["dwell_s"].iloc[0] == 200.0


def test_locations_dbscan_noise_and_state() -> None:
    stays = pd.DataFrame(
        {
            "lat": [31.0, 31.0002, 31.05],
            "lon": [121.0] * 3,
            "dwell_s": [3600.0] * 3,
            "started_at": pd.to_datetime(["2026-01-05 10:00"] * 3, utc=True),
            "finished_at": pd.to_datetime(["2026-01-05 11:00"] * 3, utc=True),
            "night_dwell_h": [0.0] * 3,
            "workday_dwell_h": [1.0] * 3,
        }
    )
    locs, ids = assign_locations(stays, vin="V", params=LocationParams(min_samples=2))
    assert ids.tolist() == [0, 0, -1]  # the lone stay is noise with min_samples=2
    assert locs["n_visits"].tolist() == [2]
    later = stays.iloc[[2, 0]].reset_index(drop=True)
    locs2, ids2 = assign_locations(later, locs, vin="V", params=LocationParams(min_samples=1))
    assert ids2.tolist() == [1, 0]
    assert locs2["n_visits"].tolist() == [3, 1]


# ----------------------------------------------------------------------------- purpose
def test_purpose_model_priors_and_naming() -> None:
    m = prior_model()
    assert m.emissionprob.shape == (3, N_SYMBOLS)
    assert np.allclose(m.transmat.sum(axis=1), 1)
    for perm in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        named = name_states(m.emissionprob[perm])
        assert [named[i] for i in np.argsort(perm)] == list(PURPOSES)
    # fitting on a synthetic fleet keeps the states' meaning
    t = commuter_week()
    vm = vehicle_mobility(t, timezone=TZ)
    syms = np.tile(encode_trips(vm.trips), 5)
    fitted = fit_purpose_model(syms, [len(vm.trips)] * 5)
    assert fitted.fitted and set(fitted.states) == set(PURPOSES)
    names, conf = fitted.decode(encode_trips(vm.trips), [len(vm.trips)])
    assert (names[:10] == "commute").all()
    assert ((conf > 0) & (conf <= 1)).all()


def test_feature_dictionary_entries() -> None:
    keys = {"name", "domain", "entity", "unit", "definition", "sources"}
    names = [f["name"] for f in MOBILITY_FEATURES]
    assert len(names) == len(set(names))
    for f in MOBILITY_FEATURES:
        assert set(f) == keys
        assert f["domain"] == "mobility" and f["entity"] == "vin"
        assert f["unit"] and len(f["definition"]) > 20
        assert "motion" in f["sources"]
    assert set(names) == set(WEEKLY_COLUMNS) - {"vin", "iso_year", "iso_week", "period", "reason"}


def test_poi_categories_match_the_contract() -> None:
    from autopersona.contracts import load_contracts
    from autopersona.features.mobility import POI_CATEGORIES

    pois = {c.name: c for c in load_contracts()["pois"].columns}
    assert tuple(pois["category"].allowed or []) == POI_CATEGORIES


def test_coarsened_home_output(week: pd.DataFrame) -> None:
    vm = vehicle_mobility(week, timezone=TZ, params=MobilityParams(coarsen_decimals=3))
    w = vm.weekly.iloc[0]
    assert w["home_lat"] == round(w["home_lat"], 3) and w["work_lon"] == round(w["work_lon"], 3)
