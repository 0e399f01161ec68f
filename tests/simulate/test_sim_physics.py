"""Physical consistency of the simulated telemetry (clean fleet).

Tolerances
----------
* longitudinal acceleration vs the forward difference of speed: 0.1 m/s² (IMU noise is
  clipped at 0.09 m/s², values are rounded to 1e-3);
* lateral acceleration vs speed x yaw rate: 1e-3 m/s² (rounding only);
* distance between consecutive fixes vs mean speed x 1 s: 1 m + 5 % (chords on tight
  corners), median under 5 cm;
* heading vs the bearing between fixes on straight driving: 1°;
* odometer span vs summed fix distances: 1 %.
"""

from __future__ import annotations

import numpy as np
from simcheck import Q

from autopersona.simulate.geo import haversine_m

MOTION = """SELECT vin, epoch_us(ts) AS us, trip_id, lat, lon, speed_mps AS v, heading_deg AS hd,
                   accel_long_mps2 AS al, accel_lat_mps2 AS at, yaw_rate_dps AS yaw
            FROM T.motion ORDER BY vin, ts"""


def _motion(cq: Q) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in cq.np(MOTION).items()}


def _pairs(m: dict[str, np.ndarray]) -> np.ndarray:
    """Mask of consecutive fixes (i, i+1) of the same trip, one second apart."""
    return (m["trip_id"][1:] == m["trip_id"][:-1]) & (np.diff(m["us"]) == 1_000_000)


def test_motion_is_one_hertz_within_trips(cq: Q) -> None:
    m = _motion(cq)
    same_trip = m["trip_id"][1:] == m["trip_id"][:-1]
    assert (np.diff(m["us"])[same_trip] == 1_000_000).all()


def test_longitudinal_acceleration_is_speed_difference(cq: Q) -> None:
    m = _motion(cq)
    ok = _pairs(m)
    fd = np.diff(m["v"])[ok]
    err = np.abs(m["al"][:-1][ok] - fd)
    assert err.max() <= 0.1
    assert np.abs(fd).max() > 1.0  # the vehicles do accelerate


def test_lateral_acceleration_is_speed_times_yaw_rate(cq: Q) -> None:
    m = _motion(cq)
    err = np.abs(m["at"] - m["v"] * np.radians(m["yaw"]))
    assert err.max() <= 1e-3
    assert np.abs(m["at"]).max() > 2.0  # there are real corners


def test_distance_between_fixes_is_speed_times_dt(cq: Q) -> None:
    m = _motion(cq)
    ok = _pairs(m)
    d = haversine_m(m["lat"][:-1], m["lon"][:-1], m["lat"][1:], m["lon"][1:])[ok]
    mean_v = ((m["v"][1:] + m["v"][:-1]) / 2)[ok]
    err = np.abs(d - mean_v)
    assert (err <= 1.0 + 0.05 * mean_v).all()
    assert np.median(err) < 0.05
    assert d.max() < 60  # no teleports


def test_heading_matches_bearing_between_fixes(cq: Q) -> None:
    m = _motion(cq)
    ok = _pairs(m) & (m["v"][1:] > 3) & (m["v"][:-1] > 3)
    ok &= (np.abs(m["yaw"][1:]) < 0.5) & (np.abs(m["yaw"][:-1]) < 0.5)
    ok &= np.abs((np.diff(m["hd"]) + 180) % 360 - 180) < 0.5  # no corner between the fixes
    la1, lo1, la2, lo2 = (
        np.radians(a) for a in (m["lat"][:-1], m["lon"][:-1], m["lat"][1:], m["lon"][1:])
    )
    y = np.sin(lo2 - lo1) * np.cos(la2)
    x = np.cos(la1) * np.sin(la2) - np.sin(la1) * np.cos(la2) * np.cos(lo2 - lo1)
    bearing = np.degrees(np.arctan2(y, x)) % 360
    diff = np.abs((bearing - m["hd"][:-1] + 180) % 360 - 180)[ok]
    assert ok.sum() > 1000
    assert diff.max() < 1.0


def test_yaw_rate_matches_heading_change(cq: Q) -> None:
    """Heading is clockwise, yaw rate counter-clockwise: dheading ~ -yaw (mean of ends)."""
    m = _motion(cq)
    ok = _pairs(m) & (m["v"][:-1] > 2)
    dh = -((np.diff(m["hd"]) + 180) % 360 - 180)
    yaw_mid = (m["yaw"][1:] + m["yaw"][:-1]) / 2
    err = np.abs(dh - yaw_mid)[ok]
    assert np.quantile(err, 0.99) < 2.0


def test_routes_turn_like_roads(cq: Q) -> None:
    """Trips over 1 km contain turns and are longer than the straight line (no teleports)."""
    rows = cq.rows(
        """SELECT trip_id, max(abs(yaw_rate_dps)), arg_min(lat, ts), arg_min(lon, ts),
                  arg_max(lat, ts), arg_max(lon, ts), count(*)
           FROM T.motion GROUP BY trip_id"""
    )
    dist = {r[0]: r[1] for r in cq.rows("SELECT trip_id, distance_km FROM R.trips")}
    long_trips = turning = 0
    for tid, max_yaw, la0, lo0, la1, lo1, _n in rows:
        path_km = dist[tid]
        line_km = float(haversine_m(la0, lo0, la1, lo1)) / 1000
        assert path_km >= line_km * 0.99
        if path_km > 1.0:
            long_trips += 1
            turning += max_yaw > 3.0
    assert long_trips > 50
    assert turning >= 0.9 * long_trips  # a few trips run along one straight street


def test_signal_speed_agrees_with_motion(cq: Q) -> None:
    n, bad = cq.one(
        """SELECT count(*), count(*) FILTER (WHERE abs(s.speed_mps - m.speed_mps) > 1e-6)
           FROM T.vehicle_signals s JOIN T.motion m USING (vin, ts)"""
    )
    assert n > 1000
    assert bad == 0


def test_odometer_monotonic_and_matches_motion_distance(cq: Q) -> None:
    sig = {
        k: np.asarray(v)
        for k, v in cq.np("SELECT vin, odometer_km FROM T.vehicle_signals ORDER BY vin, ts").items()
    }
    same = sig["vin"][1:] == sig["vin"][:-1]
    assert (np.diff(sig["odometer_km"])[same] >= 0).all()
    span = dict(
        cq.rows(
            "SELECT vin, max(odometer_km) - min(odometer_km) FROM T.vehicle_signals GROUP BY vin"
        )
    )
    m = _motion(cq)
    ok = _pairs(m)
    d = np.where(ok, haversine_m(m["lat"][:-1], m["lon"][:-1], m["lat"][1:], m["lon"][1:]), 0.0)
    vins = m["vin"][:-1]
    for vin in np.unique(m["vin"]):
        km = d[vins == vin].sum() / 1000
        assert abs(span[vin] - km) <= 0.01 * km + 0.01, vin


def test_soc_falls_while_driving_and_rises_while_charging(cq: Q) -> None:
    s = {
        k: np.asarray(v)
        for k, v in cq.np(
            """SELECT vin, soc_pct, ignition_on, charging FROM T.vehicle_signals
           WHERE soc_pct IS NOT NULL ORDER BY vin, ts"""
        ).items()
    }
    same = s["vin"][1:] == s["vin"][:-1]
    ds = np.diff(s["soc_pct"])
    driving = same & s["ignition_on"][1:] & s["ignition_on"][:-1]
    charging = same & s["charging"][1:] & s["charging"][:-1]
    assert driving.sum() > 100 and charging.sum() > 100
    assert ds[driving].sum() < 0  # net consumption
    assert ds[driving].max() <= 0.5  # regeneration never adds more than 0.5 points in 10 s
    assert (ds[charging] >= 0).all()
    assert ds[charging].sum() > 0
    # every trip ends with less charge than it started with, except PHEV/EREV trips in
    # charge-sustaining mode (SOC held at the floor), which burn fuel instead
    per_trip = cq.rows(
        """SELECT t.trip_id, any_value(v.energy_type),
                  arg_min(s.soc_pct, s.ts), arg_max(s.soc_pct, s.ts),
                  arg_min(s.fuel_level_pct, s.ts), arg_max(s.fuel_level_pct, s.ts)
           FROM R.trips t JOIN R.vehicles_truth v USING (vin) JOIN T.vehicle_signals s
             ON s.vin = t.vin AND s.ts BETWEEN t.start_ts AND t.end_ts
           WHERE s.soc_pct IS NOT NULL AND t.distance_km > 2 GROUP BY t.trip_id"""
    )
    assert per_trip
    for _, energy, soc0, soc1, fuel0, fuel1 in per_trip:
        if energy == "BEV":
            assert soc1 < soc0
        else:
            assert soc1 < soc0 or (soc1 == soc0 and fuel1 < fuel0)


def test_charging_sessions_match_truth(cq: Q) -> None:
    rows = cq.rows(
        """SELECT c.kind, c.soc_start, c.soc_end, max(s.charge_power_kw), count(s.ts)
           FROM R.charging c JOIN T.vehicle_signals s
             ON s.vin = c.vin AND s.ts BETWEEN c.start_ts AND c.end_ts
           WHERE c.kind IN ('ac', 'dc') GROUP BY ALL"""
    )
    assert rows
    for _kind, soc0, soc1, power, n in rows:
        assert soc1 >= soc0
        assert power > 0 and n >= 1


def test_fuel_falls_while_driving_and_rises_when_refuelling(cq: Q) -> None:
    s = {
        k: np.asarray(v)
        for k, v in cq.np(
            """SELECT vin, fuel_level_pct, ignition_on FROM T.vehicle_signals
           WHERE fuel_level_pct IS NOT NULL ORDER BY vin, ts"""
        ).items()
    }
    same = s["vin"][1:] == s["vin"][:-1]
    driving = same & s["ignition_on"][1:] & s["ignition_on"][:-1]
    df = np.diff(s["fuel_level_pct"])
    assert (df[driving] <= 1e-9).all()
    assert df[driving].sum() < 0
    refuels = cq.rows("SELECT fuel_start, fuel_end FROM R.charging WHERE kind = 'refuel'")
    assert refuels
    assert all(f1 > f0 for f0, f1 in refuels)
    jumps_up = cq.one(
        """SELECT count(*) FROM R.charging c JOIN T.vehicle_signals s
             ON s.vin = c.vin AND s.ts = c.end_ts
           WHERE c.kind = 'refuel' AND abs(s.fuel_level_pct - 100 * c.fuel_end) < 0.01"""
    )[0]
    assert jumps_up == len(refuels)


def test_harsh_event_rates_follow_driving_style(cq: Q) -> None:
    """Events = runs of |a_long| > 2.5 m/s² or |a_lat| > 0.4 g, per 100 km driven."""
    rates = dict(
        cq.rows(
            """WITH m AS (
             SELECT vin, trip_id, ts, speed_mps,
                    (abs(accel_long_mps2) > 2.5 OR abs(accel_lat_mps2) > 0.4 * 9.80665) AS harsh
             FROM T.motion),
           e AS (
             SELECT vin, speed_mps, harsh AND NOT coalesce(
                      lag(harsh) OVER (PARTITION BY trip_id ORDER BY ts), false) AS start
             FROM m),
           v AS (SELECT vin, count(*) FILTER (WHERE start) AS n, sum(speed_mps) / 1000 AS km
                 FROM e GROUP BY vin)
           SELECT t.driving_style, sum(n) / sum(km) * 100
           FROM v JOIN R.vehicles_truth t USING (vin) GROUP BY 1"""
        )
    )
    assert set(rates) == {"aggressive", "moderate", "cautious"}
    assert rates["aggressive"] > 1.5 * rates["moderate"] > 0
    assert rates["moderate"] > 3 * rates["cautious"]
