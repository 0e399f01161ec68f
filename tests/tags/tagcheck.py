"""Helpers shared by the tag tests (imported by name, not from conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopersona.catalog import CatalogError
from autopersona.tags.spec import Catalogue, load_catalogue


def full_catalogue() -> Catalogue:
    """The catalogue with its pending files; skips while their features have not landed."""
    try:
        return load_catalogue(include_pending=True)
    except CatalogError as exc:
        missing = [e for e in exc.errors if "unknown feature or tag" in e.message]
        follow_on = [e for e in exc.errors if "prev() needs a feature" in e.message]
        if len(missing) + len(follow_on) != len(exc.errors):
            raise
        names = sorted({e.message.rsplit(" ", 1)[-1] for e in missing})
        pytest.skip(f"pending tags wait for features not in the dictionary yet: {names}")


def build_fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The clean fleet of the tag tests: 30 vehicles x 7 days (seed 3), simulated, ingested
    and featurised once per test process (later calls reuse it).

    Returns (simulation folder, warehouse file with features).  Kept out of a
    ``conftest.py``: with ``--doctest-modules`` two test folders' ``conftest`` modules clash.
    """
    from autopersona.features.build import build_features
    from autopersona.ingest.engine import ingest
    from autopersona.simulate import MessConfig, simulate
    from autopersona.store.warehouse import Warehouse

    base = tmp_path_factory.getbasetemp() / "tags-fleet"
    sim, db, done = base / "sim", base / "wh.duckdb", base / "done"
    if not done.exists():
        base.mkdir(parents=True, exist_ok=True)
        simulate(vehicles=30, days=7, seed=3, out=sim, mess=MessConfig.clean(), workers=1)
        with Warehouse(db) as wh:
            ingest([sim / "tables"], wh)
            build_features(wh)
        done.touch()
    return sim, db
