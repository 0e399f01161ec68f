"""Shared fixtures: warehouses, the repo's test data and the team's real datasets."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autopersona.store.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
TESTS_DATA = REPO / "tests" / "data"


def _shared_data() -> Path:
    env = os.environ.get("AUTOPERSONA_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data()

# conftest files are plugins, not test modules: under --doctest-modules pytest would also
# import each as a module named "conftest", and two of them clash ("import file mismatch")
collect_ignore_glob = ["conftest.py", "*/conftest.py"]

# Command output is as wide as COLUMNS says, and pytest-xdist's workers run with COLUMNS=80:
# tests see the width of a pipe (autopersona.console.PIPE_WIDTH) however they are run.
os.environ.pop("COLUMNS", None)


@pytest.fixture
def shared_data() -> Path:
    """The real datasets folder (../shared/data); skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not present at {SHARED_DATA} (set AUTOPERSONA_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def tests_data() -> Path:
    return TESTS_DATA


@pytest.fixture
def wh() -> Iterator[Warehouse]:
    with Warehouse(":memory:") as w:
        yield w


@pytest.fixture
def wh_file(tmp_path: Path) -> Iterator[Warehouse]:
    with Warehouse(tmp_path / "wh.duckdb") as w:
        yield w


@pytest.fixture
def clear_identifiers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt out of pseudonymisation (``AUTOPERSONA_PSEUDONYMISE=0``).

    For tests that score against the simulator's truth by clear VIN (the truth files name
    vehicles by VIN; with pseudonyms on, the warehouse does not).
    """
    monkeypatch.setenv("AUTOPERSONA_PSEUDONYMISE", "0")


@pytest.fixture(scope="module")
def clear_identifiers_module() -> Iterator[None]:
    """:func:`clear_identifiers` for a whole module (its module-scoped fleets too):
    ``pytestmark = pytest.mark.usefixtures("clear_identifiers_module")``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOPERSONA_PSEUDONYMISE", "0")
        yield


@pytest.fixture
def grant_consent() -> Callable[..., None]:
    """A function giving hand-made vehicles and customers an account consenting to every
    purpose (``grant(wh, vins=[...], customers=[...])``).

    The feature build keeps only consenting entities (opt-in); tests of what the features
    compute, on warehouses without consent records, grant it explicitly.
    """
    from autopersona.privacy.consent import PURPOSES, record_consent

    def grant(
        wh: Warehouse,
        vins: Iterable[str] = (),
        customers: Iterable[str] = (),
        at: datetime = datetime(2000, 1, 1, tzinfo=UTC),
    ) -> None:
        accounts: list[tuple[str, str, str | None]] = [(f"OWN-{v}", "owner", v) for v in vins]
        accounts += [(c, "ecommerce", None) for c in customers]
        for acc, source, vin in accounts:
            wh.con.execute(
                "INSERT INTO accounts (account_id, source, vin) VALUES (?, ?, ?)",
                [acc, source, vin],
            )
            for p in PURPOSES:
                record_consent(wh, acc, p, "any", True, at, source="test")

    return grant
