"""Profile lookups over HTTP vs a constant endpoint of the same app, at concurrency 32.

Fills a PostgreSQL profile store (its own schema, dropped at the end) with ``--entities``
VINs x ``--tags`` tags, starts ``autopersona serve --store postgresql://… --workers N`` on
127.0.0.1, and drives it from a separate load process: 32 keep-alive HTTP/1.1 connections on
asyncio, each sending the next request as soon as the previous answer is read.  Per endpoint
it reports p50 / p99 latency and throughput over a fixed wall time, measured in alternating
slices (``--rounds``, default 5: constant, lookup, constant, lookup, …) so that both see the
same background load when the machine is shared, for

* ``GET /v1/ping`` — a constant answer behind the same key check and rate limit;
* ``GET /v1/profiles/vin/{vin}`` — a random VIN's current profile, served from the server
  process's cache of current profiles (:mod:`autopersona.api.cache`, kept exact by a trigger
  and ``LISTEN``/``NOTIFY``).  Each server process fills its own cache on first lookups, so
  the warm-up before this measurement sends every VIN about six times per server process
  (about 0.25% of the measured lookups still miss);
* for comparison (no target), the same lookups from a second server started with the cache
  off (``AUTOPERSONA_API_PROFILE_CACHE=0``): one indexed query per lookup.

    python bench/api.py [--workers 2] [--seconds 10] [--entities 2000] [--store duckdb]

Each server process keeps ``AUTOPERSONA_API_POOL_SIZE`` (default here 4) PostgreSQL
connections: on two cores, more connections only add PostgreSQL backends competing for CPU.

Targets (issue 7): lookup p99 <= 2x the constant endpoint's p99, >= 1,000 lookups/s.
Total run time stays under two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

PG_URL = os.environ.get("AUTOPERSONA_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "bench-secret-0123456789abcdef"


# ----------------------------------------------------------------------------- load process
async def _worker(
    host: str, port: int, paths: list[str], key: str, until: float, out: list[float], seed: int
) -> int:
    rnd = random.Random(seed)
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while time.perf_counter() < until:
            path = paths[rnd.randrange(len(paths))]
            req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n\r\n").encode()
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            out.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
    finally:
        writer.close()
    return errors


async def _load(
    url: str,
    sets: dict[str, list[str]],
    key: str,
    seconds: float,
    conc: int,
    warm: dict[str, int],
    rounds: int,
) -> dict[str, dict[str, float]]:
    """Warm up every set, then measure them in alternating slices (``rounds`` each)."""
    host, port = url.split("//")[1].split(":")

    async def run(paths: list[str], until: float, out: list[float], seed: int) -> int:
        errs = await asyncio.gather(
            *(_worker(host, int(port), paths, key, until, out, seed + i) for i in range(conc))
        )
        return sum(errs)

    # warm-up: every connection, at least a second and until ``warm`` requests in all
    done: dict[str, list[float]] = {}
    for name, paths in sets.items():
        done[name] = []
        t_warm = time.perf_counter()
        while not done[name] or len(done[name]) < warm.get(name, 0):
            await run(paths, time.perf_counter() + 1.0, done[name], len(done[name]))
            if time.perf_counter() - t_warm > 60:
                break
    # alternate slices, so that every set sees the same background load of a shared machine
    lat: dict[str, list[float]] = {name: [] for name in sets}
    wall = dict.fromkeys(sets, 0.0)
    errors = dict.fromkeys(sets, 0)
    for r in range(rounds):
        for name, paths in sets.items():
            t0 = time.perf_counter()
            errors[name] += await run(paths, t0 + seconds / rounds, lat[name], 1000 * (r + 1))
            wall[name] += time.perf_counter() - t0
    out = {}
    for name in sets:
        q = statistics.quantiles(lat[name], n=100, method="inclusive")
        out[name] = {
            "requests": len(lat[name]),
            "errors": errors[name],
            "seconds": wall[name],
            "rps": len(lat[name]) / wall[name],
            "p50_ms": q[49] * 1000,
            "p99_ms": q[98] * 1000,
            "warmup": len(done[name]),
        }
    return out


def load_main(argv: list[str]) -> None:
    """Entry of the load process: prints one JSON line."""
    url, spec_file, key, seconds, conc, rounds = argv
    spec = json.loads(Path(spec_file).read_text())
    res = asyncio.run(
        _load(url, spec["sets"], key, float(seconds), int(conc), spec["warm"], int(rounds))
    )
    print(json.dumps(res))


# ----------------------------------------------------------------------------- driver
def _fill_store(url: str, entities: int, tags: int) -> list[str]:
    import pandas as pd

    from autopersona.store.profiles import open_store

    rnd = random.Random(7)
    vins = [f"LBENCH{i:011d}" for i in range(entities)]
    rows = [
        {
            "entity_type": "vin",
            "entity": v,
            "tag_id": f"tag_{t:02d}",
            "value": rnd.choice(["low", "mid", "high"]),
            "score": rnd.random(),
            "reasons": json.dumps({"when": "x > 1", "inputs": {"x": rnd.random()}}),
            "as_of": datetime(2026, 1, 5, tzinfo=UTC),
            "catalogue_version": "bench",
            "model_version": None,
        }
        for v in vins
        for t in range(tags)
    ]
    with open_store(url) as ps:
        ps.write(pd.DataFrame(rows))
    return vins


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import httpx

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("server did not start")


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured time per endpoint")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--entities", type=int, default=2000)
    ap.add_argument("--tags", type=int, default=12)
    ap.add_argument("--store", choices=["postgresql", "duckdb"], default="postgresql")
    ap.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="alternating slices per endpoint (the measured time is split among them)",
    )
    ap.add_argument(
        "--no-uncached", action="store_true", help="skip the comparison row without the cache"
    )
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="autopersona-bench-api-"))
    schema = f"ap_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if a.store == "postgresql":
        store = f"{PG_URL}?schema={schema}"
        workers = a.workers
    else:
        store = str(tmp / "profiles.duckdb")
        workers = 1  # one DuckDB file, one process
    t0 = time.time()
    vins = _fill_store(store, a.entities, a.tags)
    print(
        f"store: {a.store}, {len(vins):,} VINs x {a.tags} tags filled in {time.time() - t0:.1f} s"
    )
    env = {
        **os.environ,
        "AUTOPERSONA_API_SECRET": SECRET,
        "AUTOPERSONA_PSEUDONYM_KEY": "bench-pseudonym-key-0123456789abcdef",
        "AUTOPERSONA_WAREHOUSE": str(tmp / "wh.duckdb"),
        "AUTOPERSONA_API_POOL_SIZE": os.environ.get("AUTOPERSONA_API_POOL_SIZE", "4"),
    }
    from autopersona.api.keys import KeyStore

    key, _ = KeyStore(tmp / "wh.duckdb.keys.json", SECRET).create(
        ["read:profiles"], name="bench", rate=1e9, burst=1_000_000_000
    )
    results: dict[str, dict[str, float]] = {}
    lookups = [f"/v1/profiles/vin/{v}" for v in vins]
    cached = a.store == "postgresql"  # the DuckDB store is read directly (no cache)
    const, look = "constant  GET /v1/ping", "lookup    GET /v1/profiles/vin/{vin}"
    try:
        with _server(store, workers, env) as url:
            results.update(
                _measure(
                    url,
                    {const: ["/v1/ping"], look: lookups},
                    {look: 6 * len(lookups) * workers if cached else 0},
                    key,
                    a,
                    tmp,
                    a.rounds,
                )
            )
        if cached and not a.no_uncached:
            with _server(store, workers, {**env, "AUTOPERSONA_API_PROFILE_CACHE": "0"}) as url:
                results.update(
                    _measure(
                        url, {"  (no cache: one query per lookup)": lookups}, {}, key, a, tmp, 1
                    )
                )
    finally:
        if a.store == "postgresql":
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as con:
                con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nconcurrency {a.concurrency}, {a.seconds:g} s per endpoint in {a.rounds} alternating "
        f"slices, {workers} server "
        f"process(es), load from a separate process, loopback; {os.cpu_count()} CPUs, "
        f"load average {load}"
    )
    print(f"{'endpoint':<40}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'warm-up':>9}")
    for name, r in results.items():
        print(
            f"{name:<40}{r['rps']:>10,.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['errors']:>8}"
            f"{r['warmup']:>9,}"
        )
    c, lk = results[const], results[look]
    ratio = lk["p99_ms"] / c["p99_ms"]
    print(
        f"\nlookup p99 / constant p99 = {ratio:.2f} (target <= 2); lookups/s = {lk['rps']:,.0f} "
        f"(target >= 1,000): {'met' if ratio <= 2 and lk['rps'] >= 1000 else 'NOT met'}"
    )


@contextlib.contextmanager
def _server(store: str, workers: int, env: dict[str, str]) -> Iterator[str]:
    """``autopersona serve`` on a free loopback port; yields its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-c",
        "from autopersona.cli import main; main()",
        "serve",
        "--port",
        str(port),
        "--store",
        store,
        "--workers",
        str(workers),
    ]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    try:
        _wait(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _measure(
    url: str,
    sets: dict[str, list[str]],
    warm: dict[str, int],
    key: str,
    a: argparse.Namespace,
    tmp: Path,
    rounds: int,
) -> dict[str, dict[str, float]]:
    """Figures of each set of paths, from a separate load process."""
    spec = tmp / "load.json"
    spec.write_text(json.dumps({"sets": sets, "warm": warm}))
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--load",
            url,
            str(spec),
            key,
            str(a.seconds),
            str(a.concurrency),
            str(rounds),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    res: dict[str, dict[str, float]] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        load_main(sys.argv[2:])
    else:
        main()
