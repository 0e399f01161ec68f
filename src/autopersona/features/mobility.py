"""Per-vehicle mobility features: trips, stays, locations, trip purpose and weekly features.

Design brief §3 (mobility) and §8 (per-vehicle steps run by a process pool or Spark's grouped
map). Everything here works on **one vehicle's batch**: its ``motion`` rows, optionally its
``vehicle_signals`` rows (for ignition-off), its IANA time zone, the ``pois`` table and the
locations found for it before. :mod:`autopersona.features.runner` runs it over a warehouse.

Steps (one vehicle)
-------------------
1. :func:`~autopersona.features.trips.clean_fixes`: drop rows without time or position and
   position jumps (> 100 m/s), sort, one fix per time (all counted).
2. :func:`~autopersona.features.trips.segment_trips`: trips split at gaps > 300 s and at
   ignition-off; runs < 30 s or never 0.1 km from their start dropped and counted.
3. :func:`~autopersona.features.trips.find_stays`: dwell-weighted stay points (100 m, 5 min).
4. :func:`~autopersona.features.locations.assign_locations`: DBSCAN (75 m, min_samples 1)
   over the stays, joined to earlier locations; home = most local night (22-06) dwell,
   work = most local Mon-Fri 09-17 dwell elsewhere (>= 8 h, >= 2 visits); nearest POI.
5. Trips get origin/destination location, kind (home/work/other) and destination POI
   category; :mod:`~autopersona.features.purpose` gives each trip a purpose with an HMM.
6. :func:`weekly_features`: one row per local ISO week (see :data:`MOBILITY_FEATURES`).

Bad input never raises: a vehicle without usable fixes is *skipped* (counted in the report,
no weekly row); one with fixes but no trip gets weekly rows with ``n_trips = 0``, null rates
and a ``reason``; missing speed gives null speed-based columns with a reason.

Examples
--------
>>> import pandas as pd
>>> t0 = pd.Timestamp("2026-01-05 00:00", tz="UTC")  # a Monday, 08:00 in Shanghai
>>> ts = [t0 + pd.Timedelta(seconds=s) for s in range(0, 600, 10)]
>>> motion = pd.DataFrame({"vin": "V1", "ts": ts, "lat": [31.0 + i * 1e-4 for i in range(60)],
...                        "lon": 121.0, "speed_mps": 11.1})
>>> vm = vehicle_mobility(motion, timezone="Asia/Shanghai")
>>> vm.trips[["trip_seq", "distance_km", "speed_distance_km", "purpose"]].round(2)
   trip_seq  distance_km  speed_distance_km  purpose
0         0         0.66               6.55  leisure
>>> vm.weekly[["period", "n_trips", "distance_km", "night_trip_share"]]
     period  n_trips  distance_km  night_trip_share
0  2026-W02        1       0.6561               0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from autopersona.features.locations import (
    LOCATION_COLUMNS,
    LocationParams,
    assign_locations,
    nearest_location,
    nearest_poi,
)
from autopersona.features.purpose import PurposeModel, encode_trips, prior_model
from autopersona.features.trips import (
    STAY_COLUMNS,
    TRIP_COLUMNS,
    Fixes,
    FixReport,
    StayParams,
    TripParams,
    clean_fixes,
    find_stays,
    haversine_m,
    ignition_off_times,
    local_wall_seconds,
    resolve_timezone,
    segment_trips,
)

__all__ = [
    "MOBILITY_FEATURES",
    "POI_CATEGORIES",
    "REPORT_COLUMNS",
    "STAY_OUT_COLUMNS",
    "TRIP_OUT_COLUMNS",
    "WEEKLY_COLUMNS",
    "MobilityParams",
    "VehicleMobility",
    "decode_purposes",
    "vehicle_mobility",
    "vehicle_places",
    "weekly_features",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

POI_CATEGORIES = (
    "residential",
    "office",
    "shopping",
    "restaurant",
    "school",
    "hospital",
    "park",
    "scenic",
    "sports",
    "hotel",
    "airport",
    "charging_station",
    "dealer",
    "gas_station",
    "entertainment",
    "other",
)
"""POI categories of the ``pois`` contract (one ``poi_share_*`` column each)."""

TRIP_OUT_COLUMNS = [
    *TRIP_COLUMNS,
    "origin_stay_id",
    "dest_stay_id",
    "origin_location_id",
    "dest_location_id",
    "origin_kind",
    "dest_kind",
    "dest_poi_category",
    "long_trip",
    "purpose",
    "purpose_confidence",
]
"""Columns of :attr:`VehicleMobility.trips`."""

STAY_OUT_COLUMNS = [*STAY_COLUMNS, "location_id", "poi_id", "poi_category", "poi_distance_m"]
"""Columns of :attr:`VehicleMobility.stays`."""

REPORT_COLUMNS = [
    "vin",
    "timezone",
    "n_fixes_in",
    "n_fixes_used",
    "n_invalid",
    "n_out_of_order",
    "n_duplicate_ts",
    "n_jumps",
    "n_trips",
    "n_short_dropped",
    "n_stays",
    "n_locations",
    "status",
    "reason",
]
"""Columns of :attr:`VehicleMobility.report` (one row per vehicle)."""

_SRC_MOTION = ["motion"]
_SRC_SIG = ["motion", "vehicle_signals"]
_SRC_POI = ["motion", "pois"]
_SRC_TZ = ["motion", "vehicle_signals", "vehicles"]


def _feat(name: str, unit: str, definition: str, sources: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "domain": "mobility",
        "entity": "vin",
        "unit": unit,
        "definition": definition,
        "sources": list(sources),
    }


MOBILITY_FEATURES: list[dict[str, Any]] = [
    _feat(
        "n_trips",
        "count",
        "Trips started in the vehicle's local ISO week. A trip is a run of GPS fixes without "
        "a gap > 300 s or an ignition-off; runs shorter than 30 s or never 0.1 km from "
        "their first fix are not trips.",
        _SRC_TZ,
    ),
    _feat(
        "distance_km",
        "km",
        "Sum of the week's trip distances (haversine between consecutive fixes).",
        _SRC_TZ,
    ),
    _feat("driving_time_h", "h", "Sum of the week's trip durations (first to last fix).", _SRC_TZ),
    _feat(
        "jerk_abs_mean_mps3",
        "m/s^3",
        "Mean magnitude of longitudinal jerk inside the week's trips: the change of the "
        "speed's forward difference over consecutive fixes at most 1.5 s apart "
        "(trips.jerk_samples). Null without such fixes.",
        _SRC_TZ,
    ),
    _feat(
        "jerk_sd_mps3",
        "m/s^3",
        "Standard deviation of the week's longitudinal jerk values (see jerk_abs_mean_mps3).",
        _SRC_TZ,
    ),
    _feat(
        "high_jerk_share",
        "ratio",
        "Share of the week's jerk values with a magnitude of at least 1.5 m/s^3 "
        "(TripParams.jerk_high_mps3): abrupt pedal changes.",
        _SRC_TZ,
    ),
    _feat(
        "radius_of_gyration_km",
        "km",
        "Radius of gyration of the week's stays (stay points: >= 5 min within 100 m), each "
        "weighted by its dwell time: sqrt(sum w d^2 / sum w) around their dwell-weighted "
        "centroid. Null without stays.",
        _SRC_TZ,
    ),
    _feat(
        "od_entropy_bits",
        "bit",
        "Shannon entropy of the week's origin->destination location pairs (DBSCAN locations; "
        "a trip from or to no known location counts as a pair of its own). Null without trips.",
        _SRC_TZ,
    ),
    _feat(
        "trip_regularity",
        "ratio",
        "1 - od_entropy_bits / log2(n_trips): 1 when every trip repeats one origin->destination "
        "pair, 0 when no pair repeats. Null with fewer than 2 trips.",
        _SRC_TZ,
    ),
    _feat("long_trip_share", "ratio", "Share of the week's trips longer than 100 km.", _SRC_TZ),
    _feat(
        "night_trip_share",
        "ratio",
        "Share of the week's trips starting at local night (22:00-06:00, vehicles.timezone).",
        _SRC_TZ,
    ),
    _feat("n_stays", "count", "Stays (>= 5 min within 100 m) starting in the week.", _SRC_TZ),
    _feat(
        "n_locations_visited",
        "count",
        "Distinct DBSCAN locations (eps 75 m) among the week's stays.",
        _SRC_TZ,
    ),
    *[
        _feat(
            f"poi_share_{c}",
            "ratio",
            f"Share of the week's stays whose nearest POI within 150 m is of category '{c}'.",
            [*_SRC_POI, "vehicles"],
        )
        for c in POI_CATEGORIES
    ],
    _feat(
        "poi_share_none",
        "ratio",
        "Share of the week's stays with no POI within 150 m.",
        [*_SRC_POI, "vehicles"],
    ),
    *[
        _feat(
            f"{p}_share",
            "ratio",
            f"Share of the week's trips whose purpose is {p}: Viterbi state of a 3-state "
            "categorical HMM over the vehicle's trip sequence (origin/destination kind, local "
            "time band, destination POI, dwell, distance), priors declared, refined per fleet "
            "by Baum-Welch.",
            ["motion", "vehicle_signals", "vehicles", "pois"],
        )
        for p in ("commute", "business", "leisure")
    ],
    _feat(
        "home_lat",
        "deg",
        "Latitude of the home location: the location with the most stay dwell at local night "
        "(22:00-06:00), >= 2 h; published as the centre of its H3 cell at resolution 7 "
        "(about 5 km², region-level precision; the exact point stays in mobility_locations).",
        _SRC_TZ,
    ),
    _feat("home_lon", "deg", "Longitude of the home location (see home_lat).", _SRC_TZ),
    _feat(
        "home_confidence",
        "ratio",
        "Home's share of all night-time stay dwell.",
        _SRC_TZ,
    ),
    _feat(
        "work_lat",
        "deg",
        "Latitude of the work location: the non-home location with the most dwell on local "
        "Mon-Fri 09:00-17:00, >= 8 h over >= 2 stays; published as its H3 cell centre "
        "(see home_lat).",
        _SRC_TZ,
    ),
    _feat("work_lon", "deg", "Longitude of the work location (see work_lat).", _SRC_TZ),
    _feat(
        "work_confidence",
        "ratio",
        "Work's share of the workday-window dwell spent away from home.",
        _SRC_TZ,
    ),
]
"""Feature dictionary entries of the weekly mobility features (keys ``name``, ``domain``,
``entity``, ``unit``, ``definition``, ``sources``)."""

WEEKLY_COLUMNS = [
    "vin",
    "iso_year",
    "iso_week",
    "period",
    *[f["name"] for f in MOBILITY_FEATURES],
    "reason",
]
"""Columns of :func:`weekly_features`' result, in order."""


@dataclass(frozen=True)
class MobilityParams:
    """All settings of the per-vehicle mobility steps.

    Attributes
    ----------
    trips, stays, locations
        Settings of each step.
    long_trip_km
        Distance above which a trip is long (``long_trip``, ``long_trip_share``).
    coarsen_h3
        H3 resolution at which home/work are published in the weekly output: the centre of
        the location's cell.  The default, 7 (cells of about 5 km²), is the precision
        region-level marketing needs (:data:`autopersona.privacy.pseudo.COARSEN_RESOLUTION`);
        ``None`` publishes the exact location.  The exact location stays in the build's
        state (``mobility_locations``), kept under its retention period.
    coarsen_decimals
        Also round the published home/work coordinates to this many decimals (3 is about
        110 m); ``None`` does not round.

    Examples
    --------
    >>> MobilityParams().locations.eps_m, MobilityParams(coarsen_decimals=3).coarsen_decimals
    (75.0, 3)
    >>> MobilityParams().coarsen_h3
    7
    """

    trips: TripParams = field(default_factory=TripParams)
    stays: StayParams = field(default_factory=StayParams)
    locations: LocationParams = field(default_factory=LocationParams)
    long_trip_km: float = 100.0
    coarsen_h3: int | None = 7
    coarsen_decimals: int | None = None


@dataclass
class VehicleMobility:
    """Mobility outputs of one vehicle.

    Attributes
    ----------
    vin
        The vehicle.
    trips
        :data:`TRIP_OUT_COLUMNS` (``purpose`` empty until :func:`decode_purposes`).
    stays
        :data:`STAY_OUT_COLUMNS`.
    locations
        :data:`~autopersona.features.locations.LOCATION_COLUMNS`, including the earlier ones.
    weekly
        :data:`WEEKLY_COLUMNS` (empty until :func:`decode_purposes`).
    report
        One row, :data:`REPORT_COLUMNS`.
    symbols
        HMM observation symbol of each trip.
    timezone
        The zone used for local time.
    fallback_week
        Local ISO week of the first usable fix in the period, for the weekly row of a vehicle
        with neither trips nor stays.
    """

    vin: str
    trips: pd.DataFrame
    stays: pd.DataFrame
    locations: pd.DataFrame
    weekly: pd.DataFrame
    report: pd.DataFrame
    symbols: IntArray
    timezone: str
    fallback_week: tuple[int, int] | None = None


# ----------------------------------------------------------------------------- helpers
def _vin_of(motion: pd.DataFrame, vin: str | None) -> str:
    if vin is not None:
        return str(vin)
    if "vin" in motion.columns and len(motion):
        v = motion["vin"].dropna()
        if len(v):
            return str(v.iloc[0])
    return ""


def _local_dates(t_ns: IntArray, tz: str) -> npt.NDArray[np.datetime64]:
    days = np.floor(local_wall_seconds(t_ns, tz) / 86_400).astype(np.int64)
    return days.astype("datetime64[D]")


def _contains(t_ns: IntArray, stays: pd.DataFrame) -> IntArray:
    """Index of the stay whose fixes include the fix at each time, else -1."""
    out = np.full(t_ns.size, -1, dtype=np.int64)
    if t_ns.size == 0 or len(stays) == 0:
        return out
    s0 = pd.DatetimeIndex(stays["started_at"]).as_unit("ns").asi8
    s1 = pd.DatetimeIndex(stays["finished_at"]).as_unit("ns").asi8
    open_end = stays["open_end"].to_numpy(dtype=bool)
    k = np.searchsorted(s0, t_ns, side="right") - 1
    kk = np.clip(k, 0, None)
    inside = (k >= 0) & ((t_ns < s1[kk]) | (open_end[kk] & (t_ns <= s1[kk])))
    out[inside] = k[inside]
    return out


def _kinds(ids: IntArray, home: int | None, work: int | None) -> npt.NDArray[np.object_]:
    out = np.full(ids.size, "other", dtype=object)
    if work is not None:
        out[ids == work] = "work"
    if home is not None:
        out[ids == home] = "home"
    return out


def _label_id(locations: pd.DataFrame, label: str) -> int | None:
    if len(locations) == 0:
        return None
    hit = locations.loc[locations["label"].astype(object) == label, "location_id"]
    return int(hit.iloc[0]) if len(hit) else None


def _report(
    vin: str,
    tz: str,
    rep: FixReport,
    n_trips: int,
    n_short: int,
    n_stays: int,
    n_loc: int,
    status: str,
    reasons: list[str],
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "vin": [vin],
            "timezone": [tz],
            "n_fixes_in": [rep.n_in],
            "n_fixes_used": [rep.n_used],
            "n_invalid": [rep.n_invalid],
            "n_out_of_order": [rep.n_out_of_order],
            "n_duplicate_ts": [rep.n_duplicate_ts],
            "n_jumps": [rep.n_jumps],
            "n_trips": [n_trips],
            "n_short_dropped": [n_short],
            "n_stays": [n_stays],
            "n_locations": [n_loc],
            "status": [status],
            "reason": pd.Series(["; ".join(reasons) if reasons else None], dtype=object),
        }
    )


def _in_period(dates: npt.NDArray[np.datetime64], period: tuple[date, date] | None) -> Any:
    if period is None:
        return np.ones(dates.size, dtype=bool)
    lo = np.datetime64(period[0], "D")
    hi = np.datetime64(period[1], "D")
    return (dates >= lo) & (dates < hi)


# ----------------------------------------------------------------------------- steps
def vehicle_places(
    motion: pd.DataFrame,
    signals: pd.DataFrame | None = None,
    *,
    vin: str | None = None,
    timezone: str | None = "UTC",
    pois: pd.DataFrame | None = None,
    previous_locations: pd.DataFrame | None = None,
    params: MobilityParams | None = None,
    period: tuple[date, date] | None = None,
) -> VehicleMobility:
    """Trips, stays and locations of one vehicle, with each trip's HMM symbol (no purpose yet).

    Parameters
    ----------
    motion
        The vehicle's ``motion`` rows (``ts``, ``lat``, ``lon``, optionally ``speed_mps``), in
        any order.
    signals
        Its ``vehicle_signals`` rows (``ts``, ``ignition_on``), or ``None``.
    vin
        The vehicle (default: ``motion.vin``).
    timezone
        Its IANA time zone (``vehicles.timezone``); a missing or unknown zone falls back to
        UTC with a reason in the report.
    pois
        The ``pois`` table (``poi_id``, ``category``, ``lat``, ``lon``), or ``None``.
    previous_locations
        Its locations from earlier periods (state), or ``None``.
    params
        Settings.
    period
        ``(first_day, end_day)`` in local dates, end exclusive: only trips and stays starting
        in it are kept (fixes outside it are still used to close stays and measure the dwell
        of the period's last trip). ``None`` keeps everything.

    Returns
    -------
    VehicleMobility
        With ``trips`` (purpose still null), ``stays``, ``locations``, ``report`` and
        ``symbols``; ``weekly`` empty.

    Examples
    --------
    >>> vm = vehicle_places(pd.DataFrame({"ts": [pd.Timestamp("2024-01-01", tz="UTC")],
    ...                                   "lat": [1.0], "lon": [1.0]}), vin="V")
    >>> vm.report[["n_fixes_used", "n_trips", "status", "reason"]]
       n_fixes_used  n_trips    status        reason
    0             1        0  no_trips  1 usable fix
    """
    p = params or MobilityParams()
    v = _vin_of(motion, vin)
    tz, tz_reason = resolve_timezone(timezone)
    reasons = [tz_reason] if tz_reason else []
    fx, rep = clean_fixes(motion, p.trips)
    off = ignition_off_times(signals)
    trips, n_short = segment_trips(fx, off, vin=v, timezone=tz, params=p.trips)
    stays, _, _ = find_stays(fx, vin=v, timezone=tz, params=p.stays, gap_s=p.trips.gap_s)
    if period is not None:
        stays = stays.loc[
            _in_period(_local_dates(_ns(stays["started_at"]), tz), period)
        ].reset_index(drop=True)
    prev = previous_locations
    if prev is not None and len(prev) and "vin" in prev.columns:
        prev = prev.loc[prev["vin"].astype(object) == v]
    locations, stay_loc = assign_locations(stays, prev, vin=v, pois=pois, params=p.locations)
    stays = _enrich_stays(stays, stay_loc, pois, p)
    trips = _enrich_trips(trips, stays, locations, pois, p)
    if period is not None:
        keep = _in_period(_local_dates(_ns(trips["started_at"]), tz), period)
        trips = trips.loc[keep].reset_index(drop=True)
    symbols = encode_trips(trips)

    if rep.n_used == 0:
        status = "skipped"
        reasons.insert(0, "no usable fixes" if rep.n_in else "no fixes")
    elif rep.n_used == 1:
        status = "no_trips"
        reasons.insert(0, "1 usable fix")
    elif len(trips) == 0:
        status = "no_trips"
        reasons.insert(
            0,
            f"no trips: {n_short} segment(s) shorter than {p.trips.min_distance_km:g} km "
            f"or {p.trips.min_duration_s:g} s",
        )
    else:
        status = "ok"
    if len(trips) and not rep.has_speed:
        reasons.append("no speed: speed_distance_km and max_speed_mps are null")
    report = _report(v, tz, rep, len(trips), n_short, len(stays), len(locations), status, reasons)
    return VehicleMobility(
        vin=v,
        trips=trips,
        stays=stays,
        locations=locations[LOCATION_COLUMNS],
        weekly=pd.DataFrame(columns=WEEKLY_COLUMNS),
        report=report,
        symbols=symbols,
        timezone=tz,
        fallback_week=_first_week(fx, tz, period),
    )


def _ns(values: pd.Series) -> IntArray:
    return np.asarray(pd.DatetimeIndex(values).as_unit("ns").asi8, dtype=np.int64)


def _enrich_stays(
    stays: pd.DataFrame, stay_loc: IntArray, pois: pd.DataFrame | None, p: MobilityParams
) -> pd.DataFrame:
    out = stays.copy()
    out["location_id"] = stay_loc.astype(np.int64)
    poi = nearest_poi(out["lat"], out["lon"], pois, p.locations.poi_radius_m)
    out["poi_id"] = poi["poi_id"].to_numpy(dtype=object)
    out["poi_category"] = poi["poi_category"].to_numpy(dtype=object)
    out["poi_distance_m"] = poi["poi_distance_m"].to_numpy()
    return out[STAY_OUT_COLUMNS]


def _enrich_trips(
    trips: pd.DataFrame,
    stays: pd.DataFrame,
    locations: pd.DataFrame,
    pois: pd.DataFrame | None,
    p: MobilityParams,
) -> pd.DataFrame:
    out = trips.copy()
    t0 = _ns(out["started_at"])
    t1 = _ns(out["finished_at"])
    o_stay = _contains(t0, stays)
    d_stay = _contains(t1, stays)
    stay_loc = stays["location_id"].to_numpy(dtype=np.int64)
    eps = p.locations.eps_m

    def loc_of(stay: IntArray, lat: pd.Series, lon: pd.Series) -> IntArray:
        ids = np.where(stay >= 0, stay_loc[np.clip(stay, 0, None)] if stay_loc.size else -1, -1)
        ids = np.asarray(ids, dtype=np.int64)
        miss = ids < 0
        if miss.any():
            ids[miss] = nearest_location(lat.to_numpy()[miss], lon.to_numpy()[miss], locations, eps)
        return ids

    o_loc = loc_of(o_stay, out["origin_lat"], out["origin_lon"])
    d_loc = loc_of(d_stay, out["dest_lat"], out["dest_lon"])
    home, work = _label_id(locations, "home"), _label_id(locations, "work")
    poi = nearest_poi(out["dest_lat"], out["dest_lon"], pois, p.locations.poi_radius_m)
    out["origin_stay_id"] = o_stay
    out["dest_stay_id"] = d_stay
    out["origin_location_id"] = o_loc
    out["dest_location_id"] = d_loc
    out["origin_kind"] = _kinds(o_loc, home, work)
    out["dest_kind"] = _kinds(d_loc, home, work)
    out["dest_poi_category"] = poi["poi_category"].to_numpy(dtype=object)
    out["long_trip"] = out["distance_km"].to_numpy(dtype=np.float64) > p.long_trip_km
    out["purpose"] = pd.Series([None] * len(out), dtype=object)
    out["purpose_confidence"] = np.full(len(out), np.nan)
    return out[TRIP_OUT_COLUMNS]


def decode_purposes(
    vm: VehicleMobility, model: PurposeModel | None = None, params: MobilityParams | None = None
) -> VehicleMobility:
    """Give every trip its purpose (HMM) and compute the weekly features.

    Parameters
    ----------
    vm
        Output of :func:`vehicle_places`.
    model
        The purpose model (fitted per fleet by
        :func:`~autopersona.features.purpose.fit_purpose_model`); default: the declared
        prior model.
    params
        Settings (for the weekly features).

    Returns
    -------
    VehicleMobility
        A copy with ``trips.purpose``, ``trips.purpose_confidence`` and ``weekly`` set.

    Examples
    --------
    >>> vm = decode_purposes(vehicle_places(pd.DataFrame(), vin="V"))
    >>> len(vm.trips), len(vm.weekly), vm.report.status[0]
    (0, 0, 'skipped')
    """
    m = model or prior_model()
    trips = vm.trips.copy()
    if len(trips):
        names, conf = m.decode(vm.symbols, [len(trips)])
        trips["purpose"] = pd.Series(names, index=trips.index, dtype=object)
        trips["purpose_confidence"] = conf
    weekly = weekly_features(
        trips,
        vm.stays,
        vm.locations,
        vin=vm.vin,
        timezone=vm.timezone,
        params=params,
        report=vm.report,
        fallback_week=vm.fallback_week,
    )
    return replace(vm, trips=trips, weekly=weekly)


def vehicle_mobility(
    motion: pd.DataFrame,
    signals: pd.DataFrame | None = None,
    *,
    vin: str | None = None,
    timezone: str | None = "UTC",
    pois: pd.DataFrame | None = None,
    previous_locations: pd.DataFrame | None = None,
    purpose_model: PurposeModel | None = None,
    params: MobilityParams | None = None,
    period: tuple[date, date] | None = None,
) -> VehicleMobility:
    """All mobility steps for one vehicle: :func:`vehicle_places` then :func:`decode_purposes`.

    Parameters are those of :func:`vehicle_places`, plus ``purpose_model`` (default: the
    declared prior model; a fleet-fitted model is better, see
    :func:`autopersona.features.runner.run_mobility`).

    Returns
    -------
    VehicleMobility
        Trips with purposes, stays, locations, weekly features and the report.

    Examples
    --------
    >>> vm = vehicle_mobility(pd.DataFrame({"ts": [], "lat": [], "lon": []}), vin="V")
    >>> vm.report[["vin", "status", "reason"]]
      vin   status     reason
    0   V  skipped  no fixes
    """
    vm = vehicle_places(
        motion,
        signals,
        vin=vin,
        timezone=timezone,
        pois=pois,
        previous_locations=previous_locations,
        params=params,
        period=period,
    )
    return decode_purposes(vm, purpose_model, params)


# ----------------------------------------------------------------------------- weekly
def _entropy_bits(keys: list[tuple[int, int]]) -> float:
    if not keys:
        return math.nan
    _, counts = np.unique(np.asarray(keys, dtype=np.int64), axis=0, return_counts=True)
    q = counts / counts.sum()
    return float(-(q * np.log2(q)).sum()) + 0.0


def _gyration_km(lat: FloatArray, lon: FloatArray, w: FloatArray) -> float:
    if lat.size == 0 or not np.isfinite(w).all() or w.sum() <= 0:
        return math.nan
    c_lat = float(np.average(lat, weights=w))
    c_lon = float(np.average(lon, weights=w))
    d = haversine_m(lat, lon, c_lat, c_lon) / 1000.0
    return float(np.sqrt(np.average(d**2, weights=w)))


def weekly_features(
    trips: pd.DataFrame,
    stays: pd.DataFrame,
    locations: pd.DataFrame,
    *,
    vin: str,
    timezone: str = "UTC",
    params: MobilityParams | None = None,
    report: pd.DataFrame | None = None,
    fallback_week: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """One row per local ISO week with trips or stays: the features of :data:`MOBILITY_FEATURES`.

    Parameters
    ----------
    trips, stays, locations
        One vehicle's outputs (:data:`TRIP_OUT_COLUMNS` with purposes,
        :data:`STAY_OUT_COLUMNS`, locations with labels).
    vin, timezone
        The vehicle and its zone.
    params
        Settings (``coarsen_decimals``).
    report
        The vehicle's report row; its reason is copied to the weekly rows.
    fallback_week
        ``(iso_year, iso_week)`` of a row to give when there is neither a trip nor a stay
        (a vehicle with fixes but nothing else), or ``None``.

    Returns
    -------
    pandas.DataFrame
        :data:`WEEKLY_COLUMNS`; ``period`` is ``"YYYY-Www"``. Shares are null in a week
        without trips (or stays, for the POI mix); ``reason`` says why. Home and work are
        the vehicle's labelled locations (from every stay seen so far), repeated on each
        week.

    Examples
    --------
    >>> weekly_features(pd.DataFrame(columns=TRIP_OUT_COLUMNS),
    ...                 pd.DataFrame(columns=STAY_OUT_COLUMNS),
    ...                 pd.DataFrame(columns=LOCATION_COLUMNS), vin="V").shape
    (0, 44)
    """
    p = params or MobilityParams()
    weeks: set[tuple[int, int]] = set()
    for frame in (trips, stays):
        if len(frame):
            weeks |= set(
                zip(
                    frame["iso_year"].astype(int).tolist(),
                    frame["iso_week"].astype(int).tolist(),
                    strict=True,
                )
            )
    base_reason = None
    if report is not None and len(report):
        r = report["reason"].iloc[0]
        base_reason = None if r is None or (isinstance(r, float) and math.isnan(r)) else str(r)
    if not weeks and fallback_week is not None:
        weeks = {fallback_week}
    rows: list[dict[str, Any]] = []

    def loc_xy(label: str) -> tuple[float, float, float]:
        if len(locations) == 0:
            return math.nan, math.nan, math.nan
        hit = locations.loc[locations["label"].astype(object) == label]
        if len(hit) == 0:
            return math.nan, math.nan, math.nan
        la, lo = float(hit["lat"].iloc[0]), float(hit["lon"].iloc[0])
        if p.coarsen_h3 is not None:
            from autopersona.privacy.pseudo import coarsen_point

            _, la, lo = coarsen_point(la, lo, p.coarsen_h3)
        if p.coarsen_decimals is not None:
            la, lo = round(la, p.coarsen_decimals), round(lo, p.coarsen_decimals)
        return la, lo, float(hit["confidence"].iloc[0])

    home = loc_xy("home")
    work = loc_xy("work")
    for year, week in sorted(weeks):
        t = trips.loc[(trips["iso_year"] == year) & (trips["iso_week"] == week)]
        s = stays.loc[(stays["iso_year"] == year) & (stays["iso_week"] == week)]
        n = len(t)
        row: dict[str, Any] = {
            "vin": vin,
            "iso_year": year,
            "iso_week": week,
            "period": f"{year:04d}-W{week:02d}",
            "n_trips": n,
            "distance_km": float(t["distance_km"].sum()) if n else 0.0,
            "driving_time_h": float(t["duration_s"].sum()) / 3600.0 if n else 0.0,
        }
        jn = float(t["jerk_n"].sum()) if n else 0.0
        row["jerk_abs_mean_mps3"] = float(t["jerk_abs_sum"].sum()) / jn if jn else math.nan
        if jn >= 2:
            js, jq = float(t["jerk_sum"].sum()), float(t["jerk_sq_sum"].sum())
            row["jerk_sd_mps3"] = math.sqrt(max((jq - js * js / jn) / (jn - 1), 0.0))
        else:
            row["jerk_sd_mps3"] = math.nan
        row["high_jerk_share"] = float(t["jerk_high_n"].sum()) / jn if jn else math.nan
        row["radius_of_gyration_km"] = _gyration_km(
            s["lat"].to_numpy(dtype=np.float64),
            s["lon"].to_numpy(dtype=np.float64),
            s["dwell_s"].to_numpy(dtype=np.float64),
        )
        keys: list[tuple[int, int]] = []
        for i, (o, d) in enumerate(
            zip(
                t["origin_location_id"].to_numpy(dtype=np.int64),
                t["dest_location_id"].to_numpy(dtype=np.int64),
                strict=True,
            )
        ):
            keys.append((int(o) if o >= 0 else -1 - 2 * i, int(d) if d >= 0 else -2 - 2 * i))
        h = _entropy_bits(keys)
        row["od_entropy_bits"] = h
        row["trip_regularity"] = min(max(1.0 - h / math.log2(n), 0.0), 1.0) if n >= 2 else math.nan
        if abs(row["trip_regularity"]) < 1e-12:
            row["trip_regularity"] = 0.0
        row["long_trip_share"] = float(t["long_trip"].astype(bool).mean()) if n else math.nan
        row["night_trip_share"] = float(t["night"].astype(bool).mean()) if n else math.nan
        row["n_stays"] = len(s)
        loc_ids = s["location_id"].to_numpy(dtype=np.int64)
        row["n_locations_visited"] = int(np.unique(loc_ids[loc_ids >= 0]).size)
        cats = s["poi_category"].astype(object).to_numpy()
        for c in POI_CATEGORIES:
            row[f"poi_share_{c}"] = float(np.mean(cats == c)) if len(s) else math.nan
        known = np.array([isinstance(c, str) for c in cats], dtype=bool)
        row["poi_share_none"] = float(np.mean(~known)) if len(s) else math.nan
        purpose = t["purpose"].astype(object).to_numpy()
        for name in ("commute", "business", "leisure"):
            row[f"{name}_share"] = float(np.mean(purpose == name)) if n else math.nan
        row["home_lat"], row["home_lon"], row["home_confidence"] = home
        row["work_lat"], row["work_lon"], row["work_confidence"] = work
        reasons = []
        if n == 0:
            reasons.append("no trips this week")
            if base_reason:
                reasons.append(base_reason)
        elif base_reason:
            reasons.append(base_reason)
        if len(s) == 0:
            reasons.append("no stays this week")
        row["reason"] = "; ".join(reasons) if reasons else None
        rows.append(row)
    out = pd.DataFrame(rows, columns=WEEKLY_COLUMNS)
    return _weekly_types(out)


def _weekly_types(df: pd.DataFrame) -> pd.DataFrame:
    ints = {"iso_year", "iso_week", "n_trips", "n_stays", "n_locations_visited"}
    out = df.copy()
    for c in WEEKLY_COLUMNS:
        if c in ints:
            out[c] = out[c].astype("int64")
        elif c in ("vin", "period", "reason"):
            out[c] = out[c].astype(object)
        else:
            out[c] = out[c].astype("float64")
    return out


def _first_week(fx: Fixes, tz: str, period: tuple[date, date] | None) -> tuple[int, int] | None:
    """Local ISO week of the first fix in the period."""
    if fx.t.size == 0:
        return None
    inside = np.flatnonzero(_in_period(_local_dates(fx.t, tz), period))
    if inside.size == 0:
        return None
    t = fx.t[inside[:1]]
    iso = pd.DatetimeIndex(t.astype("datetime64[ns]")).tz_localize("UTC").tz_convert(tz)
    cal = iso.isocalendar()
    return int(cal["year"].iloc[0]), int(cal["week"].iloc[0])
