"""Vehicle-side telemetry tables of one vehicle: ``motion``, ``vehicle_signals``, ``v2x_context``.

* ``motion``: every 1 Hz fix of every trip. Speeds are rounded to 1 mm/s, yaw rate to
  0.001 °/s, and ``accel_lat_mps2`` is computed from the *rounded* speed and yaw rate so
  that ``accel_lat = speed × radians(yaw_rate)`` holds to 1e-4. ADAS vehicles add
  ``following_distance_m`` (time headway x speed plus a standstill gap; null when there is
  no vehicle ahead) and ``lane_offset_m`` (smoothed noise scaled by the driver).
* ``vehicle_signals``: every 10 s while driving (plus the arrival second), every 120 s while
  charging or refuelling (plus session start and end) and every 30 min while parked.
* ``v2x_context``: every 30–60 s while driving, from the route (road type, limit,
  congestion), the city weather and a Poisson count of nearby road users.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from autopersona.simulate.environment import WEATHER_CLASSES, Weather
from autopersona.simulate.geo import EARTH_RADIUS_M
from autopersona.simulate.motion import smooth_noise
from autopersona.simulate.routes import ROAD_TYPES, SPEED_LIMIT_MPS
from autopersona.simulate.timeline import Timeline, Trip, stay_profile
from autopersona.simulate.truth import Person, VehicleSpec
from autopersona.simulate.writer import Cat, const

__all__ = ["compass_heading", "motion_columns", "signal_columns", "v2x_columns"]

FloatArray = NDArray[np.float64]
US = 1_000_000
PARK_EVERY_S = 1800
CHARGE_EVERY_S = 120
DRIVE_EVERY_S = 10


def _cat(values: NDArray[np.int64], labels: tuple[str, ...] | list[str]) -> Cat:
    return Cat(np.asarray(values, dtype=np.int64), list(labels))


def motion_columns(
    tl: Timeline, spec: VehicleSpec, person: Person, rng: np.random.Generator
) -> tuple[dict[str, Any], int]:
    """Columns of the ``motion`` table of one vehicle."""
    parts: dict[str, list[NDArray[Any]]] = {
        k: [] for k in ("ts", "lat", "lon", "alt", "v", "hd", "al", "yaw", "fd", "lo", "trip")
    }
    alt0 = person.city_obj.alt_m
    for i, t in enumerate(tl.trips):
        m = t.motion
        n = m.n
        v = np.round(m.v, 3)
        yaw = np.round(np.degrees(m.yaw_rate_rad), 3)
        parts["ts"].append((t.dep + np.arange(n, dtype=np.int64)) * US)
        parts["lat"].append(np.round(t.lat, 7))
        parts["lon"].append(np.round(t.lon, 7))
        ph = rng.uniform(0, 2 * math.pi, 2)
        alt: FloatArray = alt0 + 3 * np.sin(m.s / 1700 + ph[0]) + 0.6 * np.sin(m.s / 230 + ph[1])
        if t.dest.far or t.origin.far:
            alt = alt + 40 * np.sin(m.s / 23000 + ph[0]) ** 2
        parts["alt"].append(np.round(alt, 1))
        parts["v"].append(v)
        parts["hd"].append(np.round(compass_heading(m.th, m.x, t.lat), 2))
        parts["al"].append(np.round(m.a_long, 3))
        parts["yaw"].append(yaw)
        if spec.adas_equipped:
            head = person.headway_s * np.exp(0.2 * smooth_noise(n, rng, 30))
            gap = 2.0 + 1.5 * np.abs(smooth_noise(n, rng, 20))
            fd = np.clip(head * v + gap, 0.5, 250.0)
            p_lead = 0.45 + 0.15 * t.congestion
            lead = smooth_noise(n, rng, 60) < _norm_ppf(p_lead)
            parts["fd"].append(np.where(lead, np.round(fd, 1), np.nan))
            lo = np.clip(person.lane_sd_m * smooth_noise(n, rng, 15), -1.8, 1.8)
            parts["lo"].append(np.where(v > 1.0, np.round(lo, 2), np.nan))
        else:
            parts["fd"].append(np.full(n, np.nan))
            parts["lo"].append(np.full(n, np.nan))
        parts["trip"].append(np.full(n, i, dtype=np.int64))
    if not tl.trips:
        return {}, 0
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    v = cat["v"]
    yaw = cat["yaw"]
    n_all = len(v)
    cols: dict[str, Any] = {
        "vin": const(spec.vin, n_all),
        "ts": cat["ts"],
        "lat": cat["lat"],
        "lon": cat["lon"],
        "alt_m": cat["alt"],
        "speed_mps": v,
        "heading_deg": cat["hd"],
        "accel_long_mps2": cat["al"],
        "accel_lat_mps2": np.round(v * np.radians(yaw), 4),
        "yaw_rate_dps": yaw,
        "following_distance_m": cat["fd"],
        "lane_offset_m": cat["lo"],
        "trip_id": _cat(cat["trip"].astype(np.int64), [t.trip_id for t in tl.trips]),
    }
    return cols, n_all


def compass_heading(th: FloatArray, x: FloatArray, lat: FloatArray) -> FloatArray:
    """Compass course of a plane direction ``th`` at plane ``x`` and latitude ``lat``.

    The plane→WGS84 mapping (:func:`~autopersona.simulate.geo.to_latlon`) scales longitude
    per point, so a northward plane step also moves east by ``x tan(lat) / R`` per metre;
    the course accounts for it so that it matches the bearing between fixes.
    """
    k = x * np.tan(np.radians(lat)) / EARTH_RADIUS_M
    east = np.cos(th) + k * np.sin(th)
    north = np.sin(th)
    return np.asarray(np.mod(np.degrees(np.arctan2(east, north)), 360.0))


def _norm_ppf(p: float) -> float:
    """Inverse normal CDF (Acklam-style rational approximation, |error| < 1e-3 here)."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    t = math.sqrt(-2 * math.log(min(p, 1 - p)))
    z = t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (
        1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t**3
    )
    return z if p > 0.5 else -z


def _drive_samples(t: Trip, spec: VehicleSpec, rng: np.random.Generator) -> dict[str, Any]:
    m, e = t.motion, t.energy
    idx = np.arange(0, m.n, DRIVE_EVERY_S)
    if idx[-1] != m.n - 1:
        idx = np.append(idx, m.n - 1)
    k = len(idx)
    v = np.round(m.v[idx], 3)
    a = m.a_true[idx]
    on = e.engine_on[idx]
    wheel = e.wheel_kw[idx]
    load = np.clip(100 * np.maximum(wheel, 0) / spec.power_kw * 2.2 + 12 * on, 0, 100)
    throttle = np.clip(100 * np.maximum(wheel, 0) / spec.power_kw * 1.8 + 4 * (a > 0.05), 0, 100)
    rpm = np.clip(750 + 62 * v + 260 * np.maximum(a, 0) + rng.normal(0, 25, k), 650, 5500)
    arrive = np.zeros(k, dtype=bool)
    arrive[-1] = True
    out: dict[str, Any] = {
        "ts": (t.dep + idx) * US,
        "odometer_km": np.round(e.odometer_km[idx], 3),
        "speed_mps": v,
        "soc_pct": np.round(100 * e.soc[idx], 2),
        "fuel_level_pct": np.round(100 * e.fuel[idx], 2),
        "battery_temp_c": np.round(e.batt_temp_c[idx], 1),
        "coolant_temp_c": np.round(e.coolant_c[idx], 1),
        "engine_rpm": np.where(on & ~arrive, np.round(rpm), 0.0)
        if spec.has_fuel
        else np.full(k, np.nan),
        "engine_load_pct": np.where(on & ~arrive, np.round(load, 1), 0.0)
        if spec.has_fuel
        else np.full(k, np.nan),
        "throttle_pct": np.where(arrive, 0.0, np.round(throttle, 1)),
        "gear": np.where(arrive, 0, 3),
        "ignition_on": ~arrive,
        "charging": np.zeros(k, dtype=bool),
        "charge_power_kw": np.zeros(k),
        "charger_type": np.full(k, -1),
    }
    return out


_CHARGERS = ["home_ac", "public_ac", "public_dc"]


def signal_columns(
    tl: Timeline, spec: VehicleSpec, weather: Weather, rng: np.random.Generator
) -> tuple[dict[str, Any], int]:
    """Columns of the ``vehicle_signals`` table of one vehicle."""
    blocks: list[dict[str, Any]] = [_drive_samples(t, spec, rng) for t in tl.trips]
    for st in tl.stays:
        a, b = st.t0 + 5, st.t1 - 5
        if b <= a:
            continue
        first = (a // PARK_EVERY_S + 1) * PARK_EVERY_S
        times = np.arange(first, b, PARK_EVERY_S, dtype=np.int64)
        s = st.session
        if s is not None:
            times = times[(times < s.t0) | (times > s.t1)]
            every = CHARGE_EVERY_S if s.kind != "refuel" else 60
            inner = np.arange((s.t0 // every + 1) * every, s.t1, every, dtype=np.int64)
            times = np.unique(np.concatenate([times, [s.t0], inner, [s.t1]]))
            times = times[(times > st.t0) & (times < st.t1)]
        if len(times) == 0:
            continue
        amb = weather.at(times.astype(float))[0]
        prof = stay_profile(
            st.start,
            st.t0,
            s,
            times.astype(float),
            float(amb.mean()),
            spec.has_battery,
            spec.has_fuel,
        )
        k = len(times)
        ch = prof["charging"]
        ctype = -1 if s is None or s.charger_type is None else _CHARGERS.index(s.charger_type)
        blocks.append(
            {
                "ts": times * US,
                "odometer_km": np.full(k, round(st.start.odometer_km, 3)),
                "speed_mps": np.zeros(k),
                "soc_pct": np.round(100 * prof["soc"], 2),
                "fuel_level_pct": np.round(100 * prof["fuel"], 2),
                "battery_temp_c": np.round(prof["batt"], 1),
                "coolant_temp_c": np.round(prof["cool"], 1),
                "engine_rpm": np.zeros(k) if spec.has_fuel else np.full(k, np.nan),
                "engine_load_pct": np.zeros(k) if spec.has_fuel else np.full(k, np.nan),
                "throttle_pct": np.zeros(k),
                "gear": np.zeros(k, dtype=np.int64),
                "ignition_on": np.zeros(k, dtype=bool),
                "charging": ch,
                "charge_power_kw": np.round(prof["power"], 2),
                "charger_type": np.where(ch, ctype, -1),
            }
        )
    if not blocks:
        return {}, 0
    arrs = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}
    order = np.argsort(arrs["ts"], kind="stable")
    cols: dict[str, Any] = {key: v[order] for key, v in arrs.items()}
    n = len(cols["ts"])
    if not spec.has_battery:
        cols["soc_pct"] = np.full(n, np.nan)
        cols["battery_temp_c"] = np.full(n, np.nan)
    if not spec.has_fuel:
        cols["fuel_level_pct"] = np.full(n, np.nan)
        cols["coolant_temp_c"] = np.full(n, np.nan)
    cols["vin"] = const(spec.vin, n)
    cols["gear"] = _cat(cols["gear"], ["P", "R", "N", "D"])
    cols["charger_type"] = _cat(cols["charger_type"], _CHARGERS)
    return cols, n


def v2x_columns(
    tl: Timeline, spec: VehicleSpec, weather: Weather, rng: np.random.Generator
) -> tuple[dict[str, Any], int]:
    """Columns of the ``v2x_context`` table of one vehicle."""
    ts_l, cong_l, road_l, lim_l = [], [], [], []
    for t in tl.trips:
        m = t.motion
        steps = rng.integers(30, 61, m.n // 30 + 2)
        idx = np.cumsum(steps) - int(rng.integers(0, 30))
        idx = idx[(idx >= 0) & (idx < m.n)]
        if len(idx) == 0:
            continue
        ts_l.append(t.dep + idx)
        road = m.road[idx]
        lim = SPEED_LIMIT_MPS[road]
        cong = m.congestion[idx].copy()
        slow = m.v[idx] < 0.35 * lim
        cong = np.where(slow & (cong < 2), cong + 1, cong)
        cong_l.append(np.clip(cong, 0, 3))
        road_l.append(road)
        lim_l.append(lim)
    if not ts_l:
        return {}, 0
    ts = np.concatenate(ts_l).astype(np.int64)
    cong = np.concatenate(cong_l)
    road = np.concatenate(road_l)
    n = len(ts)
    temp, hum, wind, wcls = weather.at(ts.astype(float))
    lam = np.array([15.0, 12.0, 8.0, 2.0, 1.5])[road] * (1 + 0.8 * cong)
    return {
        "vin": const(spec.vin, n),
        "ts": ts * US,
        "congestion_level": cong.astype(np.int64),
        "road_type": _cat(road, ROAD_TYPES),
        "speed_limit_mps": np.round(np.concatenate(lim_l), 2),
        "weather": _cat(wcls, WEATHER_CLASSES),
        "temperature_c": np.round(temp, 1),
        "humidity_pct": np.round(hum, 1),
        "wind_speed_mps": np.round(wind, 2),
        "nearby_road_users": rng.poisson(lam).astype(np.int64),
    }, n
