"""``autopersona demo``: the whole loop on a small simulated fleet."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach ``autopersona demo``."""
