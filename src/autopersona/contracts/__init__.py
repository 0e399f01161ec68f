"""Data contracts: one declared YAML contract per canonical table.

Examples
--------
>>> from autopersona.contracts import contract_names, get_contract
>>> "motion" in contract_names()
True
>>> get_contract("vehicles").column("energy_type").allowed
['ICE', 'BEV', 'PHEV', 'EREV', 'HEV']
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from autopersona.catalog import load_folder, load_model
from autopersona.contracts.model import Column, Contract

__all__ = [
    "Column",
    "Contract",
    "contract_names",
    "get_contract",
    "load_contract",
    "load_contracts",
]


def _tables_dir() -> Path:
    return Path(str(resources.files("autopersona.contracts") / "tables"))


def load_contract(path: str | Path) -> Contract:
    """Load and validate one contract file (errors carry file and line)."""
    return load_model(path, Contract)


@lru_cache(maxsize=1)
def load_contracts() -> dict[str, Contract]:
    """All built-in contracts by table name, in file-name order."""
    return load_folder(_tables_dir(), load_contract, lambda c: c.table)


def contract_names() -> list[str]:
    """Names of the canonical tables."""
    return list(load_contracts())


def get_contract(table: str) -> Contract:
    """The contract of ``table``.

    Raises
    ------
    KeyError
        With the list of known tables when ``table`` is unknown.
    """
    contracts = load_contracts()
    if table not in contracts:
        raise KeyError(f"unknown table {table!r}; known tables: {', '.join(contracts)}")
    return contracts[table]
