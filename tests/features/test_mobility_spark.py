"""The per-vehicle mobility function in Spark's grouped map (local mode), same as in pandas."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from autopersona.features.engines import stop_spark
from autopersona.features.mobility import vehicle_mobility
from autopersona.features.runner import SPARK_SCHEMAS, spark_mobility_fn

# Feature steps group by whatever identifies a vehicle; these tests score them against the
# simulator's truth and name vehicles by their clear VINs: in clear (AUTOPERSONA_PSEUDONYMISE=0;
# features on pseudonyms: tests/privacy/test_pseudo_pipeline.py).

pytestmark = [
    pytest.mark.usefixtures("clear_identifiers_module"),
    pytest.mark.slow,
    # py4j leaves sockets to the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

TZ = "Asia/Shanghai"


def _vehicle(vin: str, shift_deg: float) -> pd.DataFrame:
    """Mon-Fri commutes between two points (fixes every 10 s), local 08:00 and 17:30."""
    home = np.array([31.20 + shift_deg, 121.40])
    work = np.array([31.26 + shift_deg, 121.47])
    rows = []
    for d in range(5):
        day = pd.Timestamp("2026-01-05", tz=TZ) + pd.Timedelta(days=d)
        for hour, a, b in ((8.0, home, work), (17.5, work, home)):
            t0 = (day + pd.Timedelta(hours=hour)).tz_convert("UTC")
            n = 90
            f = np.linspace(0, 1, n)
            for i in range(n):
                p = a + f[i] * (b - a)
                rows.append((vin, t0 + pd.Timedelta(seconds=10 * i), p[0], p[1], 12.0))
    return pd.DataFrame(rows, columns=["vin", "ts", "lat", "lon", "speed_mps"])


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pyspark_sql = pytest.importorskip("pyspark.sql")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .appName("autopersona-mobility-test")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    stop_spark()


def test_grouped_map_equals_pandas(spark: Any, tmp_path: Path) -> None:
    motion = pd.concat([_vehicle("A", 0.0), _vehicle("B", 0.1)], ignore_index=True)
    motion["timezone"] = TZ
    motion.to_parquet(tmp_path / "motion.parquet")
    signals = pd.DataFrame(
        {"vin": ["A"], "ts": [pd.Timestamp("2026-01-05 00:05", tz="UTC")], "ignition_on": [False]}
    )
    signals.to_parquet(tmp_path / "signals.parquet")
    sdf = spark.read.parquet(str(tmp_path / "motion.parquet"))
    sig = spark.read.parquet(str(tmp_path / "signals.parquet"))

    fn, schema = spark_mobility_fn("weekly")
    assert schema == SPARK_SCHEMAS["weekly"]
    weekly = sdf.groupBy("vin").applyInPandas(fn, schema).toPandas().sort_values("vin")
    fn_t, schema_t = spark_mobility_fn("trips")
    trips = sdf.groupBy("vin").applyInPandas(fn_t, schema_t).toPandas()
    fn_c, _ = spark_mobility_fn("trips", cogrouped=True)
    cotrips = (
        sdf.groupBy("vin").cogroup(sig.groupBy("vin")).applyInPandas(fn_c, schema_t).toPandas()
    )

    for vin, g in motion.groupby("vin"):
        local = vehicle_mobility(g, timezone=TZ)
        w = weekly[weekly["vin"] == vin].reset_index(drop=True)
        want = local.weekly.reset_index(drop=True)
        assert w["period"].tolist() == want["period"].tolist() == ["2026-W02"]
        for col in ("n_trips", "distance_km", "commute_share", "home_lat", "trip_regularity"):
            assert w[col].tolist() == pytest.approx(want[col].tolist()), col
        t = trips[trips["vin"] == vin].sort_values("trip_seq")
        assert t["purpose"].tolist() == local.trips["purpose"].tolist()
        started = pd.DatetimeIndex(t["started_at"]).tz_localize("UTC")
        assert (started == pd.DatetimeIndex(local.trips["started_at"])).all()
    # the ignition-off sample 5 minutes into A's first commute splits it in the cogroup
    assert len(cotrips[cotrips["vin"] == "A"]) == len(trips[trips["vin"] == "A"]) + 1
    assert len(cotrips[cotrips["vin"] == "B"]) == len(trips[trips["vin"] == "B"]) == 10


def test_stop_spark_ends_the_jvm_and_closes_its_pipe(spark: Any) -> None:
    from pyspark import SparkContext

    proc = getattr(SparkContext._gateway, "proc", None)
    if proc is None:
        pytest.skip("pyspark attached to a JVM it did not start (PYSPARK_GATEWAY_PORT)")
    assert proc.poll() is None and not proc.stdin.closed
    assert stop_spark()
    assert proc.returncode is not None and proc.stdin.closed
    assert SparkContext._gateway is None and SparkContext._active_spark_context is None
    assert not stop_spark()  # nothing left to stop
