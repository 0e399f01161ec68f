"""Driving-behaviour features per vehicle and period (design brief §3), on DuckDB or Spark.

``motion`` is read once, by one compiled pass (:mod:`autopersona.features.driving_pass`,
numba): the engine streams the columns the stage needs as Arrow record batches (DuckDB: one
stream per thread over row-id ranges; Spark: ``mapInArrow`` over its partitions), each
vehicle named by the engine's 64-bit hash of its VIN, and the kernel returns per batch the
partial sums, counts and maxima per (vehicle, UTC hour) and the harsh intervals (chains of
fixes beyond the vehicle's class threshold of a kind, no gap over ``event_gap_s``; the
classes come from ``vehicles``, read first).  The pass is order-free: a (vehicle, hour)
whose rows fall in several batches gives several partial rows, which add up like the hours
of a period, and an event whose fixes fall in several batches or out of order gives
several intervals, which join again when sorted by their first fix.  Hours nest in days,
ISO weeks and months, so numpy rolls them up to the period (sums, counts and maxima add
up; standard deviations come from sums of squares), and the same rows are the histogram of
moving seconds per UTC hour from which local night hours come (each hour converted with
its own UTC offset of the vehicle's time zone, exact across DST changes).  An event counts
once, in the hour of its first fix.  Odometer distance and V2X context are Ibis
aggregates per (vehicle, UTC day) run by the engine.  Keys go back to VINs through
``vehicles`` (vehicles missing there: one lookup in ``motion``).  Two VINs with one
64-bit key (odds about n²/2**65 for n VINs) stop the stage with an error when both are
listed in ``vehicles`` or both missing there; a listed and an unlisted one would merge.  Buckets are integer
divisions of epoch microseconds (truncating ``TIMESTAMPTZ`` values costs DuckDB a time-zone
conversion per row).  Jerk and other statistics that need every fix in order belong to the
per-vehicle trip pass.

The feature dictionary (``dictionary/driving.yaml``) defines each output column;
``bench/features.py`` times the stage against pandas and DuckDB's raw scan.
"""

from __future__ import annotations

import functools
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from autopersona.catalog import load_model
from autopersona.features.engines import Engine

if TYPE_CHECKING:
    from autopersona.features.driving_pass import PassArrays

__all__ = ["DrivingParams", "Thresholds", "driving_features", "load_params"]

SOURCES = ["motion", "vehicle_signals", "vehicles", "v2x_context"]
PERIOD_UNITS = {"day": "D", "week": "W", "month": "M"}
_KINDS = {"acc": "harsh_accel_events", "brk": "harsh_brake_events", "cor": "harsh_corner_events"}


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


def _epoch_us(eng: Engine, ts: Any) -> Any:
    """Microseconds since 1970-01-01 UTC of a timestamp column, as int64.

    Ibis's ``epoch_seconds`` casts to a naive timestamp first, which costs DuckDB a time-zone
    conversion per row on ``TIMESTAMPTZ`` columns (most of a motion scan's time); each engine's
    own epoch function (DuckDB ``epoch_us``, Spark ``unix_micros``) reads the instant as is.
    """
    udf = _epoch_udfs().get(eng.name)
    if udf is None:
        return (ts.epoch_seconds() * 1_000_000).cast("int64")
    return udf(ts)


@lru_cache(maxsize=1)
def _epoch_udfs() -> dict[str, Any]:
    import ibis
    import ibis.expr.datatypes as dt

    def epoch_us(ts: Any) -> Any:
        """DuckDB's ``epoch_us``."""

    def unix_micros(ts: Any) -> Any:
        """Spark's ``unix_micros``."""

    sig = ((dt.Timestamp(),), dt.int64)
    return {
        "duckdb": ibis.udf.scalar.builtin(name="epoch_us", signature=sig)(epoch_us),
        "spark": ibis.udf.scalar.builtin(name="unix_micros", signature=sig)(unix_micros),
    }


@lru_cache(maxsize=1)
def _hash_udfs() -> dict[str, Any]:
    import ibis
    import ibis.expr.datatypes as dt

    def hash(value: Any) -> Any:
        """DuckDB's ``hash`` (UBIGINT)."""

    def xxhash64(value: Any) -> Any:
        """Spark's ``xxhash64`` (BIGINT)."""

    return {
        "duckdb": ibis.udf.scalar.builtin(name="hash", signature=((dt.string,), dt.uint64))(hash),
        "spark": ibis.udf.scalar.builtin(name="xxhash64", signature=((dt.string,), dt.int64))(
            xxhash64
        ),
    }


def _vin_key(eng: Engine, vin: Any) -> Any:
    """The engine's 64-bit hash of ``vin``: the pass's vehicle key (no strings in the kernel)."""
    udf = _hash_udfs().get(eng.name)
    if udf is None:
        raise ValueError(f"no 64-bit hash known for engine {eng.name!r}")
    return udf(vin)


def _as_int64(keys: pd.Series) -> pd.Series:
    """Keys as the pass returns them (int64; DuckDB's unsigned hashes reinterpreted)."""
    arr = keys.to_numpy()
    if arr.dtype == np.uint64:
        arr = arr.view(np.int64)
    return pd.Series(arr.astype(np.int64, copy=False), index=keys.index)


def _vin_names(eng: Engine, motion: Any, veh: pd.DataFrame, keys: pd.Series) -> pd.Series:
    """VIN of each vehicle key: from ``vehicles``, else from the motion rows of the key.

    Raises
    ------
    RuntimeError
        If two VINs found share a key (a 64-bit hash collision; about n²/2**65 for n VINs).
    """
    veh["vkey"] = _as_int64(veh["vkey"])
    found = veh[["vkey", "vin"]]
    missing = np.setdiff1d(keys.unique(), found["vkey"].to_numpy())
    if len(missing):  # vehicles with motion but no row in ``vehicles``: one more lookup
        rows = motion.anti_join(eng.table("vehicles"), "vin")
        extra = eng.execute(rows.select("vin", vkey=_vin_key(eng, rows.vin)).distinct())
        extra["vkey"] = _as_int64(extra["vkey"])
        found = pd.concat([found, extra], ignore_index=True).drop_duplicates()
    if found["vkey"].duplicated().any():
        raise RuntimeError("two VINs share a 64-bit key; the driving pass cannot tell them apart")
    return pd.Series(found["vin"].to_numpy(), index=found["vkey"].to_numpy())


def _vehicle_limits(veh: pd.DataFrame, p: DrivingParams) -> tuple[Any, Any]:
    """Sorted vehicle keys and their class thresholds (accel, brake, lateral) per row.

    A key listed twice takes its first row's class.
    """
    first = veh.drop_duplicates("vkey")
    keys = _as_int64(first["vkey"]).to_numpy(np.int64)
    th = np.array(
        [
            (t.accel_mps2, t.brake_mps2, t.lateral_mps2)
            for t in (p.thresholds_for(b) for b in first["body_type"])
        ],
        np.float64,
    ).reshape(-1, 3)
    order = np.argsort(keys, kind="stable")
    return keys[order], th[order]


def _harsh_counts(a: PassArrays, groups: _Groups, gap_s: float, period: str) -> Any:
    """Harsh events per group (rows) and kind (columns, :data:`HARSH_KINDS` order).

    An event is a run of a vehicle's fixes beyond its class threshold of that kind, with no
    gap longer than ``event_gap_s``; it counts in the period of its first fix (the first
    fix of the interval that starts it, in (kind, vehicle, first fix) order).
    """
    from autopersona.features.driving_pass import HARSH_KINDS, event_starts

    k = len(HARSH_KINDS)
    order = np.lexsort((a.iv_first, a.iv_vkey, a.iv_kind))
    kind, key, first = a.iv_kind[order], a.iv_vkey[order], a.iv_first[order]
    start = event_starts(kind, key, first, a.iv_last[order], gap_s)
    g = groups.find(key[start], _period_days(a.iv_hour[order][start] // 24, period))
    ok = g >= 0  # every harsh fix is a motion row, so its group exists
    n = np.bincount(g[ok] * k + kind[start][ok], minlength=groups.n * k)
    return n.reshape(groups.n, k)


def _bucket(eng: Engine, ts: Any, seconds: int) -> Any:
    """Index of the UTC bucket of ``seconds`` (3600: hour, 86400: day) holding ``ts``."""
    return _epoch_us(eng, ts) // (seconds * 1_000_000)


def _bucket_period(idx: pd.Series, seconds: int, period: str) -> pd.Series:
    """``period_start`` (naive UTC ``datetime64[us]``) of UTC buckets from :func:`_bucket`.

    Hours and days nest in days, ISO weeks and months, so this equals truncating each
    timestamp of the bucket.

    Examples
    --------
    >>> h = pd.Series([494_015, 494_016])  # 2026-05-10 23:00 (a Sunday), 2026-05-11 00:00
    >>> _bucket_period(h, 3600, "week").dt.strftime("%Y-%m-%d").tolist()
    ['2026-05-04', '2026-05-11']
    >>> _bucket_period(h, 3600, "month").dt.strftime("%Y-%m-%d").tolist()
    ['2026-05-01', '2026-05-01']
    """
    days = (idx.to_numpy(np.int64) * seconds) // 86400  # days since 1970-01-01, a Thursday
    out = _period_days(days, period).astype("datetime64[D]")
    return pd.Series(out.astype("datetime64[us]"), index=idx.index)


def _period_days(days: Any, period: str) -> Any:
    """First day of the period holding each day (days since 1970-01-01, int64).

    >>> _period_days(np.array([20583, 20584]), "week").tolist()  # Sun 2026-05-10, Mon 05-11
    [20577, 20584]
    """
    days = np.asarray(days, np.int64)
    if period == "day":
        return days
    if period == "week":
        return days - (days + 3) % 7  # 1970-01-01 was a Thursday: back to Monday
    if period == "month":
        uniq, inv = np.unique(days, return_inverse=True)
        first = uniq.astype("datetime64[D]").astype("datetime64[M]").astype("datetime64[D]")
        return first.astype(np.int64)[inv]
    raise ValueError(f"unknown period {period!r}: use day, week or month")


class _Groups:
    """The (vehicle key, period) groups of the pass's partial rows, in key then period order."""

    def __init__(self, key: Any, pday: Any) -> None:
        self.keys, kc = np.unique(key, return_inverse=True)
        self.days, pc = np.unique(pday, return_inverse=True)
        gid = kc.astype(np.int64) * len(self.days) + pc
        self.ids, self.of_rows = np.unique(gid, return_inverse=True)
        self.n = len(self.ids)
        self.key = self.keys[self.ids // len(self.days)]
        self.day = self.days[self.ids % len(self.days)]

    def find(self, key: Any, pday: Any) -> Any:
        """Group of each (key, period start day); -1 where there is none."""
        key, pday = np.asarray(key, np.int64), np.asarray(pday, np.int64)
        if not len(key):
            return np.zeros(0, np.int64)
        k = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        d = np.minimum(np.searchsorted(self.days, pday), len(self.days) - 1)
        gid = k * len(self.days) + d
        i = np.minimum(np.searchsorted(self.ids, gid), self.n - 1)
        ok = (self.keys[k] == key) & (self.days[d] == pday) & (self.ids[i] == gid)
        return np.where(ok, i, -1)

    def sum(self, rows: Any, values: Any) -> Any:
        """Per group: the sum of its rows' non-NaN values; NaN when all of them are NaN (SQL)."""
        v = np.asarray(values, np.float64)
        nan = np.isnan(v)
        total = np.bincount(rows, np.where(nan, 0.0, v), minlength=self.n)
        if nan.any():
            total[np.bincount(rows[~nan], minlength=self.n) == 0] = np.nan
        return total


_KEY = ["vin", "period_start"]
#: output columns, in the order of ``dictionary/driving.yaml``
_COLUMNS = [
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
    from autopersona.features.driving_pass import (
        HARSH_KINDS,
        MOTION_COLUMNS,
        PASS_SCHEMA,
        PassLimits,
        motion_pass_batches,
        pass_arrays,
    )

    if period not in PERIOD_UNITS:
        raise ValueError(f"unknown period {period!r}: use day, week or month")
    p = params or load_params()
    raw = _since_filter(eng.table("motion"), "ts", since)
    veh_t = eng.table("vehicles")
    veh = eng.execute(veh_t.select("vin", "body_type", "timezone", vkey=_vin_key(eng, veh_t.vin)))
    veh["vkey"] = _as_int64(veh["vkey"])
    # One pass over motion (the compiled kernel, on the engine's batches): partial aggregates
    # per (vehicle, UTC hour) and the harsh intervals (each vehicle's class thresholds).
    motion = raw.select(*MOTION_COLUMNS[1:], vkey=_vin_key(eng, raw.vin))
    keys, th = _vehicle_limits(veh, p)
    default = p.harsh_thresholds["default"]
    lim = PassLimits(
        moving_mps=p.moving_mps,
        highway_mps=p.highway_mps,
        accel_mps2=default.accel_mps2,
        brake_mps2=default.brake_mps2,
        lateral_mps2=default.lateral_mps2,
        event_gap_s=p.event_gap_s,
        vehicle_keys=keys,
        vehicle_thresholds=th,
    )
    a = pass_arrays(
        eng.map_batches(
            motion, functools.partial(motion_pass_batches, lim=lim), PASS_SCHEMA, split="motion"
        )
    )
    if not len(a.vkey):  # no motion since ``since``: no rows (typed like a full result)
        return _empty()
    # odometer and V2X aggregates per (vehicle, UTC day): run while numpy works on the pass
    sig = _since_filter(eng.table("vehicle_signals"), "ts", since)
    odo = sig.group_by(["vin", _bucket(eng, sig.ts, 86400).name("day")]).aggregate(
        odo_max=sig.odometer_km.max(), odo_min=sig.odometer_km.min()
    )
    v2x = _since_filter(eng.table("v2x_context"), "ts", since)
    ctx = v2x.group_by(["vin", _bucket(eng, v2x.ts, 86400).name("day")]).aggregate(
        highway_n=v2x.count(where=v2x.road_type == "highway"),
        road_n=v2x.road_type.count(),
        congestion_sum=v2x.congestion_level.sum(),
        congestion_n=v2x.congestion_level.count(),
    )
    odo_later, ctx_later = eng.execute_later(odo), eng.execute_later(ctx)
    # per (vehicle key, period): integers group faster than strings; VINs at the end
    groups = _Groups(a.vkey, _period_days(a.hour // 24, period))
    names = _vin_names(eng, raw, veh, pd.Series(groups.keys))
    cols = _roll_up(a, groups)
    harsh = _harsh_counts(a, groups, p.event_gap_s, period)
    for j, kind in enumerate(HARSH_KINDS):
        cols[_KINDS[kind]] = harsh[:, j]
    cols["night_share"] = _night_of_groups(a, groups, veh, p.night_hours)
    key_of_vin = pd.Index(names.to_numpy())
    od = odo_later()
    rows = _rows_of(groups, names, key_of_vin, od, period)
    ok = rows >= 0
    top, low = np.full(groups.n, np.nan), np.full(groups.n, np.nan)
    np.fmax.at(top, rows[ok], od["odo_max"].to_numpy(np.float64, na_value=np.nan)[ok])
    np.fmin.at(low, rows[ok], od["odo_min"].to_numpy(np.float64, na_value=np.nan)[ok])
    cols["odo_km"] = top - low
    cx = ctx_later()
    rows = _rows_of(groups, names, key_of_vin, cx, period)
    ok = rows >= 0
    seen = np.bincount(rows[ok], minlength=groups.n) > 0
    for c in ("highway_n", "road_n"):
        cols[c] = np.where(seen, groups.sum(rows[ok], _floats(cx[c])[ok]), np.nan)
    # exact integer sums (DuckDB returns them as decimals), so the mean equals AVG's
    total = np.where(seen, groups.sum(rows[ok], _floats(cx["congestion_sum"])[ok]), np.nan)
    n_cong = groups.sum(rows[ok], _floats(cx["congestion_n"])[ok])
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["congestion_mean"] = np.where(n_cong > 0, total / n_cong, np.nan)
    out = _derive(cols, p)
    vin = names.reindex(groups.key).to_numpy()
    order = np.lexsort((groups.day, np.unique(vin, return_inverse=True)[1]))
    frame = {"vin": vin[order], "period_start": _day_stamps(groups.day[order])}
    frame |= {c: out[c][order] for c in _COLUMNS[2:]}
    return pd.DataFrame(frame)


def _floats(s: pd.Series) -> Any:
    """A column as float64, NaN for null (decimals and nullable integers included)."""
    return s.to_numpy(np.float64, na_value=np.nan)


def _day_stamps(days: Any) -> Any:
    """Days since 1970-01-01 as naive ``datetime64[us]`` (midnight UTC)."""
    return np.asarray(days, np.int64).astype("datetime64[D]").astype("datetime64[us]")


def _rows_of(
    groups: _Groups, names: pd.Series, key_of_vin: pd.Index, df: pd.DataFrame, period: str
) -> Any:
    """Group of each row of a per-(vin, UTC day) frame; -1 for vehicles or periods not there."""
    if df.empty:
        return np.zeros(0, np.int64)
    pos = key_of_vin.get_indexer(pd.Index(df["vin"]))
    keys = names.index.to_numpy(np.int64)[np.maximum(pos, 0)]
    days = _period_days(df["day"].to_numpy(np.int64), period)
    return np.where(pos >= 0, groups.find(keys, days), -1)


def _empty() -> pd.DataFrame:
    ints = {"samples", "moving_s", "harsh_accel_events", "harsh_brake_events"}
    ints.add("harsh_corner_events")
    cols: dict[str, pd.Series] = {
        "vin": pd.Series(dtype="str"),
        "period_start": pd.Series(dtype="datetime64[us]"),
    }
    for c in _COLUMNS[2:]:
        cols[c] = pd.Series(dtype="int64" if c in ints else "float64")
    return pd.DataFrame(cols)


_SUMS = [
    "samples",
    "moving_s",
    "speed_sum",
    "mv_sum",
    "mv_sq",
    "highway_s",
    "acc_sum",
    "acc_n",
    "lat_sum",
    "lat_n",
    "fd_sum",
    "fd_n",
    "radar_n",
    "short_headway_n",
    "lane_sum",
    "lane_sq",
    "lane_n",
    "lane_dep_n",
]
#: sums of 0/1 indicators: exact; all-null hours count 0
_COUNTS = ["samples", "moving_s", "highway_s", "acc_n", "lat_n", "fd_n", "radar_n"]
_COUNTS += ["short_headway_n", "lane_n", "lane_dep_n"]


def _key_groups(df: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    """Group of each row by (vin, period_start), in first-seen order, and the groups' keys."""
    vin, vins = pd.factorize(df["vin"].to_numpy())
    per, pers = pd.factorize(df["period_start"].to_numpy())
    group, combos = pd.factorize(vin.astype(np.int64) * max(len(pers), 1) + per)
    keys = {
        "vin": np.asarray(vins)[combos // max(len(pers), 1)],
        "period_start": np.asarray(pers)[combos % max(len(pers), 1)],
    }
    return group, keys


def _roll_up(a: PassArrays, groups: _Groups) -> dict[str, Any]:
    """Per-group sums, counts, maximum speed and the means and deviations they give.

    Sums skip NaN and are NaN for a period without a value (SQL's ``sum``); the maximum
    likewise.  An hour without a speed has no speed sum and no maximum.
    """
    from autopersona.features.driving_pass import PARTIAL_COLUMNS

    at = {c: j for j, c in enumerate(PARTIAL_COLUMNS)}
    no_speed = a.agg[:, at["speed_n"]] == 0
    rows = groups.of_rows
    cols: dict[str, Any] = {}
    for c in _SUMS:
        v = a.agg[:, at[c]]
        total = groups.sum(rows, np.where(no_speed, np.nan, v) if c == "speed_sum" else v)
        cols[c] = np.nan_to_num(total).astype(np.int64) if c in _COUNTS else total
    top = np.full(groups.n, np.nan)
    np.fmax.at(top, rows, np.where(no_speed, np.nan, a.agg[:, at["max_speed"]]))
    cols["max_speed"] = top

    def pos(col: str) -> Any:
        k = cols[col].astype(np.float64)
        return np.where(k > 0, k, np.nan)

    def sd(total: str, squares: str, count: str) -> Any:
        k = pos(count)
        s, q = cols[total], cols[squares]
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.where(k >= 2, (q - s * s / k) / (k - 1), np.nan)
        return np.sqrt(np.where(var < 0, 0.0, var))

    with np.errstate(divide="ignore", invalid="ignore"):
        cols["mean_speed"] = cols["mv_sum"] / pos("moving_s")
        cols["sd_speed"] = sd("mv_sum", "mv_sq", "moving_s")
        cols["accel_abs_mean"] = cols["acc_sum"] / pos("acc_n")
        cols["lateral_abs_mean"] = cols["lat_sum"] / pos("lat_n")
        cols["following_distance_mean_m"] = cols["fd_sum"] / pos("fd_n")
        cols["lane_offset_sd_m"] = sd("lane_sum", "lane_sq", "lane_n")
    return cols


def _night_of_groups(
    a: PassArrays, groups: _Groups, veh: pd.DataFrame, night: tuple[int, int]
) -> Any:
    """Share of moving seconds in local night hours per group (NaN without any)."""
    from autopersona.features.driving_pass import PARTIAL_COLUMNS

    secs = a.agg[:, PARTIAL_COLUMNS.index("moving_s")]
    mv = secs > 0
    rows, hours, secs = groups.of_rows[mv], a.hour[mv], secs[mv]
    first = veh.drop_duplicates("vkey")
    zone = pd.Series(first["timezone"].to_numpy(), index=first["vkey"].to_numpy(np.int64))
    names = zone.reindex(groups.keys).fillna("UTC").to_numpy(str)
    zones, zone_of_key = np.unique(names, return_inverse=True)
    z = zone_of_key[np.searchsorted(groups.keys, a.vkey[mv])]
    local = np.zeros(len(hours), np.int64)
    for j, name in enumerate(zones):  # each distinct UTC hour converted once per zone
        sel = z == j
        uniq, inv = np.unique(hours[sel], return_inverse=True)
        stamps = pd.DatetimeIndex(uniq.astype("datetime64[h]").astype("datetime64[ns]"), tz="UTC")
        local[sel] = stamps.tz_convert(str(name)).hour.to_numpy(np.int64)[inv]
    start, end = night
    is_night = (
        (local >= start) | (local < end) if start > end else ((local >= start) & (local < end))
    )
    total = np.bincount(rows, secs, minlength=groups.n)
    at_night = np.bincount(rows, np.where(is_night, secs, 0.0), minlength=groups.n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, at_night / total, np.nan)


def _night_share(hours: pd.DataFrame, tz: pd.DataFrame, night: tuple[int, int]) -> pd.DataFrame:
    """Share of moving seconds in local night hours, per (vin, period_start)."""
    if hours.empty:
        return pd.DataFrame(columns=["vin", "period_start", "night_share"])
    h = hours.merge(tz, on="vin", how="left")
    # the local hour of each distinct (zone, UTC hour), each zone converted once
    zone, zones = pd.factorize(h["timezone"].fillna("UTC"))
    hour, utc = pd.factorize(h["hour"])
    pair, pairs = pd.factorize(zone.astype(np.int64) * len(utc) + hour)
    local = np.zeros(len(pairs), np.int64)
    for z, name in enumerate(zones):
        sel = pairs // len(utc) == z
        local[sel] = pd.DatetimeIndex(utc[pairs[sel] % len(utc)]).tz_convert(str(name)).hour
    local_hour = local[pair]
    start, end = night
    is_night = (
        (local_hour >= start) | (local_hour < end)
        if start > end
        else ((local_hour >= start) & (local_hour < end))
    )
    secs = h["s"].to_numpy(np.float64)
    group, cols = _key_groups(h)
    total = np.bincount(group, secs, minlength=len(cols["vin"]))
    cols["night_share"] = np.bincount(group, np.where(is_night, secs, 0.0), len(total)) / total
    return pd.DataFrame(cols)


def _finish(
    df: pd.DataFrame, hours: pd.DataFrame, tz: pd.DataFrame, p: DrivingParams
) -> pd.DataFrame:
    """The output columns from the per-period sums and the moving seconds per UTC hour."""
    return _finish_with(df, _night_share(hours, tz, p.night_hours), p)


def _finish_with(df: pd.DataFrame, night: pd.DataFrame, p: DrivingParams) -> pd.DataFrame:
    """The output columns from the per-period sums and the night shares."""
    out = df.merge(night, on=["vin", "period_start"], how="left")
    cols = {c: _floats(out[c]) for c in _INPUTS}
    derived = _derive(cols, p)
    frame = {"vin": out["vin"].to_numpy(), "period_start": out["period_start"].to_numpy()}
    return pd.DataFrame(frame | {c: derived[c] for c in _COLUMNS[2:]})


#: what :func:`_derive` reads
_INPUTS = [
    "samples",
    "moving_s",
    "speed_sum",
    "mean_speed",
    "sd_speed",
    "max_speed",
    "highway_s",
    "highway_n",
    "road_n",
    "congestion_mean",
    "night_share",
    "harsh_accel_events",
    "harsh_brake_events",
    "harsh_corner_events",
    "odo_km",
    "accel_abs_mean",
    "lateral_abs_mean",
    "following_distance_mean_m",
    "radar_n",
    "short_headway_n",
    "lane_offset_sd_m",
    "lane_n",
    "lane_dep_n",
]


def _derive(c: dict[str, Any], p: DrivingParams) -> dict[str, Any]:
    """The output columns (but vin and period) from per-period sums, counts and means.

    ``c`` holds :data:`_INPUTS` as arrays, NaN where unknown (no harsh event: NaN or 0).
    """

    def f(name: str) -> Any:
        return np.asarray(c[name], np.float64)

    def over(num: str, den: str) -> Any:
        d = f(den)
        return f(num) / np.where(d > 0, d, np.nan)

    out: dict[str, Any] = {
        "samples": np.asarray(c["samples"]).astype(np.int64),
        "moving_s": np.asarray(c["moving_s"]).astype(np.int64),
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        for kind in ("accel", "brake", "corner"):
            out[f"harsh_{kind}_events"] = np.nan_to_num(f(f"harsh_{kind}_events")).astype(np.int64)
        out["distance_gps_km"] = f("speed_sum") / 1000.0
        odo = f("odo_km")
        out["distance_km"] = np.where(np.isnan(odo), out["distance_gps_km"], odo)
        out["mean_speed_kmh"] = f("mean_speed") * 3.6
        out["max_speed_kmh"] = f("max_speed") * 3.6
        out["speed_volatility"] = f("sd_speed") / f("mean_speed")
        out["highway_speed_share"] = over("highway_s", "moving_s")
        out["highway_share"] = over("highway_n", "road_n")
        out["congestion_mean"] = f("congestion_mean")
        out["night_share"] = f("night_share")
        out["short_headway_share"] = over("short_headway_n", "radar_n")
        out["lane_departure_share"] = over("lane_dep_n", "lane_n")
        dist = np.where(out["distance_km"] >= 1.0, out["distance_km"], np.nan)
        for kind in ("accel", "brake", "corner"):
            out[f"harsh_{kind}_per_100km"] = out[f"harsh_{kind}_events"] / dist * 100.0
        for name in ("accel_abs_mean", "lateral_abs_mean", "following_distance_mean_m"):
            out[name] = f(name)
        out["lane_offset_sd_m"] = f("lane_offset_sd_m")
        s = p.aggressiveness_scales
        a, b, cc, d = (
            np.clip(out[name] / s[name], 0, 1)
            for name in (
                "harsh_accel_per_100km",
                "harsh_brake_per_100km",
                "harsh_corner_per_100km",
                "speed_volatility",
            )
        )
        headway = np.clip(out["short_headway_share"] / s["short_headway_share"], 0, 1)
        total = a + b + cc + d + np.where(np.isnan(headway), 0.0, headway)
        count = 4 + (~np.isnan(headway)).astype(np.int64)
        out["aggressiveness_index"] = 100.0 * total / count
    return out
