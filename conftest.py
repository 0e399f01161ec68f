"""Settings every test and doctest runs with.

Pseudonymisation is on by default, and outside demo mode it refuses the published key: tests
run with a key of their own and a vault of their own, never beside the repository: one per
session (for session-scoped fleets) and a fresh one per test.  A test that joins the
simulator's truth on clear VINs opts out with ``AUTOPERSONA_PSEUDONYMISE=0`` (the
``clear_identifiers`` fixture of ``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

#: The tests' pseudonym key (32+ characters, not the published default).
TEST_PSEUDONYM_KEY = "autopersona-tests-pseudonym-key-0123456789"


@pytest.fixture(scope="session", autouse=True)
def _pseudonym_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOPERSONA_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
        mp.setenv("AUTOPERSONA_VAULT", str(tmp_path_factory.mktemp("vault") / "vault.duckdb"))
        yield


@pytest.fixture(autouse=True)
def _pseudonym_vault(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("AUTOPERSONA_VAULT", str(tmp_path_factory.mktemp("vault") / "vault.duckdb"))
