"""Fixtures of the store tests: an empty profile store per backend (see ``pgcheck``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pgcheck import make_store

from autopersona.store.profiles import ProfileStore


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProfileStore]:
    """An empty profile store, once per backend."""
    yield from make_store(request.param, tmp_path)
