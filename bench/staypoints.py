"""Stay points on GeoLife ``ten_users`` (164,531 fixes): autopersona vs trackintel 1.4.2.

For each of the six parameter sets of ``shared/data/geolife/expected/staypoint_counts.csv``
both implementations run on the same raw fixes, and the bench checks that they give the same
stay points: same count per user, identical ``started_at``/``finished_at`` and ``n_points``,
centroids equal to within 1e-9 degrees (it prints the largest difference). Then it reports the
time per run (best of ``--repeat``; reading the files is not timed), the speed ratio, the numba
JIT compile time (measured apart, from an empty cache, and not in the timed runs) and memory.

Each contender runs in its own subprocess. trackintel runs in its own virtual environment,
found through ``$TRACKINTEL_PYTHON`` or ``/tmp/ti/bin/python``; make one with::

    python3 -m venv /tmp/ti && /tmp/ti/bin/pip install trackintel==1.4.2

Without it the bench still times autopersona and says that the baseline is unavailable.
This file imports only the standard library at the top, so trackintel's interpreter can run
its worker. Usage::

    python bench/staypoints.py [--data shared/data/geolife/ten_users/Data] [--repeat 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARAMS = [
    (100.0, 5.0, 15.0, False),
    (25.0, 5.0, 15.0, False),
    (100.0, 5.0, 15.0, True),
    (50.0, 10.0, 15.0, False),
    (200.0, 20.0, 60.0, False),
    (25.0, 5.0, 1e6, False),
]
COLUMNS = ["param", "user_id", "started_ns", "finished_ns", "lat", "lon", "n_points"]


def _label(p: tuple[float, float, float, bool]) -> str:
    return f"d={p[0]:g} t={p[1]:g} g={p[2]:g}{' last' if p[3] else ''}"


# ----------------------------------------------------------------------------- measuring
def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: the high-water mark is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def _peak_rss(out: dict[str, float]) -> Iterator[None]:
    """Sample the resident set every 0.2 ms; out['peak_extra_mb'] = peak minus the start."""
    start = _rss_mb()
    peak = [start]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.0002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()
        peak[0] = max(peak[0], _rss_mb())
        out["peak_extra_mb"] = max(out.get("peak_extra_mb", 0.0), peak[0] - start)


def _best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _write_rows(path: str, rows: list[list[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(rows)


# ----------------------------------------------------------------------------- workers
def _worker_ours(data: str, repeat: int, out: str) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    t0 = time.perf_counter()
    from autopersona.features.geolife import read_geolife_plt
    from autopersona.features.staypoints import generate_staypoints

    import_s = time.perf_counter() - t0
    df = read_geolife_plt(data)
    tiny = pd.DataFrame(
        {
            "vin": ["a"] * 3,
            "ts": pd.to_datetime([0, 60, 600], unit="s", utc=True),
            "lat": [1.0, 1.0, 2.0],
            "lon": [1.0, 1.0, 1.0],
        }
    )
    t0 = time.perf_counter()
    generate_staypoints(tiny)  # compiles the kernels (or loads them from numba's cache)
    first_call_s = time.perf_counter() - t0
    times: dict[str, float] = {}
    rows: list[list[Any]] = []
    mem: dict[str, float] = {}
    for i, (d, t, g, il) in enumerate(PARAMS):

        def run(d: float = d, t: float = t, g: float = g, il: bool = il) -> Any:
            return generate_staypoints(
                df,
                dist_threshold=d,
                time_threshold=t,
                gap_threshold=g,
                include_last=il,
                user_col="user_id",
            )

        with _peak_rss(mem):
            run()
        secs, sp = _best_of(run, repeat)
        times[_label(PARAMS[i])] = secs
        for r in zip(
            sp.user_id,
            sp.started_at.astype("int64"),
            sp.finished_at.astype("int64"),
            sp.lat,
            sp.lon,
            sp.n_points,
            strict=True,
        ):
            rows.append(
                [
                    i,
                    int(r[0]),
                    int(r[1]),
                    int(r[2]),
                    repr(float(r[3])),
                    repr(float(r[4])),
                    int(r[5]),
                ]
            )
    import tracemalloc

    tracemalloc.start()
    generate_staypoints(df, user_col="user_id")
    traced_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    _write_rows(out, rows)
    return {
        "fixes": len(df),
        "times": times,
        "first_call_s": first_call_s,
        "import_s": import_s,
        "peak_extra_mb": mem["peak_extra_mb"],
        "traced_peak_mb": traced_mb,
        "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "numpy": np.__version__,
    }


def _worker_trackintel(data: str, repeat: int, out: str) -> dict[str, Any]:
    import warnings

    import trackintel as ti  # type: ignore[import-not-found]

    warnings.simplefilter("ignore")  # the duplicate-drop notice, and geopandas' own
    pfs, _ = ti.io.read_geolife(data)
    times: dict[str, float] = {}
    rows: list[list[Any]] = []
    mem: dict[str, float] = {}
    for i, (d, t, g, il) in enumerate(PARAMS):

        def run(d: float = d, t: float = t, g: float = g, il: bool = il) -> Any:
            return pfs.generate_staypoints(
                method="sliding",
                distance_metric="haversine",
                dist_threshold=d,
                time_threshold=t,
                gap_threshold=g,
                include_last=il,
                exclude_duplicate_pfs=True,
            )

        with _peak_rss(mem):
            run()
        secs, (pfs_out, sp) = _best_of(run, max(1, repeat))
        times[_label(PARAMS[i])] = secs
        n_points = pfs_out.groupby("staypoint_id").size()
        for sp_id, r in sp.iterrows():
            rows.append(
                [
                    i,
                    int(r.user_id),
                    int(r.started_at.value),
                    int(r.finished_at.value),
                    repr(float(r.geom.y)),
                    repr(float(r.geom.x)),
                    int(n_points.get(sp_id, 0)),
                ]
            )
    _write_rows(out, rows)
    return {
        "fixes": len(pfs),
        "times": times,
        "peak_extra_mb": mem["peak_extra_mb"],
        "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "version": ti.__version__,
    }


def _worker_first_call() -> dict[str, Any]:
    import pandas as pd

    from autopersona.features.staypoints import generate_staypoints

    tiny = pd.DataFrame(
        {
            "vin": ["a"] * 3,
            "ts": pd.to_datetime([0, 60, 600], unit="s", utc=True),
            "lat": [1.0, 1.0, 2.0],
            "lon": [1.0, 1.0, 1.0],
        }
    )
    t0 = time.perf_counter()
    generate_staypoints(tiny)
    return {"first_call_s": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- driver
def _spawn(python: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    res = subprocess.run(
        [python, str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"worker {args[:2]} failed:\n{res.stderr[-3000:]}")
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def _read_rows(path: Path) -> dict[tuple[int, int, int], list[str]]:
    with path.open() as f:
        return {(int(r[0]), int(r[1]), int(r[2])): r for r in list(csv.reader(f))[1:]}


def _compare(ours: Path, theirs: Path) -> tuple[bool, str]:
    a, b = _read_rows(ours), _read_rows(theirs)
    if a.keys() != b.keys():
        only_a, only_b = len(a.keys() - b.keys()), len(b.keys() - a.keys())
        return False, f"different stay points: {only_a} only in ours, {only_b} only in trackintel"
    worst_deg, worst_m, bitwise, problems = 0.0, 0.0, 0, []
    for key, ra in a.items():
        rb = b[key]
        if ra[3] != rb[3] or ra[6] != rb[6]:
            problems.append(f"{key}: finished_at/n_points {ra[3]},{ra[6]} vs {rb[3]},{rb[6]}")
        la, lo, lb, lob = float(ra[4]), float(ra[5]), float(rb[4]), float(rb[5])
        bitwise += la == lb and lo == lob
        dlon = (lo - lob + 180.0) % 360.0 - 180.0
        worst_deg = max(worst_deg, abs(la - lb), abs(dlon))
        worst_m = max(worst_m, math.hypot(la - lb, dlon * math.cos(math.radians(la))) * 111_195)
    ok = not problems and worst_deg <= 1e-9
    msg = (
        f"{len(a)} stay points over {len(PARAMS)} parameter sets: same users, starts, ends and "
        f"n_points{'' if not problems else ' EXCEPT ' + '; '.join(problems[:5])}; centroids "
        f"bitwise equal for {bitwise}, largest difference {worst_deg:.2e} deg ({worst_m:.2e} m)"
    )
    return ok, msg


def _trackintel_python() -> str | None:
    env = os.environ.get("TRACKINTEL_PYTHON")
    if env:
        return env
    return "/tmp/ti/bin/python" if Path("/tmp/ti/bin/python").exists() else None


def _default_data() -> Path:
    shared = os.environ.get("AUTOPERSONA_SHARED_DATA")
    base = Path(shared) if shared else ROOT.parent / "shared" / "data"
    return base / "geolife" / "ten_users" / "Data"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=_default_data())
    ap.add_argument("--repeat", type=int, default=5, help="runs per parameter set (best kept)")
    ap.add_argument("--baseline-repeat", type=int, default=2, help="runs for trackintel")
    ap.add_argument(
        "--worker", choices=["ours", "trackintel", "first-call"], help=argparse.SUPPRESS
    )
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker == "ours":
        print(json.dumps(_worker_ours(str(args.data), args.repeat, args.out)))
        return 0
    if args.worker == "trackintel":
        print(json.dumps(_worker_trackintel(str(args.data), args.repeat, args.out)))
        return 0
    if args.worker == "first-call":
        print(json.dumps(_worker_first_call()))
        return 0

    if not args.data.is_dir():
        print(f"staypoints bench: GeoLife data not found at {args.data}; skipped")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="autopersona-bench-sp-"))
    cache = {"NUMBA_CACHE_DIR": str(tmp / "numba-cache")}  # empty: the first call compiles
    ours = _spawn(
        sys.executable,
        [
            "--worker",
            "ours",
            "--data",
            str(args.data),
            "--repeat",
            str(args.repeat),
            "--out",
            str(tmp / "ours.csv"),
        ],
        cache,
    )
    warm = _spawn(sys.executable, ["--worker", "first-call"], cache)
    print(f"GeoLife ten_users: {ours['fixes']:,} fixes, 11 users; best of {args.repeat} runs")
    print(
        f"autopersona (numba): JIT compile {ours['first_call_s']:.2f} s on the first call "
        f"(empty cache; {warm['first_call_s']:.3f} s when loaded from numba's cache), not timed"
    )

    ti_python = _trackintel_python()
    theirs: dict[str, Any] | None = None
    if ti_python is None:
        print(
            "trackintel baseline unavailable: set TRACKINTEL_PYTHON or create /tmp/ti "
            "(python3 -m venv /tmp/ti && /tmp/ti/bin/pip install trackintel==1.4.2)"
        )
    else:
        theirs = _spawn(
            ti_python,
            [
                "--worker",
                "trackintel",
                "--data",
                str(args.data),
                "--repeat",
                str(args.baseline_repeat),
                "--out",
                str(tmp / "trackintel.csv"),
            ],
        )
        if theirs["version"] != "1.4.2":
            print(f"note: baseline is trackintel {theirs['version']}, not 1.4.2")

    print(f"\n{'parameters':<26}{'autopersona':>14}{'trackintel':>14}{'speed-up':>11}")
    tot_a = tot_b = 0.0
    for p in PARAMS:
        a = ours["times"][_label(p)]
        tot_a += a
        if theirs:
            b = theirs["times"][_label(p)]
            tot_b += b
            print(f"{_label(p):<26}{a * 1e3:>11.1f} ms{b * 1e3:>11.0f} ms{b / a:>10.0f}x")
        else:
            print(f"{_label(p):<26}{a * 1e3:>11.1f} ms{'-':>14}{'-':>11}")
    if theirs:
        print(
            f"{'all six':<26}{tot_a * 1e3:>11.1f} ms{tot_b * 1e3:>11.0f} ms{tot_b / tot_a:>10.0f}x"
        )
    print(
        f"\nmemory, autopersona: peak RSS growth during a run {ours['peak_extra_mb']:.1f} MB "
        f"(Python/numpy allocations traced: {ours['traced_peak_mb']:.1f} MB); "
        f"whole process peak {ours['process_peak_mb']:.0f} MB"
    )
    if theirs:
        print(
            f"memory, trackintel:  peak RSS growth during a run {theirs['peak_extra_mb']:.1f} MB; "
            f"whole process peak {theirs['process_peak_mb']:.0f} MB"
        )
        ok, msg = _compare(tmp / "ours.csv", tmp / "trackintel.csv")
        print(f"\nidentical output: {'YES' if ok else 'NO'} - {msg}")
        if tot_b / tot_a < 50:
            print("note: speed-up below the 50x target")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
