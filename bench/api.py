"""Profile lookups over HTTP vs a constant endpoint of the same app, at concurrency 32.

Fills a PostgreSQL profile store (its own schema, dropped at the end) with ``--entities``
VINs x ``--tags`` tags, starts ``autopersona serve --store postgresql://… --workers N`` on
127.0.0.1, and drives it from a separate load process: 32 keep-alive HTTP/1.1 connections on
asyncio, each sending the next request as soon as the previous answer is read.  Per endpoint
it reports p50 / p99 latency and throughput over a fixed wall time, for

* ``GET /v1/ping`` — a constant answer behind the same key check and rate limit;
* ``GET /v1/profiles/vin/{vin}`` — a random VIN's current profile (one indexed query).

    python bench/api.py [--workers 2] [--seconds 10] [--entities 2000] [--store duckdb]

Each server process keeps ``AUTOPERSONA_API_POOL_SIZE`` (default here 4) PostgreSQL
connections: on two cores, more connections only add PostgreSQL backends competing for CPU.

Targets (issue 7): lookup p99 <= 2x the constant endpoint's p99, >= 1,000 lookups/s.
Total run time stays under two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
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
    url: str, paths: list[str], key: str, seconds: float, conc: int
) -> dict[str, float]:
    host, port = url.split("//")[1].split(":")
    lat: list[float] = []
    # warm-up: every connection, a second
    await asyncio.gather(
        *(
            _worker(host, int(port), paths, key, time.perf_counter() + 1.0, [], i)
            for i in range(conc)
        )
    )
    t0 = time.perf_counter()
    errs = await asyncio.gather(
        *(_worker(host, int(port), paths, key, t0 + seconds, lat, 100 + i) for i in range(conc))
    )
    wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {
        "requests": len(lat),
        "errors": sum(errs),
        "seconds": wall,
        "rps": len(lat) / wall,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


def load_main(argv: list[str]) -> None:
    """Entry of the load process: prints one JSON line."""
    url, paths_file, key, seconds, conc = argv
    paths = json.loads(Path(paths_file).read_text())
    res = asyncio.run(_load(url, paths, key, float(seconds), int(conc)))
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
    results = {}
    try:
        _wait(url, server)
        for name, paths in (
            ("constant  GET /v1/ping", ["/v1/ping"]),
            ("lookup    GET /v1/profiles/vin/{vin}", [f"/v1/profiles/vin/{v}" for v in vins]),
        ):
            pf = tmp / "paths.json"
            pf.write_text(json.dumps(paths))
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--load",
                    url,
                    str(pf),
                    key,
                    str(a.seconds),
                    str(a.concurrency),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=30)
        if a.store == "postgresql":
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as con:
                con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nconcurrency {a.concurrency}, {a.seconds:g} s per endpoint, {workers} server "
        f"process(es), load from a separate process, loopback; {os.cpu_count()} CPUs, "
        f"load average {load}"
    )
    print(f"{'endpoint':<40}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, r in results.items():
        print(
            f"{name:<40}{r['rps']:>10,.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['errors']:>8}"
        )
    c, lk = results["constant  GET /v1/ping"], results["lookup    GET /v1/profiles/vin/{vin}"]
    ratio = lk["p99_ms"] / c["p99_ms"]
    print(
        f"\nlookup p99 / constant p99 = {ratio:.2f} (target <= 2); lookups/s = {lk['rps']:,.0f} "
        f"(target >= 1,000): {'met' if ratio <= 2 and lk['rps'] >= 1000 else 'NOT met'}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        load_main(sys.argv[2:])
    else:
        main()
