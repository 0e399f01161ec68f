"""Profile build (features -> every tag) for 10,000 simulated vehicles: wall time and peak RSS.

Simulating 10,000 vehicles' 1 Hz motion would take hours, so the fleet is scaled up from a
small simulated one (default 50 vehicles x 8 days, seed 7, cached under the temp dir):

1. simulate, ingest, build every feature domain, the sentiment features (packaged MiniLM +
   logistic regression, when torch is here) and the churn windows;
2. copy that warehouse and replicate, ``ceil(10,000 / 50) = 200`` times, every table the tags
   read: the ``features_*`` tables, the master data (``vehicles``, ``accounts``) and the
   tables the model tags take their labels from (``orders``, ``reviews``,
   ``service_records``, ``subscriptions``).  Copy ``k`` suffixes every identifier (VIN,
   customer and account ids, primary keys) with ``~k`` and multiplies each DOUBLE feature by
   a deterministic jitter in [0.95, 1.05] (hash of key, copy and column), so clusters and
   models see 10,000 distinct but realistic rows.  Copy 0 is the original.

Then, each in its own subprocess (so its peak RSS is its own; best of ``--repeat``):

* ``profile``: :func:`autopersona.store.profiles.refresh` with ``due_only=False`` on a fresh
  copy of the scaled warehouse (empty profile store): rule, score, cluster and model tags,
  written to the warehouse's profile store, as of the day after the data ends;
* ``pandas``: every table the tags read, read into pandas (``con.execute(...).df()``);
* ``scan``: DuckDB's raw scan of the same tables (``count(*)`` and a hash of every row).

Wall and CPU seconds (``time.process_time`` of the contender's process, all threads) are both
printed: on a shared machine the wall time includes waiting for a core.

The two baselines run in the same invocation, so the ratios compare like with like on this
machine.  Usage::

    python bench/profiles.py [--vehicles 10000] [--base 50] [--days 8] [--repeat 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import best_of

CACHE = Path(tempfile.gettempdir()) / "autopersona-bench"
#: raw tables the model tags read their labels from, and master data
RAW = ["vehicles", "accounts", "orders", "reviews", "service_records", "subscriptions"]
ID_COLUMNS = {"vin", "customer_id", "account_id"}


def _source(vehicles: int, days: int, seed: int) -> Path:
    """The small simulated warehouse with every feature table (cached)."""
    out = CACHE / f"profiles-src-{vehicles}x{days}-s{seed}"
    db = out / "warehouse.duckdb"
    done = out / "built.ok"
    if done.exists():
        return db
    from autopersona.features.build import build_features
    from autopersona.ingest.engine import ingest
    from autopersona.models import churn, sentiment
    from autopersona.simulate import simulate
    from autopersona.store.warehouse import Warehouse

    out.mkdir(parents=True, exist_ok=True)
    if not (out / "manifest.json").exists():
        print(f"simulating {vehicles} vehicles x {days} days (cached in {out}) ...", flush=True)
        simulate(vehicles=vehicles, days=days, seed=seed, out=out, progress=False)
    db.unlink(missing_ok=True)
    print("ingesting and building features ...", flush=True)
    with Warehouse(db) as wh:
        ingest([out / "tables"], wh, progress=False)
        build_features(wh)
        reason = sentiment.unavailable_reason()
        if reason is None:
            sentiment.build_sentiment_features(wh)
        else:
            print(f"sentiment features skipped: {reason}", flush=True)
        churn.build_churn_features(wh)
    done.write_text("ok\n")
    return db


def _tables(con: Any) -> list[str]:
    feats = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_name LIKE 'features_%' ORDER BY 1"
        ).fetchall()
    ]
    return [*feats, *RAW]


def _replicate(con: Any, table: str, copies: int) -> None:
    """Append copies 1..copies-1 of ``table`` with suffixed ids and jittered DOUBLE features."""
    from autopersona.contracts import load_contracts

    contracts = load_contracts()
    pk = set(contracts[table].primary_key) if table in contracts else set()
    desc = con.execute(f'DESCRIBE "{table}"').fetchall()
    key = next((c for c, *_ in desc if c in ("vin", "customer_id", "account_id")), None)
    sel = []
    for col, typ, *_ in desc:
        q = f'"{col}"'
        if typ == "VARCHAR" and (col in ID_COLUMNS or col in pk):
            sel.append(f"CASE WHEN {q} IS NULL THEN NULL ELSE {q} || '~' || r.k END AS {q}")
        elif typ == "DOUBLE" and table.startswith("features_") and key is not None:
            noise = f"(hash({key}, r.k, '{col}') % 2001) / 1000.0 - 1.0"
            sel.append(f"{q} * (1.0 + 0.05 * ({noise})) AS {q}")
        else:
            sel.append(q)
    con.execute(
        f'INSERT INTO "{table}" SELECT {", ".join(sel)} FROM "{table}" AS t, '
        f"range(1, {copies}) AS r(k) "
    )


def _scaled(src: Path, base: int, vehicles: int) -> tuple[Path, int]:
    """The warehouse scaled to ``vehicles`` (cached next to the source)."""
    copies = math.ceil(vehicles / base)
    db = src.parent / f"scaled-{copies}x.duckdb"
    done = src.parent / f"scaled-{copies}x.ok"
    if done.exists():
        return db, copies
    import duckdb

    print(f"replicating the {base}-vehicle warehouse {copies} times ...", flush=True)
    db.unlink(missing_ok=True)
    shutil.copyfile(src, db)
    con = duckdb.connect(str(db))
    con.execute("SET TimeZone = 'UTC'")
    for t in _tables(con):
        _replicate(con, t, copies)
    con.execute("CHECKPOINT")
    con.close()
    done.write_text("ok\n")
    return db, copies


# ----------------------------------------------------------------------------- contenders
def _rss_mb() -> float:
    """Peak RSS of this process in MB: VmHWM (reset by exec, unlike ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _profile(db: str) -> dict[str, Any]:
    import lightgbm  # noqa: F401 - library imports are not profile-build work
    import sklearn.cluster  # noqa: F401

    from autopersona.store.profiles import open_store, refresh
    from autopersona.store.warehouse import Warehouse
    from autopersona.tags.report import data_end
    from autopersona.tags.spec import load_catalogue

    work = Path(tempfile.mkdtemp(prefix="ap-bench-profiles-")) / "wh.duckdb"
    shutil.copyfile(db, work)  # each run starts with an empty profile store
    try:
        cat = load_catalogue()
        with Warehouse(work) as wh:
            as_of = data_end(wh)
            store = open_store(warehouse=wh)
            rss0 = _rss_mb()
            t0, c0 = time.perf_counter(), time.process_time()
            rep = refresh(wh, store, cat, as_of=as_of, due_only=False)
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            tags = wh.sql("SELECT count(DISTINCT tag_id) FROM tag_assignments")[0][0]
            vins = wh.sql("SELECT count(*) FROM vehicles")[0][0]
    finally:
        shutil.rmtree(work.parent, ignore_errors=True)
    return {
        "seconds": secs,
        "cpu_seconds": cpu,
        "rows": rep.assignments,
        "tags_with_values": int(tags),
        "tags": len(cat.tags),
        "vehicles": int(vins),
        "rss_start_mb": rss0,
        "notes": rep.notes,
    }


def _pandas(db: str) -> dict[str, Any]:
    from autopersona.store.warehouse import Warehouse

    with Warehouse(db, read_only=True) as wh:
        tables = _tables(wh.con)
        t0, c0 = time.perf_counter(), time.process_time()
        n = sum(len(wh.con.execute(f'SELECT * FROM "{t}"').df()) for t in tables)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": secs, "cpu_seconds": cpu, "rows": n}


def _scan(db: str) -> dict[str, Any]:
    from autopersona.store.warehouse import Warehouse

    with Warehouse(db, read_only=True) as wh:
        tables = _tables(wh.con)
        t0, c0 = time.perf_counter(), time.process_time()
        n = 0
        for t in tables:
            n += int(wh.con.execute(f'SELECT count(*), sum(hash(x)) FROM "{t}" AS x').fetchone()[0])
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": secs, "cpu_seconds": cpu, "rows": n}


CONTENDERS = {"profile": _profile, "pandas": _pandas, "scan": _scan}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--base", type=int, default=50, help="simulated vehicles replicated")
    ap.add_argument("--days", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--run", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        r = CONTENDERS[args.run](args.db)
        r["peak_rss_mb"] = _rss_mb()
        print(json.dumps(r, default=str))
        return 0

    t0 = time.perf_counter()
    src = _source(args.base, args.days, args.seed)
    db, copies = _scaled(src, args.base, args.vehicles)
    prep = time.perf_counter() - t0
    me = [sys.executable, str(Path(__file__).resolve())]
    res = {name: best_of([*me, "--run", name, "--db", str(db)], args.repeat) for name in CONTENDERS}
    prof = res["profile"]
    out = {
        "vehicles": prof["vehicles"],
        "base_vehicles": args.base,
        "copies": copies,
        "days": args.days,
        "prepare_seconds": prep,
        "contenders": res,
    }
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(
        f"\nprofile build for {prof['vehicles']:,} vehicles ({args.base} simulated x {copies}, "
        f"{args.days} days): {prof['rows']:,} assignments, {prof['tags_with_values']} of "
        f"{prof['tags']} tags with values"
    )
    print(
        f"{'contender':<10} {'wall s':>9} {'CPU s':>9} {'peak RSS MB':>12} {'rows':>12} "
        f"{'wall / scan':>12}"
    )
    for name, r in res.items():
        ratio = r["seconds"] / res["scan"]["seconds"] if res["scan"]["seconds"] else float("nan")
        print(
            f"{name:<10} {r['seconds']:>9.2f} {r['cpu_seconds']:>9.2f} {r['peak_rss_mb']:>12.0f} "
            f"{r['rows']:>12,} {ratio:>12.1f}"
        )
    print(f"(profile process RSS before the build: {prof['rss_start_mb']:.0f} MB)")
    for tid, note in sorted(prof.get("notes", {}).items()):
        print(f"  {note if note.startswith(tid) else f'{tid}: {note}'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
