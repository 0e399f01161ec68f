"""Mobility steps on real data: Twizy EV trips (distance sanity) and GeoLife (locations, home).

Twizy logs GPS speed at 1 Hz next to GPS positions, so the haversine length of a trip and
the integral of its speed over time measure the same distance two ways. Measured on all 15
trips of the 17 Twizy files (two pairs of files are 2-4 minutes apart and join into one trip
by the 300 s rule): speed-integral / GPS length between 0.925 and 1.103 (fleet total 0.967),
so each trip is asserted within 12 % and the total within 5 %.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autopersona.features.runner import MobilityResult, run_mobility
from autopersona.ingest.engine import ingest
from autopersona.ingest.mapping import resolve_mapping
from autopersona.store.warehouse import Warehouse

# Feature steps group by whatever identifies a vehicle; these tests score them against the
# simulator's truth and name vehicles by their clear VINs: in clear (AUTOPERSONA_PSEUDONYMISE=0;
# features on pseudonyms: tests/privacy/test_pseudo_pipeline.py).

pytestmark = [pytest.mark.realdata, pytest.mark.usefixtures("clear_identifiers_module")]

TWIZY_TOLERANCE = 0.12
"""Largest allowed |speed-integral / GPS distance - 1| per trip (measured: 0.103)."""


def _twizy(wh: Warehouse, path: Path) -> MobilityResult:
    ingest([path], wh, mapping=resolve_mapping("twizy"), keep_going=False)
    return run_mobility(wh, workers=1)


def _check_distances(r: MobilityResult) -> None:
    t = r.trips
    assert len(t) > 0
    assert t["speed_distance_km"].notna().all()
    ratio = t["speed_distance_km"] / t["distance_km"]
    print(f"\nTwizy: {len(t)} trips, speed/GPS distance {ratio.min():.3f}..{ratio.max():.3f}")
    assert (np.abs(ratio - 1) <= TWIZY_TOLERANCE).all(), ratio.tolist()
    total = t["speed_distance_km"].sum() / t["distance_km"].sum()
    assert abs(total - 1) <= 0.05
    assert (t["max_speed_mps"] < 30).all()  # a Twizy tops out at 80 km/h


def test_twizy_pieces_distance_sanity(wh: Warehouse, tests_data: Path) -> None:
    """The two Twizy files kept in tests/data (runs from a fresh clone)."""
    r = _twizy(wh, tests_data / "twizy")
    _check_distances(r)
    assert len(r.trips) == 2
    rep = r.report.iloc[0]
    # no vehicles row: local time falls back to UTC, and says so
    assert rep["timezone"] == "UTC" and "no time zone" in rep["reason"]


def test_twizy_all_trips_distance_sanity(wh: Warehouse, shared_data: Path) -> None:
    r = _twizy(wh, shared_data / "twizy_ev")
    _check_distances(r)
    assert len(r.trips) == 15
    # T1_06_30_2021_2 holds a run of fixes at latitude 0 that the position-jump filter drops
    assert int(r.report["n_jumps"].iloc[0]) >= 4
    assert r.trips["distance_km"].max() < 70
    assert len(r.locations) >= 1 and (r.locations["label"] == "home").sum() == 1


GEOLIFE_USERS = ["000", "003", "004", "006", "009"]
"""A third of ten_users' fixes (ingesting all 11 users takes ~10 s; every user gets a home)."""


def test_geolife_locations_and_home(wh: Warehouse, shared_data: Path) -> None:
    data = shared_data / "geolife" / "ten_users" / "Data"
    ingest(
        [data / u for u in GEOLIFE_USERS],
        wh,
        mapping=resolve_mapping("geolife"),
        keep_going=False,
    )
    r = run_mobility(wh, workers=1, default_timezone="Asia/Shanghai")
    users = set(r.report["vin"])
    assert users == {f"geolife-{u}" for u in GEOLIFE_USERS}
    assert (r.report["status"] == "ok").all()
    assert set(r.locations["vin"]) == users
    homes = r.locations[r.locations["label"] == "home"]
    print(f"\nGeoLife: {len(r.trips)} trips, {len(r.locations)} locations, {len(homes)} homes")
    assert len(homes) == len(users)
    assert homes["vin"].is_unique
    # homes are in Beijing / Tianjin, with a confidence
    assert homes["lat"].between(38.5, 41.0).all() and homes["lon"].between(115.5, 118.0).all()
    assert homes["confidence"].between(0, 1).all()
    assert (r.weekly["n_trips"] >= 0).all() and len(r.weekly) >= len(users)
    # phone traces have no speed column: the speed-based fields are null, with a reason
    assert r.trips["speed_distance_km"].isna().all()
    assert r.report["reason"].str.contains("no speed").all()
