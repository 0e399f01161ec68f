"""Stay points by the sliding-window rule of trackintel 1.4.2, compiled with numba.

The rule is the one of ``trackintel.preprocessing.generate_staypoints(method="sliding",
distance_metric="haversine", exclude_duplicate_pfs=True)`` (after Li et al. 2008). The
results are the same stay points: the same count, the same start and end times and fixes, and
centroids equal up to the order of floating-point sums (on GeoLife, 1,393 of 1,800 are bitwise
equal and the largest difference is 3e-14 degrees). For each user, over the fixes in time order (fixes
with the same time keep the order of the frame's index, then of its rows):

1. The first fix opens a window; the fix that opened it is the window's *anchor*.
2. Every later fix is looked at once, in order:

   - if more than ``gap_threshold`` minutes passed since the previous fix, the open window is
     thrown away (it gives no stay point, however long it lasted) and this fix opens a new one;
   - otherwise, if this fix is at least ``dist_threshold`` metres from the anchor (never from a
     centroid), the window closes before it. It is a stay point when this fix's time minus the
     anchor's time is at least ``time_threshold`` minutes. Either way this fix opens the next
     window;
   - otherwise the fix joins the open window.
3. With ``include_last``, the window still open after the last fix is a stay point too when
   the last fix's time minus the anchor's time reaches ``time_threshold``; unlike the others it
   holds the last fix.

A stay point's fields:

- ``started_at``: the anchor's time;
- ``finished_at``: the time of the fix that closed the window, which is itself *not* part of
  the stay point (so one stay point can end at the instant the next one starts), or of the
  last fix for the stay point that ``include_last`` adds;
- ``lat``: the arithmetic mean of the latitudes of the window's *distinct* positions. trackintel
  merges the fixes into one geometry first, and that merge keeps each (lon, lat) pair once, so
  a position repeated 50 times weighs as much as one seen once;
- ``lon``: the circular mean of the distinct longitudes, ``atan2(mean sin, mean cos)``;
- ``n_points``: the number of fixes in the window, counting repeats.

The distance is trackintel's great-circle formula on a sphere of radius 6,371,000 m,
``R * acos(cos(dlat) - cos(lat1) * cos(lat2) * (1 - cos(dlon)))``. It is the spherical law of
cosines: it equals the haversine distance up to rounding, which at metre scale is a few
millimetres. This module uses the same formula, the same operand order and the same libm
routines, so it decides fixes that sit right at the threshold the same way too.
Rows identical in *every* column are dropped first, keeping the first (trackintel's
``exclude_duplicate_pfs``). Fixes at the same time that differ in any column all stay.

Examples
--------
>>> import pandas as pd
>>> from autopersona.features.staypoints import generate_staypoints
>>> t0 = pd.Timestamp("2024-05-01 08:00", tz="UTC")
>>> fixes = pd.DataFrame({
...     "vin": "V1",
...     "ts": [t0 + pd.Timedelta(minutes=m) for m in (0, 2, 4, 6, 8, 9)],
...     "lat": [48.0, 48.0001, 48.0, 48.0001, 48.01, 48.02],
...     "lon": [11.0, 11.0, 11.0001, 11.0, 11.0, 11.0],
... })
>>> sp = generate_staypoints(fixes, dist_threshold=100, time_threshold=5)
>>> # the fix at 08:08 is 1.1 km away: it closes the window (and is not part of it)
>>> sp[["user_id", "started_at", "finished_at", "n_points"]]
  user_id                started_at               finished_at  n_points
0      V1 2024-05-01 08:00:00+00:00 2024-05-01 08:08:00+00:00         4
>>> # 4 fixes, 3 distinct positions: the centroid is the mean of the 3
>>> round(float(sp.lat[0]), 6), round(float(sp.lon[0]), 6)
(48.000033, 11.000033)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import jit

if TYPE_CHECKING:
    from autopersona.store.warehouse import Warehouse

__all__ = [
    "EARTH_RADIUS_M",
    "STAYPOINT_COLUMNS",
    "StaypointArrays",
    "generate_staypoints",
    "staypoints_arrays",
    "warehouse_staypoints",
]

EARTH_RADIUS_M = 6_371_000.0
"""Radius of the sphere for distances, in metres (trackintel's default)."""

STAYPOINT_COLUMNS = ["user_id", "started_at", "finished_at", "lat", "lon", "n_points"]
"""Columns of :func:`generate_staypoints`' result, in order."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_INT64_MAX = int(np.iinfo(np.int64).max)
_T = TypeVar("_T", bound=np.generic)


class StaypointArrays(NamedTuple):
    """Stay points of one user as parallel arrays (one element per stay point, in time order).

    Attributes
    ----------
    started_ns, finished_ns
        Start and end times, nanoseconds since the Unix epoch (UTC).
    lat, lon
        Centroid in WGS84 degrees (mean of the distinct positions; circular mean for lon).
    n_points
        Number of fixes that make up the stay point.
    first
        Position, in the arrays passed in, of the stay point's first fix; its fixes are
        ``first[k] : first[k] + n_points[k]``.
    """

    started_ns: IntArray
    finished_ns: IntArray
    lat: FloatArray
    lon: FloatArray
    n_points: IntArray
    first: IntArray


# ----------------------------------------------------------------------------- kernels
# Plain Python functions, compiled by numba below; with NUMBA_DISABLE_JIT=1 they run as they
# are (slowly), which helps debugging. Scalar ``math`` calls compile to the same libm routines
# that CPython's ``math`` (and so trackintel's distance) uses, so results agree to the bit.


def _distance_m_py(lat1: float, lon1: float, cos_lat1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in radians.

    trackintel's formula with its operand order (point 1 is the window's anchor); ``cos_lat1``
    is ``cos(lat1)``, passed in because the anchor changes rarely.
    """
    c = math.cos(lat1 - lat2) - cos_lat1 * math.cos(lat2) * (1.0 - math.cos(lon1 - lon2))
    if c < -1.0:  # rounding near the antipode, where trackintel's math.acos would raise
        c = -1.0
    return EARTH_RADIUS_M * math.acos(c)


_DistanceFn = Callable[[float, float, float, float, float], float]
_distance_m: _DistanceFn = jit(cache=True, nogil=True)(_distance_m_py)


def _sliding_py(
    t: IntArray,
    lat: FloatArray,
    lon: FloatArray,
    offsets: IntArray,
    dist_m: float,
    time_ns: int,
    gap_ns: int,
    include_last: bool,
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Windows of every user; fixes of user u are ``offsets[u]:offsets[u+1]``, time-sorted.

    Returns (user, first, stop, end): stay point k holds fixes ``first[k]:stop[k]`` and ends
    at the time of fix ``end[k]``.
    """
    n = t.shape[0]
    n_users = offsets.shape[0] - 1
    cap = n + n_users  # every stay point is closed by a distinct fix, plus one last per user
    user = np.empty(cap, np.int64)
    first = np.empty(cap, np.int64)
    stop = np.empty(cap, np.int64)
    end = np.empty(cap, np.int64)
    k = 0
    for u in range(n_users):
        a = offsets[u]
        b = offsets[u + 1]
        if b <= a:
            continue
        anchor = a
        a_lat = math.radians(lat[a])
        a_lon = math.radians(lon[a])
        a_cos = math.cos(a_lat)
        for i in range(a + 1, b):
            i_lat = math.radians(lat[i])
            i_lon = math.radians(lon[i])
            if t[i] - t[i - 1] > gap_ns:
                close = False
                new_anchor = True
            else:
                new_anchor = _distance_m(a_lat, a_lon, a_cos, i_lat, i_lon) >= dist_m
                close = new_anchor and t[i] - t[anchor] >= time_ns
            if close:
                user[k] = u
                first[k] = anchor
                stop[k] = i
                end[k] = i
                k += 1
            if new_anchor:
                anchor = i
                a_lat = i_lat
                a_lon = i_lon
                a_cos = math.cos(i_lat)
        if include_last and t[b - 1] - t[anchor] >= time_ns:
            user[k] = u
            first[k] = anchor
            stop[k] = b
            end[k] = b - 1
            k += 1
    return user[:k].copy(), first[:k].copy(), stop[:k].copy(), end[:k].copy()


def _centroids_py(
    lat: FloatArray, lon: FloatArray, first: IntArray, stop: IntArray
) -> tuple[FloatArray, FloatArray]:
    """Centroid of the distinct (lon, lat) pairs among fixes ``first[k]:stop[k]``.

    The pairs are visited in (lon, lat) order, the order in which GEOS returns the merged
    points, so that the sums are formed in the same order as trackintel's.
    """
    k = first.shape[0]
    out_lat = np.empty(k, np.float64)
    out_lon = np.empty(k, np.float64)
    for j in range(k):
        a = first[j]
        m = stop[j] - a
        order = np.argsort(lon[a : a + m])
        lat_sum = 0.0
        sin_sum = 0.0
        cos_sum = 0.0
        count = 0
        i = 0
        while i < m:
            x = lon[a + order[i]]
            r = i + 1
            while r < m and lon[a + order[r]] == x:
                r += 1
            s = math.sin(math.radians(x))
            c = math.cos(math.radians(x))
            if r - i == 1:
                lat_sum += lat[a + order[i]]
                sin_sum += s
                cos_sum += c
                count += 1
            else:
                ys = np.empty(r - i, np.float64)
                for q in range(i, r):
                    ys[q - i] = lat[a + order[q]]
                ys.sort()
                for q in range(r - i):
                    if q == 0 or ys[q] != ys[q - 1]:
                        lat_sum += ys[q]
                        sin_sum += s
                        cos_sum += c
                        count += 1
            i = r
        out_lat[j] = lat_sum / count
        out_lon[j] = math.degrees(math.atan2(sin_sum / count, cos_sum / count))
    return out_lat, out_lon


_SlidingFn = Callable[
    [IntArray, FloatArray, FloatArray, IntArray, float, int, int, bool],
    tuple[IntArray, IntArray, IntArray, IntArray],
]
_CentroidFn = Callable[[FloatArray, FloatArray, IntArray, IntArray], tuple[FloatArray, FloatArray]]

_sliding: _SlidingFn = jit(cache=True, nogil=True)(_sliding_py)
_centroids: _CentroidFn = jit(cache=True, nogil=True)(_centroids_py)


# ----------------------------------------------------------------------------- parameters
class _Params(NamedTuple):
    dist_m: float
    time_ns: int
    gap_ns: int
    include_last: bool


def _minutes_to_ns(minutes: float, name: str) -> int:
    value = float(minutes)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a number of minutes >= 0, got {minutes!r}")
    if math.isinf(value):
        return _INT64_MAX
    try:
        # the same conversion trackintel makes (pd.Timedelta(x, unit="minutes"))
        return int(pd.Timedelta(value, unit="min").value)
    except (OverflowError, ValueError):  # longer than ~292 years: never reached
        return _INT64_MAX


def _params(
    dist_threshold: float, time_threshold: float, gap_threshold: float, include_last: bool
) -> _Params:
    dist = float(dist_threshold)
    if math.isnan(dist) or dist < 0:
        raise ValueError(
            f"dist_threshold must be a distance in metres >= 0, got {dist_threshold!r}"
        )
    return _Params(
        dist_m=dist,
        time_ns=_minutes_to_ns(time_threshold, "time_threshold"),
        gap_ns=_minutes_to_ns(gap_threshold, "gap_threshold"),
        include_last=bool(include_last),
    )


def _run(
    t: IntArray, lat: FloatArray, lon: FloatArray, offsets: IntArray, p: _Params
) -> tuple[IntArray, StaypointArrays]:
    """Run both kernels on contiguous arrays, time-sorted within each user's slice."""
    # One array type per argument, so numba compiles (and caches) one specialisation only:
    # pandas hands out read-only views, which numba would type separately.
    t, offsets = _writable(t), _writable(offsets)
    lat, lon = _writable(lat), _writable(lon)
    user, first, stop, end = _sliding(
        t, lat, lon, offsets, p.dist_m, p.time_ns, p.gap_ns, p.include_last
    )
    c_lat, c_lon = _centroids(lat, lon, first, stop)
    return user, StaypointArrays(
        started_ns=t[first],
        finished_ns=t[end],
        lat=c_lat,
        lon=c_lon,
        n_points=stop - first,
        first=first,
    )


def _writable(a: npt.NDArray[_T]) -> npt.NDArray[_T]:
    return a if a.flags.c_contiguous and a.flags.writeable else np.array(a, order="C")


def _as_ns(ts: npt.ArrayLike) -> IntArray:
    arr = np.asarray(ts)
    if arr.dtype.kind == "M":
        if np.isnat(arr).any():
            raise ValueError("timestamps must not be missing (NaT)")
        return np.ascontiguousarray(arr.astype("datetime64[ns]").view(np.int64))
    if arr.dtype.kind not in "iu":
        raise TypeError(f"timestamps must be int64 nanoseconds or datetime64, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _as_coords(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (drop fixes without a position first)")
    return arr


# ----------------------------------------------------------------------------- public API
def staypoints_arrays(
    ts_ns: npt.ArrayLike,
    lat: npt.ArrayLike,
    lon: npt.ArrayLike,
    *,
    dist_threshold: float = 100,
    time_threshold: float = 5.0,
    gap_threshold: float = 15.0,
    include_last: bool = False,
) -> StaypointArrays:
    """Stay points of one user (one vehicle) from time-sorted arrays.

    This is the per-vehicle step that a process pool or Spark's ``applyInPandas`` runs on one
    vehicle's batch; the rule is described in the module docstring.

    Parameters
    ----------
    ts_ns
        Fix times: int64 nanoseconds since the epoch (UTC) or ``datetime64``, sorted
        ascending. Fixes with equal times are taken in the order given.
    lat, lon
        WGS84 degrees, same length as ``ts_ns``.
    dist_threshold
        Metres a fix must be from the window's anchor to close the window.
    time_threshold
        Minutes a closed window must span (anchor to closing fix) to be a stay point.
    gap_threshold
        Minutes between consecutive fixes beyond which the open window is dropped.
    include_last
        Also keep the window still open after the last fix, if it spans ``time_threshold``.

    Returns
    -------
    StaypointArrays
        One element per stay point, in time order.

    Raises
    ------
    ValueError
        If the arrays differ in length, the times are not sorted or hold NaT, a coordinate is
        not finite, or a threshold is negative or NaN.

    Notes
    -----
    Rows that are exact duplicates are *not* removed here (the frame-level
    :func:`generate_staypoints` does that, as trackintel does); the ``motion`` table has none,
    since (vin, ts) is its key.

    The compiled kernels release the GIL and are cached on disk by numba, so worker processes
    and threads pay the compile cost (a few seconds) only once per machine. With Spark, sort
    each group by time and call this from the function given to
    ``df.groupBy("vin").applyInPandas(fn, schema)``, or call :func:`generate_staypoints` on
    the group's frame.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([0, 120, 240, 360], dtype="datetime64[s]")
    >>> sp = staypoints_arrays(t, [40.0, 40.0, 40.0, 40.01], [116.0, 116.0001, 116.0, 116.0],
    ...                        time_threshold=5)
    >>> sp.n_points.tolist(), sp.started_ns.tolist(), sp.finished_ns.tolist()
    ([3], [0], [360000000000])
    >>> sp.lat.round(6).tolist(), sp.lon.round(6).tolist()
    ([40.0], [116.00005])
    """
    t = _as_ns(ts_ns)
    la = _as_coords(lat, "lat")
    lo = _as_coords(lon, "lon")
    if not (t.ndim == la.ndim == lo.ndim == 1 and t.shape == la.shape == lo.shape):
        raise ValueError("ts_ns, lat and lon must be 1-D arrays of the same length")
    if t.shape[0] > 1 and bool((np.diff(t) < 0).any()):
        raise ValueError("ts_ns must be sorted ascending")
    p = _params(dist_threshold, time_threshold, gap_threshold, include_last)
    offsets = np.array([0, t.shape[0]], dtype=np.int64)
    return _run(t, la, lo, offsets, p)[1]


def _utc_ns(values: pd.Series) -> IntArray:
    """Nanoseconds since the epoch; naive times are taken as UTC."""
    idx = pd.DatetimeIndex(values)
    if idx.hasnans:
        raise ValueError("timestamps must not be missing (NaT)")
    return np.ascontiguousarray(idx.as_unit("ns").asi8, dtype=np.int64)


def _tie_rank(index: pd.Index) -> IntArray:
    """Rank of each row in a stable sort of the index (trackintel's tie-break)."""
    order = pd.Series(np.arange(len(index)), index=index).sort_index(kind="stable").to_numpy()
    rank = np.empty(len(index), dtype=np.int64)
    rank[order] = np.arange(len(index), dtype=np.int64)
    return rank


def _empty_result(user_dtype: Any) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Series([], dtype=user_dtype),
            "started_at": pd.Series([], dtype="datetime64[ns, UTC]"),
            "finished_at": pd.Series([], dtype="datetime64[ns, UTC]"),
            "lat": pd.Series([], dtype="float64"),
            "lon": pd.Series([], dtype="float64"),
            "n_points": pd.Series([], dtype="int64"),
        }
    )


def generate_staypoints(
    df: pd.DataFrame,
    *,
    dist_threshold: float = 100,
    time_threshold: float = 5.0,
    gap_threshold: float = 15.0,
    include_last: bool = False,
    user_col: str = "vin",
    ts_col: str = "ts",
    lat_col: str = "lat",
    lon_col: str = "lon",
    exclude_duplicates: bool = True,
) -> pd.DataFrame:
    """Stay points of every user in ``df``, as trackintel 1.4.2's sliding window finds them.

    Parameters
    ----------
    df
        GPS fixes, one row each, in any order. Other columns are ignored except for finding
        duplicates.
    dist_threshold
        Metres (haversine) a fix must be from the window's anchor to close the window.
    time_threshold
        Minutes a closed window must span to be a stay point.
    gap_threshold
        Minutes between consecutive fixes beyond which the open window is dropped.
    include_last
        Also keep each user's window still open after their last fix.
    user_col, ts_col, lat_col, lon_col
        Column names. Times may be tz-aware (any zone) or naive (taken as UTC).
    exclude_duplicates
        Drop rows identical in every column first, keeping the first (trackintel's
        ``exclude_duplicate_pfs=True``).

    Returns
    -------
    pandas.DataFrame
        Columns ``user_id`` (values of ``user_col``, same dtype), ``started_at``,
        ``finished_at`` (``datetime64[ns, UTC]``), ``lat``, ``lon`` (degrees), ``n_points``;
        sorted by user, then start.

    Raises
    ------
    KeyError
        If a named column is missing.
    ValueError
        If a user, time or coordinate is missing, or a threshold is negative or NaN.

    Examples
    --------
    Ten minutes parked, then driving off; ``include_last`` keeps the final stop, which is
    never left:

    >>> import pandas as pd
    >>> fixes = pd.DataFrame({
    ...     "vin": ["A"] * 5,
    ...     "ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 10:05", "2024-01-01 10:10",
    ...                           "2024-01-01 10:11", "2024-01-01 10:20"], utc=True),
    ...     "lat": [39.9, 39.9, 39.9, 39.95, 39.95],
    ...     "lon": [116.3, 116.3, 116.3, 116.3, 116.3],
    ... })
    >>> generate_staypoints(fixes)[["started_at", "finished_at", "n_points"]]
                     started_at               finished_at  n_points
    0 2024-01-01 10:00:00+00:00 2024-01-01 10:11:00+00:00         3
    >>> len(generate_staypoints(fixes, include_last=True))
    2
    """
    missing = [c for c in (user_col, ts_col, lat_col, lon_col) if c not in df.columns]
    if missing:
        raise KeyError(f"column(s) not in the frame: {', '.join(missing)}")
    p = _params(dist_threshold, time_threshold, gap_threshold, include_last)
    user_dtype = df[user_col].dtype
    if len(df) == 0:
        return _empty_result(user_dtype)

    codes_raw, uniques = pd.factorize(df[user_col], sort=True)
    if (codes_raw < 0).any():
        raise ValueError(f"{user_col} must not be missing")
    codes = codes_raw.astype(np.int64, copy=False)
    t = _utc_ns(df[ts_col])
    lat = _as_coords(df[lat_col].to_numpy(), lat_col)
    lon = _as_coords(df[lon_col].to_numpy(), lon_col)
    n = len(df)

    # Order: user, then time, ties by the index (as trackintel sorts), then by row.
    order: IntArray | None = None  # None: the rows are in that order already
    if df.index.is_monotonic_increasing:
        d_codes = np.diff(codes)
        if not ((d_codes > 0) | ((d_codes == 0) & (np.diff(t) >= 0))).all():
            order = np.lexsort((np.arange(n), t, codes)).astype(np.int64)
    else:
        order = np.lexsort((_tie_rank(df.index), t, codes)).astype(np.int64)
    if order is not None:
        codes, t, lat, lon = codes[order], t[order], lat[order], lon[order]

    if exclude_duplicates and n > 1:
        tie = (codes[1:] == codes[:-1]) & (t[1:] == t[:-1])
        if tie.any():
            # Exact duplicates share user and time, so only rows in a tie can be one. Among
            # them, the first in the frame's row order is kept, as drop_duplicates does.
            in_tie = np.zeros(n, dtype=bool)
            in_tie[1:] |= tie
            in_tie[:-1] |= tie
            sorted_pos = np.flatnonzero(in_tie)
            rows = sorted_pos if order is None else order[sorted_pos]
            by_row = np.argsort(rows, kind="stable")
            dup = df.iloc[rows[by_row]].duplicated(keep="first").to_numpy()
            if dup.any():
                keep = np.ones(n, dtype=bool)
                keep[sorted_pos[by_row[dup]]] = False
                codes, t, lat, lon = codes[keep], t[keep], lat[keep], lon[keep]

    counts = np.bincount(codes, minlength=len(uniques))
    offsets = np.zeros(len(uniques) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    user, sp = _run(t, lat, lon, offsets, p)
    if len(user) == 0:
        return _empty_result(user_dtype)
    users = pd.Index(uniques).take(user)
    return pd.DataFrame(
        {
            "user_id": users.astype(user_dtype, copy=False),
            "started_at": pd.DatetimeIndex(sp.started_ns.view("M8[ns]")).tz_localize("UTC"),
            "finished_at": pd.DatetimeIndex(sp.finished_ns.view("M8[ns]")).tz_localize("UTC"),
            "lat": sp.lat,
            "lon": sp.lon,
            "n_points": sp.n_points,
        }
    )


def warehouse_staypoints(
    wh: Warehouse,
    *,
    dist_threshold: float = 100,
    time_threshold: float = 5.0,
    gap_threshold: float = 15.0,
    include_last: bool = False,
) -> pd.DataFrame:
    """Stay points of every vehicle in the warehouse's ``motion`` table.

    Parameters
    ----------
    wh
        The warehouse.
    dist_threshold, time_threshold, gap_threshold, include_last
        As in :func:`generate_staypoints`.

    Returns
    -------
    pandas.DataFrame
        As :func:`generate_staypoints`, with ``user_id`` the VIN.

    Examples
    --------
    >>> from autopersona.store.warehouse import Warehouse
    >>> with Warehouse(":memory:") as wh:
    ...     len(warehouse_staypoints(wh))
    0
    """
    cols = wh.con.execute("SELECT vin, ts, lat, lon FROM motion ORDER BY vin, ts").fetchnumpy()
    motion = pd.DataFrame(
        {
            "vin": cols["vin"],
            # DuckDB hands TIMESTAMPTZ over as naive UTC datetime64
            "ts": pd.DatetimeIndex(cols["ts"]).tz_localize("UTC"),
            "lat": cols["lat"],
            "lon": cols["lon"],
        }
    )
    return generate_staypoints(
        motion,
        dist_threshold=dist_threshold,
        time_threshold=time_threshold,
        gap_threshold=gap_threshold,
        include_last=include_last,
        user_col="vin",
    )
