"""Ingest throughput and peak memory on a simulated 100-vehicle x 7-day motion table.

Compares, in the same run and on the same file:

* ``autopersona``: the full ingestion (validation, unit checks, duplicates, key conflicts,
  GPS-drift cleaning, idempotent anti-join, quarantine) into a fresh DuckDB warehouse;
* ``baseline``: a plain ``pandas.read_parquet`` followed by a DuckDB insert of the frame,
  i.e. loading with no checks at all;
* ``autopersona (memory_limit)``: the full ingestion with DuckDB capped at 256 MB, to show
  that memory stays bounded (work spills to disk).

Each contender runs in its own subprocess so that its peak RSS is its own; the best of
``--repeat`` runs is reported. Usage::

    python bench/ingest.py [--vehicles 100] [--days 7] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from _harness import best_of

CACHE = Path(tempfile.gettempdir()) / "autopersona-bench"


def _worker(kind: str, path: str, db: str) -> None:
    import duckdb

    for leftover in (Path(db), Path(db + ".wal")):  # every run starts from an empty warehouse
        leftover.unlink(missing_ok=True)

    t0 = time.perf_counter()
    if kind == "baseline":
        import pandas as pd

        df = pd.read_parquet(path)
        con = duckdb.connect(db)
        con.execute("CREATE TABLE motion AS SELECT * FROM df")
        rows = len(df)
        con.close()
    else:
        from autopersona.ingest.engine import ingest
        from autopersona.store.warehouse import Warehouse

        limit = "256MB" if kind == "limited" else None
        with Warehouse(db, memory_limit=limit) as wh:
            rep = ingest([path], wh, table="motion", keep_going=False)
            rows = rep.read
            assert rep.read == rep.loaded + rep.duplicates + rep.quarantined
    secs = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "seconds": secs, "peak_mb": peak_kb / 1024}))


def _measure(kind: str, path: Path, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, __file__, "--worker", kind, str(path), str(Path(d) / "w.duckdb")]
        return best_of(cmd, repeat)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=100)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "FILE", "DB"))
    a = ap.parse_args()
    if a.worker:
        _worker(*a.worker)
        return
    from autopersona.simulate import simulate

    out = CACHE / f"fleet-{a.vehicles}x{a.days}"
    motion = out / "tables" / "motion.parquet"
    if not motion.exists():
        print(f"simulating {a.vehicles} vehicles x {a.days} days ...", flush=True)
        simulate(vehicles=a.vehicles, days=a.days, seed=7, out=out)
    size_mb = motion.stat().st_size / 2**20
    res = {k: _measure(k, motion, a.repeat) for k in ("baseline", "ours", "limited")}
    rows = res["ours"]["rows"]
    print(
        f"\nmotion table: {rows:,.0f} rows, {size_mb:.1f} MiB Parquet ({a.vehicles} vehicles x {a.days} days)"
    )
    print(f"{'contender':<42}{'seconds':>9}{'rows/s':>14}{'peak RSS MiB':>14}")
    names = {
        "baseline": "pandas read + DuckDB insert (no checks)",
        "ours": "autopersona ingest",
        "limited": "autopersona ingest, memory_limit 256MB",
    }
    for k, r in res.items():
        print(
            f"{names[k]:<42}{r['seconds']:>9.2f}{r['rows'] / r['seconds']:>14,.0f}{r['peak_mb']:>14.0f}"
        )
    ratio = res["baseline"]["seconds"] / res["ours"]["seconds"]
    print(f"\nthroughput ratio autopersona / baseline: {ratio:.2f}x")
    print(
        f"peak memory ratio autopersona / baseline: {res['ours']['peak_mb'] / res['baseline']['peak_mb']:.2f}x; "
        f"with memory_limit: {res['limited']['peak_mb'] / res['baseline']['peak_mb']:.2f}x"
    )


if __name__ == "__main__":
    main()
