"""CLI for ingestion: ``autopersona ingest PATH... [--table T] [--mapping FILE] [--json]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

WarehouseOpt = Annotated[
    Path | None,
    typer.Option(
        "--warehouse",
        "-w",
        help="DuckDB file (default: $AUTOPERSONA_WAREHOUSE or autopersona.duckdb).",
    ),
]


def register(app: typer.Typer) -> None:
    """Attach ``autopersona ingest`` and ``autopersona quarantine``."""

    @app.command("ingest")
    def ingest_cmd(
        paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
        table: Annotated[
            str | None,
            typer.Option("--table", "-t", help="Target table for files in contract shape."),
        ] = None,
        mapping: Annotated[
            str | None,
            typer.Option(
                "--mapping",
                "-m",
                help="Mapping file, or a built-in mapping name (geolife, twizy, carobd, ved, online_retail, hillstrom).",
            ),
        ] = None,
        vin: Annotated[
            str | None, typer.Option("--vin", help="VIN for sources without one (CAN logs).")
        ] = None,
        warehouse: WarehouseOpt = None,
        as_json: Annotated[
            bool,
            typer.Option(
                "--json",
                help="Print the report as JSON (keys read, loaded, duplicates, quarantined).",
            ),
        ] = False,
        strict: Annotated[
            bool, typer.Option("--strict", help="Stop at the first file that cannot be ingested.")
        ] = False,
    ) -> None:
        """Validate, clean and load files into the warehouse; nothing read is lost."""
        from rich.table import Table

        from autopersona.catalog import CatalogError
        from autopersona.console import output_console
        from autopersona.ingest.engine import ingest, report_json
        from autopersona.ingest.errors import IngestError
        from autopersona.ingest.mapping import resolve_mapping
        from autopersona.settings import get_settings
        from autopersona.store.warehouse import Warehouse

        settings = get_settings()
        try:
            m = resolve_mapping(mapping) if mapping else None
        except (CatalogError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        with Warehouse(warehouse or settings.warehouse, memory_limit=settings.memory_limit) as wh:
            try:
                rep = ingest(
                    paths,
                    wh,
                    mapping=m,
                    table=table,
                    vin=vin,
                    progress=not as_json and sys.stderr.isatty(),
                    keep_going=not strict,
                )
            except (IngestError, KeyError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
        if as_json:
            sys.stdout.write(report_json(rep) + "\n")
        else:
            con = output_console()
            t = Table(title=f"ingest run {rep.run_id}")
            for col in (
                "table",
                "read",
                "loaded",
                "duplicates",
                "quarantined",
                "out of order",
                "top reasons",
            ):
                t.add_column(
                    col, justify="right" if col not in ("table", "top reasons") else "left"
                )
            for name, tr in rep.by_table().items():
                top = ", ".join(f"{k} ({v})" for k, v in list(tr.reasons.items())[:3])
                t.add_row(
                    name,
                    f"{tr.read:,}",
                    f"{tr.loaded:,}",
                    f"{tr.duplicates:,}",
                    f"{tr.quarantined:,}",
                    f"{tr.out_of_order:,}",
                    top,
                )
            t.add_row(
                "[bold]total",
                f"{rep.read:,}",
                f"{rep.loaded:,}",
                f"{rep.duplicates:,}",
                f"{rep.quarantined:,}",
                "",
                "",
            )
            con.print(t)
            for sk in rep.skipped:
                con.print(f"[yellow]skipped:[/] {sk}: belongs to no table (name it with --table)")
            for f in rep.files:
                for note in f.notes:
                    con.print(f"[yellow]note:[/] {f.path}: {note}")
        for e in rep.errors:
            typer.echo(f"error: {e}", err=True)
        if rep.errors:
            raise typer.Exit(1)

    @app.command("quarantine")
    def quarantine_cmd(
        warehouse: WarehouseOpt = None,
        table: Annotated[
            str | None, typer.Option("--table", "-t", help="Only this target table.")
        ] = None,
        limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Show quarantined rows: file, row, field, reason."""
        from rich.table import Table

        from autopersona.console import output_console
        from autopersona.settings import get_settings
        from autopersona.store.warehouse import QUARANTINE_TABLE, Warehouse

        with Warehouse(warehouse or get_settings().warehouse) as wh:
            where = "WHERE target_table = ?" if table else ""
            rows = wh.sql(
                f"SELECT source_file, row_number, target_table, field, reason FROM {QUARANTINE_TABLE} {where} ORDER BY source_file, row_number LIMIT {int(limit)}",
                [table] if table else [],
            )
        if as_json:
            sys.stdout.write(
                json.dumps(
                    [
                        dict(zip(["file", "row", "table", "field", "reason"], r, strict=True))
                        for r in rows
                    ],
                    indent=2,
                )
                + "\n"
            )
            return
        t = Table(title="quarantine")
        for c in ("file", "row", "table", "field", "reason"):
            t.add_column(c)
        for r in rows:
            t.add_row(*(str(x) for x in r))
        output_console().print(t)
