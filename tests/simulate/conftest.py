"""Shared simulated fleets for the simulator tests (each built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from simcheck import FLEET, MESSY, Q

from autopersona.simulate import MessConfig, simulate


@pytest.fixture(scope="session")
def clean_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    simulate(**FLEET, out=out, mess=MessConfig.clean(), workers=1)
    return out


@pytest.fixture(scope="session")
def messy_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("messy")
    simulate(**FLEET, out=out, mess=MESSY, workers=1)
    return out


@pytest.fixture(scope="session")
def cq(clean_fleet: Path) -> Q:
    return Q(clean_fleet)


@pytest.fixture(scope="session")
def mq(messy_fleet: Path) -> Q:
    return Q(messy_fleet)
