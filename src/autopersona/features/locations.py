"""Locations of one vehicle: DBSCAN over its stays, home/work labels and the nearest POI.

Method
------
Clustering
    Stays (:func:`autopersona.features.trips.find_stays`) are clustered with scikit-learn's
    DBSCAN, haversine metric on radians, ``eps`` in metres (default 75 m) and ``min_samples``
    (default 1, trackintel's default: every stay belongs to a location, places seen once are
    locations with one visit; with ``min_samples > 1`` such stays are noise and get no
    location). A location's position is the mean of its stays' positions.

Incremental state
    :func:`assign_locations` takes the locations found before (e.g. in earlier periods) as
    state. A new stay within ``eps`` of a known location's centroid joins it (nearest one);
    the remaining stays are clustered by DBSCAN into new locations with new ids. Counts and
    dwell sums add up and centroids are updated as running means, so ids stay stable from one
    period to the next and no earlier fix has to be read again. Without state this is plain
    DBSCAN over the stays passed in.

Home and work (:func:`label_home_work`)
    * **home**: the location with the most dwell in the local night window (default
      22:00-06:00), if it has at least ``min_home_night_h`` hours of it. Confidence: its share
      of all night dwell.
    * **work**: among the other locations, the one with the most dwell in the local workday
      window (default Mon-Fri 09:00-17:00), if that is at least ``min_work_h`` hours and came
      from at least ``min_work_visits`` stays holding 30 minutes or more of it. Confidence:
      its share of the workday dwell spent away from home.

    Dwell is counted from the stays as observed: a stay still open at the end of the data
    counts up to its last fix.

POIs (:func:`nearest_poi`)
    The nearest point of interest within ``poi_radius_m`` (default 150 m: parking is often 20-120 m from a POI's own point) of a position, from
    a ``pois`` frame (``poi_id``, ``category``, ``lat``, ``lon``); the POIs are first cut to
    the bounding box of the positions, so a city-size table costs little per vehicle.

Limitations: longitudes are averaged arithmetically, so a location astride the 180th meridian
gets a wrong centroid.

Examples
--------
>>> import pandas as pd
>>> stays = pd.DataFrame({
...     "lat": [31.0, 31.0002, 31.05], "lon": [121.0, 121.0, 121.0],
...     "started_at": pd.to_datetime(["2026-01-05 14:00", "2026-01-06 14:00",
...                                   "2026-01-06 01:00"], utc=True),
...     "finished_at": pd.to_datetime(["2026-01-06 00:00", "2026-01-07 00:00",
...                                    "2026-01-06 09:00"], utc=True),
...     "dwell_s": [36000.0, 36000.0, 28800.0], "night_dwell_h": [8.0, 8.0, 0.0],
...     "workday_dwell_h": [0.0, 0.0, 8.0]})
>>> locs, ids = assign_locations(stays, vin="V1")
>>> ids.tolist()
[0, 0, 1]
>>> locs[["location_id", "n_visits", "night_dwell_h", "label", "confidence"]]
   location_id  n_visits  night_dwell_h label  confidence
0            0         2           16.0  home         1.0
1            1         1            0.0  None         NaN
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.cluster import DBSCAN
from sklearn.neighbors import BallTree

from autopersona.features.staypoints import EARTH_RADIUS_M

__all__ = [
    "LOCATION_COLUMNS",
    "LocationParams",
    "assign_locations",
    "label_home_work",
    "nearest_location",
    "nearest_poi",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LOCATION_COLUMNS = [
    "vin",
    "location_id",
    "lat",
    "lon",
    "n_visits",
    "dwell_h",
    "night_dwell_h",
    "workday_dwell_h",
    "n_workday_visits",
    "first_seen",
    "last_seen",
    "poi_id",
    "poi_category",
    "poi_distance_m",
    "label",
    "confidence",
]
"""Columns of :func:`assign_locations`' result, in order."""

_SUMS = ["n_visits", "dwell_h", "night_dwell_h", "workday_dwell_h", "n_workday_visits"]
_WORKDAY_VISIT_H = 0.5


@dataclass(frozen=True)
class LocationParams:
    """Location clustering and labelling settings.

    Attributes
    ----------
    eps_m
        DBSCAN radius in metres (haversine), also the radius within which a stay joins a
        known location.
    min_samples
        DBSCAN ``min_samples`` (the stay itself included).
    min_home_night_h
        Night dwell (hours) a location needs to be home.
    min_work_h
        Workday dwell (hours) a location needs to be work.
    min_work_visits
        Stays with at least 30 minutes of workday dwell that a work location needs.
    poi_radius_m
        Search radius for the nearest POI (metres).

    Examples
    --------
    >>> LocationParams().eps_m, LocationParams().poi_radius_m
    (75.0, 150.0)
    """

    eps_m: float = 75.0
    min_samples: int = 1
    min_home_night_h: float = 2.0
    min_work_h: float = 8.0
    min_work_visits: int = 2
    poi_radius_m: float = 150.0


def _empty_locations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "vin": pd.Series([], dtype=object),
            "location_id": pd.Series([], dtype="int64"),
            "lat": pd.Series([], dtype="float64"),
            "lon": pd.Series([], dtype="float64"),
            "n_visits": pd.Series([], dtype="int64"),
            "dwell_h": pd.Series([], dtype="float64"),
            "night_dwell_h": pd.Series([], dtype="float64"),
            "workday_dwell_h": pd.Series([], dtype="float64"),
            "n_workday_visits": pd.Series([], dtype="int64"),
            "first_seen": pd.Series([], dtype="datetime64[ns, UTC]"),
            "last_seen": pd.Series([], dtype="datetime64[ns, UTC]"),
            "poi_id": pd.Series([], dtype=object),
            "poi_category": pd.Series([], dtype=object),
            "poi_distance_m": pd.Series([], dtype="float64"),
            "label": pd.Series([], dtype=object),
            "confidence": pd.Series([], dtype="float64"),
        }
    )


def _naive_utc(values: pd.Series) -> npt.NDArray[np.datetime64]:
    """Times as naive UTC ``datetime64[ns]`` (NaT kept); naive input is taken as UTC."""
    idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True)).tz_localize(None)
    return np.asarray(idx.as_unit("ns").to_numpy(), dtype="datetime64[ns]")


def _radians(lat: npt.ArrayLike, lon: npt.ArrayLike) -> FloatArray:
    out: FloatArray = np.radians(
        np.column_stack([np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)])
    )
    return out


def nearest_location(
    lat: npt.ArrayLike, lon: npt.ArrayLike, locations: pd.DataFrame, radius_m: float
) -> IntArray:
    """``location_id`` of the nearest location within ``radius_m`` of each point, else -1.

    Examples
    --------
    >>> locs = pd.DataFrame({"location_id": [4, 7], "lat": [0.0, 0.01], "lon": [0.0, 0.0]})
    >>> nearest_location([0.0003, 0.5], [0.0, 0.0], locs, 75.0).tolist()
    [4, -1]
    """
    la = np.asarray(lat, dtype=np.float64)
    out = np.full(la.size, -1, dtype=np.int64)
    if la.size == 0 or len(locations) == 0:
        return out
    tree = BallTree(_radians(locations["lat"], locations["lon"]), metric="haversine")
    dist, idx = tree.query(_radians(la, lon), k=1)
    ok = dist[:, 0] * EARTH_RADIUS_M <= radius_m
    ids = locations["location_id"].to_numpy(dtype=np.int64)
    out[ok] = ids[idx[ok, 0]]
    return out


def nearest_poi(
    lat: npt.ArrayLike, lon: npt.ArrayLike, pois: pd.DataFrame | None, radius_m: float = 150.0
) -> pd.DataFrame:
    """The nearest POI within ``radius_m`` of each point.

    Parameters
    ----------
    lat, lon
        Points in degrees.
    pois
        Frame with ``poi_id``, ``category``, ``lat``, ``lon`` (the ``pois`` table), or ``None``.
    radius_m
        Search radius in metres.

    Returns
    -------
    pandas.DataFrame
        One row per point: ``poi_id``, ``poi_category`` (missing when no POI is within the
        radius) and ``poi_distance_m`` (NaN then).

    Examples
    --------
    >>> pois = pd.DataFrame({"poi_id": ["P1", "P2"], "category": ["office", "park"],
    ...                      "lat": [31.0, 31.01], "lon": [121.0, 121.0]})
    >>> nearest_poi([31.0003, 31.2], [121.0, 121.0], pois)
      poi_id poi_category  poi_distance_m
    0     P1       office       33.358478
    1    NaN          NaN             NaN
    """
    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    n = la.size
    pid = np.full(n, None, dtype=object)
    cat = np.full(n, None, dtype=object)
    dist_m = np.full(n, np.nan)
    ok_pts = np.isfinite(la) & np.isfinite(lo)
    if n and pois is not None and len(pois) and ok_pts.any():
        pad_lat = radius_m / 111_000.0 + 1e-6
        coslat = max(np.cos(np.radians(np.abs(la[ok_pts]).max())), 1e-3)
        pad_lon = pad_lat / coslat
        plat = pd.to_numeric(pois["lat"], errors="coerce").to_numpy(dtype=np.float64)
        plon = pd.to_numeric(pois["lon"], errors="coerce").to_numpy(dtype=np.float64)
        box = (
            np.isfinite(plat)
            & np.isfinite(plon)
            & (plat >= la[ok_pts].min() - pad_lat)
            & (plat <= la[ok_pts].max() + pad_lat)
            & (plon >= lo[ok_pts].min() - pad_lon)
            & (plon <= lo[ok_pts].max() + pad_lon)
        )
        if box.any():
            sub = np.flatnonzero(box)
            tree = BallTree(_radians(plat[sub], plon[sub]), metric="haversine")
            q = np.flatnonzero(ok_pts)
            d, i = tree.query(_radians(la[q], lo[q]), k=1)
            d_m = d[:, 0] * EARTH_RADIUS_M
            hit = d_m <= radius_m
            rows = sub[i[hit, 0]]
            pid[q[hit]] = pois["poi_id"].to_numpy(dtype=object)[rows]
            cat[q[hit]] = pois["category"].to_numpy(dtype=object)[rows]
            dist_m[q[hit]] = d_m[hit]
    return pd.DataFrame({"poi_id": pid, "poi_category": cat, "poi_distance_m": dist_m})


def label_home_work(locations: pd.DataFrame, params: LocationParams | None = None) -> pd.DataFrame:
    """Set ``label`` (``"home"``, ``"work"`` or ``None``) and ``confidence`` (see module doc).

    Parameters
    ----------
    locations
        Locations with ``night_dwell_h``, ``workday_dwell_h`` and ``n_workday_visits``.
    params
        Thresholds.

    Returns
    -------
    pandas.DataFrame
        A copy with ``label`` and ``confidence`` (NaN for unlabelled locations).

    Examples
    --------
    >>> locs = pd.DataFrame({"night_dwell_h": [30.0, 2.0, 0.0],
    ...                      "workday_dwell_h": [5.0, 3.0, 36.0],
    ...                      "n_workday_visits": [5, 2, 5]})
    >>> label_home_work(locs)[["label", "confidence"]]
      label  confidence
    0  home    0.937500
    1  None         NaN
    2  work    0.923077
    """
    p = params or LocationParams()
    out = locations.copy()
    label = np.full(len(out), None, dtype=object)
    conf = np.full(len(out), np.nan)
    if len(out):
        night = out["night_dwell_h"].to_numpy(dtype=np.float64)
        work = out["workday_dwell_h"].to_numpy(dtype=np.float64)
        visits = out["n_workday_visits"].to_numpy(dtype=np.int64)
        home_i = -1
        if night.max() >= p.min_home_night_h:
            home_i = int(np.argmax(night))
            label[home_i] = "home"
            conf[home_i] = night[home_i] / night.sum()
        away = work.copy()
        if home_i >= 0:
            away[home_i] = -1.0
        cand = np.where((away >= p.min_work_h) & (visits >= p.min_work_visits), away, -1.0)
        if cand.max() >= 0:
            work_i = int(np.argmax(cand))
            label[work_i] = "work"
            conf[work_i] = work[work_i] / np.clip(away, 0.0, None).sum()
    out["label"] = pd.Series(label, index=out.index, dtype=object)
    out["confidence"] = conf
    return out


def assign_locations(
    stays: pd.DataFrame,
    previous: pd.DataFrame | None = None,
    *,
    vin: str | None = None,
    pois: pd.DataFrame | None = None,
    params: LocationParams | None = None,
) -> tuple[pd.DataFrame, IntArray]:
    """Locations of one vehicle from its stays and earlier locations (see the module doc).

    Parameters
    ----------
    stays
        The vehicle's stays: ``lat``, ``lon``, ``started_at``, ``finished_at``, ``dwell_s``,
        ``night_dwell_h``, ``workday_dwell_h``.
    previous
        Locations of the same vehicle found before (columns :data:`LOCATION_COLUMNS`), or
        ``None``.
    vin
        Value of the ``vin`` column.
    pois
        The ``pois`` table for each location's nearest POI, or ``None``.
    params
        Settings.

    Returns
    -------
    tuple of (pandas.DataFrame, numpy.ndarray)
        All locations (earlier and new), columns :data:`LOCATION_COLUMNS`, sorted by
        ``location_id``; and the ``location_id`` of each stay (-1 for DBSCAN noise).

    Examples
    --------
    >>> s1 = pd.DataFrame({"lat": [40.0], "lon": [116.0], "dwell_s": [3600.0],
    ...     "started_at": pd.to_datetime(["2024-01-01 10:00"], utc=True),
    ...     "finished_at": pd.to_datetime(["2024-01-01 11:00"], utc=True),
    ...     "night_dwell_h": [0.0], "workday_dwell_h": [1.0]})
    >>> locs, _ = assign_locations(s1, vin="V")
    >>> s2 = s1.assign(lat=[40.0004])  # 44 m away: the same location
    >>> locs2, ids = assign_locations(s2, locs, vin="V")
    >>> ids.tolist(), locs2.n_visits.tolist(), round(float(locs2.lat[0]), 4)
    ([0], [2], 40.0002)
    """
    p = params or LocationParams()
    prev = _empty_locations() if previous is None or len(previous) == 0 else previous.copy()
    n = len(stays)
    ids = np.full(n, -1, dtype=np.int64)
    if n:
        lat = stays["lat"].to_numpy(dtype=np.float64)
        lon = stays["lon"].to_numpy(dtype=np.float64)
        ids = nearest_location(lat, lon, prev, p.eps_m)
        new = np.flatnonzero(ids < 0)
        if new.size:
            labels = (
                DBSCAN(
                    eps=p.eps_m / EARTH_RADIUS_M,
                    min_samples=p.min_samples,
                    metric="haversine",
                    algorithm="ball_tree",
                )
                .fit(_radians(lat[new], lon[new]))
                .labels_
            )
            base = int(prev["location_id"].max()) + 1 if len(prev) else 0
            ids[new] = np.where(labels >= 0, base + labels, -1)
    if n and (ids >= 0).any():
        s = stays.loc[ids >= 0]
        g = pd.DataFrame(
            {
                "location_id": ids[ids >= 0],
                "lat_sum": s["lat"].to_numpy(dtype=np.float64),
                "lon_sum": s["lon"].to_numpy(dtype=np.float64),
                "n_visits": 1,
                "dwell_h": s["dwell_s"].to_numpy(dtype=np.float64) / 3600.0,
                "night_dwell_h": s["night_dwell_h"].to_numpy(dtype=np.float64),
                "workday_dwell_h": s["workday_dwell_h"].to_numpy(dtype=np.float64),
                "n_workday_visits": (
                    s["workday_dwell_h"].to_numpy(dtype=np.float64) >= _WORKDAY_VISIT_H
                ).astype(np.int64),
                "first_seen": _naive_utc(s["started_at"]),
                "last_seen": _naive_utc(s["finished_at"]),
            }
        )
        agg = g.groupby("location_id").agg(
            lat_sum=("lat_sum", "sum"),
            lon_sum=("lon_sum", "sum"),
            n_visits=("n_visits", "sum"),
            dwell_h=("dwell_h", "sum"),
            night_dwell_h=("night_dwell_h", "sum"),
            workday_dwell_h=("workday_dwell_h", "sum"),
            n_workday_visits=("n_workday_visits", "sum"),
            first_seen=("first_seen", "min"),
            last_seen=("last_seen", "max"),
        )
        old = prev.set_index("location_id")
        all_ids = sorted(set(old.index.tolist()) | set(agg.index.tolist()))
        old = old.reindex(all_ids)
        agg = agg.reindex(all_ids)
        n_old = old["n_visits"].fillna(0).to_numpy(dtype=np.float64)
        n_new = agg["n_visits"].fillna(0).to_numpy(dtype=np.float64)
        tot = n_old + n_new
        lat_c = (
            old["lat"].fillna(0).to_numpy(dtype=np.float64) * n_old
            + agg["lat_sum"].fillna(0).to_numpy(dtype=np.float64)
        ) / tot
        lon_c = (
            old["lon"].fillna(0).to_numpy(dtype=np.float64) * n_old
            + agg["lon_sum"].fillna(0).to_numpy(dtype=np.float64)
        ) / tot
        first = np.fmin(_naive_utc(old["first_seen"]), agg["first_seen"].to_numpy())
        last = np.fmax(_naive_utc(old["last_seen"]), agg["last_seen"].to_numpy())
        merged = pd.DataFrame(
            {
                "vin": pd.Series([vin] * len(all_ids), dtype=object),
                "location_id": np.asarray(all_ids, dtype=np.int64),
                "lat": lat_c,
                "lon": lon_c,
            }
        )
        for c in _SUMS:
            v = old[c].fillna(0).to_numpy(dtype=np.float64) + agg[c].fillna(0).to_numpy(
                dtype=np.float64
            )
            merged[c] = v.astype(np.int64) if c.startswith("n_") else v
        merged["first_seen"] = pd.DatetimeIndex(first).tz_localize("UTC")
        merged["last_seen"] = pd.DatetimeIndex(last).tz_localize("UTC")
    else:
        merged = prev.copy()
        if vin is not None and len(merged):
            merged["vin"] = vin
    if len(merged) == 0:
        return _empty_locations(), ids
    poi = nearest_poi(merged["lat"], merged["lon"], pois, p.poi_radius_m)
    merged["poi_id"] = poi["poi_id"].to_numpy()
    merged["poi_category"] = poi["poi_category"].to_numpy()
    merged["poi_distance_m"] = poi["poi_distance_m"].to_numpy()
    merged = label_home_work(merged, p)
    return merged[LOCATION_COLUMNS].reset_index(drop=True), ids
