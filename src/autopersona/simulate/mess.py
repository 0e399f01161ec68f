"""Inject real-world data faults into one vehicle's tables and record what was injected.

Faults (rates from :class:`~autopersona.simulate.config.MessConfig`):

* ``gps_drift`` (``motion``): a fix inside a trip (both neighbours one second away) is
  moved ``gps_drift_min_m``..``gps_drift_max_m`` in a random direction; the next fix is
  back on track. Implied speeds to both neighbours exceed the contract's 90 m/s.
* ``can_jump`` (``vehicle_signals``): while driving (neighbours within 10 s), the SOC or fuel
  level of one sample jumps by ``can_jump_min_pct``..``can_jump_max_pct`` points (towards the
  middle of the range) and the next sample is back.
* ``missing`` (``MISSING_COLUMNS``): values nulled in nullable columns, including the
  ``ffill`` signals ``soc_pct`` and ``fuel_level_pct`` (never a cell that
  already jumped, nor its neighbours).
* ``duplicate`` (``DUPLICATE_TABLES``): an exact copy of a row written 1–50 rows later.
* ``out_of_order`` (``LATE_TABLES``): a row delivered late, moved 5–500 rows further down.

Each fault is a row of ``truth/mess.parquet``: ``table``, ``kind``, ``key`` (JSON of the
row's primary key, timestamps as ISO 8601 UTC), ``vin``, ``ts``, ``column``, ``original``,
``injected`` and ``detail`` (JSON). Drifts and jumps happen before duplication, so a
duplicated row carries the fault too.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from autopersona.contracts import Contract
from autopersona.simulate.config import MessConfig
from autopersona.simulate.geo import EARTH_RADIUS_M

__all__ = ["DUPLICATE_TABLES", "LATE_TABLES", "MESS_SCHEMA", "MISSING_COLUMNS", "inject"]

DUPLICATE_TABLES = (
    "motion",
    "vehicle_signals",
    "v2x_context",
    "cabin_events",
    "dtc_events",
    "commerce_events",
    "orders",
    "reviews",
    "warnings",
    "service_records",
    "subscriptions",
)
LATE_TABLES = ("motion", "vehicle_signals", "v2x_context", "cabin_events", "commerce_events")
MISSING_COLUMNS: dict[str, tuple[str, ...]] = {
    "motion": ("alt_m", "speed_mps", "heading_deg"),
    "vehicle_signals": (
        "soc_pct",
        "fuel_level_pct",
        "battery_temp_c",
        "coolant_temp_c",
        "odometer_km",
    ),
    "v2x_context": ("weather", "temperature_c", "humidity_pct", "congestion_level"),
    "cabin_events": ("sentiment", "duration_s"),
    "commerce_events": ("brand", "category", "price_cny", "session_id"),
    "orders": ("description", "brand"),
    "service_records": ("amount_cny", "odometer_km", "items"),
    "accounts": ("birth_year", "district"),
}
MESS_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("vin", pa.string()),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("column", pa.string()),
        pa.field("original", pa.float64()),
        pa.field("injected", pa.float64()),
        pa.field("detail", pa.string()),
    ]
)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Recorder:
    """Collects fault records; keys are read from the untouched table in one batch."""

    def __init__(self, contract: Contract, table: pa.Table) -> None:
        self.c = contract
        extra = [c for c in ("vin", contract.time_column) if c and c in table.column_names]
        self.table = table.select(list(dict.fromkeys([*contract.primary_key, *extra])))
        self.idx: list[int] = []
        self.kind: list[str] = []
        self.column: list[str | None] = []
        self.original: list[float | None] = []
        self.injected: list[float | None] = []
        self.detail: list[str | None] = []

    def add(
        self,
        i: int,
        kind: str,
        column: str | None = None,
        original: float | None = None,
        injected: float | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.idx.append(i)
        self.kind.append(kind)
        self.column.append(column)
        self.original.append(original)
        self.injected.append(injected)
        self.detail.append(json.dumps(detail, sort_keys=True) if detail else None)

    def finish(self) -> pa.Table:
        """The records as a :data:`MESS_SCHEMA` table."""
        n = len(self.idx)
        rows = (
            self.table.take(pa.array(np.asarray(self.idx, dtype=np.int64)))
            if n
            else self.table.slice(0, 0)
        )
        keys: list[list[Any]] = []
        for k in self.c.primary_key:
            col = rows.column(k)
            if pa.types.is_timestamp(col.type):
                us = col.cast(pa.int64()).to_numpy()
                keys.append([_iso(int(v)) for v in us])
            else:
                keys.append(col.to_pylist())
        names = self.c.primary_key
        key_json = (
            [
                json.dumps(dict(zip(names, vals, strict=True)), sort_keys=True)
                for vals in zip(*keys, strict=True)
            ]
            if n
            else []
        )
        tc = self.c.time_column
        return pa.Table.from_arrays(
            [
                pa.array([self.c.table] * n, type=pa.string()),
                pa.array(self.kind, type=pa.string()),
                pa.array(key_json, type=pa.string()),
                rows.column("vin").combine_chunks()
                if "vin" in rows.column_names
                else pa.nulls(n, pa.string()),
                rows.column(tc).combine_chunks().cast(MESS_SCHEMA.field("ts").type)
                if tc
                else pa.nulls(n, MESS_SCHEMA.field("ts").type),
                pa.array(self.column, type=pa.string()),
                pa.array(self.original, type=pa.float64()),
                pa.array(self.injected, type=pa.float64()),
                pa.array(self.detail, type=pa.string()),
            ],
            schema=MESS_SCHEMA,
        )


def _set(t: pa.Table, name: str, arr: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Replace a column keeping its field (name, type, nullability)."""
    i = t.column_names.index(name)
    return t.set_column(i, t.schema.field(i), arr)


def _pick(
    rng: np.random.Generator, candidates: np.ndarray[Any, Any], rate: float
) -> np.ndarray[Any, Any]:
    if rate <= 0 or len(candidates) == 0:
        return np.zeros(0, dtype=np.int64)
    k = int(rng.binomial(len(candidates), rate))
    return (
        np.sort(rng.choice(candidates, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)
    )


def _gps_drift(t: pa.Table, rec: _Recorder, cfg: MessConfig, rng: np.random.Generator) -> pa.Table:
    n = t.num_rows
    if n < 3 or cfg.gps_drift_rate <= 0:
        return t
    trip = t.column("trip_id").to_numpy(zero_copy_only=False)
    ts = t.column("ts").cast(pa.int64()).to_numpy()
    mid = np.arange(1, n - 1)
    ok = (trip[mid - 1] == trip[mid]) & (trip[mid + 1] == trip[mid])
    ok &= (ts[mid] - ts[mid - 1] == 1_000_000) & (ts[mid + 1] - ts[mid] == 1_000_000)
    idx = _pick(rng, mid[ok], cfg.gps_drift_rate)
    if len(idx) > 1:  # no two drifts next to each other
        idx = idx[np.concatenate([[True], np.diff(idx) > 2])]
    if len(idx) == 0:
        return t
    lat = t.column("lat").to_numpy().copy()
    lon = t.column("lon").to_numpy().copy()
    for i in idx:
        d = float(rng.uniform(cfg.gps_drift_min_m, cfg.gps_drift_max_m))
        b = float(rng.uniform(0, 2 * math.pi))
        nlat = lat[i] + math.degrees(d * math.cos(b) / EARTH_RADIUS_M)
        nlon = lon[i] + math.degrees(
            d * math.sin(b) / (EARTH_RADIUS_M * math.cos(math.radians(lat[i])))
        )
        rec.add(
            int(i),
            "gps_drift",
            "lat",
            float(lat[i]),
            round(nlat, 7),
            {"lat": float(lat[i]), "lon": float(lon[i]), "offset_m": round(d, 1)},
        )
        lat[i], lon[i] = round(nlat, 7), round(nlon, 7)
    t = _set(t, "lat", pa.array(lat))
    return _set(t, "lon", pa.array(lon))


def _can_jump(t: pa.Table, rec: _Recorder, cfg: MessConfig, rng: np.random.Generator) -> pa.Table:
    n = t.num_rows
    if n < 3 or cfg.can_jump_rate <= 0:
        return t
    ts = t.column("ts").cast(pa.int64()).to_numpy()
    ign = t.column("ignition_on").to_numpy(zero_copy_only=False).astype(bool)
    mid = np.arange(1, n - 1)
    ok = ign[mid] & (ts[mid] - ts[mid - 1] <= 10_000_000) & (ts[mid + 1] - ts[mid] <= 10_000_000)
    cols = {
        c: t.column(c).to_numpy(zero_copy_only=False).astype(float).copy()
        for c in ("soc_pct", "fuel_level_pct")
    }
    usable = [c for c, v in cols.items() if np.isfinite(v).any()]
    if not usable:
        return t
    idx = _pick(rng, mid[ok], cfg.can_jump_rate)
    if len(idx) > 1:
        idx = idx[np.concatenate([[True], np.diff(idx) > 2])]
    changed = set()
    for i in idx:
        c = usable[int(rng.integers(len(usable)))]
        v = cols[c][i]
        if not (np.isfinite(v) and np.isfinite(cols[c][i - 1]) and np.isfinite(cols[c][i + 1])):
            continue
        size = float(rng.uniform(cfg.can_jump_min_pct, cfg.can_jump_max_pct))
        nv = v + size if v < 50 else v - size
        nv = float(np.clip(nv, 0, 100))
        rec.add(int(i), "can_jump", c, float(v), round(nv, 2), {"jump": round(nv - v, 2)})
        cols[c][i] = round(nv, 2)
        changed.add(c)
    for c in changed:
        t = _set(t, c, pa.array(cols[c], from_pandas=True))
    return t


def _missing(t: pa.Table, rec: _Recorder, cfg: MessConfig, rng: np.random.Generator) -> pa.Table:
    table = rec.c.table
    for c in MISSING_COLUMNS.get(table, ()):
        col = rec.c.column(c)
        if not col.nullable or cfg.missing_rate <= 0:
            continue
        arr = t.column(c)
        valid = ~arr.is_null().to_numpy(zero_copy_only=False)
        taken = np.array(
            [i for i, col_ in zip(rec.idx, rec.column, strict=True) if col_ == c], dtype=np.int64
        )
        if len(taken):  # one fault per cell, and a jump keeps both neighbours
            near = np.concatenate([taken - 1, taken, taken + 1])
            valid[near[(near >= 0) & (near < len(valid))]] = False
        idx = _pick(rng, np.flatnonzero(valid), cfg.missing_rate)
        if len(idx) == 0:
            continue
        taken = arr.take(pa.array(idx))
        if col.type in ("float64", "int64"):
            nums = taken.cast(pa.float64()).to_numpy(zero_copy_only=False)
            for i, v in zip(idx, nums, strict=True):
                rec.add(int(i), "missing", c, float(v))
        else:
            for i, v in zip(idx, taken.to_pylist(), strict=True):
                rec.add(int(i), "missing", c, detail={"value": str(v)})
        mask = np.zeros(t.num_rows, dtype=bool)
        mask[idx] = True
        new = pc.if_else(pa.array(mask), pa.scalar(None, type=arr.type), arr)
        t = _set(t, c, new)
    return t


def _reorder(t: pa.Table, rec: _Recorder, cfg: MessConfig, rng: np.random.Generator) -> pa.Table:
    table = rec.c.table
    n = t.num_rows
    if n == 0:
        return t
    pos = np.arange(n, dtype=float)
    extra_idx: list[int] = []
    extra_pos: list[float] = []
    if table in DUPLICATE_TABLES and cfg.duplicate_rate > 0:
        for i in _pick(rng, np.arange(n), cfg.duplicate_rate):
            extra_idx.append(int(i))
            extra_pos.append(min(float(i + int(rng.integers(1, 51))), n - 0.5) + 0.25)
            rec.add(int(i), "duplicate")
    if table in LATE_TABLES and cfg.out_of_order_rate > 0:
        for i in _pick(rng, np.arange(n), cfg.out_of_order_rate):
            shift = int(rng.integers(5, 501))
            new = min(float(i + shift), n - 0.5) + 0.5
            if new - i < 1.5:  # already at the end: nothing to move
                continue
            pos[i] = new
            rec.add(int(i), "out_of_order", detail={"rows_late": int(new - i)})
    if not extra_idx and np.all(pos == np.arange(n)):
        return t
    all_idx = np.concatenate([np.arange(n), np.array(extra_idx, dtype=np.int64)])
    all_pos = np.concatenate([pos, np.array(extra_pos)])
    order = np.argsort(all_pos, kind="stable")
    return t.take(pa.array(all_idx[order]))


def inject(
    contract: Contract, table: pa.Table, cfg: MessConfig, rng: np.random.Generator
) -> tuple[pa.Table, pa.Table]:
    """Apply every configured fault to one vehicle's ``table``; return it and the records."""
    if not cfg.enabled or table.num_rows == 0:
        return table, MESS_SCHEMA.empty_table()
    rec = _Recorder(contract, table)
    if contract.table == "motion":
        table = _gps_drift(table, rec, cfg, rng)
    if contract.table == "vehicle_signals":
        table = _can_jump(table, rec, cfg, rng)
    table = _missing(table, rec, cfg, rng)
    table = _reorder(table, rec, cfg, rng)
    return table, rec.finish()
