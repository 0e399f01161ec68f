"""Stay points: golden tests against trackintel 1.4.2's outputs, unit tests and a property test.

The golden numbers are in ``shared/data/geolife/expected/`` (trackintel 1.4.2 run on the raw
GeoLife files). trackintel used every raw fix, so the golden tests read the ``.plt`` files
directly; ``test_warehouse_path_*`` go through ``autopersona ingest`` and the ``motion`` table
instead, where same-second conflicting fixes are quarantined.
"""

from __future__ import annotations

import functools
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopersona.features.geolife import read_geolife_plt
from autopersona.features.staypoints import (
    STAYPOINT_COLUMNS,
    _distance_m,
    generate_staypoints,
    staypoints_arrays,
    warehouse_staypoints,
)
from autopersona.store.warehouse import Warehouse

# Feature steps group by whatever identifies a vehicle; these tests score them against the
# simulator's truth and name vehicles by their clear VINs: in clear (AUTOPERSONA_PSEUDONYMISE=0;
# features on pseudonyms: tests/privacy/test_pseudo_pipeline.py).
pytestmark = pytest.mark.usefixtures("clear_identifiers_module")

T0 = pd.Timestamp("2024-03-04 08:00:00", tz="UTC")
R = 6_371_000.0

# (dist m, time min, gap min, include_last): the parameter sets of staypoint_counts.csv
PARAMS = [
    (100.0, 5.0, 15.0, False),
    (25.0, 5.0, 15.0, False),
    (100.0, 5.0, 15.0, True),
    (50.0, 10.0, 15.0, False),
    (200.0, 20.0, 60.0, False),
    (25.0, 5.0, 1e6, False),
]
PARAM_IDS = [f"d{d:g}-t{t:g}-g{g:g}{'-last' if il else ''}" for d, t, g, il in PARAMS]

TWO_USERS_FILES = [
    "000/Trajectory/20081023025304.plt",
    "000/Trajectory/20081024020959.plt",
    "001/Trajectory/20081023055305.plt",
    "001/Trajectory/20081023234104.plt",
]


# ----------------------------------------------------------------------------- helpers
def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Rows of (vin, minutes after T0, lat, lon) as a fix frame."""
    return pd.DataFrame(
        {
            "vin": [r[0] for r in rows],
            "ts": [T0 + pd.Timedelta(minutes=r[1]) for r in rows],
            "lat": [float(r[2]) for r in rows],
            "lon": [float(r[3]) for r in rows],
        }
    )


def _track(
    minutes: list[float], lats: list[float], lon: float = 116.3, vin: str = "V1"
) -> pd.DataFrame:
    return _frame([(vin, m, la, lon) for m, la in zip(minutes, lats, strict=True)])


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * R * math.asin(math.sqrt(h))


# Five fixes parked (0..8 min), then driving away: ~1.1 km north per fix.
PARKED = [39.9, 39.90001, 39.9, 39.90002, 39.9]
AWAY = [39.91, 39.92, 39.93]


# ----------------------------------------------------------------------------- unit tests
def test_result_columns_and_dtypes() -> None:
    sp = generate_staypoints(_track([0, 2, 4, 6, 8, 10, 11, 12], PARKED + AWAY))
    assert list(sp.columns) == STAYPOINT_COLUMNS
    assert str(sp["started_at"].dtype) == "datetime64[ns, UTC]"
    assert str(sp["finished_at"].dtype) == "datetime64[ns, UTC]"
    assert sp["n_points"].dtype == np.int64
    assert len(sp) == 1
    row = sp.iloc[0]
    assert row.started_at == T0
    # finished_at is the time of the first fix outside (at 10 min), which is not counted
    assert row.finished_at == T0 + pd.Timedelta(minutes=10)
    assert row.n_points == 5
    # centroid: distinct positions only -> (39.9, 39.90001, 39.90002), not 5 fixes
    assert row.lat == pytest.approx((39.9 + 39.90001 + 39.90002) / 3, abs=1e-12)
    assert row.lon == pytest.approx(116.3, abs=1e-12)


def test_empty_frame() -> None:
    empty = _frame([])
    sp = generate_staypoints(empty)
    assert list(sp.columns) == STAYPOINT_COLUMNS
    assert len(sp) == 0


def test_single_fix() -> None:
    one = _track([0], [39.9])
    assert len(generate_staypoints(one)) == 0
    assert len(generate_staypoints(one, include_last=True)) == 0
    # trackintel's include_last check is duration >= time_threshold: 0 >= 0 holds
    sp = generate_staypoints(one, include_last=True, time_threshold=0)
    assert len(sp) == 1
    assert sp.started_at[0] == sp.finished_at[0] == T0
    assert sp.n_points[0] == 1
    assert (sp.lat[0], sp.lon[0]) == pytest.approx((39.9, 116.3), abs=1e-12)


def test_all_fixes_within_threshold() -> None:
    df = _track([0, 3, 6, 9, 12], PARKED)
    # the window is never left, so without include_last there is no stay point
    assert len(generate_staypoints(df)) == 0
    sp = generate_staypoints(df, include_last=True)
    assert len(sp) == 1
    # the last stay point holds every fix and ends at the last fix
    assert sp.n_points[0] == 5
    assert sp.started_at[0] == T0
    assert sp.finished_at[0] == T0 + pd.Timedelta(minutes=12)


def test_include_last_needs_the_time_threshold() -> None:
    df = _track([0, 2, 4, 6, 8, 10, 11, 12, 13, 14], [*PARKED, 39.91, 39.91, 39.91, 39.91, 39.91])
    on = generate_staypoints(df, include_last=True)
    off = generate_staypoints(df, include_last=False)
    assert len(off) == 1
    # the final window 10..14 min lasts 4 min < 5: not added even with include_last
    assert len(on) == 1
    on6 = generate_staypoints(df, include_last=True, time_threshold=4)
    assert len(on6) == 2
    assert on6.started_at[1] == T0 + pd.Timedelta(minutes=10)
    assert on6.finished_at[1] == T0 + pd.Timedelta(minutes=14)
    assert on6.n_points[1] == 5


def test_gap_longer_than_threshold_drops_the_open_window() -> None:
    # parked 0..8 min, then nothing for 20 min, then far away
    df = _track([0, 2, 4, 6, 8, 28, 29], [*PARKED, 39.95, 39.96])
    assert len(generate_staypoints(df, gap_threshold=15)) == 0
    # with a longer gap allowed, the stay lasts until the first fix after the gap
    sp = generate_staypoints(df, gap_threshold=30)
    assert len(sp) == 1
    assert sp.finished_at[0] == T0 + pd.Timedelta(minutes=28)
    assert sp.n_points[0] == 5


def test_gap_equal_to_threshold_is_not_a_gap() -> None:
    df = _track([0, 2, 4, 6, 8, 23, 24], [*PARKED, 39.95, 39.96])
    assert len(generate_staypoints(df, gap_threshold=15)) == 1  # strictly longer only
    assert len(generate_staypoints(df, gap_threshold=14.99)) == 0


def test_gap_starts_a_new_window_at_the_fix_after_it() -> None:
    # 20-min gap, then parked 28..40 min at a new place, then leave
    df = _track([0, 1, 28, 32, 36, 40, 41], [39.9, 39.9, 39.95, 39.95, 39.95, 39.95, 39.97])
    sp = generate_staypoints(df)
    assert len(sp) == 1
    assert sp.started_at[0] == T0 + pd.Timedelta(minutes=28)
    assert sp.finished_at[0] == T0 + pd.Timedelta(minutes=41)


def test_time_threshold_is_inclusive() -> None:
    df = _track([0, 2, 5, 6], [39.9, 39.9, 39.95, 39.96])
    sp = generate_staypoints(df, time_threshold=5)
    assert len(sp) == 1  # 5 min from anchor to the closing fix, >= 5
    assert len(generate_staypoints(df, time_threshold=5.01)) == 0


def test_distance_is_measured_from_the_anchor_not_the_last_fix() -> None:
    # creeping 40 m per fix: never 100 m from the previous fix, but soon from the anchor
    step = 40 / 111_195  # degrees of latitude for 40 m
    lats = [39.9 + i * step for i in range(10)]
    sp = generate_staypoints(_track([2 * i for i in range(10)], lats), time_threshold=1)
    # anchor 0 -> fix 3 is 120 m away: closes (6 min); anchor 3 -> fix 6; anchor 6 -> fix 9
    assert sp.n_points.tolist() == [3, 3, 3]
    assert sp.started_at.tolist() == [T0 + pd.Timedelta(minutes=m) for m in (0, 6, 12)]


def test_unsorted_input_gives_the_same_result() -> None:
    df = pd.concat(
        [
            _track([0, 2, 4, 6, 8, 10, 11, 12], PARKED + AWAY, vin="B"),
            _track([0, 3, 6, 9, 12, 14], [*PARKED, 39.95], lon=116.4, vin="A"),
        ],
        ignore_index=True,
    )
    expected = generate_staypoints(df)
    shuffled = df.sample(frac=1.0, random_state=7).reset_index(drop=True)
    pd.testing.assert_frame_equal(generate_staypoints(shuffled), expected)
    # sorted by user, then start
    assert expected.user_id.tolist() == ["A", "B"]


def test_duplicate_rows_are_dropped_before_detection() -> None:
    df = _track([0, 2, 4, 6, 8, 10, 11, 12], PARKED + AWAY)
    doubled = pd.concat([df, df.iloc[[1, 1, 3]]], ignore_index=True)
    sp = generate_staypoints(doubled)
    pd.testing.assert_frame_equal(sp, generate_staypoints(df))
    kept = generate_staypoints(doubled, exclude_duplicates=False)
    assert kept.n_points.tolist() == [8]  # the copies count as fixes ...
    assert kept.lat[0] == sp.lat[0]  # ... but not in the centroid: distinct positions


def test_same_time_different_position_keeps_both_in_order() -> None:
    # two fixes at minute 4: one at the stop, one 1.1 km away; input order decides
    base = [("V1", 0, 39.9, 116.3), ("V1", 2, 39.9, 116.3)]
    tail = [("V1", 9, 39.9, 116.3), ("V1", 10, 39.95, 116.3)]
    near_first = _frame([*base, ("V1", 4, 39.9, 116.3), ("V1", 4, 39.91, 116.3), *tail])
    far_first = _frame([*base, ("V1", 4, 39.91, 116.3), ("V1", 4, 39.9, 116.3), *tail])
    a = generate_staypoints(near_first, time_threshold=1)
    b = generate_staypoints(far_first, time_threshold=1)
    # near first: {0, 2, 4 near} closed by 4 far; {4 far} closed by 9; {9} closed by 10
    assert a.n_points.tolist() == [3, 1, 1]
    # far first: {0, 2} closed by 4 far; 4 near closes {4 far} after 0 min (too short);
    # {4 near, 9} closed by 10
    assert b.n_points.tolist() == [2, 2]
    # with a non-monotonic index, ties follow the index, as trackintel sorts by it first
    reindexed = far_first.set_axis([0, 1, 3, 2, 4, 5])
    c = generate_staypoints(reindexed, time_threshold=1)
    pd.testing.assert_frame_equal(c, a)


def test_only_rows_identical_in_every_column_are_duplicates() -> None:
    df = _track([0, 2, 4, 6, 8, 10], [*PARKED, 39.95])
    df["speed"] = 0.0
    extra = df.iloc[[2]].assign(speed=1.0)  # same time and place, other speed: not a duplicate
    sp = generate_staypoints(pd.concat([df, extra], ignore_index=True))
    assert sp.n_points.tolist() == [6]


def test_users_are_independent_and_keep_their_dtype() -> None:
    a = _track([0, 2, 4, 6, 8, 10, 11, 12], PARKED + AWAY)
    a["vin"] = 7
    b = _track([0, 2, 4, 6, 8, 10, 11, 12], PARKED + AWAY)
    b["vin"] = 3
    sp = generate_staypoints(pd.concat([a, b], ignore_index=True))
    assert sp.user_id.tolist() == [3, 7]
    assert sp.user_id.dtype == np.int64
    # a user's stay never runs into the next user's fixes
    assert sp.n_points.tolist() == [5, 5]


def test_other_column_names_and_time_zones() -> None:
    df = _track([0, 2, 4, 6, 8, 10], [*PARKED, 39.95]).rename(
        columns={"vin": "user", "ts": "tracked_at", "lat": "y", "lon": "x"}
    )
    local = df.assign(tracked_at=df["tracked_at"].dt.tz_convert("Asia/Shanghai"))
    naive = df.assign(tracked_at=df["tracked_at"].dt.tz_localize(None))
    kw: dict[str, Any] = {
        "user_col": "user",
        "ts_col": "tracked_at",
        "lat_col": "y",
        "lon_col": "x",
    }
    want = generate_staypoints(df, **kw)
    assert len(want) == 1
    pd.testing.assert_frame_equal(generate_staypoints(local, **kw), want)
    pd.testing.assert_frame_equal(generate_staypoints(naive, **kw), want)  # naive = UTC


def test_centroid_longitude_is_a_circular_mean() -> None:
    df = _frame(
        [
            ("V", 0, 10.0, 179.9999),
            ("V", 3, 10.0, -179.9999),
            ("V", 6, 10.0, 179.9999),
            ("V", 7, 11.0, 179.0),
        ]
    )
    sp = generate_staypoints(df)
    assert len(sp) == 1
    assert abs(abs(sp.lon[0]) - 180.0) < 1e-9
    assert sp.lat[0] == 10.0


def test_bad_input_is_refused() -> None:
    df = _track([0, 2], [39.9, 39.9])
    with pytest.raises(KeyError, match="nope"):
        generate_staypoints(df, user_col="nope")
    with pytest.raises(ValueError, match="dist_threshold"):
        generate_staypoints(df, dist_threshold=-1)
    with pytest.raises(ValueError, match="gap_threshold"):
        generate_staypoints(df, gap_threshold=float("nan"))
    with pytest.raises(ValueError, match="lat"):
        generate_staypoints(df.assign(lat=[39.9, np.nan]))
    with pytest.raises(ValueError, match="NaT"):
        generate_staypoints(df.assign(ts=[T0, pd.NaT]))
    with pytest.raises(ValueError, match="missing"):
        generate_staypoints(df.assign(vin=["V1", None]))


def test_infinite_thresholds() -> None:
    df = _track([0, 2, 4, 6, 8, 100, 101], [*PARKED, 39.95, 39.96])
    assert len(generate_staypoints(df, gap_threshold=float("inf"))) == 1
    assert len(generate_staypoints(df, time_threshold=float("inf"), include_last=True)) == 0


def test_arrays_api_matches_the_frame_api() -> None:
    df = _track([0, 2, 4, 6, 8, 10, 11, 12, 20, 30], [*PARKED, *AWAY, 39.93, 39.93])
    sp = generate_staypoints(df, include_last=True)
    arr = staypoints_arrays(
        df["ts"].to_numpy(dtype="datetime64[ns]"), df["lat"], df["lon"], include_last=True
    )
    assert arr.started_ns.tolist() == sp.started_at.astype("int64").tolist()
    assert arr.finished_ns.tolist() == sp.finished_at.astype("int64").tolist()
    assert arr.lat.tolist() == sp.lat.tolist()
    assert arr.lon.tolist() == sp.lon.tolist()
    assert arr.n_points.tolist() == sp.n_points.tolist()
    assert arr.first.tolist() == [0, 7]
    ints = staypoints_arrays(arr.started_ns[:1], [1.0], [2.0])  # int64 ns accepted
    assert len(ints.started_ns) == 0


def test_arrays_api_validates() -> None:
    t = np.array([0, 60, 30], dtype="datetime64[s]")
    with pytest.raises(ValueError, match="sorted"):
        staypoints_arrays(t, [1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="same length"):
        staypoints_arrays(t[:2], [1.0], [2.0, 2.0])
    with pytest.raises(TypeError, match="int64"):
        staypoints_arrays(np.array([0.5]), [1.0], [2.0])
    with pytest.raises(ValueError, match="NaT"):
        staypoints_arrays(np.array(["NaT"], dtype="datetime64[s]"), [1.0], [2.0])


def _trackintel_distance(lon_1: float, lat_1: float, lon_2: float, lat_2: float) -> float:
    """trackintel's ``point_haversine_dist(..., float_flag=True)``, restated."""
    lon_1, lat_1, lon_2, lat_2 = map(math.radians, (lon_1, lat_1, lon_2, lat_2))
    c = math.cos(lat_1 - lat_2) - math.cos(lat_1) * math.cos(lat_2) * (1 - math.cos(lon_1 - lon_2))
    return R * math.acos(c)


def test_compiled_distance_is_bitwise_trackintels() -> None:
    rng = np.random.default_rng(3)
    lat1 = rng.uniform(-80, 80, 2000)
    lon1 = rng.uniform(-180, 180, 2000)
    # mostly close pairs (metres to kilometres), where the thresholds are
    lat2 = lat1 + rng.normal(0, 10.0 ** rng.uniform(-6, -1, 2000))
    lon2 = lon1 + rng.normal(0, 10.0 ** rng.uniform(-6, -1, 2000))
    for a, b, c, d in zip(lat1, lon1, lat2, lon2, strict=True):
        la, lo, lb, lob = (math.radians(v) for v in (a, b, c, d))
        assert _distance_m(la, lo, math.cos(la), lb, lob) == _trackintel_distance(b, a, d, c)
    assert _trackintel_distance(116.3, 39.9, 116.31, 39.9) == pytest.approx(
        _haversine(39.9, 116.3, 39.9, 116.31), rel=1e-6
    )


# ----------------------------------------------------------------------------- property test
def _reference_centroid(positions: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean of the distinct (lat, lon) positions; circular mean for the longitude."""
    distinct = sorted({(lon, lat) for lat, lon in positions})
    lat_c = sum(lat for _, lat in distinct) / len(distinct)
    s = sum(math.sin(math.radians(lon)) for lon, _ in distinct) / len(distinct)
    c = sum(math.cos(math.radians(lon)) for lon, _ in distinct) / len(distinct)
    return lat_c, math.degrees(math.atan2(s, c))


def reference_staypoints(
    df: pd.DataFrame, dist: float, time_min: float, gap_min: float, include_last: bool
) -> list[tuple[Any, int, int, float, float, int]]:
    """The definition, step by step in plain Python (slow, obviously right)."""
    fixes = df.drop_duplicates()  # whole rows, first kept
    fixes = fixes.sort_index(kind="stable").sort_values(["vin", "ts"], kind="stable")
    time_ns = int(pd.Timedelta(time_min, unit="min").value)
    gap_ns = int(pd.Timedelta(gap_min, unit="min").value)
    out = []
    for vin, g in fixes.groupby("vin", sort=True):
        t = [int(x.value) for x in g["ts"]]
        pos = list(zip(g["lat"].tolist(), g["lon"].tolist(), strict=True))
        windows = []  # (first, stop, index of the fix giving finished_at)
        anchor = 0
        for i in range(1, len(t)):
            if t[i] - t[i - 1] > gap_ns:
                anchor = i
                continue
            (la0, lo0), (la1, lo1) = pos[anchor], pos[i]
            if _trackintel_distance(lo0, la0, lo1, la1) >= dist:
                if t[i] - t[anchor] >= time_ns:
                    windows.append((anchor, i, i))
                anchor = i
        if include_last and t and t[-1] - t[anchor] >= time_ns:
            windows.append((anchor, len(t), len(t) - 1))
        for a, stop, end in windows:
            lat_c, lon_c = _reference_centroid(pos[a:stop])
            out.append((vin, t[a], t[end], lat_c, lon_c, stop - a))
    return out


STEP_S = [0, 0, 1, 30, 60, 120, 240, 600, 1200, 3600]
STEP_DEG = [0.0, 0.0, 0.0, 1e-5, -1e-5, 2e-4, -2e-4, 6e-4, -6e-4, 3e-3]


@st.composite
def random_tracks(draw: st.DrawFn) -> pd.DataFrame:
    rows: list[tuple[str, int, float, float, float]] = []
    for vin in draw(
        st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True)
    ):
        lat = draw(st.sampled_from([39.9, -33.9, 64.1]))
        lon = draw(st.sampled_from([116.3, 179.9995, -0.0001]))
        t = 0
        steps = st.tuples(
            st.sampled_from(STEP_S),
            st.sampled_from(STEP_DEG),
            st.sampled_from(STEP_DEG),
            st.sampled_from([0.0, 0.0, 1.0]),  # an extra column, so near-duplicates appear
            st.integers(0, 9),  # 0: repeat the previous row exactly
        )
        for dt, dlat, dlon, extra, rep in draw(st.lists(steps, max_size=40)):
            if rep == 0 and rows and rows[-1][0] == vin:
                rows.append(rows[-1])
                continue
            t += dt
            lat += dlat
            lon = ((lon + dlon + 180.0) % 360.0) - 180.0
            rows.append((vin, t, lat, lon, extra))
    df = pd.DataFrame(rows, columns=["vin", "sec", "lat", "lon", "extra"])
    df["ts"] = T0 + pd.to_timedelta(df["sec"], unit="s")
    df = df.drop(columns="sec")
    perm = draw(st.permutations(range(len(df))))
    shuffled = df.iloc[list(perm)]  # unsorted rows; the index still says the original order
    return shuffled if draw(st.booleans()) else shuffled.reset_index(drop=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    df=random_tracks(),
    dist=st.sampled_from([0.0, 1.0, 10.0, 25.0, 100.0, 250.0]),
    time_min=st.sampled_from([0.0, 0.5, 2.0, 5.0, 20.0]),
    gap_min=st.sampled_from([0.01, 3.0, 15.0, 1e6]),
    include_last=st.booleans(),
)
def test_fast_implementation_matches_the_reference(
    df: pd.DataFrame, dist: float, time_min: float, gap_min: float, include_last: bool
) -> None:
    want = reference_staypoints(df, dist, time_min, gap_min, include_last)
    got = generate_staypoints(
        df,
        dist_threshold=dist,
        time_threshold=time_min,
        gap_threshold=gap_min,
        include_last=include_last,
    )
    assert len(got) == len(want)
    for row, (vin, start, end, lat, lon, n) in zip(got.itertuples(), want, strict=True):
        assert row.user_id == vin
        assert row.started_at.value == start
        assert row.finished_at.value == end
        assert row.n_points == n
        assert row.lat == pytest.approx(lat, abs=1e-9)
        assert abs((row.lon - lon + 180.0) % 360.0 - 180.0) < 1e-9


# ----------------------------------------------------------------------------- CLI
def test_cli_writes_the_staypoints(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from autopersona.cli import app

    db = tmp_path / "wh.duckdb"
    df = _track([0, 2, 4, 6, 8, 10, 11, 12, 20], [*PARKED, *AWAY, 39.93], vin="VIN1")
    with Warehouse(db) as wh:
        wh.con.register("fixes", df)
        wh.con.execute("INSERT INTO motion (vin, ts, lat, lon) SELECT vin, ts, lat, lon FROM fixes")
    out = tmp_path / "out" / "sp.csv"
    args = [
        "features",
        "staypoints",
        "--dist-threshold",
        "100",
        "--time-threshold",
        "5",
        "--gap-threshold",
        "15",
        "--out",
        str(out),
        "--warehouse",
        str(db),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out)
    assert list(got.columns) == STAYPOINT_COLUMNS
    assert got.user_id.tolist() == ["VIN1"]
    assert got.started_at.tolist() == ["2024-03-04T08:00:00Z"]
    assert got.finished_at.tolist() == ["2024-03-04T08:10:00Z"]
    assert got.n_points.tolist() == [5]
    res = CliRunner().invoke(app, [*args, "--include-last"])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(out)) == 2
    res = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "absent.duckdb")])
    assert res.exit_code == 2
    assert "no warehouse" in res.output


# ----------------------------------------------------------------------------- golden (GeoLife)
@functools.cache
def _geolife(root: Path) -> dict[str, pd.DataFrame]:
    """The raw fixes of the three datasets of staypoint_counts.csv, read once per process."""
    data = {
        "ten_users": read_geolife_plt(root / "ten_users" / "Data"),
        "modes": read_geolife_plt(root / "modes" / "Data"),
    }
    with tempfile.TemporaryDirectory() as tmp:  # trackintel's geolife_long fixture: 4 files
        for rel in TWO_USERS_FILES:
            dest = Path(tmp) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / "ten_users" / "Data" / rel, dest)
        data["two_users"] = read_geolife_plt(tmp)
    return data


@pytest.fixture
def geolife(shared_data: Path) -> dict[str, pd.DataFrame]:
    return _geolife(shared_data / "geolife")


@pytest.fixture
def expected_counts(shared_data: Path) -> pd.DataFrame:
    return pd.read_csv(shared_data / "geolife" / "expected" / "staypoint_counts.csv")


def _select(expected: pd.DataFrame, params: tuple[float, float, float, bool]) -> pd.DataFrame:
    d, t, g, il = params
    return expected[
        (expected.dist_threshold_m == d)
        & (expected.time_threshold_min == t)
        & (expected.gap_threshold_min == g)
        & (expected.include_last == il)
    ]


@pytest.mark.realdata
def test_golden_parameter_sets_are_all_covered(expected_counts: pd.DataFrame) -> None:
    listed = {
        (
            float(r.dist_threshold_m),
            float(r.time_threshold_min),
            float(r.gap_threshold_min),
            bool(r.include_last),
        )
        for r in expected_counts.itertuples()
    }
    assert listed == set(PARAMS)
    assert set(expected_counts.dataset) == {"ten_users", "modes", "two_users"}


@pytest.mark.realdata
def test_golden_fix_counts(geolife: dict[str, pd.DataFrame], expected_counts: pd.DataFrame) -> None:
    for name, df in geolife.items():
        want = (
            expected_counts[expected_counts.dataset == name]
            .groupby("user_id")
            .n_positionfixes.first()
        )
        got = df.groupby("user_id").size()
        pd.testing.assert_series_equal(got, want, check_names=False)


@pytest.mark.realdata
@pytest.mark.parametrize("params", PARAMS, ids=PARAM_IDS)
def test_golden_counts_per_user(
    params: tuple[float, float, float, bool],
    geolife: dict[str, pd.DataFrame],
    expected_counts: pd.DataFrame,
) -> None:
    d, t, g, il = params
    rows = _select(expected_counts, params)
    assert len(rows) == 11 + 3 + 2
    for name, df in geolife.items():
        sp = generate_staypoints(
            df,
            dist_threshold=d,
            time_threshold=t,
            gap_threshold=g,
            include_last=il,
            user_col="user_id",
        )
        want = rows[rows.dataset == name].set_index("user_id").n_staypoints
        got = sp.groupby("user_id").size().reindex(want.index, fill_value=0)
        assert got.to_dict() == want.to_dict(), name


@pytest.mark.realdata
def test_golden_two_users_staypoints(geolife: dict[str, pd.DataFrame], shared_data: Path) -> None:
    want = pd.read_csv(shared_data / "geolife" / "expected" / "two_users_staypoints.csv")
    sp = generate_staypoints(
        geolife["two_users"],
        dist_threshold=25,
        time_threshold=5,
        gap_threshold=1e6,
        user_col="user_id",
    )
    assert len(sp) == len(want) == 22
    assert sp.user_id.tolist() == want.user_id.tolist()
    assert sp.started_at.tolist() == pd.to_datetime(want.started_at, utc=True).tolist()
    assert sp.finished_at.tolist() == pd.to_datetime(want.finished_at, utc=True).tolist()
    gaps = [
        _haversine(a, b, c, d)
        for a, b, c, d in zip(sp.lat, sp.lon, want.lat, want.lon, strict=True)
    ]
    assert max(gaps) < 1.0  # the CSV has 7 decimals (~1 cm); we are within that
    assert max(gaps) < 0.02


# ----------------------------------------------------------------------------- warehouse path
# Ingestion keys motion on (vin, ts): same-second fixes with different values are quarantined
# (205, all of user 010) and exact repeats dropped (8, also user 010). Users 000 (clean) and
# 010 are ingested here; the other users have no repeated second at all (checked below), so
# their motion rows are exactly the raw fixes.
@pytest.fixture
def geolife_warehouse(shared_data: Path) -> Iterator[Warehouse]:
    from autopersona.ingest.engine import ingest
    from autopersona.ingest.mapping import resolve_mapping

    data = shared_data / "geolife" / "ten_users" / "Data"
    with Warehouse(":memory:") as wh:
        ingest([data / "000", data / "010"], wh, mapping=resolve_mapping("geolife"))
        yield wh


@pytest.mark.realdata
def test_warehouse_path_counts(
    geolife_warehouse: Warehouse, geolife: dict[str, pd.DataFrame], expected_counts: pd.DataFrame
) -> None:
    wh = geolife_warehouse
    raw = geolife["ten_users"]
    assert wh.sql("SELECT count(*) FROM _quarantine")[0][0] == 205
    assert wh.count("motion") == 3634 + 21297 - 205 - 8
    repeats = raw[raw.duplicated(["user_id", "ts"], keep=False)].user_id.unique().tolist()
    assert repeats == [10]  # only user 010 has fixes sharing a second
    for params in PARAMS:
        d, t, g, il = params
        kw: dict[str, Any] = {
            "dist_threshold": d,
            "time_threshold": t,
            "gap_threshold": g,
            "include_last": il,
        }
        sp = warehouse_staypoints(wh, **kw)
        rows = _select(expected_counts, params)
        want = rows[rows.dataset == "ten_users"].set_index("user_id").n_staypoints
        got = sp.groupby("user_id").size()
        # the quarantine does not change a single count, start or end ...
        assert got.to_dict() == {"geolife-000": want[0], "geolife-010": want[10]}
        ref = generate_staypoints(raw[raw.user_id.isin([0, 10])], user_col="user_id", **kw)
        assert sp.started_at.tolist() == ref.started_at.tolist()
        assert sp.finished_at.tolist() == ref.finished_at.tolist()
        # ... but user 010's stays hold fewer fixes, so their centroids move a little
        moved = [
            _haversine(a, b, c, d)
            for a, b, c, d in zip(sp.lat, sp.lon, ref.lat, ref.lon, strict=True)
        ]
        assert max(moved) < 5.0
        user0 = (sp.user_id == "geolife-000").to_numpy()
        assert sp.n_points[user0].tolist() == ref.n_points[user0].tolist()
        assert (sp.n_points[~user0].to_numpy() <= ref.n_points[~user0].to_numpy()).all()
