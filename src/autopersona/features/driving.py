"""Driving-behaviour features per vehicle and period (design brief §3), written once in Ibis.

The stage is order-free so that it runs at close to scan speed: every feature is a hash
aggregate per (vehicle, period), except harsh-event *edges*, which need time order only among
the few fixes above the lowest threshold (a window over ~1 % of the rows).  Local night hours
come from a histogram of moving seconds per UTC hour, each hour converted with its own UTC
offset of the vehicle's time zone (exact across DST changes).  Jerk and other statistics that
need every fix in order belong to the per-vehicle trip pass.

The feature dictionary (``dictionary/driving.yaml``) defines each output column.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from autopersona.catalog import load_model
from autopersona.features.engines import Engine

__all__ = ["DrivingParams", "Thresholds", "driving_features", "load_params"]

SOURCES = ["motion", "vehicle_signals", "vehicles", "v2x_context"]
PERIOD_UNITS = {"day": "D", "week": "W", "month": "M"}


class Thresholds(BaseModel):
    """Harsh-event thresholds of one vehicle class (magnitudes, m/s²)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accel_mps2: float = Field(gt=0)
    brake_mps2: float = Field(gt=0)
    lateral_mps2: float = Field(gt=0)


class DrivingParams(BaseModel):
    """Parameters of the driving stage (``features/params.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    harsh_thresholds: dict[str, Thresholds]
    event_gap_s: float = Field(default=1.5, gt=0)
    moving_mps: float = Field(default=0.5, ge=0)
    highway_mps: float = Field(default=22.2222, gt=0)
    night_hours: tuple[int, int] = (22, 5)
    aggressiveness_scales: dict[str, float]

    def thresholds_for(self, body_type: str | None) -> Thresholds:
        """Thresholds of a class, ``default`` when it has none of its own."""
        return self.harsh_thresholds.get(body_type or "", self.harsh_thresholds["default"])


@lru_cache(maxsize=4)
def load_params(path: str | None = None) -> DrivingParams:
    """Load the stage parameters (default: the packaged ``params.yaml``)."""
    p = Path(path) if path else Path(str(resources.files("autopersona.features") / "params.yaml"))
    return load_model(p, DrivingParams)


def _since_filter(t: Any, col: str, since: datetime | None) -> Any:
    if since is None:
        return t
    import ibis

    return t.filter(t[col] >= ibis.literal(since, type=t[col].type()))


def _period(ts: Any, period: str) -> Any:
    return ts.truncate(PERIOD_UNITS[period]).cast("date").name("period_start")


def driving_features(
    eng: Engine,
    *,
    period: str = "week",
    since: datetime | None = None,
    params: DrivingParams | None = None,
) -> pd.DataFrame:
    """Driving features per (vin, period_start) for motion at or after ``since``.

    Parameters
    ----------
    eng
        Engine holding ``motion``, ``vehicle_signals``, ``vehicles`` and ``v2x_context``.
    period
        ``day``, ``week`` (ISO weeks, Monday 00:00 UTC) or ``month``.
    since
        First instant to read (the start of the first period to compute).
    params
        Thresholds and scales; default ``features/params.yaml``.

    Returns
    -------
    pandas.DataFrame
        One row per vehicle and period with the columns of ``dictionary/driving.yaml``.
    """
    import ibis
    from ibis import _

    p = params or load_params()
    m = _since_filter(eng.table("motion"), "ts", since)
    m = m.mutate(period_start=_period(m.ts, period))
    moving = m.speed_mps > p.moving_mps
    fd, spd = m.following_distance_m, m.speed_mps
    radar = fd.notnull() & (spd > 5.0)
    main = m.group_by(["vin", "period_start"]).aggregate(
        samples=_.count(),
        moving_s=m.count(where=moving),
        speed_sum=m.speed_mps.sum(),
        mean_speed=m.speed_mps.mean(where=moving),
        sd_speed=m.speed_mps.std(where=moving),
        max_speed=m.speed_mps.max(),
        highway_s=m.count(where=spd > p.highway_mps),
        accel_abs_mean=m.accel_long_mps2.abs().mean(where=moving),
        lateral_abs_mean=m.accel_lat_mps2.abs().mean(where=moving),
        following_distance_mean_m=fd.mean(),
        radar_n=m.count(where=radar),
        short_headway_n=m.count(where=radar & (fd / spd < 1.0)),
        lane_offset_sd_m=m.lane_offset_m.std(),
        lane_n=m.lane_offset_m.count(),
        lane_dep_n=m.count(where=m.lane_offset_m.abs() > 0.5),
    )
    hours = (
        m.filter(moving)
        .mutate(hour=m.ts.truncate("h"))
        .group_by(["vin", "period_start", "hour"])
        .aggregate(s=_.count())
    )

    # harsh events: runs of consecutive fixes beyond the class threshold
    veh = eng.table("vehicles").select("vin", "body_type")
    rows = list(p.harsh_thresholds.values())
    lo_acc = min(t.accel_mps2 for t in rows)
    lo_brk = min(t.brake_mps2 for t in rows)
    lo_lat = min(t.lateral_mps2 for t in rows)
    default = p.harsh_thresholds["default"]

    def by_class(attr: str) -> Any:
        """The class threshold as a CASE over body_type (no lookup table to register)."""
        cases = [
            (veh.body_type == k, getattr(t, attr))
            for k, t in sorted(p.harsh_thresholds.items())
            if k != "default"
        ]
        if not cases:
            return ibis.literal(getattr(default, attr))
        return ibis.cases(*cases, else_=getattr(default, attr))

    vth = veh.select(
        "vin",
        th_acc=by_class("accel_mps2"),
        th_brk=by_class("brake_mps2"),
        th_lat=by_class("lateral_mps2"),
    )
    cand = m.filter(
        (m.accel_long_mps2 > lo_acc)
        | (m.accel_long_mps2 < -lo_brk)
        | (m.accel_lat_mps2.abs() > lo_lat)
    ).select("vin", "ts", "period_start", a=m.accel_long_mps2, lat=m.accel_lat_mps2)
    cand = cand.left_join(vth, "vin").select(
        "vin",
        "ts",
        "period_start",
        acc=_.a > ibis.coalesce(_.th_acc, default.accel_mps2),
        brk=_.a < -ibis.coalesce(_.th_brk, default.brake_mps2),
        cor=_.lat.abs() > ibis.coalesce(_.th_lat, default.lateral_mps2),
    )
    w = ibis.window(group_by="vin", order_by="ts")
    events = []
    for flag, name in (
        ("acc", "harsh_accel_events"),
        ("brk", "harsh_brake_events"),
        ("cor", "harsh_corner_events"),
    ):
        k = cand.filter(cand[flag]).mutate(sec=_.ts.epoch_seconds())
        k = k.mutate(prev=k.sec.lag().over(w))
        starts = k.mutate(start=k.prev.isnull() | ((k.sec - k.prev) > p.event_gap_s))
        events.append(
            starts.group_by(["vin", "period_start"]).aggregate(**{name: _.count(where=_.start)})
        )

    sig = _since_filter(eng.table("vehicle_signals"), "ts", since)
    odo = sig.group_by(["vin", _period(sig.ts, period)]).aggregate(
        odo_km=sig.odometer_km.max() - sig.odometer_km.min()
    )
    v2x = _since_filter(eng.table("v2x_context"), "ts", since)
    ctx = v2x.group_by(["vin", _period(v2x.ts, period)]).aggregate(
        highway_n=v2x.count(where=v2x.road_type == "highway"),
        road_n=v2x.road_type.count(),
        congestion_mean=v2x.congestion_level.mean(),
    )
    tz = eng.table("vehicles").select("vin", "timezone")

    key = ["vin", "period_start"]
    out = eng.execute(main)
    for part in [*events, odo, ctx]:
        out = out.merge(eng.execute(part), on=key, how="left")
    out = _finish(out, eng.execute(hours), eng.execute(tz), p)
    return out.sort_values(key, kind="stable").reset_index(drop=True)


def _night_share(hours: pd.DataFrame, tz: pd.DataFrame, night: tuple[int, int]) -> pd.DataFrame:
    """Share of moving seconds in local night hours, per (vin, period_start)."""
    if hours.empty:
        return pd.DataFrame(columns=["vin", "period_start", "night_share"])
    h = hours.merge(tz, on="vin", how="left")
    h["timezone"] = h["timezone"].fillna("UTC")
    local_hour = pd.Series(0, index=h.index, dtype="int64")
    for zone, idx in h.groupby("timezone").groups.items():
        local_hour.loc[idx] = h.loc[idx, "hour"].dt.tz_convert(str(zone)).dt.hour.to_numpy()
    start, end = night
    is_night = (
        (local_hour >= start) | (local_hour < end)
        if start > end
        else ((local_hour >= start) & (local_hour < end))
    )
    h["night_s"] = np.where(is_night, h["s"], 0)
    g = h.groupby(["vin", "period_start"], as_index=False)[["night_s", "s"]].sum()
    g["night_share"] = g["night_s"] / g["s"]
    return g[["vin", "period_start", "night_share"]]


def _finish(
    df: pd.DataFrame, hours: pd.DataFrame, tz: pd.DataFrame, p: DrivingParams
) -> pd.DataFrame:
    out = df.copy()
    for c in ("harsh_accel_events", "harsh_brake_events", "harsh_corner_events"):
        out[c] = out[c].fillna(0).astype("int64")
    out["distance_gps_km"] = out["speed_sum"].astype("float64") / 1000.0
    odo = out["odo_km"].astype("float64")
    out["distance_km"] = odo.where(odo.notna(), out["distance_gps_km"])
    out["mean_speed_kmh"] = out["mean_speed"] * 3.6
    out["max_speed_kmh"] = out["max_speed"] * 3.6
    out["speed_volatility"] = out["sd_speed"] / out["mean_speed"]
    moving = out["moving_s"].where(out["moving_s"] > 0)
    out["highway_speed_share"] = out["highway_s"] / moving
    out["highway_share"] = out["highway_n"] / out["road_n"].where(out["road_n"] > 0)
    out["short_headway_share"] = out["short_headway_n"] / out["radar_n"].where(out["radar_n"] > 0)
    out["lane_departure_share"] = out["lane_dep_n"] / out["lane_n"].where(out["lane_n"] > 0)
    dist = out["distance_km"].where(out["distance_km"] >= 1.0)
    for kind in ("accel", "brake", "corner"):
        out[f"harsh_{kind}_per_100km"] = out[f"harsh_{kind}_events"] / dist * 100.0
    out = out.merge(_night_share(hours, tz, p.night_hours), on=["vin", "period_start"], how="left")
    s = p.aggressiveness_scales
    parts = [
        (out[name] / s[name]).clip(0, 1)
        for name in (
            "harsh_accel_per_100km",
            "harsh_brake_per_100km",
            "harsh_corner_per_100km",
            "speed_volatility",
        )
    ]
    base = pd.concat(parts, axis=1)
    headway = (out["short_headway_share"] / s["short_headway_share"]).clip(0, 1)
    total = base.sum(axis=1, min_count=4) + headway.fillna(0)
    count = 4 + headway.notna().astype("int64")
    out["aggressiveness_index"] = 100.0 * total / count
    cols = [
        "vin",
        "period_start",
        "samples",
        "moving_s",
        "distance_km",
        "distance_gps_km",
        "mean_speed_kmh",
        "max_speed_kmh",
        "speed_volatility",
        "highway_speed_share",
        "highway_share",
        "congestion_mean",
        "night_share",
        "harsh_accel_events",
        "harsh_brake_events",
        "harsh_corner_events",
        "harsh_accel_per_100km",
        "harsh_brake_per_100km",
        "harsh_corner_per_100km",
        "accel_abs_mean",
        "lateral_abs_mean",
        "following_distance_mean_m",
        "short_headway_share",
        "lane_offset_sd_m",
        "lane_departure_share",
        "aggressiveness_index",
    ]
    return out[cols]
