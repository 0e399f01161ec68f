"""Mobility inside ``features build``: process pool vs Spark grouped map, state, periods."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from autopersona.features.build import build_features
from autopersona.features.mobility_build import consenting_vehicles
from autopersona.ingest.engine import ingest
from autopersona.simulate import simulate
from autopersona.store.warehouse import Warehouse

# Feature steps group by whatever identifies a vehicle; these tests score them against the
# simulator's truth and name vehicles by their clear VINs: in clear (AUTOPERSONA_PSEUDONYMISE=0;
# features on pseudonyms: tests/privacy/test_pseudo_pipeline.py).
pytestmark = pytest.mark.usefixtures("clear_identifiers_module")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mobfleet")
    simulate(vehicles=6, days=8, seed=21, out=out, workers=1)
    return out


@pytest.fixture
def wh_fleet(fleet: Path, tmp_path: Path) -> Iterator[Warehouse]:
    with Warehouse(tmp_path / "w.duckdb") as wh:
        ingest([fleet / "tables"], wh, keep_going=False)
        yield wh


def _table(wh: Warehouse, name: str, order: str) -> pd.DataFrame:
    return wh.frame(f"SELECT * EXCLUDE (computed_at) FROM {name} ORDER BY {order}")


def test_mobility_is_built_with_state(wh_fleet: Warehouse) -> None:
    rep = build_features(wh_fleet, only=["mobility"], full=True)
    assert rep.rows["mobility"] >= 4
    weekly = _table(wh_fleet, "features_mobility", "vin, period_start")
    assert weekly["period_start"].dt.day_of_week.eq(0).all()  # local ISO week Mondays
    assert weekly["n_trips"].sum() == wh_fleet.sql("SELECT count(*) FROM mobility_trips")[0][0]
    homes = wh_fleet.sql("SELECT count(DISTINCT vin) FROM mobility_locations WHERE label = 'home'")
    consenting, _ = consenting_vehicles(wh_fleet)  # the simulator's consents: 4 of the 6
    assert homes[0][0] == len(consenting) >= 3
    assert set(weekly["vin"]) == consenting
    # a rebuild from the latest week reuses the stored locations and keeps their ids
    before = wh_fleet.con.execute(
        "SELECT vin, location_id, label FROM mobility_locations WHERE label IS NOT NULL ORDER BY 1, 3"
    ).fetchall()
    build_features(wh_fleet, only=["mobility"])
    after = wh_fleet.con.execute(
        "SELECT vin, location_id, label FROM mobility_locations WHERE label IS NOT NULL ORDER BY 1, 3"
    ).fetchall()
    assert after == before


def test_other_periods_skip_mobility(wh_fleet: Warehouse) -> None:
    rep = build_features(wh_fleet, only=["mobility"], period="month", full=True)
    assert "mobility" not in rep.rows


def test_unknown_domain_is_an_error(wh_fleet: Warehouse) -> None:
    with pytest.raises(ValueError, match="unknown domain"):
        build_features(wh_fleet, only=["astrology"])


@pytest.mark.slow
# pyspark's toPandas leaves the socket it collected the Arrow batches from to the garbage
# collector; nothing else may leak here (the Spark JVM is ended at the end of the session)
@pytest.mark.filterwarnings(
    r"ignore:unclosed <socket\.socket:ResourceWarning",
    r"ignore:Exception ignored in. <socket\.socket:pytest.PytestUnraisableExceptionWarning",
)
def test_spark_grouped_map_equals_process_pool(fleet: Path, tmp_path: Path) -> None:
    res = {}
    for engine in ("duckdb", "spark"):
        with Warehouse(tmp_path / f"{engine}.duckdb") as wh:
            ingest([fleet / "tables"], wh, keep_going=False)
            build_features(wh, only=["mobility"], engine=engine, full=True)
            res[engine] = _table(wh, "features_mobility", "vin, period_start")
    a, b = res["duckdb"], res["spark"]
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=1e-9)
