"""The driving stage's one pass over ``motion``, compiled with numba.

:func:`motion_pass` reads one Arrow record batch of the motion columns the stage needs
(:data:`MOTION_COLUMNS`, rows in any order) and returns

* **partial aggregates per (vehicle, UTC hour)**: counts, sums, sums of squares and the
  maximum speed (:data:`PARTIAL_COLUMNS`), from which every driving feature but the
  harsh-event counts is rolled up; a (vehicle, hour) whose rows fall in several batches
  gives one row per batch, and the roll-up adds them up like the hours of a period;
* **harsh intervals**: pieces of harsh events.  A fix beyond its vehicle's threshold of a
  kind (:class:`PassLimits`: per vehicle class) extends the open interval of that kind
  when it comes next in the batch for the same vehicle, no earlier than the interval's
  last fix and within the event gap; otherwise it opens a new interval.  Each interval
  is a chain of fixes with no gap longer than the event gap, so an event is a maximal
  union of overlapping-or-near intervals, whatever the batches and the row order
  (:func:`event_starts`); on rows in time order a batch gives about one interval per
  event.

A vehicle is its ``vkey``, a 64-bit hash of the VIN computed by the engine (DuckDB
``hash``, Spark ``xxhash64``), so the kernel never touches strings.  The kernel is one loop
over the rows: consecutive rows of one (vehicle, hour) add to local accumulators, which
go to the group's row (found through a hash table) when the run ends; nulls come from Arrow's
validity bitmaps without copying.  Both outputs share one Arrow schema
(:data:`PASS_SCHEMA`: partial rows have a null ``ts_us``, intervals null aggregates), so
the same function serves every engine: in process over DuckDB's streamed batches, and as
Spark's ``mapInArrow`` over each partition (:func:`motion_pass_batches`).

Examples
--------
>>> import pyarrow as pa
>>> t = pa.table({
...     "vkey": [7, 7, 9],
...     "ts": pa.array([0, 1_000_000, 3_600_000_000], pa.timestamp("us", "UTC")),
...     "speed_mps": [10.0, None, 30.0], "accel_long_mps2": [3.0, 2.6, -0.5],
...     "accel_lat_mps2": [0.0, 0.0, 0.0], "following_distance_m": [None, None, 20.0],
...     "lane_offset_m": [0.1, None, 0.7]})
>>> out = motion_pass(t.to_batches()[0], PassLimits(0.5, 22.2, 2.5, 2.5, 3.9, 1.5))
>>> part, harsh = split_pass(pa.Table.from_batches([out]))
>>> part[["vkey", "hour", "samples", "speed_n", "moving_s", "max_speed", "lane_dep_n"]]
   vkey  hour  samples  speed_n  moving_s  max_speed  lane_dep_n
0     7     0        2        1        1       10.0           0
1     9     1        1        1        1       30.0           1
>>> harsh
   vkey  ts_us   ts_end  hour  kind
0     7      0  1000000     0     0
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
    "HARSH_KINDS",
    "MOTION_COLUMNS",
    "PARTIAL_COLUMNS",
    "PASS_SCHEMA",
    "PassArrays",
    "PassLimits",
    "event_starts",
    "motion_pass",
    "motion_pass_batches",
    "pass_arrays",
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
#: partial rows have ``ts_us``, ``ts_end`` and ``kind`` null and :data:`PARTIAL_COLUMNS` in
#: ``agg``; harsh intervals have ``agg`` null, the times of their first and last fix
#: (epoch microseconds), the hour of the first and their kind (:data:`HARSH_KINDS`)
PASS_SCHEMA = pa.schema(
    [
        ("vkey", pa.int64()),
        ("hour", pa.int64()),
        ("ts_us", pa.int64()),
        ("ts_end", pa.int64()),
        ("kind", pa.int64()),
        ("agg", pa.list_(pa.float64())),
    ]
)
#: harsh-event kinds, by their code in ``kind``
HARSH_KINDS = ("acc", "brk", "cor")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ByteArray = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]
_T = TypeVar("_T", bound=np.generic)


class PassLimits(NamedTuple):
    """Thresholds the pass applies (m/s, m/s², s).

    The harsh thresholds are those of vehicles without their own: ``vehicle_keys`` (sorted
    ``vkey`` values) have theirs in the rows of ``vehicle_thresholds`` (accel, brake,
    lateral).
    """

    moving_mps: float
    highway_mps: float
    accel_mps2: float
    brake_mps2: float
    lateral_mps2: float
    event_gap_s: float
    vehicle_keys: IntArray = np.zeros(0, np.int64)
    vehicle_thresholds: FloatArray = np.zeros((0, 3))


# ----------------------------------------------------------------------------- kernel
# Plain Python, compiled by numba below (NUMBA_DISABLE_JIT=1 runs it as it is).


def _slot_py(key: int, hour: int, mask: int) -> int:
    """Hash-table slot of (key, hour); keys are hashes already, hours are mixed in."""
    return (key ^ (hour * 0x5BD1E995)) & mask


def _grow_slots_py(slots: IntArray, g_key: IntArray, g_hour: IntArray, n_g: int) -> IntArray:
    """The group hash table at twice the size, the first ``n_g`` groups placed again."""
    size = slots.shape[0] * 2
    mask = size - 1
    out = np.zeros(size, np.int64)  # group + 1; 0 = empty
    for q in range(n_g):
        s = _slot(g_key[q], g_hour[q], mask)
        while out[s] != 0:
            s = (s + 1) & mask
        out[s] = q + 1
    return out


def _grown_py(a: IntArray, cap: int) -> IntArray:
    """``a`` copied into a longer array of ``cap`` elements."""
    out = np.empty(cap, np.int64)
    out[: a.shape[0]] = a
    return out


def _emit_py(
    ev_key: IntArray,
    ev_first: IntArray,
    ev_last: IntArray,
    ev_kind: IntArray,
    n_e: int,
    key: int,
    first: int,
    last: int,
    kind: int,
) -> int:
    """Write a closed harsh-event interval at ``n_e``; returns the next free index."""
    ev_key[n_e] = key
    ev_first[n_e] = first
    ev_last[n_e] = last
    ev_kind[n_e] = kind
    return n_e + 1


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
    th_key: IntArray,
    th_acc: FloatArray,
    th_brk: FloatArray,
    th_lat: FloatArray,
    moving: float,
    highway: float,
    def_acc: float,
    def_brk: float,
    def_lat: float,
    gap_us: int,
) -> tuple[IntArray, IntArray, FloatArray, IntArray, IntArray, IntArray, IntArray]:
    """One batch: partial aggregates per (vehicle key, hour) and the harsh intervals.

    Returns the groups' keys and hours, their accumulators (groups x fields), and the
    harsh intervals' keys, first and last fix times and kinds (0 accel, 1 brake, 2 corner).
    Rows are taken in runs of one (key, hour); a run adds up in local variables, then to
    its group's row (a group may come back in a later run).  A fix beyond its vehicle's
    threshold of a kind (``th_*`` of ``th_key``, sorted; the ``def_*`` ones for a vehicle
    not listed) extends the open interval of that kind when it follows it in the batch,
    for the same vehicle, no earlier than its last fix and at most ``gap_us`` after it;
    otherwise it opens a new one.  Validity bitmaps start at bit 0 of the batch; an empty
    one means no nulls.
    """
    n = ts.shape[0]
    cap = 256  # groups: (key, hour) in first-seen order, found through a hash table
    g_key = np.empty(cap, np.int64)
    g_hour = np.empty(cap, np.int64)
    out = np.empty((cap, _NF), np.float64)
    slots = np.zeros(1024, np.int64)  # group + 1; 0 = empty
    n_g = 0
    ev_key = np.empty(3 * n, np.int64)
    ev_first = np.empty(3 * n, np.int64)
    ev_last = np.empty(3 * n, np.int64)
    ev_kind = np.empty(3 * n, np.int64)
    n_e = 0
    o_open = np.zeros(3, np.bool_)
    o_key = np.zeros(3, np.int64)
    o_first = np.zeros(3, np.int64)
    o_last = np.zeros(3, np.int64)
    no_spd_nulls = spd_v.shape[0] == 0
    no_acc_nulls = acc_v.shape[0] == 0
    no_lat_nulls = lat_v.shape[0] == 0
    no_fd_nulls = fd_v.shape[0] == 0
    no_lane_nulls = lane_v.shape[0] == 0
    n_th = th_key.shape[0]
    t_acc, t_brk, t_lat = def_acc, def_brk, def_lat
    prev_key = np.int64(0)
    i = 0
    while i < n:  # one run of consecutive rows of one (key, hour) per turn
        k = key[i]
        h = ts[i] // _HOUR_US
        lo = h * _HOUR_US
        hi = lo + _HOUR_US
        if i == 0 or k != prev_key:
            t = np.searchsorted(th_key, k)
            if t < n_th and th_key[t] == k:
                t_acc, t_brk, t_lat = th_acc[t], th_brk[t], th_lat[t]
            else:
                t_acc, t_brk, t_lat = def_acc, def_brk, def_lat
            prev_key = k
        i0 = i
        speed_n = moving_s = speed_sum = mv_sum = mv_sq = highway_s = 0.0
        acc_sum = acc_n = lat_sum = lat_n = fd_sum = fd_n = radar_n = short_n = 0.0
        lane_sum = lane_sq = lane_n = lane_dep = 0.0
        max_speed = -np.inf
        while i < n:
            ti = ts[i]
            if key[i] != k or ti < lo or ti >= hi:
                break
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
                    if d < v:  # headway d / v under 1 s (the same test for v > 0)
                        short_n += 1.0
            if no_lane_nulls or (lane_v[byte] & bit) != 0:
                x = lane[i]
                lane_sum += x
                lane_sq += x * x
                lane_n += 1.0
                if abs(x) > 0.5:
                    lane_dep += 1.0
            f_acc = has_acc and a > t_acc  # NaN compares False
            f_brk = has_acc and a < -t_brk
            f_cor = has_lat and abs(y) > t_lat
            if f_acc or f_brk or f_cor:
                for kind in range(3):
                    if not (f_acc if kind == 0 else (f_brk if kind == 1 else f_cor)):
                        continue
                    if (
                        o_open[kind]
                        and o_key[kind] == k
                        and o_last[kind] <= ti
                        and ti - o_last[kind] <= gap_us
                    ):
                        o_last[kind] = ti
                        continue
                    if o_open[kind]:
                        n_e = _emit(
                            ev_key, ev_first, ev_last, ev_kind, n_e,
                            o_key[kind], o_first[kind], o_last[kind], kind,
                        )  # fmt: skip
                    o_open[kind] = True
                    o_key[kind] = k
                    o_first[kind] = ti
                    o_last[kind] = ti
            i += 1
        mask = slots.shape[0] - 1
        s = _slot(k, h, mask)
        while True:
            g = slots[s] - 1
            if g < 0:  # a new group
                if 2 * (n_g + 1) > slots.shape[0]:
                    slots = _grow_slots(slots, g_key, g_hour, n_g)
                    mask = slots.shape[0] - 1
                    s = _slot(k, h, mask)
                    while slots[s] != 0:
                        s = (s + 1) & mask
                if n_g == cap:
                    cap *= 2
                    g_key = _grown(g_key, cap)
                    g_hour = _grown(g_hour, cap)
                    wider = np.empty((cap, _NF), np.float64)
                    wider[:n_g] = out[:n_g]
                    out = wider
                g = n_g
                slots[s] = g + 1
                g_key[g] = k
                g_hour[g] = h
                out[g, :] = 0.0
                out[g, _MAX_SPEED] = -np.inf
                n_g += 1
                break
            if g_key[g] == k and g_hour[g] == h:
                break
            s = (s + 1) & mask
        out[g, _SAMPLES] += i - i0
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
    for kind in range(3):
        if o_open[kind]:
            n_e = _emit(
                ev_key, ev_first, ev_last, ev_kind, n_e,
                o_key[kind], o_first[kind], o_last[kind], kind,
            )  # fmt: skip
    return (
        g_key[:n_g],
        g_hour[:n_g],
        out[:n_g],
        ev_key[:n_e],
        ev_first[:n_e],
        ev_last[:n_e],
        ev_kind[:n_e],
    )


def _event_starts_py(
    kind: IntArray, key: IntArray, first: IntArray, last: IntArray, gap_us: int
) -> BoolArray:
    """Which harsh intervals start an event, given intervals sorted by (kind, key, first).

    An interval starts one when it is the first of its (kind, key) or begins more than
    ``gap_us`` after the latest fix of the intervals before it.
    """
    n = kind.shape[0]
    out = np.empty(n, np.bool_)
    reach = np.int64(0)
    for i in range(n):
        if i == 0 or kind[i] != kind[i - 1] or key[i] != key[i - 1] or first[i] - reach > gap_us:
            out[i] = True
            reach = last[i]
        else:
            out[i] = False
            reach = max(reach, last[i])
    return out


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
        IntArray,
        FloatArray,
        FloatArray,
        FloatArray,
        float,
        float,
        float,
        float,
        float,
        int,
    ],
    tuple[IntArray, IntArray, FloatArray, IntArray, IntArray, IntArray, IntArray],
]

_slot: Callable[[int, int, int], int] = jit(cache=True, nogil=True)(_slot_py)
_emit: Callable[..., int] = jit(cache=True, nogil=True)(_emit_py)
_grow_slots: Callable[[IntArray, IntArray, IntArray, int], IntArray] = jit(cache=True, nogil=True)(
    _grow_slots_py
)
_grown: Callable[[IntArray, int], IntArray] = jit(cache=True, nogil=True)(_grown_py)


def _signature() -> tuple[Any, ...]:
    """Argument types of :func:`_pass`: read-only arrays, then the limits.

    The arrays are the Arrow buffers of a batch and the vehicles' thresholds.
    """
    from numba import types

    def ro(t: Any) -> Any:
        return types.Array(t, 1, "C", readonly=True)

    cols = (ro(types.float64), ro(types.uint8)) * 5
    th = (ro(types.int64), *(ro(types.float64),) * 3)
    return (ro(types.int64), ro(types.int64), *cols, *th, *(types.float64,) * 5, types.int64)


def _starts_signature() -> tuple[Any, ...]:
    from numba import types

    arr = types.Array(types.int64, 1, "C")
    return (arr, arr, arr, arr, types.int64)


# compiled (or loaded from numba's on-disk cache) when the module is imported, like an
# extension module's code, for the one signature the Arrow glue passes
_pass: _PassFn = jit(_signature(), cache=True, nogil=True)(_pass_py)
_event_starts: Callable[[IntArray, IntArray, IntArray, IntArray, int], BoolArray] = jit(
    _starts_signature(), cache=True, nogil=True
)(_event_starts_py)


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
    """Partial aggregates per (vehicle, hour) and harsh intervals of one batch of motion.

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
        one row per harsh interval.
    """
    key = _int64(_column(batch, "vkey"), "vkey")
    ts = _int64(_column(batch, "ts"), "ts")
    cols = [_values(_column(batch, c)) for c in MOTION_COLUMNS[2:]]
    th = np.asarray(lim.vehicle_thresholds, np.float64).reshape(-1, 3)
    g_key, g_hour, agg, e_key, e_first, e_last, e_kind = _pass(
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
        _ro(np.asarray(lim.vehicle_keys, np.int64)),
        _ro(th[:, 0]),
        _ro(th[:, 1]),
        _ro(th[:, 2]),
        float(lim.moving_mps),
        float(lim.highway_mps),
        float(lim.accel_mps2),
        float(lim.brake_mps2),
        float(lim.lateral_mps2),
        round(lim.event_gap_s * 1_000_000),
    )
    n, m = len(g_key), len(e_key)
    part_null = np.concatenate((np.ones(n, np.bool_), np.zeros(m, np.bool_)))
    pad = np.zeros(n, np.int64)
    arrays: list[pa.Array] = [
        pa.array(np.concatenate((g_key, e_key))),
        pa.array(np.concatenate((g_hour, e_first // _HOUR_US))),
    ]
    for v in (e_first, e_last, e_kind):  # null on the partial rows
        arrays.append(pa.array(np.concatenate((pad, v)), mask=part_null))
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


class PassArrays(NamedTuple):
    """The pass's output as arrays: partial rows, then harsh intervals (table order)."""

    vkey: IntArray  # partial rows: vehicle key, UTC hour, PARTIAL_COLUMNS
    hour: IntArray
    agg: FloatArray
    iv_vkey: IntArray  # harsh intervals: vehicle key, first and last fix, hour, kind
    iv_first: IntArray
    iv_last: IntArray
    iv_hour: IntArray
    iv_kind: IntArray


def pass_arrays(table: pa.Table) -> PassArrays:
    """Split the pass's output (:data:`PASS_SCHEMA`) into partial rows and intervals."""
    parts: list[FloatArray] = []
    is_part: list[BoolArray] = []
    for chunk in table.column("agg").chunks:
        is_part.append(_validity(chunk))
        parts.append(chunk.flatten().to_numpy(zero_copy_only=False))
    part = np.concatenate(is_part) if is_part else np.zeros(0, np.bool_)
    cand = ~part
    values = np.concatenate(parts).reshape(-1, _NF) if parts else np.zeros((0, _NF))
    key, hour = _ints(table, "vkey"), _ints(table, "hour")
    return PassArrays(
        key[part],
        hour[part],
        values,
        key[cand],
        _ints(table, "ts_us")[cand],
        _ints(table, "ts_end")[cand],
        hour[cand],
        _ints(table, "kind")[cand],
    )


def split_pass(table: pa.Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Partial rows and harsh intervals of the pass's output, as frames.

    Returns ``vkey``, ``hour`` and :data:`PARTIAL_COLUMNS` (counts as int64); and the
    harsh intervals' ``vkey``, ``ts_us``, ``ts_end``, ``hour`` and ``kind``.
    """
    a = pass_arrays(table)
    p = pd.DataFrame(a.agg, columns=PARTIAL_COLUMNS)
    for c in COUNT_COLUMNS:
        p[c] = p[c].astype("int64")
    p.insert(0, "hour", a.hour)
    p.insert(0, "vkey", a.vkey)
    intervals = pd.DataFrame(
        {
            "vkey": a.iv_vkey,
            "ts_us": a.iv_first,
            "ts_end": a.iv_last,
            "hour": a.iv_hour,
            "kind": a.iv_kind,
        }
    )
    return p, intervals


def event_starts(
    kind: IntArray, key: IntArray, first: IntArray, last: IntArray, gap_s: float
) -> BoolArray:
    """Which harsh intervals start an event, for intervals sorted by (kind, key, first).

    An event is a maximal chain of a vehicle's fixes of one kind with no gap longer than
    ``gap_s``; the intervals of the pass are pieces of such chains (from any batches, in
    any order), so an interval starts an event when it begins more than ``gap_s`` after
    every fix of the intervals before it.

    Examples
    --------
    >>> s = 1_000_000  # microseconds
    >>> z = lambda *v: np.array(v, np.int64)
    >>> first, last = z(0, 1 * s, 5 * s, 9 * s), z(2 * s, 3 * s, 5 * s, 9 * s)
    >>> event_starts(z(0, 0, 0, 0), z(1, 1, 1, 2), first, last, 1.5).tolist()
    [True, False, True, True]
    """
    k, v, f, e = (np.ascontiguousarray(a, np.int64) for a in (kind, key, first, last))
    return _event_starts(k, v, f, e, round(gap_s * 1_000_000))


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
