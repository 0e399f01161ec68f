"""Shared fixture of the model tests: a small simulated fleet's commerce tables, ingested."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autopersona.store.warehouse import Warehouse

#: consents too: commerce tags are built for customers who consent to their purpose
COMMERCE_TABLES = ("accounts", "consents", "orders", "commerce_events", "reviews")


@pytest.fixture(scope="session")
def commerce_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 simulated vehicles x 2 days (commerce history reaches 180 days back)."""
    from autopersona.simulate import simulate

    out = tmp_path_factory.mktemp("commerce_fleet")
    simulate(vehicles=40, days=2, seed=5, out=out, progress=False, workers=1)
    return out


@pytest.fixture(scope="session")
def commerce_wh(
    commerce_fleet: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouse]:
    """Warehouse with the fleet's commerce tables and the commerce features built."""
    from autopersona.features.build import build_features
    from autopersona.ingest.engine import ingest

    db = tmp_path_factory.mktemp("commerce_wh") / "wh.duckdb"
    with Warehouse(db) as wh:
        tables = commerce_fleet / "tables"
        ingest([tables / f"{t}.parquet" for t in COMMERCE_TABLES], wh, progress=False)
        build_features(wh, only=["commerce"])
        yield wh
