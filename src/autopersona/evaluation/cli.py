"""Analyst commands of the feedback stage: ``experiment ...`` and ``report``.

Other evaluation modules add their own command groups here through ``_EXTRA``: each entry
is a ``register(app)`` function imported lazily by name, so ``--help`` stays instant.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import typer

__all__ = ["register"]

# (module, function) pairs whose ``register(app)`` adds further evaluation commands
# (uplift, bandits, attribution). A module that does not exist yet is skipped.
_EXTRA: tuple[tuple[str, str], ...] = (
    ("autopersona.evaluation.uplift_cli", "register"),
    ("autopersona.evaluation.bandit_cli", "register"),
    ("autopersona.evaluation.attribution_cli", "register"),
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _emit(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str, allow_nan=False))


def register(app: typer.Typer) -> None:
    """Attach the ``experiment`` command group (and the other evaluation groups) to ``app``."""
    experiment_app = typer.Typer(
        help="A/B tests: rates, means, intervals, SRM, CUPED, corrections.",
        no_args_is_help=True,
    )
    app.add_typer(experiment_app, name="experiment")

    @experiment_app.command("analyze")
    def experiment_analyze() -> None:
        """Compare every arm with the control (being built)."""
        raise _fail("experiment analyze is not available yet")

    for module, func in _EXTRA:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        getattr(mod, func)(app)
