"""CLI of the strategy stage: ``autopersona strategies list | validate | plan | run``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

_AS_OF = typer.Option(
    "--as-of", help="Point in time (ISO date = end of that day UTC, or time; default: now)."
)
_WH = typer.Option("--warehouse", "-w", help="DuckDB warehouse file (default: settings).")
_STORE = typer.Option(help="Profile store: postgresql://… URL or DuckDB file (default: warehouse).")
_JSON = typer.Option("--json", help="Machine-readable output.")
_CAT = typer.Option("--catalogue", "-c", help="Strategy folder (default: the built-in one).")
_CHAN = typer.Option("--channels", help="Channels file (default: the built-in one).")


def _load(folder: Path | None, channels: Path | None, extra: list[Path] | None = None) -> Any:
    from autopersona.catalog import CatalogError
    from autopersona.strategy.spec import load_strategies

    try:
        return load_strategies(folder, list(extra or []), channels=channels)
    except CatalogError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _when(as_of: str | None) -> datetime:
    from autopersona.store.profiles import parse_as_of

    if not as_of:
        return datetime.now(UTC)
    try:
        return parse_as_of(as_of)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _dump(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def register(app: typer.Typer) -> None:
    """Attach the ``strategies`` command group."""
    st = typer.Typer(
        help="Strategies: the scenario–strategy matrix, triggers and guards.",
        no_args_is_help=True,
    )
    app.add_typer(st, name="strategies")

    @st.command("list")
    def list_cmd(
        catalogue: Annotated[Path | None, _CAT] = None,
        channels: Annotated[Path | None, _CHAN] = None,
        as_json: Annotated[bool, _JSON] = False,
    ) -> None:
        """List the strategies: cell, trigger, channels, priority, experiment."""
        cat = _load(catalogue, channels)
        rows = [
            {
                "id": s.id,
                "name": s.name,
                "entity": s.entity,
                "lifecycle": s.cell.lifecycle,
                "scenario": s.cell.scenario,
                "vehicle": s.cell.vehicle,
                "trigger": s.trigger.kind,
                "channels": s.channels,
                "priority": s.priority,
                "control_share": s.experiment.control_share,
                "baseline_share": s.experiment.baseline_share,
                "enabled": s.enabled,
            }
            for s in cat.strategies.values()
        ]
        if as_json:
            _dump(rows)
            return
        from rich.table import Table

        from autopersona.console import output_console

        t = Table(title=f"Strategies (catalogue {cat.version})")
        for h in ("id", "cell", "trigger", "channels", "priority", "control / baseline"):
            t.add_column(h)
        for r in rows:
            t.add_row(
                str(r["id"]),
                f"{r['lifecycle']} × {r['scenario']} × {r['vehicle']}",
                str(r["trigger"]),
                " → ".join(r["channels"]),
                str(r["priority"]),
                f"{r['control_share']:.0%} / {r['baseline_share']:.0%}",
            )
        output_console().print(t)

    @st.command("validate")
    def validate_cmd(
        files: Annotated[list[Path], typer.Argument(help="Strategy files to check.")],
        catalogue: Annotated[Path | None, _CAT] = None,
        channels: Annotated[Path | None, _CHAN] = None,
    ) -> None:
        """Check strategy files with the catalogue; errors name file and line."""
        cat = _load(catalogue, channels, files)
        names = {p.name for p in files}
        ids = [s.id for s in cat.strategies.values() if Path(s.file).name in names]
        typer.echo(f"ok: {len(ids)} strategies ({', '.join(ids)})")

    @st.command("plan")
    def plan_cmd(
        as_of: Annotated[str | None, _AS_OF] = None,
        warehouse: Annotated[Path | None, _WH] = None,
        store: Annotated[str | None, _STORE] = None,
        catalogue: Annotated[Path | None, _CAT] = None,
        channels: Annotated[Path | None, _CHAN] = None,
        as_json: Annotated[bool, _JSON] = False,
    ) -> None:
        """Audience of each strategy on the current profiles, before anything is sent."""
        from autopersona.settings import get_settings
        from autopersona.store.profiles import open_store
        from autopersona.store.warehouse import Warehouse
        from autopersona.strategy.engine import StrategyEngine

        cat = _load(catalogue, channels)
        when = _when(as_of)
        with Warehouse(warehouse or get_settings().warehouse) as wh:
            ps = open_store(store, warehouse=wh)
            try:
                rows = StrategyEngine(wh, cat, profiles=ps).plan(when)
            finally:
                ps.close()
        if as_json:
            _dump({"as_of": when.isoformat(), "strategies": rows})
            return
        from rich.table import Table

        from autopersona.console import output_console

        t = Table(title=f"Plan as of {when.isoformat()} (nothing sent)")
        for h in ("strategy", "trigger", "audience", "persons", "triggered now", "no consent"):
            t.add_column(h, justify="left" if h in ("strategy", "trigger") else "right")
        t.add_column("first channel")
        for r in rows:
            t.add_row(
                r["strategy_id"],
                r["trigger"],
                str(r["audience"]),
                str(r["persons"]),
                "live" if r["triggered"] is None else str(r["triggered"]),
                str(r["no_consent"]),
                ", ".join(f"{k} {v}" for k, v in r["by_channel"].items()),
            )
        output_console().print(t)

    @st.command("run")
    def run_cmd(
        as_of: Annotated[str | None, _AS_OF] = None,
        warehouse: Annotated[Path | None, _WH] = None,
        store: Annotated[str | None, _STORE] = None,
        catalogue: Annotated[Path | None, _CAT] = None,
        channels: Annotated[Path | None, _CHAN] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Decide without logging the decisions.")
        ] = False,
        as_json: Annotated[bool, _JSON] = False,
    ) -> None:
        """Evaluate schedule, calendar and metric-change triggers in batch and log decisions.

        Strategies with ``offer_arms`` get one arm per message by Thompson sampling on the
        conversions the feedback recorded for each arm (``strategy/offers.py``).
        """
        from autopersona.settings import get_settings
        from autopersona.store.profiles import open_store
        from autopersona.store.warehouse import Warehouse
        from autopersona.strategy.engine import StrategyEngine, summarise
        from autopersona.strategy.offers import assign_offer_arms

        cat = _load(catalogue, channels)
        when = _when(as_of)
        with Warehouse(warehouse or get_settings().warehouse) as wh:
            ps = open_store(store, warehouse=wh)
            try:
                engine = StrategyEngine(wh, cat, profiles=ps)
                decisions = engine.run_batch(when, log=False)
                decisions, offers = assign_offer_arms(wh.con, cat, decisions, as_of=when)
                if not dry_run:
                    engine.log(decisions)
            finally:
                ps.close()
        rows = summarise(decisions, [s.id for s in cat.enabled() if s.trigger.event is None])
        if as_json:
            _dump(
                {
                    "as_of": when.isoformat(),
                    "logged": not dry_run,
                    "decisions": len(decisions),
                    "strategies": rows,
                    "offer_arms": offers,
                }
            )
            return
        from autopersona.console import output_console

        console = output_console()
        print_summary(console, rows, f"Batch run as of {when.isoformat()}")
        for sid, o in offers.items():
            means = ", ".join(f"{a} {m:.1%}" for a, m in o["posterior_mean"].items())
            given = ", ".join(f"{a} {n}" for a, n in o["assigned"].items())
            console.print(
                f"{sid}: offer arms by Thompson sampling — sent {given} (posterior {means})"
            )


def print_summary(console: Any, rows: list[dict[str, Any]], title: str) -> None:
    """Print sends and suppressions per strategy and guard as a rich table."""
    from rich.table import Table

    t = Table(title=title)
    for h in ("strategy", "send", "held", "suppressed", "by guard", "sent by channel", "arms"):
        t.add_column(h, justify="right" if h in ("send", "held", "suppressed") else "left")
    for r in rows:
        t.add_row(
            r["strategy_id"],
            str(r["send"]),
            str(r["held"]),
            str(r["suppressed"]),
            ", ".join(f"{k} {v}" for k, v in r["by_guard"].items()),
            ", ".join(f"{k} {v}" for k, v in r["by_channel"].items()),
            ", ".join(f"{k} {v}" for k, v in r["by_arm"].items()),
        )
    if not rows:
        t.add_row("(no strategy triggered)", "0", "0", "0", "", "", "")
    console.print(t)
