"""``autopersona attribution compute``: channel credit from a touch table, by several methods.

The file (CSV, TSV or Parquet) has one row per touch: journey (person) id, channel, time
(a date-time or a number giving the order) and a 0/1 conversion flag, optionally a value.
Credit is printed per channel for last touch, first touch, linear, position-based (40/20/40)
the Markov removal effect and the Shapley value (:mod:`autopersona.evaluation.attribution`).
Bad input is
reported on stderr naming the file, row and column, with exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def compute_report(
    touches: Path,
    journey: str,
    channel: str,
    time: str,
    converted: str,
    value: str | None = None,
    collapse_repeats: bool = False,
    figure: Path | None = None,
) -> dict[str, Any]:
    """What ``attribution compute`` prints: credit per channel and method, removal effects.

    Parameters
    ----------
    touches
        Touch table (CSV/TSV/Parquet).
    journey, channel, time, converted
        Column names.
    value
        Optional conversion value column; credit is then given in value as well.
    collapse_repeats
        Merge consecutive touches of one channel.
    figure
        Write the attribution bar chart here.

    Returns
    -------
    dict
        JSON-ready report.

    Raises
    ------
    ValueError
        Bad input; the message names the file, row or column.
    """
    import pandas as pd

    from autopersona.evaluation.attribution import (
        attribute,
        attribution_figure,
        paths,
        removal_effects,
    )
    from autopersona.models._input import parse_dates, read_table

    cols = [journey, channel, time, converted, *([value] if value else [])]
    df = read_table(touches, cols, text_columns=[journey, channel])
    if not pd.api.types.is_numeric_dtype(df[time]):
        df[time] = parse_dates(df[time], path=touches, column=time)
    try:
        p = paths(df, journey, channel, time, converted, value, collapse_repeats)
    except ValueError as exc:
        raise ValueError(f"{touches}: {exc}") from None
    table = attribute(p)
    report: dict[str, Any] = {
        "touches": str(touches),
        "rows": len(df),
        "journeys": int(p["journeys"].sum()),
        "conversions": int(p["conversions"].sum()),
        "distinct_paths": len(p),
        "credit": {str(ch): {m: float(v) for m, v in row.items()} for ch, row in table.iterrows()},
        "removal_effect": {str(k): float(v) for k, v in removal_effects(p).items()},
    }
    if value:
        by_value = attribute(p, by_value=True)
        report["value"] = float(p["value"].sum())
        report["value_credit"] = {
            str(ch): {m: float(v) for m, v in row.items()} for ch, row in by_value.iterrows()
        }
    if figure is not None:
        attribution_figure(table, title=f"Channel attribution ({touches.name})").savefig(
            figure, dpi=120
        )
        report["figure"] = str(figure)
    return report


def register(app: typer.Typer) -> None:
    """Attach the ``attribution`` command group (``attribution compute``) to ``app``."""
    attribution_app = typer.Typer(
        help="Multi-channel attribution: rules, Markov removal effect, Shapley.",
        no_args_is_help=True,
    )
    app.add_typer(attribution_app, name="attribution")

    @attribution_app.command("compute")
    def attribution_compute(
        touches: Annotated[Path, typer.Option("--touches", help="Touch table (CSV/Parquet).")],
        journey: Annotated[str, typer.Option("--journey", help="Journey or person id column.")],
        channel: Annotated[str, typer.Option("--channel", help="Channel column.")],
        time: Annotated[str, typer.Option("--time", help="Touch time (or order) column.")],
        converted: Annotated[
            str, typer.Option("--converted", help="0/1 conversion flag of the journey.")
        ],
        value: Annotated[
            str | None, typer.Option("--value", help="Conversion value column (optional).")
        ] = None,
        collapse_repeats: Annotated[
            bool, typer.Option("--collapse-repeats", help="Merge repeated consecutive channels.")
        ] = False,
        figure: Annotated[
            Path | None, typer.Option("--figure", help="Write the bar chart here.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Credit conversions to channels: last/first touch, linear, 40/20/40, Markov, Shapley."""
        try:
            report = compute_report(
                touches, journey, channel, time, converted, value, collapse_repeats, figure
            )
        except ValueError as exc:  # InputError included
            msg = str(exc)
            raise _fail(msg if msg.startswith(str(touches)) else f"{touches}: {msg}") from None
        if as_json:
            typer.echo(json.dumps(report, indent=2, allow_nan=False))
            return
        from rich.table import Table

        from autopersona.console import output_console

        credit = report["credit"]
        methods = list(next(iter(credit.values())))
        t = Table(
            title=f"{report['conversions']:,} conversions in {report['journeys']:,} journeys "
            f"({report['distinct_paths']:,} distinct paths)"
        )
        t.add_column("channel")
        for m in [*methods, "removal effect"]:
            t.add_column(m, justify="right")
        for ch, row in credit.items():
            t.add_row(
                ch,
                *[f"{row[m]:.2f}" for m in methods],
                f"{report['removal_effect'][ch]:.3f}",
            )
        output_console().print(t)
