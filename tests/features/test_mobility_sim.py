"""Mobility steps scored against the simulator's hidden truth (only this test reads ``truth/``).

One simulated fleet (30 vehicles x 8 days, default mess) is ingested and run through
:func:`autopersona.features.runner.run_mobility` once per module; the pipeline sees only the
warehouse. The scores are printed (``pytest -s``) and asserted a little below what they measure.

Measured on this fleet (seed 5): home and work within 200 m for 30/30 and 23/23 vehicles;
717/717 trips found with exact first/last fix times; purposes agree for 97.8 % of trips (the
only confusion: 16 leisure trips, lunch from the office and back, called business). On seeds
3, 7 and 42 the purpose agreement was 94.0-94.8 % and one work place in 26 was missed (a
flexible commuter who went to work once in ten days).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autopersona.features.mobility import MOBILITY_FEATURES, POI_CATEGORIES, WEEKLY_COLUMNS
from autopersona.features.runner import MobilityResult, run_mobility
from autopersona.features.trips import haversine_m
from autopersona.ingest.engine import ingest
from autopersona.simulate import simulate
from autopersona.store.warehouse import Warehouse

# Feature steps group by whatever identifies a vehicle; these tests score them against the
# simulator's truth and name vehicles by their clear VINs: in clear (AUTOPERSONA_PSEUDONYMISE=0;
# features on pseudonyms: tests/privacy/test_pseudo_pipeline.py).
pytestmark = pytest.mark.usefixtures("clear_identifiers_module")

FLEET = {"vehicles": 30, "days": 8, "seed": 5}
PURPOSES = ["commute", "business", "leisure"]


@dataclass
class Fleet:
    out: Path
    wh: Warehouse
    result: MobilityResult
    persons: pd.DataFrame
    trips: pd.DataFrame  # truth


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    out = tmp_path_factory.mktemp("mobility_fleet")
    simulate(**FLEET, out=out, workers=1)
    wh = Warehouse(":memory:")
    ingest([out / "tables"], wh, keep_going=False)
    result = run_mobility(wh, workers=1)
    truth_trips = pd.read_parquet(out / "truth" / "trips.parquet")
    persons = pd.read_parquet(out / "truth" / "persons.parquet")
    yield Fleet(out, wh, result, persons, truth_trips)
    wh.close()


def _ns(values: pd.Series) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ns").asi8)


def _match(fleet: Fleet, tol_s: float) -> pd.DataFrame:
    """Each truth trip with the detected trip starting nearest to it (same vehicle)."""
    det = fleet.result.trips
    rows = []
    for vin, g in fleet.trips.groupby("vin"):
        d = det[det["vin"] == vin].reset_index(drop=True)
        ds, de = _ns(d["started_at"]), _ns(d["finished_at"])
        for s, e, purpose in zip(
            _ns(g["start_ts"]), _ns(g["end_ts"]), g["purpose"].tolist(), strict=True
        ):
            if len(d) == 0:
                rows.append((vin, False, np.inf, np.inf, purpose, None))
                continue
            j = int(np.argmin(np.abs(ds - s)))
            ds_err, de_err = abs(ds[j] - s) / 1e9, abs(de[j] - e) / 1e9
            ok = ds_err <= tol_s and de_err <= tol_s
            rows.append((vin, ok, ds_err, de_err, purpose, d["purpose"].iloc[j]))
    return pd.DataFrame(rows, columns=["vin", "ok", "start_err_s", "end_err_s", "truth", "pred"])


# ----------------------------------------------------------------------------- recovery
def test_home_and_work_within_200m(fleet: Fleet) -> None:
    locs = fleet.result.locations
    home_hits, work_hits, spurious_work = [], [], 0
    for p in fleet.persons.itertuples():
        mine = locs[locs["vin"] == p.vin]
        home = mine[mine["label"] == "home"]
        work = mine[mine["label"] == "work"]
        d_home = (
            float(
                haversine_m(
                    home.lat.iloc[0], home.lon.iloc[0], float(p.home_lat), float(p.home_lon)
                )
            )
            if len(home)
            else np.inf
        )
        home_hits.append(d_home <= 200)
        if p.has_work:
            d_work = (
                float(
                    haversine_m(
                        work.lat.iloc[0], work.lon.iloc[0], float(p.work_lat), float(p.work_lon)
                    )
                )
                if len(work)
                else np.inf
            )
            work_hits.append(d_work <= 200)
        else:
            spurious_work += len(work)
    home_rate, work_rate = float(np.mean(home_hits)), float(np.mean(work_hits))
    print(
        f"\nhome within 200 m: {home_rate:.3f} of {len(home_hits)}; "
        f"work within 200 m: {work_rate:.3f} of {len(work_hits)}; "
        f"work found for persons without work: {spurious_work}"
    )
    assert home_rate >= 0.9
    assert work_rate >= 0.9
    assert spurious_work <= 1


def test_trip_segmentation_matches_truth(fleet: Fleet) -> None:
    m = _match(fleet, tol_s=5.0)
    counts = (
        fleet.trips.groupby("vin")
        .size()
        .rename("truth")
        .to_frame()
        .join(fleet.result.trips.groupby("vin").size().rename("found"))
        .fillna(0)
    )
    same_count = float((counts["truth"] == counts["found"]).mean())
    matched = float(m["ok"].mean())
    print(
        f"\ntrips: truth {len(fleet.trips)}, found {len(fleet.result.trips)}; "
        f"vehicles with the same count {same_count:.3f}; truth trips matched within 5 s "
        f"{matched:.4f}; start error max {m.loc[m.ok, 'start_err_s'].max():.0f} s, "
        f"end error max {m.loc[m.ok, 'end_err_s'].max():.0f} s"
    )
    assert same_count >= 0.95
    assert matched >= 0.98
    # first and last fixes are the truth's departure and arrival seconds, except where
    # ingestion quarantined the very first or last fix
    assert float((m.loc[m.ok, "start_err_s"] == 0).mean()) >= 0.98


def test_purpose_agreement(fleet: Fleet) -> None:
    m = _match(fleet, tol_s=5.0)
    m = m[m["ok"]]
    agree = float((m["truth"] == m["pred"]).mean())
    cm = pd.crosstab(
        pd.Categorical(m["truth"], PURPOSES), pd.Categorical(m["pred"], PURPOSES), dropna=False
    )
    cm.index.name, cm.columns.name = "truth", "predicted"
    print(f"\npurpose agreement {agree:.4f} over {len(m)} trips\n{cm}")
    assert fleet.result.model.fitted
    assert fleet.result.model.states == ("commute", "business", "leisure")
    # measured 0.978 on this fleet, 0.940-0.948 on three other seeds: assert below the lowest
    assert agree >= 0.93
    recall = np.diag(cm.to_numpy()) / cm.to_numpy().sum(axis=1)
    assert recall[0] >= 0.95  # commute
    assert recall[1] >= 0.90  # business
    assert recall[2] >= 0.80  # leisure


# ----------------------------------------------------------------------------- outputs
def test_weekly_features_are_consistent(fleet: Fleet) -> None:
    r = fleet.result
    w = r.weekly
    assert list(w.columns) == WEEKLY_COLUMNS
    assert not w.duplicated(["vin", "iso_year", "iso_week"]).any()
    assert int(w["n_trips"].sum()) == len(r.trips)
    assert w["distance_km"].sum() == pytest.approx(r.trips["distance_km"].sum())
    with_trips = w[w["n_trips"] > 0]
    shares = with_trips[["commute_share", "business_share", "leisure_share"]].sum(axis=1)
    assert np.allclose(shares, 1.0)
    with_stays = w[w["n_stays"] > 0]
    poi = with_stays[[f"poi_share_{c}" for c in (*POI_CATEGORIES, "none")]].sum(axis=1)
    assert np.allclose(poi, 1.0)
    for col in ("trip_regularity", "long_trip_share", "night_trip_share"):
        v = w[col].dropna()
        assert ((v >= 0) & (v <= 1)).all(), col
    assert (w["radius_of_gyration_km"].dropna() >= 0).all()
    # every vehicle's home is on its weekly rows: its home location's H3 cell centre
    # (resolution 7 by default, region-level precision)
    from autopersona.privacy.pseudo import coarsen_point

    home = r.locations[r.locations["label"] == "home"].set_index("vin")
    got = w.groupby("vin")[["home_lat", "home_lon"]].first()
    cells = [coarsen_point(la, lo, 7) for la, lo in zip(home["lat"], home["lon"], strict=True)]
    assert np.allclose(got.loc[home.index, "home_lat"], [c[1] for c in cells])
    assert np.allclose(got.loc[home.index, "home_lon"], [c[2] for c in cells])
    # ... within a cell's reach of the exact point (res-7 edge ~1.4 km), never the point itself
    moved = np.array(
        [
            haversine_m(a, b, c, d)
            for a, b, c, d in zip(
                got.loc[home.index, "home_lat"],
                got.loc[home.index, "home_lon"],
                home["lat"],
                home["lon"],
                strict=True,
            )
        ]
    )
    assert (moved < 1_500).all() and (moved > 0).all()
    # the feature dictionary covers every weekly feature column
    names = {f["name"] for f in MOBILITY_FEATURES}
    assert names == set(WEEKLY_COLUMNS) - {"vin", "iso_year", "iso_week", "period", "reason"}
    assert (r.report["status"] == "ok").all()


def test_local_time_is_the_vehicles_zone(fleet: Fleet) -> None:
    trips = fleet.result.trips
    tz = dict(fleet.wh.sql("SELECT vin, timezone FROM vehicles"))
    assert len(set(tz.values())) > 1  # the fleet spans several zones
    for vin, g in trips.groupby("vin"):
        local = pd.DatetimeIndex(g["started_at"]).tz_convert(tz[vin])
        assert (np.asarray(local.hour) == g["start_hour_local"].to_numpy()).all()
        assert (np.asarray(local.day_of_week) == g["weekday_local"].to_numpy()).all()


def test_pool_gives_the_same_result(fleet: Fleet) -> None:
    """Two spawned workers, chunks of 3 vehicles: the same frames, in the same order."""
    vins = sorted(fleet.persons["vin"])[:8]
    pooled = run_mobility(
        fleet.wh, workers=2, chunk_size=3, vins=vins, purpose_model=fleet.result.model
    )
    for name in ("trips", "stays", "locations", "weekly", "report"):
        full = getattr(fleet.result, name)
        want = full[full["vin"].isin(vins)].reset_index(drop=True)
        pd.testing.assert_frame_equal(getattr(pooled, name), want)


def test_periods_with_location_state(fleet: Fleet) -> None:
    """Two local weeks read separately, the first week's locations passed as state."""
    vins = sorted(fleet.persons["vin"])[::2]
    w1 = run_mobility(
        fleet.wh, date(2026, 1, 5), date(2026, 1, 12), workers=1, chunk_size=4, vins=vins
    )
    w2 = run_mobility(
        fleet.wh,
        date(2026, 1, 12),
        date(2026, 1, 19),
        workers=1,
        chunk_size=4,
        vins=vins,
        previous_locations=w1.locations,
        purpose_model=w1.model,
    )
    assert set(w1.weekly["period"]) == {"2026-W02"}
    assert set(w2.weekly["period"]) <= {"2026-W03"}
    full = fleet.result.trips
    assert len(w1.trips) + len(w2.trips) == int(full["vin"].isin(vins).sum())
    # location ids are stable: week 2's home is week 1's home location
    h1 = w1.locations[w1.locations["label"] == "home"].set_index("vin")["location_id"]
    h2 = w2.locations[w2.locations["label"] == "home"].set_index("vin")["location_id"]
    common = h1.index.intersection(h2.index)
    assert len(common) >= 12
    assert (h1.loc[common] == h2.loc[common]).all()
    # state accumulates: visits only grow
    v1 = w1.locations.set_index(["vin", "location_id"])["n_visits"]
    v2 = w2.locations.set_index(["vin", "location_id"])["n_visits"]
    assert (v2.loc[v1.index] >= v1).all()


def test_jerk_ordered_by_driving_style(fleet: Fleet) -> None:
    """Pooled jerk statistics rank the true driving styles: aggressive > moderate > cautious."""
    w = fleet.result.weekly
    trips = fleet.result.trips
    assert int(trips["jerk_n"].sum()) > 0
    per = trips.groupby("vin")[["jerk_n", "jerk_abs_sum", "jerk_high_n"]].sum()
    per = per[per["jerk_n"] > 0]
    per["abs_mean"] = per["jerk_abs_sum"] / per["jerk_n"]
    per["high_share"] = per["jerk_high_n"] / per["jerk_n"]
    style = fleet.persons.set_index("vin")["driving_style"]
    by = per.join(style, how="inner").groupby("driving_style")[["abs_mean", "high_share"]].mean()
    print(by)
    for col in ("abs_mean", "high_share"):
        assert by.loc["aggressive", col] > by.loc["moderate", col] > by.loc["cautious", col], col
    # the weekly columns are the pooled trip sums
    got = w.groupby("vin")["high_jerk_share"].count()
    assert (got > 0).any()
    assert ((w["high_jerk_share"].dropna() >= 0) & (w["high_jerk_share"].dropna() <= 1)).all()
    assert (w["jerk_sd_mps3"].dropna() >= 0).all()
