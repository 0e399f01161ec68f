"""Shared simulated fleets for the simulator tests (each built once per session)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from autopersona.simulate import MessConfig, simulate

#: The fleet used by most tests: small but with every driving style and a weekend.
FLEET = {"vehicles": 24, "days": 7, "seed": 11}
#: Mess rates for the mess tests (4x the defaults so small fleets get enough faults).
MESSY = MessConfig().scaled(4.0)


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


class Q:
    """DuckDB over a fleet folder: ``T.<table>`` reads tables/, ``R.<name>`` reads truth/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.con = duckdb.connect()

    def _sql(self, sql: str) -> str:
        import re

        sql = re.sub(r"\bT\.(\w+)", lambda m: f"'{self.root / 'tables' / m.group(1)}.parquet'", sql)
        return re.sub(r"\bR\.(\w+)", lambda m: f"'{self.root / 'truth' / m.group(1)}.parquet'", sql)

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        return self.con.sql(self._sql(sql)).fetchall()

    def one(self, sql: str) -> tuple[object, ...]:
        r = self.rows(sql)
        assert len(r) == 1
        return r[0]

    def np(self, sql: str) -> dict[str, object]:
        return self.con.sql(self._sql(sql)).fetchnumpy()


@pytest.fixture(scope="session")
def cq(clean_fleet: Path) -> Q:
    return Q(clean_fleet)


@pytest.fixture(scope="session")
def mq(messy_fleet: Path) -> Q:
    return Q(messy_fleet)
