"""Fixtures of the privacy tests: one small simulated fleet, ingested once, copied per test."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from autopersona.ingest.engine import ingest
from autopersona.simulate import simulate
from autopersona.store.warehouse import Warehouse


@dataclass(frozen=True)
class Fleet:
    """The simulator's output folder and a warehouse file with all of it ingested."""

    out: Path
    warehouse: Path

    def copy(self, dest: Path) -> Path:
        """A private copy of the ingested warehouse."""
        path = dest / "wh.duckdb"
        shutil.copy(self.warehouse, path)
        return path

    def known_identifiers(self) -> dict[str, set[str]]:
        """Clear VINs, phones and e-mails as the source files write them."""
        acc = pd.read_parquet(self.out / "tables" / "accounts.parquet")
        veh = pd.read_parquet(self.out / "tables" / "vehicles.parquet")
        return {
            "vin": set(veh["vin"]) | set(acc["vin"].dropna()),
            "phone": set(acc["phone"].dropna()),
            "email": set(acc["email"].dropna()),
        }


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    out = tmp_path_factory.mktemp("privacy-fleet")
    simulate(vehicles=16, days=2, seed=5, out=out / "sim", workers=1)
    path = out / "wh.duckdb"
    with Warehouse(path) as wh:
        ingest([out / "sim" / "tables"], wh)
    return Fleet(out / "sim", path)
