"""Contract-typed Arrow tables and deterministic Parquet files.

Generators hand over plain columns; :func:`to_arrow` casts them to the exact contract
types (``string`` → ``pa.string()``, ``timestamp`` → ``pa.timestamp("us", tz="UTC")``,
``date`` → ``pa.date32()``, ``json`` → JSON text) in contract column order. Column values
may be

* float arrays (``NaN`` = null), int or bool arrays,
* int64 arrays of microseconds since the epoch for timestamps (``NAT`` = null) and of
  days since the epoch for dates,
* lists of ``str | None`` (strings and JSON text),
* :class:`Cat` (codes into a list of labels; code ``-1`` = null) for repeated strings.

Parquet files are written with fixed options (zstd level 3, dictionary encoding, one
row group per chunk of vehicles, statistics on, no pandas metadata), so the same tables
give the same bytes.

Examples
--------
>>> import numpy as np
>>> from autopersona.contracts import get_contract
>>> t = to_arrow(get_contract("pois"), {"poi_id": ["a"], "category": Cat(np.array([0]), ["park"]),
...                                       "lat": np.array([31.2]), "lon": np.array([121.4])}, 1)
>>> t.schema.field("name").type, t.num_rows
(DataType(string), 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from autopersona.contracts import Contract

__all__ = [
    "NAT",
    "Cat",
    "ParquetSink",
    "arrow_schema",
    "const",
    "rows_to_arrow",
    "to_arrow",
    "write_table",
]

#: Null timestamp sentinel for int64 microsecond columns.
NAT = np.iinfo(np.int64).min

_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "json": pa.string(),
}
_WRITE_OPTS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "version": "2.6",
    "data_page_size": 1 << 20,
}


@dataclass(frozen=True)
class Cat:
    """A categorical string column: ``labels[codes]`` (code -1 is null)."""

    codes: NDArray[np.int64]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.codes)


def const(value: str, n: int) -> Cat:
    """A string column repeating ``value`` ``n`` times."""
    return Cat(np.zeros(n, dtype=np.int64), [value])


def arrow_schema(contract: Contract) -> pa.Schema:
    """The Arrow schema of a contract (column order and nullability as declared)."""
    return pa.schema(
        [pa.field(c.name, _TYPES[c.type], nullable=c.nullable) for c in contract.columns]
    )


def _array(col_type: str, value: Any, n: int) -> pa.Array:
    t = _TYPES[col_type]
    if value is None:
        return pa.nulls(n, type=t)
    if isinstance(value, Cat):
        codes = np.asarray(value.codes, dtype=np.int32)
        mask = codes < 0
        idx = pa.array(np.where(mask, 0, codes), mask=mask if mask.any() else None)
        labels = pa.array(value.labels if value.labels else [""], type=pa.string())
        return pa.DictionaryArray.from_arrays(idx, labels).cast(t)
    if isinstance(value, list):
        if col_type in ("string", "json"):
            return pa.array(value, type=pa.string())
        if col_type == "bool":
            return pa.array(value, type=pa.bool_())
        return pa.array(value, type=t)
    arr = np.asarray(value)
    if col_type == "timestamp":
        a = arr.astype(np.int64)
        mask = a == NAT
        return pa.array(a, mask=mask if mask.any() else None).cast(t)
    if col_type == "date":
        return pa.array(arr.astype(np.int32)).cast(t)
    if col_type == "int64" and arr.dtype.kind == "f":
        return pa.array(arr, from_pandas=True).cast(t)
    if col_type == "float64":
        return pa.array(arr.astype(np.float64), from_pandas=True)
    return pa.array(arr, type=t)


def to_arrow(contract: Contract, cols: dict[str, Any], n: int) -> pa.Table:
    """Build the contract-typed table of ``n`` rows (absent columns are all null).

    Raises
    ------
    KeyError
        If ``cols`` has a column the contract does not declare.
    ValueError
        If a column does not have ``n`` values.
    """
    unknown = set(cols) - set(contract.column_names)
    if unknown:
        raise KeyError(f"{contract.table}: unknown column(s) {sorted(unknown)}")
    arrays = []
    for c in contract.columns:
        a = _array(c.type, cols.get(c.name), n)
        if len(a) != n:
            raise ValueError(f"{contract.table}.{c.name}: {len(a)} values, expected {n}")
        arrays.append(a)
    return pa.Table.from_arrays(arrays, schema=arrow_schema(contract))


def write_table(table: pa.Table, path: Path) -> None:
    """Write one Parquet file deterministically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=max(table.num_rows, 1), **_WRITE_OPTS)


class ParquetSink:
    """Append tables to one Parquet file, one row group per :meth:`write` call.

    Examples
    --------
    >>> import tempfile
    >>> from autopersona.contracts import get_contract
    >>> c = get_contract("marketing_feedback")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     sink = ParquetSink(Path(d) / "x.parquet", arrow_schema(c))
    ...     sink.close()
    ...     pq.read_table(Path(d) / "x.parquet").num_rows
    0
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.schema = schema
        self.rows = 0
        self._writer = pq.ParquetWriter(path, schema, **_WRITE_OPTS)

    def write(self, table: pa.Table) -> None:
        """Append ``table`` as one row group (skipped when empty)."""
        if table.num_rows == 0:
            return
        self._writer.write_table(table.cast(self.schema), row_group_size=table.num_rows)
        self.rows += table.num_rows

    def close(self) -> None:
        """Finish the file (an empty file still has the full schema)."""
        self._writer.close()


def rows_to_arrow(contract: Contract, rows: list[dict[str, Any]]) -> pa.Table:
    """Build the contract-typed table from row dicts (timestamps as int microseconds).

    ``None`` is null everywhere; ``NaN`` is null in float columns.
    """
    n = len(rows)
    cols: dict[str, Any] = {}
    for c in contract.columns:
        vals = [r.get(c.name) for r in rows]
        if all(v is None for v in vals):
            continue
        if c.type == "timestamp":
            cols[c.name] = np.array([NAT if v is None else int(v) for v in vals], dtype=np.int64)
        elif c.type == "float64":
            cols[c.name] = np.array([np.nan if v is None else float(v) for v in vals])
        elif c.type == "int64":
            if any(v is None for v in vals):
                cols[c.name] = np.array([np.nan if v is None else float(v) for v in vals])
            else:
                cols[c.name] = np.array(vals, dtype=np.int64)
        elif c.type == "date":
            cols[c.name] = np.array(vals, dtype=np.int64)
        elif c.type == "bool":
            cols[c.name] = [None if v is None else bool(v) for v in vals]
        else:
            cols[c.name] = [None if v is None else str(v) for v in vals]
    return to_arrow(contract, cols, n)
