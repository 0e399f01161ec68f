"""Compute engines for the relational feature steps: DuckDB (default) and Apache Spark.

A feature step is written once as an Ibis expression over the canonical tables and runs on
either engine.  The DuckDB engine works directly on the warehouse; the Spark engine (local
mode here, a cluster in production) reads the tables from a Parquet export of the period
being computed — the shape a data lake would give it — and hands its (small) results back.
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from autopersona.store.warehouse import Warehouse

__all__ = [
    "BatchFn",
    "DuckDBEngine",
    "Engine",
    "SparkEngine",
    "contract_schema",
    "make_engine",
]

#: a function over Arrow record batches, yielding record batches of a declared schema
BatchFn = Callable[[Iterator[Any]], Iterator[Any]]


class Engine(ABC):
    """Where Ibis expressions over the canonical tables are executed."""

    name: str

    @abstractmethod
    def table(self, name: str) -> Any:
        """The Ibis table ``name``."""

    @abstractmethod
    def execute(self, expr: Any) -> pd.DataFrame:
        """Run ``expr``; timestamps come back tz-aware UTC, dates as ``datetime64``."""

    @abstractmethod
    def map_batches(self, expr: Any, fn: BatchFn, schema: Any) -> Any:
        """Run ``fn`` over the Arrow record batches of ``expr``'s rows; gather its output.

        ``fn`` takes an iterator of ``pyarrow.RecordBatch`` (some of the rows, in no
        particular order and batching) and yields batches of the ``pyarrow.Schema``
        ``schema``; the result is a ``pyarrow.Table`` of everything it yielded.  A function
        whose output is combined afterwards (partial aggregates, filtered rows) therefore
        gives the same result on every engine.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @staticmethod
    def _normalise(df: pd.DataFrame) -> pd.DataFrame:
        for col in df.columns:
            s = df[col]
            if pd.api.types.is_datetime64_any_dtype(s):
                if getattr(s.dt, "tz", None) is None:
                    df[col] = s.dt.tz_localize("UTC") if col != "period_start" else s
                else:
                    df[col] = s.dt.tz_convert("UTC")
            elif col == "period_start":
                df[col] = pd.to_datetime(s)
        if "period_start" in df.columns:
            ps = pd.to_datetime(df["period_start"])
            if getattr(ps.dt, "tz", None) is not None:
                ps = ps.dt.tz_convert("UTC").dt.tz_localize(None)
            df["period_start"] = ps.dt.normalize().astype("datetime64[us]")
        return df


_IBIS_TYPES = {
    "string": "string",
    "int64": "int64",
    "float64": "float64",
    "bool": "boolean",
    "timestamp": "timestamp('UTC')",
    "date": "date",
    "json": "string",
}


def contract_schema(table: str) -> Any:
    """The Ibis schema of a canonical table, from its contract."""
    import ibis

    from autopersona.contracts import get_contract

    c = get_contract(table)
    return ibis.schema({col.name: _IBIS_TYPES[col.type] for col in c.columns})


class DuckDBEngine(Engine):
    """Ibis expressions compiled to DuckDB SQL and run on the warehouse's connection.

    Tables are unbound Ibis tables typed from the contracts, so building an expression
    never touches the database; only :meth:`execute` does.
    """

    name = "duckdb"
    #: rows per record batch of :meth:`map_batches`
    batch_rows = 1_000_000

    def __init__(self, wh: Warehouse) -> None:
        self.con = wh.con

    def table(self, name: str) -> Any:
        """The warehouse table ``name``, typed from its contract."""
        import ibis

        return ibis.table(contract_schema(name), name=name)

    def execute(self, expr: Any) -> pd.DataFrame:
        """Compile to DuckDB SQL and run it on the warehouse connection."""
        import ibis

        sql = ibis.to_sql(expr, dialect="duckdb")
        return self._normalise(self.con.sql(str(sql)).to_arrow_table().to_pandas())

    def map_batches(self, expr: Any, fn: BatchFn, schema: Any) -> Any:
        """``fn`` in this process over DuckDB's stream of record batches (1 M rows each).

        The stream is read in a second thread (DuckDB and Arrow release the GIL), so the
        query's next batch is produced while ``fn`` works on the current one.
        """
        import ibis
        import pyarrow as pa

        sql = str(ibis.to_sql(expr, dialect="duckdb"))
        reader = self.con.sql(sql).to_arrow_reader(self.batch_rows)
        out = list(fn(_read_ahead(reader)))
        return pa.Table.from_batches(out, schema=schema)


class SparkEngine(Engine):
    """Ibis on PySpark (local mode by default) over a Parquet export of the needed tables.

    Parameters
    ----------
    wh
        Source warehouse.
    tables
        Tables the steps read.
    since
        Export only rows at or after this instant (tables with a time column).
    lookback
        History a table needs before ``since``: ``None`` exports all of it, a duration
        exports from ``since`` minus it; tables not named start at ``since``.
    master
        Spark master URL.
    """

    name = "spark"

    def __init__(
        self,
        wh: Warehouse,
        tables: list[str],
        since: datetime | None = None,
        master: str = "local[2]",
        lookback: Mapping[str, timedelta | None] | None = None,
    ) -> None:
        import ibis
        from pyspark.sql import SparkSession

        self._tmp = tempfile.TemporaryDirectory(prefix="autopersona-lake-")
        lake = Path(self._tmp.name)
        for t in tables:
            c = wh.contracts[t]
            where = ""
            params: list[Any] = []
            back = (lookback or {}).get(t, timedelta(0))
            if since is not None and c.time_column and back is not None:
                where = f' WHERE "{c.time_column}" >= ?'
                params = [since - back]
            wh.con.execute(
                f"COPY (SELECT * FROM \"{t}\"{where}) TO '{lake / t}.parquet' (FORMAT parquet)",
                params,
            )
        self.spark = (
            SparkSession.builder.master(master)
            .appName("autopersona-features")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "8")
            .config("spark.driver.memory", "2g")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("ERROR")
        self.backend = ibis.pyspark.connect(self.spark)
        self._tables = {
            t: self.backend.read_parquet(str(lake / f"{t}.parquet"), table_name=t) for t in tables
        }

    def table(self, name: str) -> Any:
        """The exported table ``name``."""
        return self._tables[name]

    def execute(self, expr: Any) -> pd.DataFrame:
        """Run on Spark."""
        return self._normalise(self.backend.to_pyarrow(expr).to_pandas())

    def map_batches(self, expr: Any, fn: BatchFn, schema: Any) -> Any:
        """``fn`` as Spark's ``mapInArrow`` over the partitions of ``expr``'s rows."""
        import os
        import sys

        from pyspark.sql.pandas.types import from_arrow_schema

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        df = self.spark.sql(self.backend.compile(expr))
        return df.mapInArrow(fn, from_arrow_schema(schema)).toArrow().cast(schema)

    def close(self) -> None:
        """Remove the Parquet export (the Spark session stays up for reuse)."""
        self._tmp.cleanup()


def _read_ahead(reader: Any, depth: int = 2) -> Iterator[Any]:
    """The batches of ``reader``, read by a second thread up to ``depth`` batches ahead."""
    import queue
    import threading

    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item: Any) -> bool:
        """Queue ``item`` unless the consumer has gone."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for batch in reader:
                if not put(batch):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer
            put(exc)

    t = threading.Thread(target=pump, name="duckdb-batches", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def make_engine(
    name: str,
    wh: Warehouse,
    tables: list[str],
    since: datetime | None = None,
    *,
    lookback: Mapping[str, timedelta | None] | None = None,
) -> Engine:
    """An engine by name: ``duckdb`` or ``spark`` (``lookback``: see :class:`SparkEngine`).

    Raises
    ------
    ValueError
        For another name.
    """
    if name == "duckdb":
        return DuckDBEngine(wh)
    if name == "spark":
        return SparkEngine(wh, tables, since, lookback=lookback)
    raise ValueError(f"unknown engine {name!r}: use duckdb or spark")
