"""Compute engines for the relational feature steps: DuckDB (default) and Apache Spark.

A feature step is written once as an Ibis expression over the canonical tables and runs on
either engine.  The DuckDB engine works directly on the warehouse; the Spark engine (local
mode here, a cluster in production) reads the tables from a Parquet export of the period
being computed — the shape a data lake would give it — and hands its (small) results back.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
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
    "stop_spark",
]

#: a function over Arrow record batches, yielding record batches of a declared schema
BatchFn = Callable[[Iterable[Any]], Iterable[Any]]


class Engine(ABC):
    """Where Ibis expressions over the canonical tables are executed."""

    name: str

    @abstractmethod
    def table(self, name: str) -> Any:
        """The Ibis table ``name``."""

    @abstractmethod
    def execute(self, expr: Any) -> pd.DataFrame:
        """Run ``expr``; timestamps come back tz-aware UTC, dates as ``datetime64``."""

    def execute_later(self, expr: Any) -> Callable[[], pd.DataFrame]:
        """Start running ``expr``; the returned function waits for its :meth:`execute` frame.

        Lets an engine run a query while the caller works on something else; by default it
        runs when its result is asked for.
        """
        return functools.partial(self.execute, expr)

    @abstractmethod
    def map_batches(self, expr: Any, fn: BatchFn, schema: Any, *, split: str | None = None) -> Any:
        """Run ``fn`` over the Arrow record batches of ``expr``'s rows; gather its output.

        ``fn`` takes an iterator of ``pyarrow.RecordBatch`` (some of the rows, in no
        particular order or batching) and yields batches of the ``pyarrow.Schema``
        ``schema``; the result is a ``pyarrow.Table`` of everything it yielded, in no
        particular order.  A function whose output is combined afterwards (partial
        aggregates, filtered rows) therefore gives the same result on every engine.
        ``split`` names the table whose rows may be read by parallel streams (each with its
        own call of ``fn``).
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


@functools.cache
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
    batch_rows = 65_536

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

    def execute_later(self, expr: Any) -> Callable[[], pd.DataFrame]:
        """Run ``expr`` in a thread of its own, on its own cursor (DuckDB releases the GIL)."""
        from concurrent.futures import ThreadPoolExecutor

        import ibis

        sql = str(ibis.to_sql(expr, dialect="duckdb"))
        cur = self.con.cursor()

        def run() -> pd.DataFrame:
            try:
                return self._normalise(cur.sql(sql).to_arrow_table().to_pandas())
            finally:
                cur.close()

        pool = ThreadPoolExecutor(1, thread_name_prefix="duckdb-query")
        future = pool.submit(run)
        pool.shutdown(wait=False)
        return future.result

    def map_batches(self, expr: Any, fn: BatchFn, schema: Any, *, split: str | None = None) -> Any:
        """``fn`` in this process over DuckDB's streams of record batches.

        With ``split``, that table's row ids are cut into one range per DuckDB thread and
        each range is streamed (on its own cursor) and handed to ``fn`` in its own thread,
        so reading, converting to Arrow and ``fn`` (which should release the GIL, as
        compiled kernels do) use every core; without it, one stream.
        """
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa
        from ibis.backends.sql.compilers.duckdb import compiler

        tree = compiler.to_sqlglot(expr)
        ranges = self._row_ranges(split) if split else []
        if len(ranges) < 2:
            sql = tree.sql(dialect="duckdb")
            return pa.Table.from_batches(self._stream(self.con, sql, fn), schema=schema)
        assert split is not None
        parts = [_restrict(tree, split, lo, hi) for lo, hi in ranges]

        def run(part_sql: str) -> list[Any]:
            cur = self.con.cursor()
            try:
                return self._stream(cur, part_sql, fn)
            finally:
                cur.close()

        with ThreadPoolExecutor(len(parts), thread_name_prefix="duckdb-part") as pool:
            done = list(pool.map(run, parts))
        return pa.Table.from_batches([b for part in done for b in part], schema=schema)

    def _stream(self, con: Any, sql: str, fn: BatchFn) -> list[Any]:
        return list(fn(iter(con.sql(sql).to_arrow_reader(self.batch_rows))))

    def _row_ranges(self, table: str) -> list[tuple[int, int | None]]:
        """Row-id ranges of ``table``, one per DuckDB thread (none for a small table)."""
        rows = self.con.sql(
            "SELECT estimated_size FROM duckdb_tables() WHERE table_name = ? "
            "AND schema_name = current_schema() AND NOT temporary",
            params=[table],
        ).fetchall()
        threads = int(self.con.sql("SELECT current_setting('threads')").fetchall()[0][0])
        if not rows or rows[0][0] is None or threads < 2:
            return []
        n = int(rows[0][0])
        k = min(threads, n // self.batch_rows)
        if k < 2:
            return []
        cuts = [n * j // k for j in range(k)]
        return [(lo, hi) for lo, hi in zip(cuts, [*cuts[1:], None], strict=True)]


def _restrict(tree: Any, table: str, lo: int, hi: int | None) -> str:
    """DuckDB SQL of the query ``tree`` reading only rows ``lo <= rowid < hi`` of ``table``.

    Examples
    --------
    >>> import ibis
    >>> from ibis.backends.sql.compilers.duckdb import compiler
    >>> t = ibis.table({"a": "int64", "b": "int64"}, name="m")
    >>> _restrict(compiler.to_sqlglot(t.select("a")), "m", 0, 10)
    'SELECT "t0"."a" FROM (SELECT * FROM "main"."m" WHERE rowid >= 0 AND rowid < 10) AS "t0"'
    """
    from sqlglot import exp

    rowid = exp.column("rowid")
    cond: Any = exp.GTE(this=rowid, expression=exp.Literal.number(int(lo)))
    if hi is not None:
        cond = exp.and_(cond, exp.LT(this=rowid.copy(), expression=exp.Literal.number(int(hi))))
    source = exp.Table(
        this=exp.to_identifier(table, quoted=True), db=exp.to_identifier("main", quoted=True)
    )

    def sub(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.name == table and not node.db:
            inner = exp.select(exp.Star()).from_(source.copy()).where(cond.copy())
            alias = exp.TableAlias(this=exp.to_identifier(node.alias or table, quoted=True))
            return exp.Subquery(this=inner, alias=alias)
        return node

    return str(tree.transform(sub).sql(dialect="duckdb"))


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
        import os
        import sys

        import ibis
        from pyspark.sql import SparkSession

        # Python workers (``mapInArrow``) run this interpreter, unless a session already runs
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
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

    def map_batches(self, expr: Any, fn: BatchFn, schema: Any, *, split: str | None = None) -> Any:
        """``fn`` as Spark's ``mapInArrow`` over the partitions of ``expr``'s rows.

        Spark reads partitions in parallel anyway; ``split`` is not needed.
        """
        from pyspark.sql.pandas.types import from_arrow_schema

        df = self.spark.sql(self.backend.compile(expr))
        return df.mapInArrow(fn, from_arrow_schema(schema)).toArrow().cast(schema)

    def close(self) -> None:
        """Remove the Parquet export (the Spark session stays up: :func:`stop_spark`)."""
        self._tmp.cleanup()


def stop_spark(timeout: float = 60.0) -> bool:
    """Stop this process's Spark session and end its JVM; whether a JVM was running.

    ``SparkSession.stop`` (and :meth:`SparkEngine.close`) leave the JVM up for the next
    session.  pyspark starts it with a pipe to its standard input and keeps that pipe open
    for as long as this process runs (the JVM exits at the end of its input).  A process
    that is done with Spark ends the JVM here: the session stops, the Py4J gateway shuts
    down, the pipe is closed and the JVM is waited for (killed after ``timeout`` seconds),
    so neither the process nor its pipe outlives the work.  A later session starts afresh.
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    session = SparkSession._instantiatedSession
    if session is not None:
        session.stop()
    if SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return False
    SparkContext._gateway = None
    SparkContext._jvm = None
    gateway.shutdown()
    # None when pyspark attached to a JVM it did not start (PYSPARK_GATEWAY_PORT)
    proc: subprocess.Popen[bytes] | None = getattr(gateway, "proc", None)
    if proc is None:
        return False
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return True


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
