"""The ``autopersona`` command: one sub-command group per stage of the loop.

Data (``schema``, ``simulate``, ``ingest``) → Profile → Scenario → Strategy → Feedback.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from autopersona import __version__
from autopersona.console import output_console

app = typer.Typer(
    name="autopersona",
    help="Connected-vehicle and e-commerce profiles, turned into measured marketing actions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
schema_app = typer.Typer(help="Data contracts of the canonical tables.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


# --------------------------------------------------------------------------- schema
@schema_app.command("list")
def schema_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the canonical tables with their domain, key and time column."""
    from autopersona.contracts import load_contracts

    contracts = load_contracts()
    if as_json:
        _print_json(
            [
                {
                    "table": c.table,
                    "domain": c.domain,
                    "primary_key": c.primary_key,
                    "time_column": c.time_column,
                    "columns": len(c.columns),
                }
                for c in contracts.values()
            ]
        )
        return
    t = Table(title="Canonical tables")
    for header in ("table", "domain", "key", "time", "columns", "description"):
        t.add_column(header)
    for c in contracts.values():
        t.add_row(
            c.table,
            c.domain,
            ", ".join(c.primary_key),
            c.time_column or "",
            str(len(c.columns)),
            c.description,
        )
    output_console().print(t)


@schema_app.command("show")
def schema_show(
    table: Annotated[str, typer.Argument(help="Table name, e.g. motion.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show one contract: columns, types, units, nullability, allowed values, rules."""
    from autopersona.contracts import get_contract

    try:
        c = get_contract(table)
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        _print_json(c.model_dump())
        return
    console = output_console()
    console.print(f"[bold]{c.table}[/] ({c.domain}) — {c.description}")
    console.print(
        f"key: {', '.join(c.primary_key)}   time: {c.time_column or '-'}   "
        f"retention: {c.retention_days or '-'} days"
    )
    t = Table()
    for header in ("column", "type", "unit", "null", "allowed / range", "missing", "description"):
        t.add_column(header)
    for col in c.columns:
        rng = ""
        if col.allowed:
            rng = ", ".join(map(str, col.allowed))
        elif col.min is not None or col.max is not None:
            rng = f"[{'' if col.min is None else col.min}, {'' if col.max is None else col.max}]"
        if col.monotonic:
            rng += " monotonic"
        t.add_row(
            col.name,
            col.type,
            col.unit or "",
            "yes" if col.nullable else "no",
            rng,
            col.missing_rule,
            col.description,
        )
    output_console().print(t)
    rules = c.cleaning.model_dump(exclude_defaults=True)
    if rules:
        console.print(f"cleaning: {json.dumps(rules)}")
    if c.align:
        console.print(
            "as-of alignment: "
            + "; ".join(
                f"{a.table}({', '.join(a.columns)}) within {a.tolerance_s:g}s" for a in c.align
            )
        )


# Each stage keeps its commands in its own ``cli`` module with a ``register(app)`` function.
# Heavy imports stay inside the command functions so that ``--help`` is instant.
from autopersona.api.cli import register as _register_api  # noqa: E402
from autopersona.delivery.cli import register as _register_delivery  # noqa: E402
from autopersona.demo import register as _register_demo  # noqa: E402
from autopersona.evaluation.cli import register as _register_evaluation  # noqa: E402
from autopersona.features.cli import register as _register_features  # noqa: E402
from autopersona.identity.cli import register as _register_identity  # noqa: E402
from autopersona.ingest.cli import register as _register_ingest  # noqa: E402
from autopersona.models.analysis_cli import register as _register_analysis  # noqa: E402
from autopersona.models.cli import register as _register_models  # noqa: E402
from autopersona.privacy.cli import register as _register_privacy  # noqa: E402
from autopersona.simulate.cli import register as _register_simulate  # noqa: E402
from autopersona.strategy.cli import register as _register_strategy  # noqa: E402
from autopersona.tags.cli import register as _register_tags  # noqa: E402

_register_simulate(app)
_register_ingest(app)
_register_demo(app)
_register_features(app)
_register_identity(app)
_register_tags(app)
_register_models(app)
_register_analysis(app)
_register_strategy(app)
_register_privacy(app)
_register_evaluation(app)
_register_api(app)
_register_delivery(app)


def main() -> None:
    """Entry point of the console script.

    A warehouse held by another process ends the command with exit code 1 and one line
    that says which file and which process, instead of a traceback.
    """
    from autopersona.store.warehouse import WarehouseBusy

    try:
        app()
    except WarehouseBusy as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(1) from None


__all__ = ["app", "main"]
