"""Fixtures shared by the tag tests: one clean simulated fleet per session.

30 vehicles x 7 days (seed 3), simulated, ingested and featurised once; only the scoring
parts of the tests read the simulator's truth.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from autopersona.features.build import build_features
from autopersona.ingest.engine import ingest
from autopersona.simulate import MessConfig, simulate
from autopersona.store.warehouse import Warehouse


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(simulation folder, warehouse file with features)."""
    base = tmp_path_factory.mktemp("tags-fleet")
    sim = base / "sim"
    simulate(vehicles=30, days=7, seed=3, out=sim, mess=MessConfig.clean(), workers=1)
    db = base / "wh.duckdb"
    with Warehouse(db) as wh:
        ingest([sim / "tables"], wh)
        build_features(wh)
    return sim, db


@pytest.fixture
def fleet_wh(fleet: tuple[Path, Path], tmp_path: Path) -> Warehouse:
    """A private copy of the fleet's warehouse."""
    db = tmp_path / "wh.duckdb"
    shutil.copy(fleet[1], db)
    return Warehouse(db)
