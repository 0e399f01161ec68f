"""The simulator entry point: :func:`simulate` writes a whole fleet to Parquet.

Vehicles are simulated in fixed chunks of :data:`CHUNK` vehicles, optionally in worker
processes; chunks are written in order, one Parquet row group per chunk and table, so the
bytes written do not depend on the number of workers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa

from autopersona import __version__
from autopersona.contracts import get_contract
from autopersona.simulate.commerce import catalogue
from autopersona.simulate.config import DEFAULT_START, MessConfig, SimulationSummary
from autopersona.simulate.fleet import TABLES, TRUTH_SCHEMAS, simulate_vehicle
from autopersona.simulate.geo import CITIES
from autopersona.simulate.places import poi_pool
from autopersona.simulate.writer import ParquetSink, arrow_schema, to_arrow

__all__ = ["CHUNK", "TRUTH_MARKER", "simulate"]

#: Vehicles per chunk (fixed: the file layout must not depend on the worker count).
CHUNK = 8
#: Marker file in the truth folder; ingestion refuses any path containing it.
TRUTH_MARKER = ".autopersona-truth"
_MARKER_TEXT = (
    "Ground truth of a simulated fleet (autopersona simulate).\n"
    "Never ingest or read this folder from a pipeline step: it is for scoring only.\n"
)
_PRODUCTS_SCHEMA = pa.schema(
    [
        ("product_id", pa.string()),
        ("category", pa.string()),
        ("brand", pa.string()),
        ("description", pa.string()),
        ("list_price_cny", pa.float64()),
        ("quality", pa.float64()),
    ]
)

ChunkOut = tuple[dict[str, pa.Table], dict[str, pa.Table], list[str]]


def _run_chunk(args: tuple[int, list[int], date, int, dict[str, Any]]) -> ChunkOut:
    """Simulate the vehicles of one chunk and concatenate their tables."""
    seed, ks, start, days, mess_d = args
    mess = MessConfig(**mess_d)
    results = [simulate_vehicle(seed, k, start, days, mess) for k in ks]
    tables = {
        name: pa.concat_tables(
            [r.tables[name].cast(arrow_schema(get_contract(name))) for r in results]
        )
        for name in TABLES
    }
    truth = {name: pa.concat_tables([r.truth[name] for r in results]) for name in TRUTH_SCHEMAS}
    return tables, truth, [r.city for r in results]


def _ordered(fn: Callable[[Any], ChunkOut], tasks: list[Any], workers: int) -> Iterator[ChunkOut]:
    """Results of ``fn`` over ``tasks`` in task order, at most ``workers + 1`` in flight."""
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            yield fn(t)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        pending: list[Future[ChunkOut]] = []
        it = iter(tasks)
        for t in it:
            pending.append(ex.submit(fn, t))
            if len(pending) > workers:
                break
        while pending:
            res = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(ex.submit(fn, nxt))
            yield res


def simulate(
    vehicles: int,
    days: int,
    seed: int,
    out: Path,
    start: date = DEFAULT_START,
    mess: MessConfig | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> SimulationSummary:
    """Simulate a fleet and write every canonical table and the ground truth.

    Parameters
    ----------
    vehicles
        Number of vehicles (one person per vehicle).
    days
        Number of simulated days (each vehicle covers that many local days).
    seed
        Random seed; the same seed gives byte-identical files.
    out
        Output directory: ``out/tables/<table>.parquet`` (all 16 contract tables),
        ``out/truth/*.parquet`` with the ``.autopersona-truth`` marker, and
        ``out/manifest.json`` (run parameters and table row counts only; nothing from the
        truth, not even fault counts).
    start
        First simulated day (local midnight in each vehicle's time zone).
    mess
        Data faults to inject (default :class:`MessConfig` rates; ``MessConfig.clean()``
        for none).
    progress
        Show a ``rich`` progress bar per chunk of vehicles.
    workers
        Worker processes (default: CPU count, at most 4; 1 = in process). The output does
        not depend on it.

    Returns
    -------
    SimulationSummary
        Rows written per table and truth table, and injected faults per kind.

    Examples
    --------
    >>> import tempfile, pyarrow.parquet as pq
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     s = simulate(2, 1, seed=7, out=Path(d), workers=1)
    ...     t = pq.read_table(Path(d) / "tables" / "motion.parquet")
    ...     (s.rows["motion"] == t.num_rows, sorted(s.rows) == sorted(TABLES))
    (True, True)
    """
    if vehicles < 1 or days < 1:
        raise ValueError("vehicles and days must be >= 1")
    mess = mess if mess is not None else MessConfig()
    out = Path(out)
    tables_dir, truth_dir = out / "tables", out / "truth"
    tables_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    (truth_dir / TRUTH_MARKER).write_text(_MARKER_TEXT)
    if workers is None:
        workers = min(os.cpu_count() or 1, 4)
    chunks = [list(range(i, min(i + CHUNK, vehicles))) for i in range(0, vehicles, CHUNK)]
    tasks = [(seed, ks, start, days, mess.model_dump()) for ks in chunks]

    sinks = {
        n: ParquetSink(tables_dir / f"{n}.parquet", arrow_schema(get_contract(n))) for n in TABLES
    }
    tsinks = {n: ParquetSink(truth_dir / f"{n}.parquet", s) for n, s in TRUTH_SCHEMAS.items()}
    cities: set[str] = set()
    bar: Any = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        bar.start()
        task = bar.add_task(f"simulating {vehicles} vehicles x {days} days", total=vehicles)
    try:
        for (tables, truth, cs), ks in zip(
            _ordered(_run_chunk, tasks, workers), chunks, strict=True
        ):
            for n, t in tables.items():
                sinks[n].write(t)
            for n, t in truth.items():
                tsinks[n].write(t)
            cities.update(cs)
            if bar is not None:
                bar.advance(task, len(ks))
        # shared POI pools of the cities in use, in city order
        for c in CITIES:
            if c.name not in cities:
                continue
            pool = poi_pool(seed, c)
            cols = {
                "poi_id": pool.poi_id,
                "name": pool.name,
                "category": pool.category,
                "lat": pool.lat,
                "lon": pool.lon,
            }
            sinks["pois"].write(to_arrow(get_contract("pois"), cols, len(pool.poi_id)))
    finally:
        if bar is not None:
            bar.stop()
        for s in [*sinks.values(), *tsinks.values()]:
            s.close()
    cat = catalogue(seed)
    prod = pa.table(
        {
            "product_id": cat.product_id,
            "category": cat.category,
            "brand": cat.brand,
            "description": cat.description,
            "list_price_cny": cat.price,
            "quality": cat.quality,
        },
        schema=_PRODUCTS_SCHEMA,
    )
    psink = ParquetSink(truth_dir / "products.parquet", _PRODUCTS_SCHEMA)
    psink.write(prod)
    psink.close()

    rows = {n: s.rows for n, s in sinks.items()}
    truth_rows = {n: s.rows for n, s in tsinks.items()}
    truth_rows["products"] = psink.rows
    import pyarrow.parquet as pq

    kinds = pq.read_table(truth_dir / "mess.parquet", columns=["kind"]).column("kind").to_pylist()
    mess_counts = {k: kinds.count(k) for k in sorted(set(kinds))}
    manifest = {
        "generator": f"autopersona.simulate {__version__}",
        "seed": seed,
        "vehicles": vehicles,
        "days": days,
        "start": start.isoformat(),
        "mess": mess.model_dump(),
        "tables": {n: {"path": f"tables/{n}.parquet", "rows": r} for n, r in rows.items()},
        "truth": {"path": "truth", "marker": TRUTH_MARKER},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return SimulationSummary(
        out=out,
        vehicles=vehicles,
        days=days,
        seed=seed,
        start=start,
        rows=rows,
        truth_rows=truth_rows,
        mess=mess_counts,
    )
