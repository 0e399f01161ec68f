"""Driving-feature stage speed against a pandas implementation and DuckDB's raw scan.

On a simulated fleet whose ``motion`` table has at least 20 M rows (default 200 vehicles x
28 days, simulated once and ingested once, VINs in clear, into a cached DuckDB file under
the temp dir; that preparation is not timed), compares in separate subprocesses (so that
each peak RSS is its own):

* ``stage``: :func:`autopersona.features.driving.driving_features` on a
  :class:`~autopersona.features.engines.DuckDBEngine` (weekly periods, every period): the
  vehicles' classes, then one compiled pass (:mod:`autopersona.features.driving_pass`,
  numba) over the motion columns streamed from DuckDB as Arrow batches, one stream per
  DuckDB thread, then the odometer and V2X aggregates in DuckDB (on their own cursors,
  while pandas and numpy roll the pass up to the periods).  Nothing is cached between runs but
  numba's compiled machine code (on disk, like an installed extension module), loaded
  when the module is imported;
* ``pandas``: the same features written with pandas ``groupby`` — the motion columns the
  stage reads plus vehicles, signals and V2X read with ``con.execute(...).df()`` (the read
  time is *included*), then the same small post-processing (``driving._finish``); its
  output is checked equal to the stage's;
* ``scan``: DuckDB's raw scan of the same motion columns,
  ``SELECT count(*), sum(hash(...))`` — a floor for any stage that must read them;
* ``export``: the pass's input alone — the same columns (the VIN as its 64-bit hash)
  streamed from DuckDB into Arrow batches the way the stage reads them, nothing done with
  them: the floor of this design (DuckDB's conversion to Arrow, not the kernel, is most of
  the pass);
* ``pass``: the same stream through the compiled kernel, its output split into arrays,
  nothing rolled up — the floor of this design once the kernel's work is counted;
* ``group``: the aggregates of the pass as one hand-written DuckDB ``GROUP BY``
  (vehicle, UTC hour) with the partial sums, counts and maximum (:data:`GROUP_SQL`) — how
  the stage computed them before the compiled pass, for reference.

Each contender first runs the raw scan once untimed (same warm DuckDB buffers for all; the
stage's process also imports Ibis, with the SQL compiler it loads on first use, and the
numba module before the clock starts; that module's import loads the compiled kernel, and
its time is printed too).  Prints
wall seconds (best of ``--repeat`` processes) and the process CPU seconds of that run (all
threads; steadier than wall time on a shared machine), the ratios (targets, on wall time:
pandas / stage >= 5, scan / stage >= 0.35) and peak RSS.  Usage::

    python bench/features.py [--vehicles 200] [--days 28] [--repeat 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from _harness import best_of

CACHE = Path(tempfile.gettempdir()) / "autopersona-bench"
#: motion columns the driving stage reads
MOTION_COLS = [
    "vin",
    "ts",
    "speed_mps",
    "accel_long_mps2",
    "accel_lat_mps2",
    "following_distance_m",
    "lane_offset_m",
]
KEY = ["vin", "period_start"]
SCAN_SQL = f"SELECT count(*), sum(hash({', '.join(MOTION_COLS)})) FROM motion"
#: the driving stage's one pass over motion, written directly in SQL (parameters: the
#: packaged defaults; 0/1 indicators summed as doubles, as the stage does)
GROUP_SQL = """
SELECT vin, h, count(*) AS samples, sum(mv) AS moving_s, sum(spd) AS speed_sum,
       sum(spd * mv) AS mv_sum, sum(spd * spd * mv) AS mv_sq, max(spd) AS max_speed,
       sum(hw) AS highway_s, sum(acc * mv) AS acc_sum,
       sum((acc IS NOT NULL)::DOUBLE * mv) AS acc_n, sum(lat * mv) AS lat_sum,
       sum((lat IS NOT NULL)::DOUBLE * mv) AS lat_n, sum(fd) AS fd_sum, count(fd) AS fd_n,
       sum(radar) AS radar_n, sum(short) AS short_headway_n, sum(lane) AS lane_sum,
       sum(lane * lane) AS lane_sq, count(lane) AS lane_n, sum(dep) AS lane_dep_n
FROM (
    SELECT vin, floor(epoch_us(ts) / 3600000000)::BIGINT AS h, speed_mps AS spd,
           abs(accel_long_mps2) AS acc, abs(accel_lat_mps2) AS lat,
           following_distance_m AS fd, lane_offset_m AS lane,
           (speed_mps > {moving})::DOUBLE AS mv, (speed_mps > {highway})::DOUBLE AS hw,
           (following_distance_m IS NOT NULL AND speed_mps > 5.0)::DOUBLE AS radar,
           (following_distance_m IS NOT NULL AND speed_mps > 5.0
            AND following_distance_m / speed_mps < 1.0)::DOUBLE AS short,
           (abs(lane_offset_m) > 0.5)::DOUBLE AS dep
    FROM motion
)
GROUP BY vin, h
"""


def _fleet(vehicles: int, days: int, seed: int) -> Path:
    """The cached warehouse file (simulated and ingested on first use)."""
    out = CACHE / f"features-{vehicles}x{days}-s{seed}"
    db = out / "warehouse.duckdb"
    done = out / "ingested.ok"
    if done.exists():
        return db
    # the bench times feature code on clear VINs, as before pseudonymisation was on by default
    os.environ.setdefault("AUTOPERSONA_PSEUDONYMISE", "0")
    from autopersona.ingest.engine import ingest
    from autopersona.simulate import simulate
    from autopersona.store.warehouse import Warehouse

    if not (out / "manifest.json").exists():
        print(f"simulating {vehicles} vehicles x {days} days (cached in {out}) ...", flush=True)
        simulate(vehicles=vehicles, days=days, seed=seed, out=out, start=date(2026, 1, 5))
    print("ingesting ...", flush=True)
    db.unlink(missing_ok=True)
    with Warehouse(db) as wh:
        ingest([out / "tables"], wh)
    done.write_text("ok\n")
    return db


# ----------------------------------------------------------------------------- contenders
def _warm(con: Any) -> None:
    """Same start for every contender: the motion columns once through DuckDB's buffers."""
    con.execute(SCAN_SQL).fetchall()


class _Clock:
    """Wall and process CPU seconds (all threads) of a ``with`` block."""

    def __enter__(self) -> _Clock:
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0


def _stage(db: str, out: str, threads: int | None) -> dict[str, Any]:
    import ibis
    import ibis.backends.sql.compilers.duckdb  # noqa: F401 - Ibis imports it on first use

    with _Clock() as load:  # the kernel's machine code, from numba's on-disk cache
        import autopersona.features.driving_pass  # noqa: F401
    from autopersona.features.driving import driving_features
    from autopersona.features.engines import DuckDBEngine
    from autopersona.store.warehouse import Warehouse

    with Warehouse(db, read_only=True, threads=threads) as wh:
        _warm(wh.con)
        with _Clock() as c:
            df = driving_features(DuckDBEngine(wh))
    df.to_parquet(out)
    r = {"seconds": c.seconds, "cpu": c.cpu, "rows": len(df)}
    return r | {"load_seconds": load.seconds, "load_cpu": load.cpu}


def _scan(db: str, out: str, threads: int | None) -> dict[str, Any]:
    from autopersona.store.warehouse import Warehouse

    with Warehouse(db, read_only=True, threads=threads) as wh:
        _warm(wh.con)
        with _Clock() as c:
            n, _h = wh.con.execute(SCAN_SQL).fetchall()[0]
    return {"seconds": c.seconds, "cpu": c.cpu, "rows": int(n)}


def _export(db: str, out: str, threads: int | None) -> dict[str, Any]:
    """The stage's motion read alone: its Ibis expression, streamed as the engine does."""
    import ibis
    import ibis.backends.sql.compilers.duckdb  # noqa: F401
    import pyarrow as pa

    from autopersona.features.driving import _vin_key
    from autopersona.features.driving_pass import MOTION_COLUMNS
    from autopersona.features.engines import DuckDBEngine
    from autopersona.store.warehouse import Warehouse

    def count(batches: Any) -> Any:
        yield pa.record_batch({"n": [sum(b.num_rows for b in batches)]})

    with Warehouse(db, read_only=True, threads=threads) as wh:
        _warm(wh.con)
        eng = DuckDBEngine(wh)
        with _Clock() as c:
            raw = eng.table("motion")
            expr = raw.select(*MOTION_COLUMNS[1:], vkey=_vin_key(eng, raw.vin))
            schema = pa.schema([("n", pa.int64())])
            res = eng.map_batches(expr, count, schema, split="motion")
    return {"seconds": c.seconds, "cpu": c.cpu, "rows": int(sum(res.column("n").to_pylist()))}


def _pass(db: str, out: str, threads: int | None) -> dict[str, Any]:
    """The stage's pass alone: the motion batches through the compiled kernel, no roll-up."""
    import functools

    import ibis.backends.sql.compilers.duckdb  # noqa: F401

    from autopersona.features import driving_pass as dp
    from autopersona.features.driving import _vin_key, load_params
    from autopersona.features.engines import DuckDBEngine
    from autopersona.store.warehouse import Warehouse

    p = load_params()
    d = p.harsh_thresholds["default"]
    lim = dp.PassLimits(
        p.moving_mps, p.highway_mps, d.accel_mps2, d.brake_mps2, d.lateral_mps2, p.event_gap_s
    )
    with Warehouse(db, read_only=True, threads=threads) as wh:
        _warm(wh.con)
        eng = DuckDBEngine(wh)
        with _Clock() as c:
            raw = eng.table("motion")
            expr = raw.select(*dp.MOTION_COLUMNS[1:], vkey=_vin_key(eng, raw.vin))
            fn = functools.partial(dp.motion_pass_batches, lim=lim)
            res = dp.pass_arrays(eng.map_batches(expr, fn, dp.PASS_SCHEMA, split="motion"))
    return {"seconds": c.seconds, "cpu": c.cpu, "rows": len(res.vkey)}


def _group(db: str, out: str, threads: int | None) -> dict[str, Any]:
    import pyarrow.compute as pc

    from autopersona.features.driving import load_params
    from autopersona.store.warehouse import Warehouse

    p = load_params()
    sql = GROUP_SQL.format(moving=p.moving_mps, highway=p.highway_mps)
    with Warehouse(db, read_only=True, threads=threads) as wh:
        _warm(wh.con)
        with _Clock() as c:
            hourly = wh.con.sql(sql).to_arrow_table()
    samples = int(pc.sum(hourly["samples"]).as_py())
    return {"seconds": c.seconds, "cpu": c.cpu, "rows": hourly.num_rows, "samples": samples}


def _week_start(ts: Any) -> Any:
    """Monday 00:00 UTC of each timestamp, as naive ``datetime64[us]``."""
    import pandas as pd

    day = ts.dt.tz_convert("UTC").dt.tz_localize(None).dt.floor("D")
    return (day - pd.to_timedelta(day.dt.day_of_week, unit="D")).astype("datetime64[us]")


def pandas_driving(con: Any) -> Any:
    """The driving stage written with pandas groupby over frames read from DuckDB."""
    import pandas as pd

    from autopersona.features.driving import _finish, load_params

    p = load_params()
    m = con.execute(f"SELECT {', '.join(MOTION_COLS)} FROM motion").df()
    veh = con.execute("SELECT vin, body_type, timezone FROM vehicles").df()
    sig = con.execute("SELECT vin, ts, odometer_km FROM vehicle_signals").df()
    v2x = con.execute("SELECT vin, ts, road_type, congestion_level FROM v2x_context").df()

    m["period_start"] = _week_start(m["ts"])
    spd, fd, lane = m["speed_mps"], m["following_distance_m"], m["lane_offset_m"]
    moving = spd > p.moving_mps
    radar = fd.notna() & (spd > 5.0)
    frame = pd.DataFrame(
        {
            "vin": m["vin"],
            "period_start": m["period_start"],
            "speed": spd,
            "moving": moving,
            "speed_mv": spd.where(moving),
            "highway": spd > p.highway_mps,
            "acc_mv": m["accel_long_mps2"].abs().where(moving),
            "lat_mv": m["accel_lat_mps2"].abs().where(moving),
            "fd": fd,
            "radar": radar,
            "short": radar & (fd / spd < 1.0),
            "lane": lane,
            "lane_dep": lane.abs() > 0.5,
        }
    )
    g = frame.groupby(KEY, sort=False)
    main = g.agg(
        samples=("speed", "size"),
        moving_s=("moving", "sum"),
        speed_sum=("speed", "sum"),
        mean_speed=("speed_mv", "mean"),
        sd_speed=("speed_mv", "std"),
        max_speed=("speed", "max"),
        highway_s=("highway", "sum"),
        accel_abs_mean=("acc_mv", "mean"),
        lateral_abs_mean=("lat_mv", "mean"),
        following_distance_mean_m=("fd", "mean"),
        radar_n=("radar", "sum"),
        short_headway_n=("short", "sum"),
        lane_offset_sd_m=("lane", "std"),
        lane_n=("lane", "count"),
        lane_dep_n=("lane_dep", "sum"),
    ).reset_index()
    mv = m.loc[moving, ["vin", "period_start", "ts"]]
    hours = (
        mv.assign(hour=mv["ts"].dt.floor("h"))
        .groupby([*KEY, "hour"], sort=False)
        .size()
        .rename("s")
        .reset_index()
    )

    # harsh events: runs of fixes beyond the class threshold, gaps <= event_gap_s
    d = p.harsh_thresholds["default"]
    th = veh[["vin", "body_type"]].copy()
    for col, attr in (
        ("th_acc", "accel_mps2"),
        ("th_brk", "brake_mps2"),
        ("th_lat", "lateral_mps2"),
    ):
        th[col] = [
            getattr(p.thresholds_for(b if isinstance(b, str) else None), attr)
            for b in th["body_type"]
        ]
    lo = [
        min(getattr(t, a) for t in p.harsh_thresholds.values())
        for a in ("accel_mps2", "brake_mps2", "lateral_mps2")
    ]
    al, at = m["accel_long_mps2"], m["accel_lat_mps2"]
    near = (al > lo[0]) | (al < -lo[1]) | (at.abs() > lo[2])
    cand = m.loc[near, ["vin", "ts", "period_start", "accel_long_mps2", "accel_lat_mps2"]].merge(
        th, on="vin", how="left"
    )
    cand = cand.fillna({"th_acc": d.accel_mps2, "th_brk": d.brake_mps2, "th_lat": d.lateral_mps2})
    out = main
    for flag, name in (
        (cand["accel_long_mps2"] > cand["th_acc"], "harsh_accel_events"),
        (cand["accel_long_mps2"] < -cand["th_brk"], "harsh_brake_events"),
        (cand["accel_lat_mps2"].abs() > cand["th_lat"], "harsh_corner_events"),
    ):
        k = cand.loc[flag, ["vin", "ts", "period_start"]].sort_values(["vin", "ts"])
        sec = (k["ts"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        gap = sec.groupby(k["vin"]).diff()
        k = k.assign(start=gap.isna() | (gap > p.event_gap_s))
        ev = k.groupby(KEY, sort=False)["start"].sum().rename(name).reset_index()
        out = out.merge(ev, on=KEY, how="left")

    sig["period_start"] = _week_start(sig["ts"])
    odo = sig.groupby(KEY, sort=False)["odometer_km"].agg(["max", "min"])
    odo = (odo["max"] - odo["min"]).rename("odo_km").reset_index()
    v2x["period_start"] = _week_start(v2x["ts"])
    # a nullable integer column: as float64 (NaN for null), like the stage's frames
    v2x["congestion_level"] = v2x["congestion_level"].astype("float64")
    v2x["hw"] = v2x["road_type"] == "highway"
    ctx = (
        v2x.groupby(KEY, sort=False)
        .agg(
            highway_n=("hw", "sum"),
            road_n=("road_type", "count"),
            congestion_mean=("congestion_level", "mean"),
        )
        .reset_index()
    )
    out = out.merge(odo, on=KEY, how="left").merge(ctx, on=KEY, how="left")
    res = _finish(out, hours, veh[["vin", "timezone"]], p)
    return res.sort_values(KEY, kind="stable").reset_index(drop=True)


def _pandas(db: str, out: str, threads: int | None) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(db, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {threads}")
    _warm(con)
    with _Clock() as c:
        df = pandas_driving(con)
    con.close()
    df.to_parquet(out)
    return {"seconds": c.seconds, "cpu": c.cpu, "rows": len(df)}


CONTENDERS = {
    "stage": _stage,
    "pandas": _pandas,
    "scan": _scan,
    "export": _export,
    "pass": _pass,
    "group": _group,
}
NAMES = {
    "stage": "driving_features on DuckDBEngine",
    "pandas": "pandas groupby (read included)",
    "scan": "DuckDB raw scan of the columns",
    "export": "the pass's input streamed to Arrow",
    "pass": "... and through the kernel (no roll-up)",
    "group": "its aggregates as one SQL GROUP BY",
}


def _worker(kind: str, db: str, out: str, threads: int | None) -> None:
    r = CONTENDERS[kind](db, out, threads)
    r["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(r))


def _measure(kind: str, db: Path, out: Path, repeat: int, threads: int | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind, str(db), str(out)]
    if threads:
        cmd += ["--threads", str(threads)]
    return best_of(cmd, repeat)


def main() -> None:
    """Run the benchmark (or one contender with ``--worker``)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "DB", "OUT"))
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker[0], a.worker[1], a.worker[2], a.threads)
        return
    import duckdb
    import pandas as pd

    db = _fleet(a.vehicles, a.days, a.seed)
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT count(*) FROM motion").fetchone()[0]  # type: ignore[index]
    con.close()
    with tempfile.TemporaryDirectory() as tmp:
        outs = {k: Path(tmp) / f"{k}.parquet" for k in CONTENDERS}
        res = {k: _measure(k, db, outs[k], a.repeat, a.threads) for k in CONTENDERS}
        ours = pd.read_parquet(outs["stage"])
        base = pd.read_parquet(outs["pandas"])
        pd.testing.assert_frame_equal(ours, base, check_dtype=False, rtol=1e-9)
    if res["group"]["samples"] != rows:
        raise SystemExit(f"the raw GROUP BY counted {res['group']['samples']} of {rows} rows")
    print(
        f"\nmotion: {rows:,} rows ({a.vehicles} vehicles x {a.days} days); "
        f"driving features: {res['stage']['rows']:,} rows; pandas output identical (rtol 1e-9)"
    )
    print(f"{'contender':<40}{'seconds':>9}{'CPU s':>8}{'motion rows/s':>16}{'peak RSS MiB':>14}")
    for k, r in res.items():
        print(
            f"{NAMES[k]:<40}{r['seconds']:>9.2f}{r['cpu']:>8.2f}{rows / r['seconds']:>16,.0f}"
            f"{r['peak_mb']:>14.0f}"
        )
    st, sc = res["stage"], res["scan"]
    sp = res["pandas"]["seconds"] / st["seconds"]
    ss = sc["seconds"] / st["seconds"]
    print(f"\nstage speed vs pandas:   {sp:.2f}x  (target >= 5x)  {'ok' if sp >= 5 else 'MISSED'}")
    print(
        f"stage speed vs raw scan: {ss:.2f}x  (target >= 0.35x)  {'ok' if ss >= 0.35 else 'MISSED'}"
    )
    print(
        f"in CPU seconds: vs pandas {res['pandas']['cpu'] / st['cpu']:.2f}x, "
        f"vs raw scan {sc['cpu'] / st['cpu']:.2f}x; "
        f"raw scan / the pass's input alone {sc['seconds'] / res['export']['seconds']:.2f}x "
        f"(CPU {sc['cpu'] / res['export']['cpu']:.2f}x), / the pass alone "
        f"{sc['seconds'] / res['pass']['seconds']:.2f}x; the stage takes "
        f"{st['seconds'] / res['group']['seconds']:.2f}x the SQL GROUP BY's time"
    )
    full = st["seconds"] + st["load_seconds"]
    print(
        f"the compiled pass loads at import (numba cache, not in the stage's time, like Ibis's "
        f"import): {st['load_seconds']:.2f} s, {st['load_cpu']:.2f} CPU s; "
        f"counted in, vs raw scan {sc['seconds'] / full:.2f}x"
    )


if __name__ == "__main__":
    main()
