"""Rows to an Arrow table for DuckDB (much cheaper than a pandas frame of Python objects)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

__all__ = ["INT", "STR", "TS", "columns_table", "rows_table"]

STR = pa.string()
INT = pa.int32()
TS = pa.timestamp("us", tz="UTC")


def rows_table(rows: Sequence[dict[str, Any]], schema: dict[str, Any]) -> pa.Table:
    """An Arrow table with one typed column per ``schema`` entry (None is null).

    >>> from datetime import UTC, datetime
    >>> t = rows_table([{"k": "a", "n": 1, "t": datetime(2026, 1, 1, tzinfo=UTC)},
    ...                 {"k": "b", "n": None, "t": None}], {"k": STR, "n": INT, "t": TS})
    >>> t.num_rows, t.column("n").null_count
    (2, 1)
    """
    return pa.table({c: pa.array([r.get(c) for r in rows], type=t) for c, t in schema.items()})


def columns_table(columns: Sequence[Sequence[Any]], schema: dict[str, Any]) -> pa.Table:
    """An Arrow table from one value list per ``schema`` entry, in the schema's order.

    >>> columns_table([("a", "b"), (1, None)], {"k": STR, "n": INT}).column("n").to_pylist()
    [1, None]
    """
    if len(columns) != len(schema):
        raise ValueError(f"{len(columns)} columns for a schema of {len(schema)}")
    return pa.table(
        {c: pa.array(v, type=t) for (c, t), v in zip(schema.items(), columns, strict=True)}
    )
