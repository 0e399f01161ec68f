"""CLI for the fleet simulator (filled in by the simulator module)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach ``autopersona simulate``."""
