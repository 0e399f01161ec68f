"""CLI for the fleet simulator: ``autopersona simulate``.

Heavy imports (numpy, pyarrow, the simulator itself) happen inside the command so that
``autopersona --help`` stays instant.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Attach ``autopersona simulate``."""

    @app.command("simulate")
    def simulate_cmd(
        out: Annotated[Path, typer.Option("--out", help="Output folder (tables/, truth/).")],
        vehicles: Annotated[
            int, typer.Option("--vehicles", min=1, help="Vehicles (one person each).")
        ] = 20,
        days: Annotated[int, typer.Option("--days", min=1, help="Simulated days.")] = 7,
        seed: Annotated[
            int, typer.Option("--seed", help="Random seed (same seed, same bytes).")
        ] = 42,
        start: Annotated[
            datetime | None,
            typer.Option("--start", formats=["%Y-%m-%d"], help="First day (default 2026-01-05)."),
        ] = None,
        mess_rate: Annotated[
            float,
            typer.Option(
                "--mess-rate", min=0.0, help="Scale every data-fault rate (1 = defaults)."
            ),
        ] = 1.0,
        clean: Annotated[
            bool, typer.Option("--clean", help="Inject no data faults at all.")
        ] = False,
        workers: Annotated[
            int | None,
            typer.Option("--workers", min=1, help="Worker processes (default: CPUs, max 4)."),
        ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or summary.")] = False,
    ) -> None:
        """Simulate a connected-vehicle fleet and its owners; write every table as Parquet.

        Writes OUT/tables/<table>.parquet for all 16 contract tables, the ground truth to OUT/truth/ (marked with .autopersona-truth: never ingest it) and OUT/manifest.json.
        """
        import time

        from rich.table import Table

        from autopersona.console import output_console
        from autopersona.simulate import MessConfig, simulate
        from autopersona.simulate.config import DEFAULT_START

        mess = MessConfig.clean() if clean else MessConfig().scaled(mess_rate)
        t0 = time.perf_counter()
        summary = simulate(
            vehicles=vehicles,
            days=days,
            seed=seed,
            out=out,
            start=start.date() if start else DEFAULT_START,
            mess=mess,
            progress=not quiet,
            workers=workers,
        )
        secs = time.perf_counter() - t0
        if quiet:
            return
        console = output_console()
        t = Table(
            title=f"Simulated {vehicles} vehicles x {days} days (seed {seed}) in {secs:.1f} s"
        )
        t.add_column("table")
        t.add_column("rows", justify="right")
        for name, n in summary.rows.items():
            t.add_row(name, f"{n:,}")
        console.print(t)
        faults = ", ".join(f"{k} {v:,}" for k, v in summary.mess.items()) or "none"
        console.print(f"tables → {out / 'tables'}   truth → {out / 'truth'}   faults: {faults}")
