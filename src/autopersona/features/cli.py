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
