"""Fixtures of the identity tests: a simulated fleet (built once per session) and a warehouse
on which the full linkage ran once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from idcheck import FLEET, Fleet, Linked

from autopersona.identity import link_identities
from autopersona.ingest.engine import ingest
from autopersona.simulate import simulate
from autopersona.store.warehouse import Warehouse


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    out = tmp_path_factory.mktemp("identity-fleet")
    simulate(**FLEET, out=out, workers=1)
    return Fleet(out)


@pytest.fixture
def fleet_wh(fleet: Fleet) -> Iterator[Warehouse]:
    """A fresh in-memory warehouse with the fleet's accounts and vehicles."""
    with Warehouse(":memory:") as wh:
        ingest([fleet.accounts, fleet.vehicles], wh)
        yield wh


@pytest.fixture(scope="session")
def linked(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Linked:
    """A warehouse file on which the full linkage (threshold 0.9, seed 42) ran once.

    Tests open it read-only (``Warehouse(linked.path, read_only=True)``) and must not change it.
    """
    path = tmp_path_factory.mktemp("identity-linked") / "wh.duckdb"
    with Warehouse(path) as wh:
        ingest([fleet.accounts, fleet.vehicles], wh)
        report = link_identities(wh, threshold=0.9, seed=42)
    return Linked(path, report)


@pytest.fixture(scope="session")
def linked_clear(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Linked:
    """As :func:`linked`, ingested in clear (``AUTOPERSONA_PSEUDONYMISE=0``).

    The reference of the linkage-quality tests: linkage on pseudonyms (with the keyed
    comparison keys stored at ingest) must decide every account as linkage in clear does.
    """
    path = tmp_path_factory.mktemp("identity-linked-clear") / "wh.duckdb"
    with pytest.MonkeyPatch.context() as mp, Warehouse(path) as wh:
        mp.setenv("AUTOPERSONA_PSEUDONYMISE", "0")
        ingest([fleet.accounts, fleet.vehicles], wh)
        report = link_identities(wh, threshold=0.9, seed=42)
    return Linked(path, report)
