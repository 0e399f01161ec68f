"""The mobility domain of ``features build``: per-vehicle steps, run in a pool or on Spark.

Unlike the relational domains, mobility needs each vehicle's fixes in time order (trips,
stays, DBSCAN locations, HMM purposes), so it runs :func:`~autopersona.features.mobility`
per vehicle: in a local process pool (``engine="duckdb"``) or with Spark's grouped map
(``engine="spark"``).  State carries between builds in the warehouse: ``mobility_locations``
(each vehicle's known places, so location ids and home/work stay stable) and the trips of
the recomputed periods in ``mobility_trips``.  Weekly features are per *local* ISO week;
``period_start`` is that week's Monday.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from autopersona.store.warehouse import Warehouse

if TYPE_CHECKING:
    from autopersona.features.runner import MobilityResult

__all__ = ["MOBILITY_TABLE", "build_mobility"]

MOBILITY_TABLE = "features_mobility"
LOCATIONS_TABLE = "mobility_locations"
TRIPS_TABLE = "mobility_trips"


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


def build_mobility(
    wh: Warehouse,
    *,
    period: str = "week",
    since: datetime | None = None,
    engine: str = "duckdb",
    workers: int | None = None,
) -> pd.DataFrame:
    """Weekly mobility features from ``since`` on, with trips and locations kept as state.

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
    res: _SparkResult | MobilityResult
    if engine == "spark":
        res = _run_on_spark(wh, start, previous)
    else:
        res = run_mobility(wh, start=start, previous_locations=previous, workers=workers)
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
    if len(res.locations):
        _replace(wh, LOCATIONS_TABLE, res.locations)
    if len(res.trips):
        if start is None:
            _replace(wh, TRIPS_TABLE, res.trips)
        else:
            _replace(wh, TRIPS_TABLE, res.trips, "WHERE started_at >= ?", [start])
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


def _run_on_spark(wh: Warehouse, start: date | None, previous: pd.DataFrame | None) -> _SparkResult:
    """Per-vehicle mobility with Spark's grouped map over a Parquet export of the period.

    Mirrors :func:`~autopersona.features.runner.run_mobility`: a first pass finds every
    vehicle's trips, the purpose HMM is fitted on the driver over all of them (in VIN order),
    and a second pass produces the outputs with the fitted model.  Location state from
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
    where = "WHERE m.ts >= ?" if start is not None else ""
    params: list[Any] = [start] if start is not None else []
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
