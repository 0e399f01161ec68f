"""CLV on CDNOW: autopersona's BG/NBD + Gamma-Gamma vs lifetimes 0.11.3, same data.

Two datasets, weekly, calibration ending 1997-09-30 (Fader, Hardie & Lee 2005):

* ``sample``: the classic 2,357-customer CDNOW sample (``tests/data/cdnow``);
* ``master``: the full CDNOW file, 23,570 customers, read from the lifetimes package.

For each, both sides get the same transactions. The bench times, best of ``--repeat``
(reading files is not timed): the summary step (transactions to frequency/recency/T/
monetary value: ``summary_from_transactions`` vs lifetimes' ``summary_data_from_transaction_data``
with ``freq="D", freq_multiplier=7``), the BG/NBD fit and the Gamma-Gamma fit; it checks
that the summaries are equal and prints both sides' parameters, their largest relative
difference and the time ratio (lifetimes / autopersona: above 1 means autopersona is faster).

lifetimes is unmaintained and is not a project dependency: it runs in its own virtual
environment, found through ``$LIFETIMES_PYTHON`` or ``/tmp/lt/bin/python``; make one with::

    python3 -m venv /tmp/lt && /tmp/lt/bin/pip install lifetimes==0.11.3

Without it the bench still times autopersona and says that the baseline is unavailable.
This file imports only the standard library at the top, so lifetimes' interpreter can run
its worker. Usage::

    python bench/clv.py [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "cdnow" / "CDNOW_sample.txt"
UNTIL = "1997-09-30"
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "v": 15.44}


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _read_cdnow(path: str) -> Any:
    import pandas as pd

    with open(path) as fh:
        master = "customer_id" in fh.readline()  # the master file has a header, no sample id
    names = ["master_id", "date", "cds", "amount"]
    tx = pd.read_csv(
        path,
        sep=r"\s+",
        header=0 if master else None,
        names=names if master else ["master_id", "sample_id", *names[1:]],
        dtype={"date": str},
    )
    tx["date"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    return tx


# --------------------------------------------------------------------------- workers
def _lifetimes_worker(path: str, repeat: int, out_csv: str) -> None:
    warnings.simplefilter("ignore")
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    tx = _read_cdnow(path)
    t_sum, s = _best(
        lambda: summary_data_from_transaction_data(
            tx, "master_id", "date", "amount",
            observation_period_end=UNTIL, freq="D", freq_multiplier=7,
        ),
        repeat,
    )  # fmt: skip
    s.to_csv(out_csv)
    t_bg, bg = _best(lambda: BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"]), repeat)
    rep = s.loc[(s["frequency"] > 0) & (s["monetary_value"] > 0)]
    t_gg, gg = _best(
        lambda: GammaGammaFitter().fit(rep["frequency"], rep["monetary_value"]), repeat
    )
    print(
        json.dumps(
            {
                "seconds": {"summary": t_sum, "bgnbd": t_bg, "gamma_gamma": t_gg},
                "params": {**bg.params_.to_dict(), **gg.params_.to_dict()},
                "customers": len(s),
            }
        )
    )


def _datasets_dir(python: str) -> Path | None:
    code = (
        "import lifetimes, os; print(os.path.join(os.path.dirname(lifetimes.__file__), 'datasets'))"
    )
    res = subprocess.run(
        [python, "-W", "ignore", "-c", code], capture_output=True, text=True, check=False
    )
    return Path(res.stdout.strip()) if res.returncode == 0 else None


def _lifetimes(python: str | None, path: Path, repeat: int, tmp: Path) -> dict[str, Any] | None:
    if python is None:
        return None
    out_csv = tmp / f"lifetimes_summary_{path.stem}.csv"
    res = subprocess.run(
        [python, __file__, "--worker", str(path), "--repeat", str(repeat), "--out", str(out_csv)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        print(f"lifetimes worker failed:\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    rep: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    rep["summary_csv"] = str(out_csv)
    return rep


def _ours(path: Path, repeat: int) -> tuple[dict[str, Any], Any]:
    from autopersona.models.clv import BetaGeo, GammaGamma, summary_from_transactions

    tx = _read_cdnow(str(path))
    t_sum, s = _best(
        lambda: summary_from_transactions(
            tx, "master_id", "date", "amount", until=UNTIL, unit="week"
        ),
        repeat,
    )
    t_bg, bg = _best(lambda: BetaGeo().fit(s), repeat)
    t_gg, gg = _best(lambda: GammaGamma().fit(s), repeat)
    return {
        "seconds": {"summary": t_sum, "bgnbd": t_bg, "gamma_gamma": t_gg},
        "params": {**bg.params_, **gg.params_},
        "customers": len(s),
        "log_likelihood": bg.log_likelihood_,
    }, s


def _find_python(arg: str | None) -> str | None:
    for cand in (arg, os.environ.get("LIFETIMES_PYTHON"), "/tmp/lt/bin/python"):
        if cand and Path(cand).exists():
            return cand
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--lifetimes-python", default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _lifetimes_worker(args.worker, args.repeat, args.out)
        return 0

    import pandas as pd

    python = _find_python(args.lifetimes_python)
    datasets = {"sample": SAMPLE}
    if python is None:
        print(
            "lifetimes baseline unavailable: set $LIFETIMES_PYTHON or create /tmp/lt "
            "(python3 -m venv /tmp/lt && /tmp/lt/bin/pip install lifetimes==0.11.3)",
            file=sys.stderr,
        )
    else:
        d = _datasets_dir(python)
        if d is not None and (d / "CDNOW_master.txt").is_file():
            datasets["master"] = d / "CDNOW_master.txt"
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in datasets.items():
            ours, summary = _ours(path, args.repeat)
            theirs = _lifetimes(python, path, args.repeat, Path(tmp))
            row: dict[str, Any] = {"customers": ours["customers"], "autopersona": ours}
            if theirs is not None:
                ls = pd.read_csv(theirs.pop("summary_csv"), index_col=0)
                cols = ["frequency", "recency", "T", "monetary_value"]
                diff = (summary[cols] - ls.reindex(summary.index)[cols]).abs().max().max()
                row["lifetimes"] = theirs
                row["summary_max_abs_diff"] = float(diff)
                row["param_max_rel_diff"] = max(
                    abs(ours["params"][k] - theirs["params"][k]) / abs(theirs["params"][k])
                    for k in ours["params"]
                )
                row["speedup"] = {
                    k: theirs["seconds"][k] / ours["seconds"][k] for k in ours["seconds"]
                }
            results[name] = row
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for name, row in results.items():
        ours = row["autopersona"]
        print(f"\nCDNOW {name}: {row['customers']:,} customers, weekly, until {UNTIL}")
        keys = list(ours["params"])
        print(f"  {'':<13}" + "".join(f"{k:>10}" for k in keys))
        if name == "sample":
            print(f"  {'published':<13}" + "".join(f"{PUBLISHED[k]:>10.4g}" for k in keys))
        print(f"  {'autopersona':<13}" + "".join(f"{ours['params'][k]:>10.5g}" for k in keys))
        if "lifetimes" in row:
            lt = row["lifetimes"]
            print(f"  {'lifetimes':<13}" + "".join(f"{lt['params'][k]:>10.5g}" for k in keys))
            print(
                f"  largest relative parameter difference {row['param_max_rel_diff']:.1e}; "
                f"summaries differ by at most {row['summary_max_abs_diff']:.1e}"
            )
        print(f"  {'seconds':<13}{'autopersona':>12}{'lifetimes':>12}{'speedup':>10}")
        for k, v in ours["seconds"].items():
            if "lifetimes" in row:
                lt_s = row["lifetimes"]["seconds"][k]
                print(f"  {k:<13}{v:>12.4f}{lt_s:>12.4f}{row['speedup'][k]:>9.1f}x")
            else:
                print(f"  {k:<13}{v:>12.4f}{'-':>12}{'-':>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
