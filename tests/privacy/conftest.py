"""Fixtures of the privacy tests: one small simulated fleet, ingested once, copied per test."""

from __future__ import annotations

import pytest
from privcheck import Fleet

from autopersona.ingest.engine import ingest
from autopersona.simulate import simulate
from autopersona.store.warehouse import Warehouse


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """Ingested in clear (``AUTOPERSONA_PSEUDONYMISE=0``): these tests pseudonymise a warehouse
    after the fact, erase people by clear identifiers and scan for them; ingestion with
    pseudonyms on (the default) has its own tests (``test_pseudo*.py``)."""
    out = tmp_path_factory.mktemp("privacy-fleet")
    simulate(vehicles=16, days=2, seed=5, out=out / "sim", workers=1)
    path = out / "wh.duckdb"
    with pytest.MonkeyPatch.context() as mp, Warehouse(path) as wh:
        mp.setenv("AUTOPERSONA_PSEUDONYMISE", "0")
        ingest([out / "sim" / "tables"], wh)
    return Fleet(out / "sim", path)
