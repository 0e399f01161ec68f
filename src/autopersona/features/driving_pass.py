"""The driving stage's one pass over ``motion``, compiled with numba.

:func:`motion_pass` reads one Arrow record batch of the motion columns the stage needs
(:data:`MOTION_COLUMNS`, rows in any order) and returns

* **partial aggregates per (vehicle, UTC hour)**: counts, sums, sums of squares and the
  maximum speed (:data:`PARTIAL_COLUMNS`), from which every driving feature but the
  harsh-event counts is rolled up; a (vehicle, hour) whose rows fall in several batches
  gives one row per batch, and the roll-up adds them up like the hours of a period;
* **harsh-event candidates**: the few fixes beyond the *lowest* class threshold of a kind
  (vehicle, time, longitudinal and lateral acceleration), whose edges need time order only
  among themselves.

A vehicle is its ``vkey``, a 64-bit hash of the VIN computed by the engine (DuckDB
``hash``, Spark ``xxhash64``), so the kernel never touches strings.  The kernel is one loop
over the rows: consecutive rows of one (vehicle, hour) add to local accumulators, which
go to the group's row (found through a hash table) when the run ends; nulls come from Arrow's
validity bitmaps without copying.  Both outputs share one Arrow schema
(:data:`PASS_SCHEMA`: partial rows have a null ``ts_us``, candidates null aggregates), so
the same function serves every engine: in process over DuckDB's streamed batches, and as
Spark's ``mapInArrow`` over each partition (:func:`motion_pass_batches`).

Examples
--------
>>> import pyarrow as pa
>>> t = pa.table({
...     "vkey": [7, 7, 9],
...     "ts": pa.array([0, 1_000_000, 3_600_000_000], pa.timestamp("us", "UTC")),
...     "speed_mps": [10.0, None, 30.0], "accel_long_mps2": [3.0, 0.0, -0.5],
...     "accel_lat_mps2": [0.0, 0.0, 0.0], "following_distance_m": [None, None, 20.0],
...     "lane_offset_m": [0.1, None, 0.7]})
>>> out = motion_pass(t.to_batches()[0], PassLimits(0.5, 22.2, 2.2, 2.2, 3.4))
>>> part, cand = split_pass(pa.Table.from_batches([out]))
>>> part[["vkey", "hour", "samples", "speed_n", "moving_s", "max_speed", "lane_dep_n"]]
   vkey  hour  samples  speed_n  moving_s  max_speed  lane_dep_n
0     7     0        2        1        1       10.0           0
1     9     1        1        1        1       30.0           1
>>> cand
   vkey  ts_us  hour  acc  lat
0     7      0     0  3.0  0.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from numba import jit

__all__ = [
    "COUNT_COLUMNS",
    "MOTION_COLUMNS",
    "PARTIAL_COLUMNS",
    "PASS_SCHEMA",
    "PassLimits",
    "motion_pass",
    "motion_pass_batches",
    "split_pass",
]

#: columns the pass reads, in this order (``vkey``: the engine's 64-bit hash of ``vin``)
MOTION_COLUMNS = [
    "vkey",
    "ts",
    "speed_mps",
    "accel_long_mps2",
    "accel_lat_mps2",
    "following_distance_m",
    "lane_offset_m",
]
#: partial aggregates per (vkey, hour); counts are exact (float64 below 2**53)
PARTIAL_COLUMNS = [
    "samples",  # rows
    "speed_n",  # rows with a speed
    "moving_s",  # speed > moving_mps
    "speed_sum",  # sum of speed
    "mv_sum",  # sum of speed while moving
    "mv_sq",  # sum of squared speed while moving
    "max_speed",  # maximum speed (-inf without one)
    "highway_s",  # speed > highway_mps
    "acc_sum",  # sum of |accel_long| while moving
    "acc_n",
    "lat_sum",  # sum of |accel_lat| while moving
    "lat_n",
    "fd_sum",  # sum of following distance
    "fd_n",
    "radar_n",  # following distance known at speed > 5 m/s
    "short_headway_n",  # ... and under 1 s headway
    "lane_sum",  # sum of lane offset
    "lane_sq",  # sum of squared lane offset
    "lane_n",
    "lane_dep_n",  # |lane offset| > 0.5 m
]
#: the partial columns that are counts
COUNT_COLUMNS = [
    "samples",
    "speed_n",
    "moving_s",
    "highway_s",
    "acc_n",
    "lat_n",
    "fd_n",
    "radar_n",
    "short_headway_n",
    "lane_n",
    "lane_dep_n",
]
_NF = len(PARTIAL_COLUMNS)
(
    _SAMPLES,
    _SPEED_N,
    _MOVING,
    _SPEED_SUM,
    _MV_SUM,
    _MV_SQ,
    _MAX_SPEED,
    _HIGHWAY,
    _ACC_SUM,
    _ACC_N,
    _LAT_SUM,
    _LAT_N,
    _FD_SUM,
    _FD_N,
    _RADAR,
    _SHORT,
    _LANE_SUM,
    _LANE_SQ,
    _LANE_N,
    _LANE_DEP,
) = range(_NF)
_HOUR_US = 3_600_000_000
#: one Arrow schema for both outputs of a batch (Spark's ``mapInArrow`` returns one schema):
#: partial rows have ``ts_us``, ``acc`` and ``lat`` null and :data:`PARTIAL_COLUMNS` in
#: ``agg``; candidate rows have ``agg`` null
PASS_SCHEMA = pa.schema(
    [
        ("vkey", pa.int64()),
        ("hour", pa.int64()),
        ("ts_us", pa.int64()),
        ("acc", pa.float64()),
        ("lat", pa.float64()),
        ("agg", pa.list_(pa.float64())),
    ]
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ByteArray = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]
_T = TypeVar("_T", bound=np.generic)


class PassLimits(NamedTuple):
    """Thresholds the pass applies (m/s, m/s²); the harsh ones are the lowest of any class."""

    moving_mps: float
    highway_mps: float
    lo_accel_mps2: float
    lo_brake_mps2: float
    lo_lateral_mps2: float


# ----------------------------------------------------------------------------- kernel
# Plain Python, compiled by numba below (NUMBA_DISABLE_JIT=1 runs it as it is).


def _slot_py(key: int, hour: int, mask: int) -> int:
    """Hash-table slot of (key, hour); keys are hashes already, hours are mixed in."""
    return (key ^ (hour * 0x5BD1E995)) & mask


def _runs_py(key: IntArray, ts: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Maximal runs of consecutive rows with one (key, hour): starts (and the end), keys, hours."""
    n = ts.shape[0]
    start = np.empty(n + 1, np.int64)
    r = 0
    cur_key = np.int64(0)
    cur_hour = np.int64(0)
    for i in range(n):
        k = key[i]
        h = ts[i] // _HOUR_US
        if i == 0 or k != cur_key or h != cur_hour:
            start[r] = i
            r += 1
            cur_key = k
            cur_hour = h
    start[r] = n
    keys = np.empty(r, np.int64)
    hours = np.empty(r, np.int64)
    for j in range(r):
        keys[j] = key[start[j]]
        hours[j] = ts[start[j]] // _HOUR_US
    return start[: r + 1], keys, hours


def _groups_py(keys: IntArray, hours: IntArray) -> tuple[IntArray, IntArray]:
    """Group of each run by (key, hour) through a hash table; and each group's first run."""
    r = keys.shape[0]
    size = 64
    while size < 2 * r:
        size *= 2
    mask = size - 1
    slots = np.zeros(size, np.int64)  # group + 1; 0 = empty
    group = np.empty(r, np.int64)
    first = np.empty(r, np.int64)
    n_g = 0
    for j in range(r):
        k, h = keys[j], hours[j]
        s = _slot(k, h, mask)
        while True:
            q = slots[s] - 1
            if q < 0:
                slots[s] = n_g + 1
                first[n_g] = j
                group[j] = n_g
                n_g += 1
                break
            if keys[first[q]] == k and hours[first[q]] == h:
                group[j] = q
                break
            s = (s + 1) & mask
    return group, first[:n_g]


def _pass_py(
    key: IntArray,
    ts: IntArray,
    spd: FloatArray,
    spd_v: ByteArray,
    acc: FloatArray,
    acc_v: ByteArray,
    lat: FloatArray,
    lat_v: ByteArray,
    fd: FloatArray,
    fd_v: ByteArray,
    lane: FloatArray,
    lane_v: ByteArray,
    moving: float,
    highway: float,
    lo_acc: float,
    lo_brk: float,
    lo_lat: float,
) -> tuple[IntArray, IntArray, FloatArray, IntArray, FloatArray, FloatArray]:
    """One batch: partial aggregates per (vehicle key, hour) and the harsh candidates.

    Returns the groups' keys and hours, their accumulators (groups x fields), and the
    candidates' rows and accelerations (NaN where null).  Rows are taken in runs of one (key, hour); a run adds up in local
    variables, then to its group's row (a group may come back in a later run).  Validity
    bitmaps start at bit 0 of the batch; an empty one means no nulls.
    """
    n = ts.shape[0]
    start, keys, hours = _runs(key, ts)
    group, first = _groups(keys, hours)
    n_g = first.shape[0]
    out = np.zeros((n_g, _NF), np.float64)
    for q in range(n_g):
        out[q, _MAX_SPEED] = -np.inf
    cand = np.empty(n, np.int64)
    cand_a = np.empty(n, np.float64)
    cand_y = np.empty(n, np.float64)
    n_c = 0
    no_spd_nulls = spd_v.shape[0] == 0
    no_acc_nulls = acc_v.shape[0] == 0
    no_lat_nulls = lat_v.shape[0] == 0
    no_fd_nulls = fd_v.shape[0] == 0
    no_lane_nulls = lane_v.shape[0] == 0
    for j in range(keys.shape[0]):
        speed_n = moving_s = speed_sum = mv_sum = mv_sq = highway_s = 0.0
        acc_sum = acc_n = lat_sum = lat_n = fd_sum = fd_n = radar_n = short_n = 0.0
        lane_sum = lane_sq = lane_n = lane_dep = 0.0
        max_speed = -np.inf
        for i in range(start[j], start[j + 1]):
            bit = np.uint8(1) << np.uint8(i & 7)
            byte = i >> 3
            v = spd[i]
            has_spd = no_spd_nulls or (spd_v[byte] & bit) != 0
            is_moving = False
            if has_spd:
                speed_n += 1.0
                speed_sum += v
                max_speed = max(max_speed, v)
                if v > moving:
                    is_moving = True
                    moving_s += 1.0
                    mv_sum += v
                    mv_sq += v * v
                if v > highway:
                    highway_s += 1.0
            a = acc[i]
            has_acc = no_acc_nulls or (acc_v[byte] & bit) != 0
            y = lat[i]
            has_lat = no_lat_nulls or (lat_v[byte] & bit) != 0
            if is_moving:
                if has_acc:
                    acc_sum += abs(a)
                    acc_n += 1.0
                if has_lat:
                    lat_sum += abs(y)
                    lat_n += 1.0
            if no_fd_nulls or (fd_v[byte] & bit) != 0:
                d = fd[i]
                fd_sum += d
                fd_n += 1.0
                if has_spd and v > 5.0:
                    radar_n += 1.0
                    if d / v < 1.0:  # headway under 1 s
                        short_n += 1.0
            if no_lane_nulls or (lane_v[byte] & bit) != 0:
                x = lane[i]
                lane_sum += x
                lane_sq += x * x
                lane_n += 1.0
                if abs(x) > 0.5:
                    lane_dep += 1.0
            if (has_acc and (a > lo_acc or a < -lo_brk)) or (has_lat and abs(y) > lo_lat):
                cand[n_c] = i
                cand_a[n_c] = a if has_acc else np.nan
                cand_y[n_c] = y if has_lat else np.nan
                n_c += 1
        g = group[j]
        out[g, _SAMPLES] += start[j + 1] - start[j]
        out[g, _SPEED_N] += speed_n
        out[g, _MOVING] += moving_s
        out[g, _SPEED_SUM] += speed_sum
        out[g, _MV_SUM] += mv_sum
        out[g, _MV_SQ] += mv_sq
        out[g, _MAX_SPEED] = max(out[g, _MAX_SPEED], max_speed)
        out[g, _HIGHWAY] += highway_s
        out[g, _ACC_SUM] += acc_sum
        out[g, _ACC_N] += acc_n
        out[g, _LAT_SUM] += lat_sum
        out[g, _LAT_N] += lat_n
        out[g, _FD_SUM] += fd_sum
        out[g, _FD_N] += fd_n
        out[g, _RADAR] += radar_n
        out[g, _SHORT] += short_n
        out[g, _LANE_SUM] += lane_sum
        out[g, _LANE_SQ] += lane_sq
        out[g, _LANE_N] += lane_n
        out[g, _LANE_DEP] += lane_dep
    return keys[first], hours[first], out, cand[:n_c], cand_a[:n_c], cand_y[:n_c]


_PassFn = Callable[
    [
        IntArray,
        IntArray,
        FloatArray,
        ByteArray,
        FloatArray,
        ByteArray,
        FloatArray,
        ByteArray,
        FloatArray,
        ByteArray,
        FloatArray,
        ByteArray,
        float,
        float,
        float,
        float,
        float,
    ],
    tuple[IntArray, IntArray, FloatArray, IntArray, FloatArray, FloatArray],
]

_slot: Callable[[int, int, int], int] = jit(cache=True, nogil=True)(_slot_py)
_runs: Callable[[IntArray, IntArray], tuple[IntArray, IntArray, IntArray]] = jit(
    cache=True, nogil=True
)(_runs_py)
_groups: Callable[[IntArray, IntArray], tuple[IntArray, IntArray]] = jit(cache=True, nogil=True)(
    _groups_py
)


def _signature() -> tuple[Any, ...]:
    """Argument types of :func:`_pass`: read-only arrays (Arrow buffers), then floats."""
    from numba import types

    def ro(t: Any) -> Any:
        return types.Array(t, 1, "C", readonly=True)

    cols = (ro(types.float64), ro(types.uint8)) * 5
    return (ro(types.int64), ro(types.int64), *cols, *(types.float64,) * 5)


# compiled (or loaded from numba's on-disk cache) when the module is imported, like an
# extension module's code, for the one signature the Arrow glue passes
_pass: _PassFn = jit(_signature(), cache=True, nogil=True)(_pass_py)


# ----------------------------------------------------------------------------- Arrow glue
_EMPTY_BITS = np.zeros(0, np.uint8)


def _ro(a: npt.NDArray[_T]) -> npt.NDArray[_T]:
    """A read-only, C-contiguous view (the one array type the kernel is compiled for)."""
    a = np.ascontiguousarray(a)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    col = batch.column(name)
    return col if col.offset == 0 else pa.concat_arrays([col])  # re-based


def _values(arr: pa.Array) -> tuple[FloatArray, ByteArray]:
    """A float64 column's values and validity bitmap, without copying."""
    if arr.type != pa.float64():
        arr = arr.cast(pa.float64())
    if arr.null_count == len(arr):  # nothing to read (also a column of type null)
        return np.zeros(len(arr)), np.zeros((len(arr) + 7) // 8, np.uint8)
    bits, buf = arr.buffers()[:2]
    vals = np.frombuffer(buf, np.float64, count=len(arr))
    if arr.null_count == 0 or bits is None:
        return vals, _EMPTY_BITS
    return vals, np.frombuffer(bits, np.uint8, count=(len(arr) + 7) // 8)


def _int64(arr: pa.Array, name: str) -> IntArray:
    """An integer or timestamp column as int64 (unsigned hashes are reinterpreted)."""
    if arr.null_count:
        raise ValueError(f"{name} must not be null")
    if pa.types.is_timestamp(arr.type) and arr.type.unit != "us":
        arr = arr.cast(pa.timestamp("us", arr.type.tz))
    if len(arr) == 0:
        return np.zeros(0, np.int64)
    if pa.types.is_timestamp(arr.type) or arr.type in (pa.int64(), pa.uint64()):
        return np.frombuffer(arr.buffers()[1], np.int64, count=len(arr))
    return np.asarray(arr.cast(pa.int64()).to_numpy(), np.int64)


def motion_pass(batch: pa.RecordBatch, lim: PassLimits) -> pa.RecordBatch:
    """Partial aggregates per (vehicle, hour) and harsh candidates of one batch of motion.

    Parameters
    ----------
    batch
        The :data:`MOTION_COLUMNS` of some motion rows, in any order: ``vkey`` a 64-bit
        hash of the VIN (int64 or uint64), ``ts`` a UTC timestamp, the rest float64.
    lim
        Thresholds.

    Returns
    -------
    pyarrow.RecordBatch
        :data:`PASS_SCHEMA`: one row per (vkey, hour) with :data:`PARTIAL_COLUMNS`, then
        one row per candidate fix with ``ts_us`` (epoch microseconds), ``acc`` and ``lat``.
    """
    key = _int64(_column(batch, "vkey"), "vkey")
    ts = _int64(_column(batch, "ts"), "ts")
    cols = [_values(_column(batch, c)) for c in MOTION_COLUMNS[2:]]
    g_key, g_hour, agg, cand, cand_a, cand_y = _pass(
        _ro(key),
        _ro(ts),
        _ro(cols[0][0]),
        _ro(cols[0][1]),
        _ro(cols[1][0]),
        _ro(cols[1][1]),
        _ro(cols[2][0]),
        _ro(cols[2][1]),
        _ro(cols[3][0]),
        _ro(cols[3][1]),
        _ro(cols[4][0]),
        _ro(cols[4][1]),
        float(lim.moving_mps),
        float(lim.highway_mps),
        float(lim.lo_accel_mps2),
        float(lim.lo_brake_mps2),
        float(lim.lo_lateral_mps2),
    )
    n, m = len(g_key), len(cand)
    ct = ts[cand]
    part_null = np.concatenate((np.ones(n, np.bool_), np.zeros(m, np.bool_)))
    arrays: list[pa.Array] = [
        pa.array(np.concatenate((g_key, key[cand]))),
        pa.array(np.concatenate((g_hour, ct // _HOUR_US))),
        pa.array(np.concatenate((np.zeros(n, np.int64), ct)), mask=part_null),
    ]
    for v in (cand_a, cand_y):  # NaN: null, on the partial rows too
        arrays.append(pa.array(np.concatenate((np.full(n, np.nan), v)), from_pandas=True))
    offsets = np.concatenate(
        (np.arange(n + 1, dtype=np.int32) * _NF, np.full(m, n * _NF, np.int32))
    )
    valid = pa.array(part_null).buffers()[1]  # bitmap: the partial rows
    arrays.append(
        pa.ListArray.from_buffers(
            pa.list_(pa.float64()),
            n + m,
            [valid, pa.py_buffer(offsets)],
            children=[pa.array(agg.reshape(-1))],
        )
    )
    return pa.RecordBatch.from_arrays(arrays, schema=PASS_SCHEMA)


def motion_pass_batches(
    batches: Iterable[pa.RecordBatch], lim: PassLimits
) -> Iterator[pa.RecordBatch]:
    """:func:`motion_pass` over batches: the function Spark's ``mapInArrow`` runs."""
    for batch in batches:
        if batch.num_rows:
            yield motion_pass(batch, lim)


def split_pass(table: pa.Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Partial rows and candidate rows of the pass's output, as frames.

    Returns ``vkey``, ``hour`` and :data:`PARTIAL_COLUMNS` (counts as int64); and
    ``vkey``, ``ts_us``, ``hour``, ``acc``, ``lat`` (NaN where null).
    """
    parts: list[FloatArray] = []
    is_part: list[BoolArray] = []
    for chunk in table.column("agg").chunks:
        is_part.append(_validity(chunk))
        parts.append(chunk.flatten().to_numpy(zero_copy_only=False))
    part = np.concatenate(is_part) if is_part else np.zeros(0, np.bool_)
    cand = ~part
    values = np.concatenate(parts).reshape(-1, _NF) if parts else np.zeros((0, _NF))
    p = pd.DataFrame(values, columns=PARTIAL_COLUMNS)
    for c in COUNT_COLUMNS:
        p[c] = p[c].astype("int64")
    key, hour = _ints(table, "vkey"), _ints(table, "hour")
    p.insert(0, "hour", hour[part])
    p.insert(0, "vkey", key[part])
    candidates = pd.DataFrame(
        {
            "vkey": key[cand],
            "ts_us": _ints(table, "ts_us")[cand],
            "hour": hour[cand],
            "acc": _floats(table, "acc")[cand],
            "lat": _floats(table, "lat")[cand],
        }
    )
    return p, candidates


def _validity(arr: pa.Array) -> BoolArray:
    """Arrow validity as a boolean array."""
    if arr.null_count == 0:
        return np.ones(len(arr), np.bool_)
    bits = np.frombuffer(arr.buffers()[0], np.uint8)
    return np.unpackbits(bits, bitorder="little")[arr.offset : arr.offset + len(arr)].astype(
        np.bool_
    )


def _ints(table: pa.Table, name: str) -> IntArray:
    """An int64 column's values (whatever sits under a null)."""
    out = [
        np.frombuffer(c.buffers()[1], np.int64)[c.offset : c.offset + len(c)]
        for c in table.column(name).chunks
    ]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _floats(table: pa.Table, name: str) -> FloatArray:
    """A float64 column's values, NaN where null."""
    out = [c.to_numpy(zero_copy_only=False) for c in table.column(name).chunks]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
