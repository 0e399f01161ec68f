"""Helpers of the simulator tests: the test fleets, a DuckDB query helper, contract checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from autopersona.contracts import Contract
from autopersona.simulate import MessConfig

#: The fleet used by most tests: small but with every driving style and a weekend.
FLEET = {"vehicles": 24, "days": 7, "seed": 11}
#: Mess rates for the mess tests (4x the defaults so small fleets get enough faults).
MESSY = MessConfig().scaled(4.0)


class Q:
    """DuckDB over a fleet folder: ``T.<table>`` reads tables/, ``R.<name>`` reads truth/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.con = duckdb.connect()

    def _sql(self, sql: str) -> str:
        sql = re.sub(r"\bT\.(\w+)", lambda m: f"'{self.root / 'tables' / m.group(1)}.parquet'", sql)
        return re.sub(r"\bR\.(\w+)", lambda m: f"'{self.root / 'truth' / m.group(1)}.parquet'", sql)

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        return self.con.sql(self._sql(sql)).fetchall()

    def one(self, sql: str) -> tuple[object, ...]:
        r = self.rows(sql)
        assert len(r) == 1
        return r[0]

    def np(self, sql: str) -> dict[str, object]:
        return self.con.sql(self._sql(sql)).fetchnumpy()


ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "json": pa.string(),
}


def check_table(
    table: pa.Table, contract: Contract, *, unique_key: bool = True, monotonic: bool = True
) -> list[str]:
    """Every way ``table`` breaks ``contract`` (empty list when it conforms).

    Checks column names and order, Arrow types, nulls in non-nullable columns, allowed
    values, numeric ranges, JSON text, finite floats, primary-key uniqueness
    (``unique_key``) and ``monotonic: increasing`` columns per entity in time order
    (``monotonic``).
    """
    errs: list[str] = []
    name = contract.table
    if table.column_names != contract.column_names:
        return [f"{name}: columns {table.column_names} != contract {contract.column_names}"]
    for col in contract.columns:
        arr = table.column(col.name)
        want = ARROW_TYPES[col.type]
        if arr.type != want:
            errs.append(f"{name}.{col.name}: type {arr.type} != {want}")
            continue
        if not col.nullable and arr.null_count:
            errs.append(f"{name}.{col.name}: {arr.null_count} nulls in a non-null column")
        valid = pc.drop_null(arr)
        if len(valid) == 0:
            continue
        if col.allowed is not None:
            bad = set(valid.to_pylist()) - set(col.allowed)
            if bad:
                errs.append(
                    f"{name}.{col.name}: values outside {col.allowed}: {sorted(map(str, bad))[:5]}"
                )
        if col.type in ("int64", "float64"):
            vals = valid.to_numpy().astype(float)
            if not np.isfinite(vals).all():
                errs.append(f"{name}.{col.name}: non-finite values")
            if col.min is not None and vals.min() < col.min:
                errs.append(f"{name}.{col.name}: min {vals.min()} < {col.min}")
            if col.max is not None and vals.max() > col.max:
                errs.append(f"{name}.{col.name}: max {vals.max()} > {col.max}")
        if col.type == "json":
            for v in valid.to_pylist():
                try:
                    json.loads(v)
                except ValueError:
                    errs.append(f"{name}.{col.name}: not JSON: {v[:40]!r}")
                    break
    if unique_key and table.num_rows:
        keys = table.select(contract.primary_key)
        n_unique = keys.group_by(contract.primary_key).aggregate([]).num_rows
        if n_unique != table.num_rows:
            errs.append(f"{name}: {table.num_rows - n_unique} duplicate primary keys")
    if monotonic and contract.entity and contract.time_column and table.num_rows:
        for col in contract.columns:
            if col.monotonic != "increasing":
                continue
            t = table.select([contract.entity, contract.time_column, col.name]).sort_by(
                [(contract.entity, "ascending"), (contract.time_column, "ascending")]
            )
            ent = t.column(contract.entity).to_numpy(zero_copy_only=False)
            v = t.column(col.name).to_numpy(zero_copy_only=False).astype(float)
            same = ent[1:] == ent[:-1]
            ok = np.isfinite(v[1:]) & np.isfinite(v[:-1])
            if (np.diff(v)[same & ok] < 0).any():
                errs.append(f"{name}.{col.name}: decreases within an entity")
    return errs
