"""Feedback analysis of 10 M exposure rows: autopersona (DuckDB SQL) vs a pandas groupby.

The data is synthetic (numpy, fixed seed): one row per message — strategy (20), channel
(4), arm (precision / baseline / holdout), day (30), person, and the funnel flags sent,
delivered, exposed, clicked, voice reply, dwell, conversions, redemptions, revenue,
referrals — written once to a cached Parquet file.  Each contender, in its own process (``bench/_harness.py``), reads the file
and computes the same analysis:

1. the four-layer funnel per strategy, channel, segment (= arm) and day — autopersona runs
   :func:`autopersona.evaluation.funnel.funnel_sql` on the message table in DuckDB, the
   contender :func:`autopersona.evaluation.funnel.funnel_from_messages` (pandas groupby);
2. per strategy, the experiment of precision vs baseline: conversion per sent message
   (difference in proportions, Wald interval) and revenue per message (Welch's t from
   count, sum and sum of squares), both with :mod:`autopersona.evaluation.experiment`.

Both outputs are compared (same groups, same numbers to 1e-9) before the times are trusted.
Rows per second = input rows / best wall time (read included).  Usage::

    python bench/evaluation.py [--rows 10000000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

BY = ("strategy", "channel", "segment", "day")


def generate(rows: int, path: Path, seed: int = 7) -> None:
    """Synthetic message-level exposure rows (Parquet)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    chunk = 2_000_000
    writer = None
    channels = np.array(["head_unit", "app", "sms", "email"])
    arms = np.array(["precision", "baseline", "holdout"])
    day0 = np.datetime64("2026-03-01")
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        strategy = rng.integers(0, 20, n)
        arm = rng.choice(3, n, p=[0.45, 0.45, 0.10])
        sent = arm != 2
        delivered = sent & (rng.random(n) < 0.95)
        exposed = delivered & (rng.random(n) < 0.7)
        clicked = exposed & (rng.random(n) < 0.12 + 0.08 * (arm == 0))
        conv = (clicked & (rng.random(n) < 0.3)) | (rng.random(n) < 0.002)
        conversions = conv.astype(np.int64) + (conv & (rng.random(n) < 0.1))
        redemptions = (conv & (rng.random(n) < 0.6)).astype(np.int64)
        revenue = np.where(conversions > 0, rng.lognormal(5, 0.8, n) * conversions, 0.0)
        voice = exposed & (rng.random(n) < 0.05)
        dwell = np.where(exposed & (rng.random(n) < 0.9), rng.lognormal(2, 0.6, n), np.nan)
        referrals = (conv & (rng.random(n) < 0.08)).astype(np.int64)
        referral_value = np.where(referrals > 0, rng.lognormal(5, 0.5, n), 0.0)
        table = pa.table(
            {
                "strategy": pa.array(np.char.add("s", strategy.astype(str))).dictionary_encode(),
                "person_id": rng.integers(0, rows // 4, n),
                "channel": pa.array(channels[rng.integers(0, 4, n)]).dictionary_encode(),
                "arm": pa.array(arms[arm]).dictionary_encode(),
                "day": day0 + rng.integers(0, 30, n).astype("timedelta64[D]"),
                "is_sent": sent,
                "is_delivered": delivered,
                "is_exposed": exposed,
                "is_clicked": clicked,
                "is_visited": clicked,
                "is_voice": voice,
                "dwell_s": pa.array(dwell, mask=np.isnan(dwell)),
                "conversions": conversions,
                "redemptions": redemptions,
                "revenue": revenue,
                "referrals": referrals,
                "referral_value": referral_value,
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def _experiment(arms: Any) -> list[dict[str, Any]]:
    """Precision vs baseline per strategy from per-(strategy, arm) sums (same for both)."""
    from autopersona.evaluation import experiment as ex

    out = []
    for strat in sorted(arms["strategy"].unique()):
        a = arms[arms["strategy"] == strat].set_index("arm")
        t, c = a.loc["precision"], a.loc["baseline"]
        p = ex.diff_proportions(int(t.conv), int(t.sent), int(c.conv), int(c.sent))

        def var(r: Any) -> float:
            return float((r.rev2 - r.rev**2 / r.sent) / (r.sent - 1))

        w = ex.welch(t.rev / t.sent, var(t), int(t.sent), c.rev / c.sent, var(c), int(c.sent))
        out.append(
            {
                "strategy": str(strat),
                "cvr_diff": p.diff,
                "cvr_ci": [p.ci_low, p.ci_high],
                "rev_diff": w.diff,
                "rev_ci": [w.ci_low, w.ci_high],
            }
        )
    return out


def run_duckdb(path: Path) -> dict[str, Any]:
    """autopersona: funnel SQL and experiment sums in DuckDB, stats in Python."""
    import duckdb

    from autopersona.evaluation.funnel import funnel_sql

    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"CREATE VIEW msgs AS SELECT * FROM read_parquet('{path}')")
    funnel = con.execute(funnel_sql(BY, messages="msgs")).df()
    arms = con.execute(
        """SELECT strategy, arm, count(*) FILTER (WHERE is_sent) AS sent,
                  count(*) FILTER (WHERE is_sent AND conversions > 0) AS conv,
                  sum(revenue) FILTER (WHERE is_sent) AS rev,
                  sum(revenue * revenue) FILTER (WHERE is_sent) AS rev2
           FROM msgs WHERE arm <> 'holdout' GROUP BY ALL"""
    ).df()
    exp = _experiment(arms)
    secs = time.perf_counter() - t0
    rows = con.execute("SELECT count(*) FROM msgs").fetchone()
    return _report(secs, rows[0] if rows else 0, funnel, exp)


def run_pandas(path: Path) -> dict[str, Any]:
    """Contender: read with pandas and compute the same with groupby."""
    import pandas as pd

    from autopersona.evaluation.funnel import funnel_from_messages

    t0 = time.perf_counter()
    m = pd.read_parquet(path)
    funnel = funnel_from_messages(m, BY)
    s = m[m["is_sent"] & (m["arm"] != "holdout")]
    arms = (
        s.assign(conv=s["conversions"] > 0, rev2=s["revenue"] ** 2)
        .groupby(["strategy", "arm"], observed=True)
        .agg(
            sent=("is_sent", "size"),
            conv=("conv", "sum"),
            rev=("revenue", "sum"),
            rev2=("rev2", "sum"),
        )
        .reset_index()
    )
    arms["strategy"] = arms["strategy"].astype(str)
    arms["arm"] = arms["arm"].astype(str)
    exp = _experiment(arms)
    secs = time.perf_counter() - t0
    return _report(secs, len(m), funnel, exp)


def _report(secs: float, rows: int, funnel: Any, exp: list[dict[str, Any]]) -> dict[str, Any]:
    import pandas as pd

    f = funnel.copy()
    for d in ("strategy", "channel", "segment"):
        f[d] = f[d].astype(str)
    f["day"] = pd.to_datetime(f["day"]).dt.strftime("%Y-%m-%d")
    f = f.sort_values(list(BY)).reset_index(drop=True)
    return {
        "seconds": secs,
        "rows": int(rows),
        "groups": len(f),
        "funnel": f.to_dict(orient="list"),
        "experiment": exp,
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    import numpy as np
    import pandas as pd

    fa, fb = pd.DataFrame(a["funnel"]), pd.DataFrame(b["funnel"])
    if list(fa.columns) != list(fb.columns) or len(fa) != len(fb):
        return f"funnel shapes differ: {fa.shape} vs {fb.shape}"
    for col in fa.columns:
        if fa[col].dtype.kind in "fiub":
            if not np.allclose(fa[col], fb[col].astype(float), rtol=1e-9, equal_nan=True):
                return f"funnel column {col} differs"
        elif not (fa[col].astype(str) == fb[col].astype(str)).all():
            return f"funnel column {col} differs"
    for x, y in zip(a["experiment"], b["experiment"], strict=True):
        if x["strategy"] != y["strategy"] or not np.allclose(
            [x["cvr_diff"], *x["cvr_ci"], x["rev_diff"], *x["rev_ci"]],
            [y["cvr_diff"], *y["cvr_ci"], y["rev_diff"], *y["rev_ci"]],
            rtol=1e-9,
        ):
            return f"experiment of {x['strategy']} differs"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--stage", choices=["duckdb", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        fn = run_duckdb if args.stage == "duckdb" else run_pandas
        print(json.dumps(fn(args.data), default=str))
        return 0

    from _harness import best_of

    data = args.cache / f"autopersona-bench-exposures-v2-{args.rows}.parquet"
    if not data.is_file():
        t0 = time.perf_counter()
        generate(args.rows, data)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.1f} s → {data}")
    me = [sys.executable, __file__, "--data", str(data), "--stage"]
    ours = best_of([*me, "duckdb"], args.repeat)
    theirs = best_of([*me, "pandas"], args.repeat)
    diff = _same(ours, theirs)
    if diff:
        print(f"results differ: {diff}", file=sys.stderr)
        return 1
    res = {
        "rows": ours["rows"],
        "groups": ours["groups"],
        "autopersona_s": ours["seconds"],
        "pandas_s": theirs["seconds"],
        "autopersona_rows_per_s": ours["rows"] / ours["seconds"],
        "pandas_rows_per_s": theirs["rows"] / theirs["seconds"],
        "speedup": theirs["seconds"] / ours["seconds"],
    }
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(
        f"{res['rows']:,} exposure rows → {res['groups']:,} funnel groups "
        f"(strategy x channel x segment x day) + {len(ours['experiment'])} experiments; "
        f"best of {args.repeat}, read included"
    )
    print(f"  autopersona (DuckDB SQL) {res['autopersona_s']:7.2f} s  "
          f"{res['autopersona_rows_per_s']:13,.0f} rows/s")  # fmt: skip
    print(f"  pandas groupby           {res['pandas_s']:7.2f} s  "
          f"{res['pandas_rows_per_s']:13,.0f} rows/s")  # fmt: skip
    print(f"  ratio (pandas time / autopersona time): {res['speedup']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
