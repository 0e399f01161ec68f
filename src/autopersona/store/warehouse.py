"""The embedded warehouse: one DuckDB file with every canonical table, quarantine and run logs.

Examples
--------
>>> from autopersona.store.warehouse import Warehouse
>>> with Warehouse(":memory:") as wh:
...     wh.count("motion")
0
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pandas as pd

from autopersona.contracts import Contract, load_contracts

__all__ = ["QUARANTINE_TABLE", "REPAIRS_TABLE", "RUNS_TABLE", "Warehouse", "WarehouseBusy"]

QUARANTINE_TABLE = "_quarantine"
RUNS_TABLE = "_ingest_runs"
REPAIRS_TABLE = "_repairs"

_SYSTEM_DDL = [
    f"""CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} (
        run_id VARCHAR NOT NULL,
        source_file VARCHAR NOT NULL,
        source_sha256 VARCHAR NOT NULL,
        target_table VARCHAR NOT NULL,
        row_number BIGINT,
        field VARCHAR,
        reason VARCHAR NOT NULL,
        raw VARCHAR,
        quarantined_at TIMESTAMPTZ NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {REPAIRS_TABLE} (
        run_id VARCHAR NOT NULL,
        source_file VARCHAR NOT NULL,
        source_sha256 VARCHAR NOT NULL,
        target_table VARCHAR NOT NULL,
        row_number BIGINT,
        repair VARCHAR NOT NULL,
        repaired_at TIMESTAMPTZ NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (
        run_id VARCHAR NOT NULL,
        source_file VARCHAR NOT NULL,
        source_sha256 VARCHAR NOT NULL,
        mapping VARCHAR,
        target_table VARCHAR NOT NULL,
        "read" BIGINT NOT NULL,
        loaded BIGINT NOT NULL,
        duplicates BIGINT NOT NULL,
        quarantined BIGINT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        seconds DOUBLE NOT NULL
    )""",
]


class WarehouseBusy(RuntimeError):
    """The warehouse file is open in another process (DuckDB allows one writer at a time).

    ``holder`` is what DuckDB says of the process that holds the file's lock (program and
    PID), or ``None`` when it did not say.
    """

    def __init__(self, path: str, holder: str | None) -> None:
        self.path, self.holder = path, holder
        who = f"by {holder}" if holder else "by another process"
        super().__init__(
            f"warehouse {path} is in use {who}: DuckDB lets one process open a warehouse file "
            "for writing, and no other process open it at all meanwhile. Stop that process "
            "(a running `autopersona run` or `serve` keeps the file until it stops), wait for "
            "it to finish, or point this command at another warehouse (--warehouse or "
            "AUTOPERSONA_WAREHOUSE)."
        )


def _connect(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect``, with a lock held elsewhere reported as :class:`WarehouseBusy`."""
    try:
        return duckdb.connect(path, read_only=read_only)
    except duckdb.IOException as exc:
        msg = str(exc)
        if "Could not set lock" not in msg:
            raise
        m = re.search(r"Conflicting lock is held in (.+?)(?:\. See also|$)", msg)
        raise WarehouseBusy(path, m.group(1).strip() if m else None) from exc


class Warehouse:
    """A DuckDB warehouse holding the canonical tables of every contract.

    Parameters
    ----------
    path
        DuckDB file (created if absent) or ``":memory:"``.
    memory_limit
        DuckDB memory limit, e.g. ``"2GB"``; work beyond it spills to ``temp_directory``.
    threads
        DuckDB worker threads (default: DuckDB's choice).
    read_only
        Open without creating or changing anything.
    """

    def __init__(
        self,
        path: str | Path = "autopersona.duckdb",
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
        read_only: bool = False,
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.con = _connect(self.path, read_only)
        self.con.execute("SET TimeZone = 'UTC'")
        # Order is imposed explicitly where it matters; not preserving it lets DuckDB stream.
        self.con.execute("SET preserve_insertion_order = false")
        if self.path == ":memory:":
            spill = Path(tempfile.gettempdir()) / f"autopersona-duckdb-{os.getpid()}"
            self.con.execute(f"SET temp_directory = '{spill}'")
        if memory_limit is None:
            from autopersona.settings import get_settings

            memory_limit = get_settings().memory_limit
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self.contracts: dict[str, Contract] = load_contracts()
        if not read_only:
            self.create_tables()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Warehouse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    def cursor(self) -> Warehouse:
        """The same warehouse through a cursor of its own, for another thread.

        A DuckDB file opens once per process; a cursor is a connection of its own to that
        database (its own transactions and temporary tables).  Closing the returned
        warehouse closes only the cursor.

        >>> with Warehouse(":memory:") as wh:
        ...     cur = wh.cursor()
        ...     cur.con is not wh.con, cur.count("vehicles")
        (True, 0)
        """
        other = object.__new__(Warehouse)
        other.path = self.path
        other.con = self.con.cursor()
        other.con.execute("SET TimeZone = 'UTC'")
        other.contracts = self.contracts
        return other

    # ------------------------------------------------------------------ schema
    def create_tables(self) -> None:
        """Create every contract table, the system tables and the as-of alignment views."""
        for c in self.contracts.values():
            self.con.execute(c.ddl())
        for ddl in _SYSTEM_DDL:
            self.con.execute(ddl)
        for c in self.contracts.values():
            if c.align:
                self.con.execute(self.aligned_view_sql(c))

    def aligned_view_sql(self, contract: Contract) -> str:
        """SQL for ``<table>_aligned``: the table with as-of joined columns of slower sources.

        Each :class:`~autopersona.contracts.model.AlignSpec` attaches the latest value of its
        columns at or before each row's time, for the same entity, if no older than the
        tolerance.
        """
        ent, ts = contract.entity, contract.time_column
        if not (ent and ts):
            raise ValueError(f"{contract.table}: alignment needs an entity and a time column")
        select = ["l.*"]
        joins = []
        for i, spec in enumerate(contract.align):
            other = self.contracts[spec.table]
            alias = f"a{i}"
            inner_cols = ", ".join(f'"{c}"' for c in spec.columns)
            joins.append(
                f'ASOF LEFT JOIN (SELECT "{other.entity}" AS _e, "{other.time_column}" AS _t, '
                f'{inner_cols} FROM "{other.table}") {alias} '
                f'ON l."{ent}" = {alias}._e AND l."{ts}" >= {alias}._t'
            )
            fresh = f"l.\"{ts}\" - {alias}._t <= INTERVAL '{spec.tolerance_s} seconds'"
            for col in spec.columns:
                name = col if col not in contract.column_names else f"{spec.table}_{col}"
                select.append(f'CASE WHEN {fresh} THEN {alias}."{col}" END AS "{name}"')
        return (
            f'CREATE OR REPLACE VIEW "{contract.table}_aligned" AS SELECT {", ".join(select)} '
            f'FROM "{contract.table}" l {" ".join(joins)}'
        )

    # ------------------------------------------------------------------ queries
    def count(self, table: str) -> int:
        """Number of rows in ``table``."""
        # fetchall, not fetchone: DuckDB keeps a half-read result open on the connection,
        # and the next ``con.sql(...)`` (see :meth:`frame`) then fails with "unfinished result"
        rows = self.con.execute(f'SELECT count(*) FROM "{table}"').fetchall()
        return int(rows[0][0]) if rows else 0

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query and fetch every row."""
        return self.con.execute(query, params or []).fetchall()

    def frame(self, query: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run a query and return a pandas DataFrame (through Arrow; timestamps stay UTC)."""
        out: pd.DataFrame = self.con.sql(query, params=params or None).to_arrow_table().to_pandas()
        return out

    def table_counts(self) -> dict[str, int]:
        """Row counts of every contract table."""
        return {name: self.count(name) for name in self.contracts}

    def quarantine_summary(self) -> list[tuple[str, str, int]]:
        """(table, reason kind, rows) over the quarantine, largest first."""
        rows = self.sql(
            f"""SELECT target_table, regexp_replace(reason, '[:(].*$', '') AS kind, count(*) n
                FROM {QUARANTINE_TABLE} GROUP BY 1, 2 ORDER BY n DESC"""
        )
        return [(str(t), str(k).strip(), int(n)) for t, k, n in rows]
