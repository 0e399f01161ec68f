"""Fixtures of the strategy tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from autopersona.store.warehouse import Warehouse

from .stratcheck import fill


@pytest.fixture
def small_wh() -> Iterator[Warehouse]:
    """An in-memory warehouse filled by :func:`fill`."""
    with Warehouse(":memory:") as wh:
        fill(wh)
        yield wh
