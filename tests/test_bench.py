"""The benchmarks under ``bench/`` still run, and what they check still holds, at a tiny size.

The figures they print are measured on an idle box by hand (README); here only that each
script runs end to end on the current code and that the work it times is complete and
correct (every event answered, the stage's output equal to the pandas baseline's).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(args: list[str], tmp_path: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    env.pop("COLUMNS", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    "extra",
    [[], ["--workers", "2", "--journal", "nosync"]],
    ids=["one-process-fdatasync", "two-partitions-nosync"],
)
def test_engine_bench_answers_every_event(tmp_path: Path, extra: list[str]) -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("the mosquitto binary is not installed (the bench starts its own broker)")
    trace, plot = tmp_path / "trace.csv", tmp_path / "latency.png"
    args = ["--rates", "300", "--seconds", "0.5", "--warmup", "0.2", "--drain", "10"]
    r = _run(
        [
            str(BENCH / "engine.py"),
            *args,
            *extra,
            "--json",
            "--trace",
            str(trace),
            "--plot",
            str(plot),
        ],
        tmp_path,
        180,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = json.loads(r.stdout)["runs"]
    for path in ("echo", "engine"):
        assert run[path]["events"] == 150
        assert run[path]["received"] == 150, (path, run[path])
        assert run[path]["p99_ms"] is not None and run[path]["p99_ms"] > 0
    st = run["engine_stats"]
    total = run["engine"]["events"] + run["engine"]["warmup_events"]
    assert st["processed"] == total  # partitioned workers: each event processed once in all
    assert st["sent"] == total
    assert set(st["gc"]) == {"0", "1", "2"}
    assert all(n >= 0 and longest <= total_ms + 1e-6 for n, total_ms, longest in st["gc"].values())
    with trace.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["rate"], r["path"]) for r in rows} == {("300", "echo"), ("300", "engine")}
    assert len(rows) == 300
    engine = [float(r["latency_ms"]) for r in rows if r["path"] == "engine"]
    assert all(x > 0 for x in engine)  # none missing (NaN compares False)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_features_bench_stage_equals_pandas(tmp_path: Path) -> None:
    r = _run(
        [str(BENCH / "features.py"), "--vehicles", "3", "--days", "1", "--repeat", "1"],
        tmp_path,
        600,
    )
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert "pandas output identical (rtol 1e-9)" in r.stdout
    assert "stage speed vs pandas" in r.stdout
