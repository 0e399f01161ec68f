"""CLI for features: ``autopersona features staypoints ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Attach the ``autopersona features`` command group."""
    features_app = typer.Typer(
        help="Profile features computed from the warehouse (stay points, ...).",
        no_args_is_help=True,
    )
    app.add_typer(features_app, name="features")

    @features_app.command("build")
    def build_cmd(
        period: Annotated[str, typer.Option(help="day, week or month.")] = "week",
        since: Annotated[
            str | None,
            typer.Option(help="Recompute from the period holding this date (YYYY-MM-DD)."),
        ] = None,
        engine: Annotated[str, typer.Option(help="duckdb or spark.")] = "duckdb",
        domain: Annotated[
            list[str] | None, typer.Option("--domain", help="Only these domains (repeatable).")
        ] = None,
        full: Annotated[bool, typer.Option(help="Recompute every period.")] = False,
        warehouse: Annotated[
            Path | None, typer.Option("--warehouse", "-w", help="DuckDB file.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Compute feature tables (features_<domain>) for new periods, incrementally."""
        import json
        from dataclasses import asdict
        from datetime import date

        from rich.table import Table

        from autopersona.console import output_console
        from autopersona.features.build import build_features
        from autopersona.settings import get_settings
        from autopersona.store.warehouse import Warehouse

        try:
            since_d = date.fromisoformat(since) if since else None
        except ValueError:
            typer.echo(f"error: --since {since!r} is not a date (YYYY-MM-DD)", err=True)
            raise typer.Exit(2) from None
        if engine not in ("duckdb", "spark"):
            typer.echo(f"error: --engine {engine!r}: use duckdb or spark", err=True)
            raise typer.Exit(2)
        with Warehouse(warehouse or get_settings().warehouse) as wh:
            try:
                rep = build_features(
                    wh, period=period, since=since_d, engine=engine, only=domain, full=full
                )
            except (ValueError, KeyError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps(asdict(rep), indent=2))
            return
        t = Table(
            title=f"features build ({rep.engine}, per {rep.period}, since {rep.since or 'the start'})"
        )
        for c in ("domain", "rows", "periods"):
            t.add_column(c)
        for k, n in rep.rows.items():
            t.add_row(k, f"{n:,}", str(rep.periods[k]))
        output_console().print(t)
        output_console().print(f"{rep.seconds:.1f} s")

    @features_app.command("list")
    def list_cmd(
        domain: Annotated[str | None, typer.Option(help="Only this domain.")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """The feature dictionary: name, domain, unit, definition, source tables."""
        import json

        from rich.table import Table

        from autopersona.console import output_console
        from autopersona.features.dictionary import feature_dictionary

        feats = [f for f in feature_dictionary().values() if domain in (None, f.domain)]
        if as_json:
            typer.echo(json.dumps([f.model_dump() for f in feats], indent=2))
            return
        t = Table(title="Feature dictionary")
        for c in ("feature", "domain", "unit", "sources", "definition"):
            t.add_column(c)
        for f in feats:
            t.add_row(f.name, f.domain, f.unit, ", ".join(f.sources), f.definition)
        output_console().print(t)

    @features_app.command("staypoints")
    def staypoints_cmd(
        out: Annotated[
            Path, typer.Option("--out", "-o", help="CSV file to write the stay points to.")
        ],
        dist_threshold: Annotated[
            float,
            typer.Option(
                "--dist-threshold", help="Metres a fix must move from the window's anchor."
            ),
        ] = 100.0,
        time_threshold: Annotated[
            float,
            typer.Option("--time-threshold", help="Minutes a window must span to count."),
        ] = 5.0,
        gap_threshold: Annotated[
            float,
            typer.Option(
                "--gap-threshold",
                help="Minutes without a fix after which the open window is dropped.",
            ),
        ] = 15.0,
        include_last: Annotated[
            bool,
            typer.Option(
                "--include-last", help="Also keep each vehicle's final, never-left window."
            ),
        ] = False,
        warehouse: Annotated[
            Path | None,
            typer.Option(
                "--warehouse",
                "-w",
                help="DuckDB file (default: $AUTOPERSONA_WAREHOUSE or autopersona.duckdb).",
            ),
        ] = None,
    ) -> None:
        """Stay points (trackintel's sliding window) of every vehicle in ``motion``, to CSV.

        Columns: user_id (the VIN), started_at, finished_at (UTC, ISO 8601), lat, lon,
        n_points.
        """
        from autopersona.features.staypoints import STAYPOINT_COLUMNS, warehouse_staypoints
        from autopersona.settings import get_settings
        from autopersona.store.warehouse import Warehouse

        settings = get_settings()
        db = warehouse or settings.warehouse
        if not Path(db).is_file():
            typer.echo(f"error: no warehouse at {db} (run `autopersona ingest` first)", err=True)
            raise typer.Exit(2)
        try:
            with Warehouse(db, read_only=True, memory_limit=settings.memory_limit) as wh:
                sp = warehouse_staypoints(
                    wh,
                    dist_threshold=dist_threshold,
                    time_threshold=time_threshold,
                    gap_threshold=gap_threshold,
                    include_last=include_last,
                )
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        out.parent.mkdir(parents=True, exist_ok=True)
        sp[STAYPOINT_COLUMNS].to_csv(out, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        typer.echo(
            f"{len(sp)} stay points of {sp['user_id'].nunique()} vehicle(s) written to {out}",
            err=True,
        )
