"""Helpers of the privacy tests: the simulated fleet they share (module name unique on purpose)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


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
