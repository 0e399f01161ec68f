"""``autopersona drivers``, ``sentiment build`` and ``churn build``.

``drivers`` works on any CSV or Parquet file; ``sentiment build`` and ``churn build`` write
the ``features_sentiment`` and ``features_churn`` tables of the warehouse that the attitude
and value tags read.  Bad input is reported on stderr, naming the file and column, with exit
code 2.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]

WAREHOUSE = typer.Option("--warehouse", "-w", help="DuckDB file (default: the configured one).")
JSON = typer.Option("--json", help="Machine-readable output on stdout.")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _emit(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str, allow_nan=False))


def _print_drivers(rep: Any) -> None:
    from rich.table import Table

    from autopersona.console import output_console

    con = output_console()
    con.print(
        f"[bold]{rep.target}[/] = {rep.positive}: {rep.positive_rate:.1%} of {rep.rows:,} rows · "
        f"depth {rep.max_depth} · held-out accuracy {rep.accuracy:.3f} "
        f"(majority {rep.baseline_accuracy:.3f}), AUC {rep.auc:.3f}"
    )
    t = Table(title="Feature importance (tree impurity; permutation on held-out AUC)")
    for c in ("feature", "importance", "permutation", "± std"):
        t.add_column(c, justify="left" if c == "feature" else "right")
    for d in rep.importances:
        t.add_row(
            d["feature"],
            f"{d['importance']:.3f}",
            f"{d['permutation_importance']:.3f}",
            f"{d['permutation_std']:.3f}",
        )
    con.print(t)
    r = Table(title="Rules of high-purchase leaves")
    for c in ("rule", "rows", "purchase rate", "lift"):
        r.add_column(c, justify="left" if c == "rule" else "right")
    for d in rep.rules:
        r.add_row(d["rule"], f"{d['rows']:,}", f"{d['purchase_rate']:.1%}", f"{d['lift']:.2f}")
    con.print(r)


def register(app: typer.Typer) -> None:
    """Attach ``drivers`` (a command), ``sentiment`` and ``churn`` (command groups)."""
    sentiment_app = typer.Typer(
        help="Review and chat sentiment (packaged MiniLM + logistic regression).",
        no_args_is_help=True,
    )
    churn_app = typer.Typer(help="Purchase-frequency churn warning windows.", no_args_is_help=True)
    app.add_typer(sentiment_app, name="sentiment")
    app.add_typer(churn_app, name="churn")

    @app.command("drivers")
    def drivers_cmd(
        data: Annotated[Path, typer.Option("--data", help="CSV or Parquet file.")],
        target: Annotated[str, typer.Option("--target", help="Binary purchase column.")],
        features: Annotated[
            str, typer.Option("--features", help="Comma-separated numeric feature columns.")
        ],
        max_depth: Annotated[int, typer.Option("--max-depth", min=1, max=12)] = 3,
        test_size: Annotated[float, typer.Option("--test-size", min=0.05, max=0.9)] = 0.3,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        as_json: Annotated[bool, JSON] = False,
    ) -> None:
        """Key drivers of purchase: a decision tree's importances, top splits and rules."""
        from autopersona.models._input import InputError, read_table
        from autopersona.models.drivers import key_drivers

        feats = [f.strip() for f in features.split(",") if f.strip()]
        if not feats:
            raise _fail("--features: give at least one column")
        try:
            df = read_table(data, [target, *feats])
            rep = key_drivers(
                df, target, feats, max_depth=max_depth, test_size=test_size, seed=seed
            )
        except InputError as exc:
            raise _fail(str(exc)) from None
        except ValueError as exc:
            raise _fail(f"{data}: {exc}") from None
        if as_json:
            _emit(rep.as_dict())
        else:
            _print_drivers(rep)

    @sentiment_app.command("build")
    def sentiment_build(
        warehouse: Annotated[Path | None, WAREHOUSE] = None,
        period: Annotated[str, typer.Option("--period", help="day, week or month.")] = "week",
        as_json: Annotated[bool, JSON] = False,
    ) -> None:
        """Train on the rated reviews, score every review and chat, write features_sentiment."""
        from autopersona.models import sentiment
        from autopersona.settings import get_settings
        from autopersona.store.warehouse import Warehouse

        reason = sentiment.unavailable_reason()
        if reason is not None:
            raise _fail(f"sentiment is not available: {reason}")
        with Warehouse(warehouse or get_settings().warehouse) as wh:
            try:
                rep = sentiment.build_sentiment_features(wh, period=period)
            except ValueError as exc:
                raise _fail(str(exc)) from None
        if as_json:
            _emit(asdict(rep))
            return
        typer.echo(
            f"scored {rep.messages:,} messages ({rep.reviews:,} reviews, {rep.chats:,} chats) "
            f"-> {rep.rows:,} rows of features_sentiment in {rep.seconds:.1f} s; trained on "
            f"{rep.train_positive} positive / {rep.train_negative} negative "
            f"(seed examples {rep.seed_examples}); time-split hold-out {rep.holdout or 'n/a'}"
        )

    @churn_app.command("build")
    def churn_build(
        warehouse: Annotated[Path | None, WAREHOUSE] = None,
        period: Annotated[str, typer.Option("--period", help="day, week or month.")] = "week",
        window_days: Annotated[int, typer.Option("--window-days", min=1)] = 30,
        as_json: Annotated[bool, JSON] = False,
    ) -> None:
        """Orders in the recent vs the previous window per customer and period: features_churn."""
        from autopersona.models.churn import build_churn_features
        from autopersona.settings import get_settings
        from autopersona.store.warehouse import Warehouse

        with Warehouse(warehouse or get_settings().warehouse) as wh:
            try:
                rep = build_churn_features(wh, period=period, window_days=window_days)
            except ValueError as exc:
                raise _fail(str(exc)) from None
        if as_json:
            _emit(asdict(rep))
            return
        typer.echo(
            f"{rep.rows:,} rows for {rep.customers:,} customers in {rep.seconds:.1f} s; "
            f"{rep.warnings_latest:,} with a frequency drop above 3 in their latest period"
        )
