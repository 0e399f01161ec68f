"""Trips and stays of one vehicle: fix cleaning, trip segmentation and dwell-weighted stays.

These are the first per-vehicle mobility steps (design brief §3, §8): plain functions over one
vehicle's batch, so that a local process pool or Spark's ``applyInPandas`` can run them.
:mod:`autopersona.features.mobility` chains them with locations and trip purpose.

Fixes
    :func:`clean_fixes` takes the vehicle's ``motion`` rows in any order. Rows without a time
    or a finite, in-range position are dropped and counted (``n_invalid``); the rest are
    sorted by time (rows that came after a later one are counted as ``n_out_of_order``) and
    of several fixes with the same time the first in input order is kept (the others are
    counted as ``n_duplicate_ts``). Position jumps are dropped too (``n_jumps``): a fix that
    would need more than ``max_jump_speed_mps`` (default 100 m/s) from the last kept fix is
    dropped, unless such fixes go on for ``jump_hold_s`` (60 s), when the new position is
    taken as real. Ingestion already removes single-fix drift spikes; this catches runs of
    bad fixes (e.g. a block of ``lat = 0`` in the Twizy data). Nothing raises on bad data.

Trips (:func:`segment_trips`)
    A new trip starts at a fix when more than ``gap_s`` seconds (default 300) passed since the
    previous fix, or when the ignition was switched off in between: an ``ignition_on = false``
    sample at time ``t`` ends the trip at the last fix at or before ``t``. Segments with a
    single fix, shorter than ``min_duration_s``, or that never get ``min_distance_km`` away
    from their first fix (or whose haversine length is under it) are dropped and counted
    (``n_short_dropped``); so the GPS jitter of a parked car that keeps logging is no trip. ``distance_km`` is the haversine sum over
    consecutive fixes; ``speed_distance_km`` the trapezoid integral of the speed over time
    (missing speeds interpolated in time), given when at least half of the trip's fixes have
    a speed. Local fields (start hour, weekday, night flag, ISO week) use the vehicle's IANA
    time zone. ``dwell_s`` is the time from the trip's last fix to the next trip's first fix
    (null for the last trip of the batch).

Stays (:func:`find_stays`)
    Stay points by the trackintel sliding-window rule of
    :func:`autopersona.features.staypoints.staypoints_arrays` (100 m, 5 min by default), run
    with a long gap limit (72 h) and ``include_last``: connected vehicles log no fixes while
    parked, so the parking gap *is* the stay, and must not throw the window away. Two changes
    to the stay point's fields:

    * the position is the **dwell-weighted** centroid of the window's fixes, each fix weighted
      by the time until the next fix (the window's last fix until the stay ends). The parked
      fix before a parking gap dominates, instead of the approach and departure fixes that
      trackintel's mean of distinct positions gives equal weight;
    * ``open_end`` marks the stay still open at the end of the batch (its dwell is a lower
      bound); ``moved_in_gap`` marks a stay closed by a fix far away that came after a gap
      longer than ``gap_s`` (the vehicle reappeared elsewhere: data outage or unlogged trip).

    Night and workday dwell (``night_dwell_h``, ``workday_dwell_h``) are the hours of each stay
    that fall in the local night window (default 22:00-06:00) and in the local workday window
    (default Mon-Fri 09:00-17:00), on the local wall clock (a stay across a daylight-saving
    change can be off by the hour of the change).

Examples
--------
>>> import pandas as pd
>>> t0 = pd.Timestamp("2024-05-06 07:00", tz="UTC")
>>> fixes = pd.DataFrame({
...     "ts": [t0 + pd.Timedelta(seconds=s) for s in (0, 60, 120, 180, 7200, 7260, 7320)],
...     "lat": [48.00, 48.01, 48.02, 48.03, 48.03, 48.02, 48.01],
...     "lon": [11.0] * 7,
... })
>>> fx, rep = clean_fixes(fixes)
>>> trips, n_short = segment_trips(fx, timezone="Europe/Berlin")
>>> trips[["trip_seq", "distance_km", "duration_s", "start_hour_local", "dwell_s"]]
   trip_seq  distance_km  duration_s  start_hour_local  dwell_s
0         0     3.335848       180.0                 9   7020.0
1         1     2.223899       120.0                11      NaN
"""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import jit

from autopersona.features.staypoints import EARTH_RADIUS_M, staypoints_arrays

__all__ = [
    "STAY_COLUMNS",
    "TRIP_COLUMNS",
    "FixReport",
    "Fixes",
    "StayParams",
    "TripParams",
    "clean_fixes",
    "find_stays",
    "haversine_m",
    "ignition_off_times",
    "jerk_samples",
    "local_wall_seconds",
    "resolve_timezone",
    "segment_trips",
    "trip_bounds",
    "window_overlap_s",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_NS = 1_000_000_000
_DAY_S = 86_400

TRIP_COLUMNS = [
    "vin",
    "trip_seq",
    "started_at",
    "finished_at",
    "origin_lat",
    "origin_lon",
    "dest_lat",
    "dest_lon",
    "distance_km",
    "duration_s",
    "speed_distance_km",
    "max_speed_mps",
    "n_fixes",
    "start_hour_local",
    "weekday_local",
    "night",
    "iso_year",
    "iso_week",
    "dwell_s",
    "jerk_n",
    "jerk_sum",
    "jerk_abs_sum",
    "jerk_sq_sum",
    "jerk_high_n",
]
"""Columns of :func:`segment_trips`' result, in order."""

STAY_COLUMNS = [
    "vin",
    "stay_id",
    "started_at",
    "finished_at",
    "lat",
    "lon",
    "dwell_s",
    "n_fixes",
    "open_end",
    "moved_in_gap",
    "night_dwell_h",
    "workday_dwell_h",
    "iso_year",
    "iso_week",
]
"""Columns of :func:`find_stays`' result, in order."""


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class TripParams:
    """Trip segmentation settings.

    Attributes
    ----------
    gap_s
        A time gap between consecutive fixes longer than this (seconds) starts a new trip.
    min_distance_km, min_duration_s
        Segments shorter than either, or that never get ``min_distance_km`` from their first
        fix, are dropped (and counted).
    night_start_h, night_end_h
        Local night window for a trip's ``night`` flag (start time in ``[22, 24) ∪ [0, 6)``
        by default).
    min_speed_coverage
        Share of a trip's fixes that must carry a speed for ``speed_distance_km``.
    max_jump_speed_mps, jump_hold_s
        Position-jump filter of :func:`clean_fixes` (``None`` turns it off).
    jerk_max_dt_s
        Longest spacing (seconds) of the three consecutive speed samples a jerk value is
        taken from; wider spacings (gaps, dropped fixes) give no jerk.
    jerk_high_mps3
        Magnitude (m/s³) from which a jerk value counts as high.

    Examples
    --------
    >>> TripParams().gap_s, TripParams(gap_s=120).gap_s
    (300.0, 120)
    """

    gap_s: float = 300.0
    min_distance_km: float = 0.1
    min_duration_s: float = 30.0
    night_start_h: float = 22.0
    night_end_h: float = 6.0
    min_speed_coverage: float = 0.5
    max_jump_speed_mps: float | None = 100.0
    jump_hold_s: float = 60.0
    jerk_max_dt_s: float = 1.5
    jerk_high_mps3: float = 1.5


def jerk_samples(t_ns: IntArray, speed: FloatArray, max_dt_s: float) -> tuple[FloatArray, IntArray]:
    """Longitudinal jerk (m/s³) from consecutive speed samples, and the index it belongs to.

    Acceleration is the speed's forward difference, ``a_i = (v_{i+1} - v_i) / dt_i``, placed
    at the interval's midpoint; jerk is the difference of two consecutive accelerations over
    the distance between their midpoints, ``j_i = (a_i - a_{i-1}) / ((dt_{i-1} + dt_i) / 2)``,
    and belongs to fix ``i``.  Triples with a missing speed or a spacing above ``max_dt_s``
    give nothing, so gaps and dropped fixes never read as a jolt.

    Examples
    --------
    >>> t = np.arange(5, dtype=np.int64) * 1_000_000_000
    >>> j, at = jerk_samples(t, np.array([0.0, 1.0, 3.0, 6.0, 6.0]), 1.5)
    >>> j.tolist(), at.tolist()
    ([1.0, 1.0, -3.0], [1, 2, 3])
    >>> jerk_samples(t, np.array([0.0, 1.0, np.nan, 6.0, 6.0]), 1.5)[0].tolist()
    []
    """
    if t_ns.size < 3:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    dt = np.diff(t_ns) / _NS
    acc = np.diff(speed) / dt
    mid = 0.5 * (dt[:-1] + dt[1:])
    jerk = np.diff(acc) / mid
    ok = np.isfinite(jerk) & (dt[:-1] <= max_dt_s) & (dt[1:] <= max_dt_s) & (dt[:-1] > 0)
    idx = np.flatnonzero(ok).astype(np.int64) + 1
    return jerk[ok], idx


@dataclass(frozen=True)
class StayParams:
    """Stay settings (the sliding window of :mod:`autopersona.features.staypoints`).

    Attributes
    ----------
    dist_m
        Metres a fix must be from the window's anchor to close the window.
    min_minutes
        Minutes a window must span to be a stay.
    max_gap_h
        Longest gap between fixes (hours) that a stay may span; longer gaps drop the window.
    night_start_h, night_end_h
        Local night window for ``night_dwell_h``.
    work_start_h, work_end_h, work_days
        Local workday window for ``workday_dwell_h`` (weekdays 0 = Monday).

    Examples
    --------
    >>> StayParams().dist_m, StayParams().work_days
    (100.0, (0, 1, 2, 3, 4))
    """

    dist_m: float = 100.0
    min_minutes: float = 5.0
    max_gap_h: float = 72.0
    night_start_h: float = 22.0
    night_end_h: float = 6.0
    work_start_h: float = 9.0
    work_end_h: float = 17.0
    work_days: tuple[int, ...] = (0, 1, 2, 3, 4)


class Fixes(NamedTuple):
    """One vehicle's usable fixes: sorted by time, one per time.

    Attributes
    ----------
    t
        Nanoseconds since the Unix epoch (UTC), strictly increasing.
    lat, lon
        WGS84 degrees.
    speed
        Ground speed in m/s, NaN where missing.
    """

    t: IntArray
    lat: FloatArray
    lon: FloatArray
    speed: FloatArray


@dataclass
class FixReport:
    """What :func:`clean_fixes` did with a vehicle's rows.

    Attributes
    ----------
    n_in
        Rows passed in.
    n_invalid
        Rows without a time or without a finite position within [-90, 90] x [-180, 180].
    n_out_of_order
        Valid rows whose time is earlier than that of a row before them in the input.
    n_duplicate_ts
        Valid rows dropped because an earlier row (in input order) has the same time.
    n_jumps
        Fixes dropped as position jumps.
    n_used
        Fixes kept.
    has_speed
        Whether any kept fix carries a speed.
    """

    n_in: int = 0
    n_invalid: int = 0
    n_out_of_order: int = 0
    n_duplicate_ts: int = 0
    n_jumps: int = 0
    n_used: int = 0
    has_speed: bool = False


# ----------------------------------------------------------------------------- helpers
def haversine_m(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> FloatArray:
    """Great-circle distance in metres (haversine, sphere of radius 6,371 km).

    Examples
    --------
    >>> round(float(haversine_m(0.0, 0.0, 0.0, 1.0)), 1)
    111194.9
    """
    p1 = np.radians(np.asarray(lat1, dtype=np.float64))
    p2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    out: FloatArray = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return out


def resolve_timezone(tz: Any) -> tuple[str, str | None]:
    """A usable IANA zone name, and a reason when ``tz`` was not one (then ``"UTC"``).

    Examples
    --------
    >>> resolve_timezone("Asia/Shanghai")
    ('Asia/Shanghai', None)
    >>> resolve_timezone("Mars/Olympus")
    ('UTC', "unknown time zone 'Mars/Olympus': UTC used")
    >>> resolve_timezone(None)
    ('UTC', 'no time zone: UTC used')
    """
    if tz is None or (isinstance(tz, float) and math.isnan(tz)) or str(tz).strip() == "":
        return "UTC", "no time zone: UTC used"
    name = str(tz).strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "UTC", f"unknown time zone {name!r}: UTC used"
    return name, None


def _local_index(t_ns: IntArray, tz: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(t_ns.astype("datetime64[ns]")).tz_localize("UTC").tz_convert(tz)


def local_wall_seconds(t_ns: npt.ArrayLike, tz: str) -> FloatArray:
    """Local wall-clock time as seconds since 1970-01-01 00:00 *local* (a naive clock).

    Examples
    --------
    >>> t = pd.DatetimeIndex(["2024-01-01 23:30"], tz="UTC").as_unit("ns").asi8
    >>> float(local_wall_seconds(t, "Asia/Shanghai")[0] % 86400 / 3600)  # 07:30 next day
    7.5
    """
    t = np.asarray(t_ns, dtype=np.int64)
    if t.size == 0:
        return np.zeros(0)
    naive = _local_index(t, tz).tz_localize(None).as_unit("ns").asi8
    return np.asarray(naive, dtype=np.float64) / _NS


def window_overlap_s(
    start_s: npt.ArrayLike,
    end_s: npt.ArrayLike,
    from_h: float,
    to_h: float,
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6),
) -> FloatArray:
    """Seconds of each interval that fall in a daily clock window.

    Times are wall-clock seconds since 1970-01-01 00:00 (see :func:`local_wall_seconds`).
    The window runs from ``from_h`` to ``to_h`` every day; when ``to_h <= from_h`` it runs
    past midnight (22 to 6 is the night starting on each day). ``weekdays`` (0 = Monday)
    selects the days on which a window *starts*.

    Examples
    --------
    >>> # Monday 1970-01-05 20:00 to Tuesday 08:00: 8 h of the 22-6 night
    >>> mon = 4 * 86400
    >>> window_overlap_s([mon + 20 * 3600], [mon + 32 * 3600], 22, 6) / 3600
    array([8.])
    >>> # the same stay holds no Mon-Fri 9-17 time, and 1 h on Tuesday if it ran to 10:00
    >>> window_overlap_s([mon + 20 * 3600], [mon + 34 * 3600], 9, 17, (0, 1, 2, 3, 4)) / 3600
    array([1.])
    """
    s = np.asarray(start_s, dtype=np.float64)
    e = np.asarray(end_s, dtype=np.float64)
    if s.size == 0:
        return np.zeros(0)
    span_h = (to_h - from_h) % 24.0 or 24.0
    d0 = np.floor(s / _DAY_S).astype(np.int64) - 1
    d1 = np.floor(e / _DAY_S).astype(np.int64)
    counts = np.maximum(d1 - d0 + 1, 1)
    rep = np.repeat(np.arange(s.size), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    day = d0[rep] + (np.arange(rep.size) - offsets[rep])
    w0 = day * _DAY_S + from_h * 3600.0
    w1 = w0 + span_h * 3600.0
    ov = np.clip(np.minimum(e[rep], w1) - np.maximum(s[rep], w0), 0.0, None)
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
    ov = np.where(np.isin(weekday, np.asarray(weekdays, dtype=np.int64)), ov, 0.0)
    return np.bincount(rep, weights=ov, minlength=s.size).astype(np.float64)


def _utc_ns(values: pd.Series) -> tuple[IntArray, BoolArray]:
    """Nanoseconds since the epoch and a validity mask; naive times are taken as UTC."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        idx = pd.DatetimeIndex(values).tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        idx = pd.DatetimeIndex(values).tz_localize("UTC")
    else:
        idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True, errors="coerce"))
    ok = ~np.asarray(idx.isna())
    ns = np.asarray(idx.as_unit("ns").asi8, dtype=np.int64)
    return ns, ok


def _float_col(df: pd.DataFrame, name: str) -> FloatArray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return np.asarray(pd.to_numeric(df[name], errors="coerce"), dtype=np.float64)


def _empty_fixes() -> Fixes:
    e = np.zeros(0)
    return Fixes(np.zeros(0, dtype=np.int64), e, e.copy(), e.copy())


# ----------------------------------------------------------------------------- fixes
def clean_fixes(motion: pd.DataFrame, params: TripParams | None = None) -> tuple[Fixes, FixReport]:
    """Usable fixes of one vehicle from its ``motion`` rows (any order), and what was dropped.

    Parameters
    ----------
    motion
        Rows with ``ts`` (tz-aware, or naive UTC), ``lat``, ``lon`` and optionally
        ``speed_mps``; other columns are ignored. A missing ``ts``, ``lat`` or ``lon`` column
        makes every row invalid.
    params
        For the position-jump filter (``max_jump_speed_mps``, ``jump_hold_s``).

    Returns
    -------
    tuple of (Fixes, FixReport)
        The fixes sorted by time with one fix per time, and the counts.

    Examples
    --------
    >>> df = pd.DataFrame({
    ...     "ts": pd.to_datetime(["2024-01-01 10:00:02", "2024-01-01 10:00:00",
    ...                           "2024-01-01 10:00:02", "2024-01-01 10:00:03"], utc=True),
    ...     "lat": [1.0, 1.0, 2.0, float("nan")], "lon": [1.0, 1.0, 2.0, 1.0]})
    >>> fx, rep = clean_fixes(df)
    >>> fx.lat.tolist(), rep.n_invalid, rep.n_out_of_order, rep.n_duplicate_ts, rep.n_used
    ([1.0, 1.0], 1, 1, 1, 2)
    >>> jump = pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=4, freq="s", tz="UTC"),
    ...                      "lat": [34.0, 0.0, 0.0, 34.0001], "lon": [-6.8] * 4})
    >>> fx, rep = clean_fixes(jump)
    >>> fx.lat.tolist(), rep.n_jumps
    ([34.0, 34.0001], 2)
    """
    rep = FixReport(n_in=len(motion))
    if len(motion) == 0 or any(c not in motion.columns for c in ("ts", "lat", "lon")):
        rep.n_invalid = len(motion)
        return _empty_fixes(), rep
    t, ok = _utc_ns(motion["ts"])
    lat = _float_col(motion, "lat")
    lon = _float_col(motion, "lon")
    speed = _float_col(motion, "speed_mps")
    ok &= np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    rep.n_invalid = int((~ok).sum())
    t, lat, lon, speed = t[ok], lat[ok], lon[ok], speed[ok]
    if t.size == 0:
        return _empty_fixes(), rep
    rep.n_out_of_order = int((t[1:] < np.maximum.accumulate(t)[:-1]).sum())
    order = np.argsort(t, kind="stable")
    t, lat, lon, speed = t[order], lat[order], lon[order], speed[order]
    keep = np.ones(t.size, dtype=bool)
    keep[1:] = t[1:] != t[:-1]
    rep.n_duplicate_ts = int((~keep).sum())
    p = params or TripParams()
    if p.max_jump_speed_mps is not None and keep.sum() > 1:
        idx = np.flatnonzero(keep)
        ok_jump = _jump_filter(
            np.ascontiguousarray(t[idx]),
            np.ascontiguousarray(lat[idx]),
            np.ascontiguousarray(lon[idx]),
            float(p.max_jump_speed_mps),
            int(p.jump_hold_s * _NS),
        )
        keep[idx[~ok_jump]] = False
        rep.n_jumps = int((~ok_jump).sum())
    fx = Fixes(
        np.ascontiguousarray(t[keep]),
        np.ascontiguousarray(lat[keep]),
        np.ascontiguousarray(lon[keep]),
        np.ascontiguousarray(np.where(speed[keep] >= 0, speed[keep], np.nan)),
    )
    rep.n_used = int(fx.t.size)
    rep.has_speed = bool(np.isfinite(fx.speed).any())
    return fx, rep


def _jump_filter_py(
    t: IntArray, lat: FloatArray, lon: FloatArray, vmax: float, hold_ns: int
) -> BoolArray:
    """Keep-mask of fixes reachable from the last kept position at <= ``vmax`` m/s.

    The time allowed for a move counts from the *first* fix at the last kept position, so a
    logger that repeats a position for a few seconds and then catches up is not a jump.
    """
    n = t.shape[0]
    keep = np.ones(n, dtype=np.bool_)
    last = 0  # last kept fix
    ref = 0  # first fix at the last kept position
    run_start = -1
    for i in range(1, n):
        if lat[i] == lat[last] and lon[i] == lon[last]:
            last = i
            run_start = -1
            continue
        p1 = math.radians(lat[last])
        p2 = math.radians(lat[i])
        dl = math.radians(lon[i] - lon[last])
        a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        d = 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))
        dt = max((t[i] - t[ref]) / 1e9, 1.0)
        if d > vmax * dt:
            if run_start < 0:
                run_start = i
            if t[i] - t[run_start] >= hold_ns:
                last = i  # the vehicle stayed there: the new position is real
                ref = i
                run_start = -1
            else:
                keep[i] = False
        else:
            last = i
            ref = i
            run_start = -1
    return keep


_JumpFn = Callable[[IntArray, FloatArray, FloatArray, float, int], BoolArray]
_jump_filter: _JumpFn = jit(cache=True, nogil=True)(_jump_filter_py)


def ignition_off_times(signals: pd.DataFrame | None) -> IntArray:
    """Times (ns, UTC, sorted) of ``ignition_on = false`` samples; empty without signals.

    Examples
    --------
    >>> sig = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01 10:00"], utc=True),
    ...                     "ignition_on": [False]})
    >>> ignition_off_times(sig).tolist()
    [1704103200000000000]
    >>> ignition_off_times(None).tolist()
    []
    """
    if signals is None or len(signals) == 0 or not {"ts", "ignition_on"} <= set(signals.columns):
        return np.zeros(0, dtype=np.int64)
    off = signals["ignition_on"].astype("boolean").eq(False).fillna(False).to_numpy(dtype=bool)
    t, ok = _utc_ns(signals["ts"])
    return np.sort(t[off & ok])


# ----------------------------------------------------------------------------- trips
def _empty_trips(vin: str | None) -> pd.DataFrame:
    cols: dict[str, pd.Series] = {}
    for c in TRIP_COLUMNS:
        if c in ("started_at", "finished_at"):
            cols[c] = pd.Series([], dtype="datetime64[ns, UTC]")
        elif c == "vin":
            cols[c] = pd.Series([], dtype=object)
        elif c in (
            "trip_seq",
            "n_fixes",
            "start_hour_local",
            "weekday_local",
            "iso_year",
            "iso_week",
            "jerk_n",
            "jerk_high_n",
        ):
            cols[c] = pd.Series([], dtype="int64")
        elif c == "night":
            cols[c] = pd.Series([], dtype=bool)
        else:
            cols[c] = pd.Series([], dtype="float64")
    return pd.DataFrame(cols)


def trip_bounds(
    fx: Fixes, ignition_off_ns: IntArray | None = None, params: TripParams | None = None
) -> tuple[IntArray, IntArray, int]:
    """Fix ranges ``[start, stop)`` of the kept trips and the number of dropped segments.

    Examples
    --------
    >>> t = np.array([0, 60, 120, 1000, 1060], dtype=np.int64) * 1_000_000_000
    >>> fx = Fixes(t, np.array([0.0, 0.01, 0.02, 0.02, 0.0205]), np.zeros(5), np.zeros(5))
    >>> trip_bounds(fx)  # the second segment is 56 m long: dropped
    (array([0]), array([3]), 1)
    """
    p = params or TripParams()
    n = fx.t.size
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0
    brk = np.zeros(n, dtype=bool)
    brk[0] = True
    brk[1:] = np.diff(fx.t) > p.gap_s * _NS
    if ignition_off_ns is not None and ignition_off_ns.size:
        j = np.searchsorted(fx.t, ignition_off_ns, side="right") - 1
        j = j[(j >= 0) & (j < n - 1)]
        brk[j + 1] = True
    starts = np.flatnonzero(brk).astype(np.int64)
    stops = np.append(starts[1:], n).astype(np.int64)
    step = np.zeros(n)
    step[1:] = haversine_m(fx.lat[:-1], fx.lon[:-1], fx.lat[1:], fx.lon[1:])
    cum = np.cumsum(step)
    dist_km = (cum[stops - 1] - cum[starts]) / 1000.0
    dur_s = (fx.t[stops - 1] - fx.t[starts]) / _NS
    # how far the vehicle got from where the segment started: GPS jitter of a parked car
    # adds up to path length, not to this
    origin = np.repeat(starts, stops - starts)
    away = haversine_m(fx.lat[origin], fx.lon[origin], fx.lat, fx.lon)
    reach_km = np.maximum.reduceat(away, starts) / 1000.0
    keep = (
        (stops - starts >= 2)
        & (dist_km >= p.min_distance_km)
        & (reach_km >= p.min_distance_km)
        & (dur_s >= p.min_duration_s)
    )
    return starts[keep], stops[keep], int((~keep).sum())


def segment_trips(
    fx: Fixes,
    ignition_off_ns: IntArray | None = None,
    *,
    vin: str | None = None,
    timezone: str = "UTC",
    params: TripParams | None = None,
) -> tuple[pd.DataFrame, int]:
    """Trips of one vehicle from its cleaned fixes (see the module docstring for the rules).

    Parameters
    ----------
    fx
        The vehicle's fixes from :func:`clean_fixes`.
    ignition_off_ns
        Times of ignition-off samples (:func:`ignition_off_times`), or ``None``.
    vin
        Value of the ``vin`` column.
    timezone
        The vehicle's IANA time zone, for the local fields.
    params
        Segmentation settings.

    Returns
    -------
    tuple of (pandas.DataFrame, int)
        The trips, columns :data:`TRIP_COLUMNS` (``trip_seq`` 0, 1, … in time order; times
        ``datetime64[ns, UTC]``; ``distance_km``, ``speed_distance_km`` in km; ``duration_s``
        and ``dwell_s`` in seconds; ``max_speed_mps``; ``start_hour_local`` 0-23;
        ``weekday_local`` 0 = Monday; ``night``; local ISO ``iso_year``/``iso_week``), and the
        number of segments dropped as too short.

    Examples
    --------
    >>> t = np.array([0, 60, 120], dtype=np.int64) * 1_000_000_000
    >>> fx = Fixes(t, np.array([0.0, 0.005, 0.01]), np.zeros(3), np.array([10.0, 10.0, 0.0]))
    >>> trips, dropped = segment_trips(fx, vin="V1")
    >>> trips[["vin", "distance_km", "speed_distance_km", "max_speed_mps", "night"]]
      vin  distance_km  speed_distance_km  max_speed_mps  night
    0  V1     1.111949                0.9           10.0   True
    """
    p = params or TripParams()
    starts, stops, n_short = trip_bounds(fx, ignition_off_ns, p)
    if starts.size == 0:
        return _empty_trips(vin), n_short
    n = fx.t.size
    step = np.zeros(n)
    step[1:] = haversine_m(fx.lat[:-1], fx.lon[:-1], fx.lat[1:], fx.lon[1:])
    cum = np.cumsum(step)
    last = stops - 1
    dist_km = (cum[last] - cum[starts]) / 1000.0

    # speed integral: trapezoid over time, missing speeds interpolated in time
    has = np.isfinite(fx.speed)
    t_s = (fx.t - fx.t[0]) / _NS
    if has.any():
        v = np.interp(t_s, t_s[has], fx.speed[has])
        trap = np.zeros(n)
        trap[1:] = 0.5 * (v[:-1] + v[1:]) * np.diff(t_s)
        ctrap = np.cumsum(trap)
        speed_km = (ctrap[last] - ctrap[starts]) / 1000.0
        chas = np.concatenate([[0], np.cumsum(has)])
        coverage = (chas[stops] - chas[starts]) / (stops - starts)
        speed_km = np.where(coverage >= p.min_speed_coverage, speed_km, np.nan)
        vmax = np.array(
            [
                np.max(fx.speed[a:b][has[a:b]]) if has[a:b].any() else np.nan
                for a, b in zip(starts, stops, strict=True)
            ]
        )
    else:
        speed_km = np.full(starts.size, np.nan)
        vmax = np.full(starts.size, np.nan)

    # jerk within each trip, from the speed samples (sums, so weeks can add them up)
    jerk, at = jerk_samples(fx.t, fx.speed, p.jerk_max_dt_s)
    trip_of = np.searchsorted(starts, at, side="right") - 1
    inside = (trip_of >= 0) & (at < stops[np.clip(trip_of, 0, None)])
    inside &= at > starts[np.clip(trip_of, 0, None)]  # the triple lies inside the trip
    inside &= at + 1 < stops[np.clip(trip_of, 0, None)]
    tj, jv = trip_of[inside], jerk[inside]
    k = starts.size
    jerk_n = np.bincount(tj, minlength=k).astype(np.int64)
    jerk_sum = np.bincount(tj, weights=jv, minlength=k)
    jerk_abs = np.bincount(tj, weights=np.abs(jv), minlength=k)
    jerk_sq = np.bincount(tj, weights=jv * jv, minlength=k)
    jerk_high = np.bincount(tj, weights=np.abs(jv) >= p.jerk_high_mps3, minlength=k)

    t0, t1 = fx.t[starts], fx.t[last]
    local = _local_index(t0, timezone)
    hour_f = np.asarray(local.hour + local.minute / 60.0, dtype=np.float64)
    night = _in_clock_window(hour_f, p.night_start_h, p.night_end_h)
    iso = local.isocalendar()
    dwell = np.full(starts.size, np.nan)
    dwell[:-1] = (t0[1:] - t1[:-1]) / _NS
    trips = pd.DataFrame(
        {
            "vin": pd.Series([vin] * starts.size, dtype=object),
            "trip_seq": np.arange(starts.size, dtype=np.int64),
            "started_at": _utc_index(t0),
            "finished_at": _utc_index(t1),
            "origin_lat": fx.lat[starts],
            "origin_lon": fx.lon[starts],
            "dest_lat": fx.lat[last],
            "dest_lon": fx.lon[last],
            "distance_km": dist_km,
            "duration_s": (t1 - t0) / _NS,
            "speed_distance_km": speed_km,
            "max_speed_mps": vmax,
            "n_fixes": (stops - starts).astype(np.int64),
            "start_hour_local": np.asarray(local.hour, dtype=np.int64),
            "weekday_local": np.asarray(local.day_of_week, dtype=np.int64),
            "night": night,
            "iso_year": np.asarray(iso["year"], dtype=np.int64),
            "iso_week": np.asarray(iso["week"], dtype=np.int64),
            "dwell_s": dwell,
            "jerk_n": jerk_n,
            "jerk_sum": jerk_sum,
            "jerk_abs_sum": jerk_abs,
            "jerk_sq_sum": jerk_sq,
            "jerk_high_n": jerk_high.astype(np.int64),
        }
    )
    return trips, n_short


def _in_clock_window(hour: FloatArray, start_h: float, end_h: float) -> BoolArray:
    if start_h <= end_h:
        return np.asarray((hour >= start_h) & (hour < end_h), dtype=bool)
    return np.asarray((hour >= start_h) | (hour < end_h), dtype=bool)


def _utc_index(t_ns: IntArray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(t_ns, dtype=np.int64).astype("datetime64[ns]")).tz_localize(
        "UTC"
    )


# ----------------------------------------------------------------------------- stays
def _empty_stays(vin: str | None) -> pd.DataFrame:
    cols: dict[str, pd.Series] = {}
    for c in STAY_COLUMNS:
        if c in ("started_at", "finished_at"):
            cols[c] = pd.Series([], dtype="datetime64[ns, UTC]")
        elif c == "vin":
            cols[c] = pd.Series([], dtype=object)
        elif c in ("stay_id", "n_fixes", "iso_year", "iso_week"):
            cols[c] = pd.Series([], dtype="int64")
        elif c in ("open_end", "moved_in_gap"):
            cols[c] = pd.Series([], dtype=bool)
        else:
            cols[c] = pd.Series([], dtype="float64")
    return pd.DataFrame(cols)


def _segment_sums(x: FloatArray, first: IntArray, stop: IntArray) -> FloatArray:
    """Sums of ``x[first[k]:stop[k]]`` for non-overlapping, ordered ranges."""
    if first.size == 0:
        return np.zeros(0)
    xp = np.append(x, 0.0)
    idx = np.empty(2 * first.size, dtype=np.int64)
    idx[0::2] = first
    idx[1::2] = stop
    sums: FloatArray = np.add.reduceat(xp, idx)[0::2]
    return sums


def find_stays(
    fx: Fixes,
    *,
    vin: str | None = None,
    timezone: str = "UTC",
    params: StayParams | None = None,
    gap_s: float = 300.0,
) -> tuple[pd.DataFrame, IntArray, IntArray]:
    """Stays of one vehicle (see the module docstring), with their fix ranges.

    Parameters
    ----------
    fx
        The vehicle's fixes from :func:`clean_fixes`.
    vin, timezone
        The vehicle and its IANA time zone.
    params
        Stay settings.
    gap_s
        Gap (seconds) after which a far fix marks the stay ``moved_in_gap``.

    Returns
    -------
    tuple of (pandas.DataFrame, numpy.ndarray, numpy.ndarray)
        The stays (columns :data:`STAY_COLUMNS`; ``stay_id`` 0, 1, … in time order;
        ``dwell_s`` seconds; ``night_dwell_h``, ``workday_dwell_h`` hours; ISO week of the
        local start), and each stay's fixes as ``first[k]:stop[k]``.

    Examples
    --------
    >>> t = np.array([0, 60, 3600, 3660], dtype=np.int64) * 1_000_000_000
    >>> fx = Fixes(t, np.array([0.0, 0.0001, 0.0001, 0.01]), np.zeros(4), np.zeros(4))
    >>> stays, first, stop = find_stays(fx, vin="V1")
    >>> stays[["stay_id", "dwell_s", "n_fixes", "open_end"]]
       stay_id  dwell_s  n_fixes  open_end
    0        0   3660.0         3     False
    >>> round(float(stays.lat[0]), 6)  # the fix held for 59 minutes dominates
    0.000098
    """
    p = params or StayParams()
    n = fx.t.size
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return _empty_stays(vin), empty, empty.copy()
    sp = staypoints_arrays(
        fx.t,
        fx.lat,
        fx.lon,
        dist_threshold=p.dist_m,
        time_threshold=p.min_minutes,
        gap_threshold=p.max_gap_h * 60.0,
        include_last=True,
    )
    if sp.first.size == 0:
        return _empty_stays(vin), empty, empty.copy()
    first = sp.first.astype(np.int64)
    stop = first + sp.n_points.astype(np.int64)
    # dwell weight of each fix: time until the next fix (the last fix of all: 0)
    w = np.diff(fx.t, append=fx.t[-1]).astype(np.float64) / _NS
    ro = np.radians(fx.lon)
    sw = _segment_sums(w, first, stop)
    # a window's last fix is held until the stay ends: the closing fix's time, which is the
    # next fix (already in w), or the last fix for the stay left open (w = 0 there)
    safe = np.where(sw > 0, sw, 1.0)
    lat = np.where(sw > 0, _segment_sums(w * fx.lat, first, stop) / safe, sp.lat)
    lon_c = np.degrees(
        np.arctan2(
            _segment_sums(w * np.sin(ro), first, stop), _segment_sums(w * np.cos(ro), first, stop)
        )
    )
    lon = np.where(sw > 0, lon_c, sp.lon)
    open_end = stop >= n
    closing = np.minimum(stop, n - 1)
    moved = (~open_end) & ((fx.t[closing] - fx.t[closing - 1]) > gap_s * _NS)
    started, finished = sp.started_ns, sp.finished_ns
    ls = local_wall_seconds(started, timezone)
    le = local_wall_seconds(finished, timezone)
    night = window_overlap_s(ls, le, p.night_start_h, p.night_end_h)
    work = window_overlap_s(ls, le, p.work_start_h, p.work_end_h, p.work_days)
    iso = _local_index(started, timezone).isocalendar()
    stays = pd.DataFrame(
        {
            "vin": pd.Series([vin] * first.size, dtype=object),
            "stay_id": np.arange(first.size, dtype=np.int64),
            "started_at": _utc_index(started),
            "finished_at": _utc_index(finished),
            "lat": lat,
            "lon": lon,
            "dwell_s": (finished - started) / _NS,
            "n_fixes": sp.n_points.astype(np.int64),
            "open_end": open_end,
            "moved_in_gap": moved,
            "night_dwell_h": night / 3600.0,
            "workday_dwell_h": work / 3600.0,
            "iso_year": np.asarray(iso["year"], dtype=np.int64),
            "iso_week": np.asarray(iso["week"], dtype=np.int64),
        }
    )
    return stays, first, stop
