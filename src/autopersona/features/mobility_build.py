"""The mobility domain of ``features build``: per-vehicle steps, run in a pool or on Spark.

Unlike the relational domains, mobility needs each vehicle's fixes in time order (trips,
stays, DBSCAN locations, HMM purposes), so it runs :func:`~autopersona.features.mobility`
per vehicle: in a local process pool (``engine="duckdb"``) or with Spark's grouped map
(``engine="spark"``).  State carries between builds in the warehouse: ``mobility_locations``
(each vehicle's known places, so location ids and home/work stay stable) and the trips of
the recomputed periods in ``mobility_trips``.  Weekly features are per *local* ISO week;
``period_start`` is that week's Monday.

Consent (:mod:`autopersona.features.consent`): only vehicles consenting now (the build's
time) to one of the domain's purposes (``dictionary/mobility.yaml``) are read at all; their
trips, stays and locations are the only ones computed and kept as state (a withdrawn vehicle's
locations leave ``mobility_locations`` at the next build).  The trip purpose HMM is fitted
only on the trips of vehicles consenting to the purposes its features (``commute_share``,
``business_share``, ``leisure_share``) serve, as of every week of the build and now, so a
non-consenting vehicle's trips change no one's purposes.  The weekly rows are then kept per
week by :func:`~autopersona.features.consent.keep_consented`, and ``mobility_trips`` keeps a
vehicle's trips only for the weeks whose rows are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from autopersona.features.consent import keep_consented
from autopersona.store.warehouse import Warehouse

if TYPE_CHECKING:
    from autopersona.features.runner import MobilityResult

__all__ = ["HMM_FEATURES", "MOBILITY_TABLE", "build_mobility", "consenting_vehicles"]

MOBILITY_TABLE = "features_mobility"
LOCATIONS_TABLE = "mobility_locations"
TRIPS_TABLE = "mobility_trips"
#: The features derived from the fleet-fitted trip purpose HMM.
HMM_FEATURES = ("commute_share", "business_share", "leisure_share")


def _exists(wh: Warehouse, table: str) -> bool:
    n = wh.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table])
    return bool(n[0][0])


def _replace(
    wh: Warehouse, table: str, df: pd.DataFrame, where: str = "", params: list[Any] | None = None
) -> None:
    con = wh.con
    con.register("_ap_mob", df)
    try:
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" AS SELECT * FROM _ap_mob LIMIT 0')
        con.execute(f'DELETE FROM "{table}" {where}', params or [])
        con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _ap_mob')
    finally:
        con.unregister("_ap_mob")


def _weeks(wh: Warehouse, since: date | None, now: datetime) -> list[date]:
    """Mondays of the local weeks that may hold motion from ``since`` on (up to ``now``).

    Local weeks of any time zone: a day is added on each side of the UTC range.
    """
    where, params = ("WHERE ts >= ?", [since]) if since is not None else ("", [])
    lo, hi = wh.sql(f"SELECT min(ts), max(ts) FROM motion {where}", params)[0]
    if lo is None or hi is None:
        return []
    a = lo.date() - timedelta(days=1)
    b = min(hi, now).date() + timedelta(days=1)
    first, last = a - timedelta(days=a.weekday()), b - timedelta(days=b.weekday())
    out, day = [], first
    while day <= last:
        out.append(day)
        day += timedelta(days=7)
    return out


def consenting_vehicles(
    wh: Warehouse, since: date | None = None, now: datetime | None = None
) -> tuple[set[str], set[str]]:
    """``(vehicles to compute, vehicles whose trips fit the purpose HMM)`` under consent.

    The first: vehicles consenting at ``now`` to one of the mobility domain's purposes.  The
    second: those consenting to a purpose of :data:`HMM_FEATURES` as of every week with motion
    from ``since`` on and at ``now``.
    """
    from autopersona.features.consent import consent_times, consenting
    from autopersona.features.dictionary import domain_purposes, feature_dictionary

    now = now or datetime.now(UTC)
    compute = consenting(wh, domain_purposes()["mobility"], [now])
    fd = feature_dictionary()
    hmm_purposes = sorted({p for f in HMM_FEATURES for p in fd[f].purposes})
    times = [now, *consent_times(_weeks(wh, since, now), "week", now).values()]
    return compute, compute & consenting(wh, hmm_purposes, times)


def build_mobility(
    wh: Warehouse,
    *,
    period: str = "week",
    since: datetime | None = None,
    engine: str = "duckdb",
    workers: int | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Weekly mobility features from ``since`` on, with trips and locations kept as state.

    Only consenting vehicles are computed, and the purpose HMM is fitted on consenting
    vehicles only (:func:`consenting_vehicles`; ``now`` is the build's time).

    Returns
    -------
    pandas.DataFrame
        One row per vehicle and local ISO week: ``vin``, ``period_start`` and the
        ``MOBILITY_FEATURES`` columns.

    Raises
    ------
    ValueError
        For a period other than ``week`` (mobility is defined per local ISO week).
    """
    from autopersona.features.runner import run_mobility

    if period != "week":
        raise ValueError("mobility features are computed per local ISO week (--period week)")
    start: date | None = since.date() if since else None
    previous = None
    if start is not None and _exists(wh, LOCATIONS_TABLE):
        previous = wh.frame(f'SELECT * FROM "{LOCATIONS_TABLE}"')
    vins, fit_vins = consenting_vehicles(wh, start, now)
    res: _SparkResult | MobilityResult
    if engine == "spark":
        res = _run_on_spark(wh, start, previous, vins, fit_vins)
    else:
        res = run_mobility(
            wh,
            start=start,
            previous_locations=previous,
            workers=workers,
            vins=vins,
            fit_vins=fit_vins,
        )
    weekly = res.weekly.copy()
    if len(weekly):
        weekly.insert(
            1,
            "period_start",
            [
                pd.Timestamp(date.fromisocalendar(int(y), int(w), 1))
                for y, w in zip(weekly["iso_year"], weekly["iso_week"], strict=True)
            ],
        )
        weekly["period_start"] = weekly["period_start"].astype("datetime64[us]")
    weekly = weekly.drop(columns=[c for c in ("period",) if c in weekly.columns])
    weekly = keep_consented(wh, weekly, "mobility", "week", now=now)
    trips = res.trips
    if len(trips):
        # trip state only for the weeks whose features consent allows (local ISO weeks)
        kept = (
            set(zip(weekly["vin"], weekly["iso_year"], weekly["iso_week"], strict=True))
            if len(weekly)
            else set()
        )
        mask = [
            (v, int(y), int(w)) in kept
            for v, y, w in zip(trips["vin"], trips["iso_year"], trips["iso_week"], strict=True)
        ]
        trips = trips.loc[mask].reset_index(drop=True)
    if len(res.locations) or _exists(wh, LOCATIONS_TABLE):
        _replace(wh, LOCATIONS_TABLE, res.locations)
    if len(trips) or _exists(wh, TRIPS_TABLE):
        if start is None:
            _replace(wh, TRIPS_TABLE, trips)
        else:
            _replace(wh, TRIPS_TABLE, trips, "WHERE started_at >= ?", [start])
    return weekly


@dataclass
class _SparkResult:
    weekly: pd.DataFrame
    trips: pd.DataFrame
    locations: pd.DataFrame


def _naive_to_utc(df: pd.DataFrame) -> pd.DataFrame:
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_datetime64_any_dtype(s) and getattr(s.dt, "tz", None) is None:
            df[col] = s.dt.tz_localize("UTC")
    return df


def _run_on_spark(
    wh: Warehouse,
    start: date | None,
    previous: pd.DataFrame | None,
    vins: set[str],
    fit_vins: set[str],
) -> _SparkResult:
    """Per-vehicle mobility with Spark's grouped map over a Parquet export of the period.

    Mirrors :func:`~autopersona.features.runner.run_mobility`: only the ``vins`` vehicles'
    data is exported; a first pass finds their trips, the purpose HMM is fitted on the driver
    over the trips of the ``fit_vins`` vehicles (in VIN order), and a second pass produces the
    outputs with the fitted model.  Location state from
    earlier builds is not carried on this engine: it recomputes from ``start``.
    """
    import os
    import sys
    import tempfile
    from pathlib import Path

    import numpy as np

    from autopersona.features.engines import SparkEngine
    from autopersona.features.purpose import encode_trips, fit_purpose_model
    from autopersona.features.runner import _read_pois, spark_mobility_fn

    _ = previous
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    eng = SparkEngine(wh, ["pois"])  # starts (or reuses) the session
    spark = eng.spark
    where = "WHERE m.vin IN (SELECT unnest(?::VARCHAR[]))"
    params: list[Any] = [sorted(vins)]
    if start is not None:
        where += " AND m.ts >= ?"
        params.append(start)
    with tempfile.TemporaryDirectory(prefix="autopersona-mob-") as d:
        lake = Path(d)
        wh.con.execute(
            f"""COPY (SELECT m.*, v.timezone FROM motion m LEFT JOIN vehicles v USING (vin) {where})
                TO '{lake / "motion.parquet"}' (FORMAT parquet)""",
            params,
        )
        wh.con.execute(
            f"""COPY (SELECT vin, ts, ignition_on FROM vehicle_signals m {where})
                TO '{lake / "signals.parquet"}' (FORMAT parquet)""",
            params,
        )
        pois = _read_pois(wh)  # the pool's reader: same columns and order (ties!)
        motion = spark.read.parquet(str(lake / "motion.parquet"))
        signals = spark.read.parquet(str(lake / "signals.parquet"))
        grouped = motion.groupBy("vin").cogroup(signals.groupBy("vin"))

        def run(kind: str, model: Any = None) -> pd.DataFrame:
            fn, schema = spark_mobility_fn(kind, pois=pois, purpose_model=model, cogrouped=True)  # type: ignore[arg-type]
            out = grouped.applyInPandas(fn, schema).toPandas()
            return _naive_to_utc(out)

        first = run("trips").sort_values(["vin", "started_at"], kind="stable")
        first = first[first["vin"].astype(str).isin(fit_vins)]
        if len(first):
            lengths = first.groupby("vin", sort=True).size().tolist()
            model = fit_purpose_model(np.asarray(encode_trips(first)), lengths)
        else:
            model = None
        trips = run("trips", model).sort_values(["vin", "started_at"], kind="stable")
        weekly = run("weekly", model).sort_values(["vin", "iso_year", "iso_week"], kind="stable")
        locations = run("locations", model).sort_values(["vin", "location_id"], kind="stable")
    eng.close()
    return _SparkResult(
        weekly.reset_index(drop=True),
        trips.reset_index(drop=True),
        locations.reset_index(drop=True),
    )
