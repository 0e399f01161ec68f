"""Analyst commands on any transaction or basket file: ``clv fit``, ``rules mine``, ``rfm``.

Inputs are CSV (``.csv``/``.txt``; ``.tsv`` tab-separated) or Parquet. A missing file or
column, an empty file or an unparsable date or number is reported on stderr, naming the
file and the column, with exit code 2.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]

TRANSACTIONS = typer.Option("--transactions", "-t", help="Transaction table (CSV or Parquet).")
CUSTOMER = typer.Option("--customer", help="Customer id column.")
DATE = typer.Option("--date", help="Transaction date column.")
DATE_FORMAT = typer.Option(
    "--date-format", help="strftime format of the dates (default: ISO 8601, else inferred)."
)
JSON = typer.Option("--json", help="Machine-readable output on stdout.")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _emit(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str, allow_nan=False))


def _finite(x: float) -> float | None:
    """JSON has no infinity: infinite or NaN metrics are written as null."""
    return float(x) if math.isfinite(x) else None


def _write(df: Any, out: Path) -> None:
    df = df.copy()
    df.attrs = {}  # Parquet can only keep JSON-able attrs
    if out.suffix.lower() in (".parquet", ".pq"):
        df.to_parquet(out)
    else:
        df.to_csv(out)


def _day(value: str | None, option: str) -> Any:
    import pandas as pd

    if value is None:
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        raise _fail(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None


def register(app: typer.Typer) -> None:
    """Attach ``clv`` and ``rules`` (command groups) and ``rfm`` (a command) to ``app``."""
    clv_app = typer.Typer(
        help="Customer lifetime value: BG/NBD purchases x Gamma-Gamma spend.",
        no_args_is_help=True,
    )
    rules_app = typer.Typer(help="Market-basket association rules.", no_args_is_help=True)
    app.add_typer(clv_app, name="clv")
    app.add_typer(rules_app, name="rules")

    @clv_app.command("fit")
    def clv_fit(
        transactions: Annotated[Path, TRANSACTIONS],
        customer: Annotated[str, CUSTOMER],
        date: Annotated[str, DATE],
        amount: Annotated[
            str | None, typer.Option("--amount", help="Transaction value column.")
        ] = None,
        quantity: Annotated[
            str | None, typer.Option("--quantity", help="Or: quantity column (value = q x p).")
        ] = None,
        price: Annotated[str | None, typer.Option("--price", help="... and unit price.")] = None,
        until: Annotated[
            str | None,
            typer.Option("--until", help="Last day of the calibration period (default: last day)."),
        ] = None,
        unit: Annotated[str, typer.Option("--unit", help="Time unit: day or week.")] = "day",
        date_format: Annotated[str | None, DATE_FORMAT] = None,
        periods: Annotated[int, typer.Option(help="CLV horizon in periods.")] = 12,
        period_days: Annotated[float, typer.Option(help="Length of one CLV period, days.")] = 30.0,
        discount_rate: Annotated[float, typer.Option(help="Discount rate per period.")] = 0.01,
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                help="Write per-customer summary, P(alive), expected purchases and CLV here.",
            ),
        ] = None,
        as_json: Annotated[bool, JSON] = False,
    ) -> None:
        """Fit BG/NBD and Gamma-Gamma on a transaction table; print the parameters."""
        from autopersona.models._input import InputError, parse_dates, parse_numbers, read_table
        from autopersona.models.clv import (
            UNIT_DAYS,
            BetaGeo,
            GammaGamma,
            customer_lifetime_value,
            summary_from_transactions,
        )

        if unit not in UNIT_DAYS:
            raise _fail(f"--unit {unit!r}: use day or week")
        if amount is None and (quantity is None) != (price is None):
            raise _fail("give --quantity and --price together (or --amount)")
        if periods < 1 or period_days <= 0 or discount_rate <= -1:
            raise _fail("--periods must be >= 1, --period-days > 0, --discount-rate > -1")
        end = _day(until, "--until")
        value_cols = [amount] if amount else [c for c in (quantity, price) if c]
        try:
            df = read_table(transactions, [customer, date, *value_cols], text_columns=[date])
            df[date] = parse_dates(df[date], path=transactions, column=date, fmt=date_format)
            for c in value_cols:
                df[c] = parse_numbers(df[c], path=transactions, column=c)
            if quantity and price and not amount:
                amount = "__amount__"
                df[amount] = df[quantity] * df[price]
            t0 = time.perf_counter()
            summary = summary_from_transactions(
                df,
                customer,
                date,
                amount,
                until=end,
                unit=unit,  # type: ignore[arg-type]
            )
            t_summary = time.perf_counter() - t0
        except InputError as exc:
            raise _fail(str(exc)) from None
        except ValueError as exc:
            raise _fail(f"{transactions}: {exc}") from None
        t0 = time.perf_counter()
        try:
            bg = BetaGeo().fit(summary)
        except ValueError as exc:
            raise _fail(f"{transactions}: BG/NBD: {exc}") from None
        t_bg = time.perf_counter() - t0
        gg: GammaGamma | None = None
        gg_note = "no amount column given" if amount is None else ""
        t_gg = 0.0
        if amount is not None:
            t0 = time.perf_counter()
            try:
                gg = GammaGamma().fit(summary)
            except ValueError as exc:
                gg_note = str(exc)
            t_gg = time.perf_counter() - t0
        report: dict[str, Any] = {
            "file": str(transactions),
            "customers": len(summary),
            "repeat_customers": int((summary["frequency"] > 0).sum()),
            "until": str(summary.attrs["until"].date()),
            "unit": unit,
            "bgnbd": {
                **bg.params_,
                "log_likelihood": bg.log_likelihood_,
                "converged": bg.converged_,
            },
            "gamma_gamma": None
            if gg is None
            else {
                **gg.params_,
                "customers": gg.n_customers_,
                "log_likelihood": gg.log_likelihood_,
                "converged": gg.converged_,
            },
            "fit_seconds": {
                "summary": t_summary,
                "bgnbd": t_bg,
                "gamma_gamma": t_gg,
                "total": t_summary + t_bg + t_gg,
            },
        }
        if gg is None:
            report["gamma_gamma_note"] = gg_note
        if out is not None:
            step = period_days / UNIT_DAYS[unit]
            table = summary.copy()
            args = (table["frequency"], table["recency"], table["T"])
            table["p_alive"] = bg.p_alive(*args)
            table["expected_purchases"] = bg.conditional_expected_purchases(periods * step, *args)
            if gg is not None and gg.q_ > 1:
                table["expected_average_value"] = gg.conditional_expected_average_profit(
                    table["frequency"], table["monetary_value"]
                )
                table["clv"] = customer_lifetime_value(
                    bg,
                    gg,
                    *args,
                    table["monetary_value"],
                    periods=periods,
                    period_length=step,
                    discount_rate=discount_rate,
                )
            _write(table, out)
            report["out"] = str(out)
        if as_json:
            _emit(report)
            return
        from autopersona.console import output_console

        con = output_console()
        con.print(
            f"{transactions}: {report['customers']:,} customers "
            f"({report['repeat_customers']:,} with repeat purchases), until {report['until']}, "
            f"per {unit}"
        )
        con.print(
            "BG/NBD       "
            + "  ".join(f"{k}={v:.4g}" for k, v in bg.params_.items())
            + f"  (LL {bg.log_likelihood_:,.1f})"
        )
        if gg is not None:
            con.print("Gamma-Gamma  " + "  ".join(f"{k}={v:.4g}" for k, v in gg.params_.items()))
        else:
            con.print(f"Gamma-Gamma  not fitted: {gg_note}")
        con.print(f"fit {report['fit_seconds']['total']:.3f} s")

    @rules_app.command("mine")
    def rules_mine(
        baskets: Annotated[
            Path,
            typer.Option(
                "--baskets",
                help="One basket per line, items comma-separated; or a transaction table "
                "with --basket-col/--item-col (CSV or Parquet).",
            ),
        ],
        min_support: Annotated[float, typer.Option("--min-support", help="In (0, 1].")] = 0.01,
        min_confidence: Annotated[float, typer.Option("--min-confidence", help="In [0, 1].")] = 0.5,
        basket_col: Annotated[
            str | None, typer.Option("--basket-col", help="Basket (invoice) id column.")
        ] = None,
        item_col: Annotated[str | None, typer.Option("--item-col", help="Item column.")] = None,
        max_len: Annotated[int | None, typer.Option("--max-len", help="Largest itemset.")] = None,
        min_lift: Annotated[float | None, typer.Option("--min-lift")] = None,
        top: Annotated[int, typer.Option(help="Rules shown in the table.")] = 20,
        out: Annotated[
            Path | None, typer.Option("--out", help="Write all rules here (CSV or Parquet).")
        ] = None,
        as_json: Annotated[bool, JSON] = False,
    ) -> None:
        """Mine frequent itemsets and association rules (support, confidence, lift, ...)."""
        from autopersona.models._input import InputError, read_table
        from autopersona.models.rules import (
            association_rules,
            baskets_from_table,
            frequent_itemsets,
            read_baskets,
            rules_table,
        )

        if not 0 < min_support <= 1:
            raise _fail(f"--min-support {min_support}: must be in (0, 1]")
        if not 0 <= min_confidence <= 1:
            raise _fail(f"--min-confidence {min_confidence}: must be in [0, 1]")
        if (basket_col is None) != (item_col is None):
            raise _fail("give --basket-col and --item-col together")
        table_mode = basket_col is not None or baskets.suffix.lower() in (".parquet", ".pq")
        try:
            if table_mode:
                if basket_col is None or item_col is None:
                    raise InputError(f"{baskets}: a table needs --basket-col and --item-col")
                df = read_table(baskets, [basket_col, item_col])
                lists = baskets_from_table(df, basket_col, item_col)
            else:
                if not baskets.is_file():
                    raise InputError(f"{baskets}: no such file")
                lists = read_baskets(baskets)
                while lists and not lists[-1]:
                    lists.pop()
            if not any(lists):
                raise InputError(f"{baskets}: no baskets (the file is empty)")
        except InputError as exc:
            raise _fail(str(exc)) from None
        except (UnicodeDecodeError, OSError) as exc:
            raise _fail(f"{baskets}: cannot be read: {exc}") from None
        t0 = time.perf_counter()
        fi = frequent_itemsets(lists, min_support, max_len=max_len)
        t_items = time.perf_counter() - t0
        rules = association_rules(fi, min_confidence, min_lift=min_lift)
        secs = time.perf_counter() - t0
        shown = rules_table(rules)
        if out is not None:
            _write(shown, out)
        by_size = fi["length"].value_counts().sort_index()
        sizes = dict(zip(by_size.index.tolist(), by_size.tolist(), strict=True))
        if as_json:
            _emit(
                {
                    "file": str(baskets),
                    "baskets": int(fi.attrs["n_baskets"]),
                    "items": len({i for b in lists for i in b}),
                    "min_support": min_support,
                    "min_confidence": min_confidence,
                    "itemsets": len(fi),
                    "itemsets_by_size": sizes,
                    "n_rules": len(rules),
                    "seconds": {"itemsets": t_items, "total": secs},
                    "rules": [
                        {
                            "antecedents": sorted(map(str, r["antecedents"])),
                            "consequents": sorted(map(str, r["consequents"])),
                            "support": float(r["support"]),
                            "confidence": float(r["confidence"]),
                            "lift": float(r["lift"]),
                            "leverage": float(r["leverage"]),
                            "conviction": _finite(float(r["conviction"])),
                            "count": int(r["count"]),
                        }
                        for r in rules.to_dict("records")
                    ],
                }
            )
            return
        from rich.table import Table

        from autopersona.console import output_console

        con = output_console()
        con.print(
            f"{baskets}: {fi.attrs['n_baskets']:,} baskets; {len(fi):,} frequent itemsets "
            f"(by size {sizes}); {len(rules):,} rules; {secs:.3f} s"
        )
        t = Table()
        for c in ("antecedents", "consequents", "support", "confidence", "lift"):
            t.add_column(c)
        for r in shown.head(top).itertuples(index=False):
            t.add_row(
                str(r.antecedents),
                str(r.consequents),
                f"{r.support:.4f}",
                f"{r.confidence:.3f}",
                f"{r.lift:.3f}",
            )
        con.print(t)

    @app.command("rfm")
    def rfm_cmd(
        transactions: Annotated[Path, TRANSACTIONS],
        customer: Annotated[str, CUSTOMER],
        date: Annotated[str, DATE],
        invoice: Annotated[str, typer.Option("--invoice", help="Invoice (order) id column.")],
        quantity: Annotated[str, typer.Option("--quantity", help="Quantity column.")],
        price: Annotated[str, typer.Option("--price", help="Unit price column.")],
        snapshot: Annotated[
            str | None,
            typer.Option(help="Reference date (default: the day after the last purchase)."),
        ] = None,
        clean: Annotated[
            bool,
            typer.Option(help="Drop missing customers, 'C' invoices, quantity or price <= 0."),
        ] = True,
        date_format: Annotated[str | None, DATE_FORMAT] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="Write the per-customer table here.")
        ] = None,
        as_json: Annotated[bool, JSON] = False,
    ) -> None:
        """RFM per customer: recency, frequency, monetary value, 1-5 scores and tiers."""
        from autopersona.models._input import InputError, parse_dates, parse_numbers, read_table
        from autopersona.models.rfm import (
            assign_tiers,
            clean_transactions,
            rfm_scores,
            rfm_table,
            segment_summary,
        )

        snap = _day(snapshot, "--snapshot")
        try:
            df = read_table(
                transactions,
                [customer, date, invoice, quantity, price],
                text_columns=[date, invoice],
            )
            df[date] = parse_dates(df[date], path=transactions, column=date, fmt=date_format)
            for c in (quantity, price):
                df[c] = parse_numbers(df[c], path=transactions, column=c)
        except InputError as exc:
            raise _fail(str(exc)) from None
        if clean:
            df, cleaning = clean_transactions(
                df, customer=customer, invoice=invoice, quantity=quantity, price=price
            )
        else:
            df = df.dropna(subset=[customer])
            cleaning = {"rows_in": len(df), "rows_out": len(df)}
        df = df.dropna(subset=[date])
        if df.empty:
            raise _fail(f"{transactions}: no rows left after cleaning")
        rfm = rfm_table(
            df,
            customer=customer,
            date=date,
            invoice=invoice,
            quantity=quantity,
            price=price,
            snapshot=snap,
        )
        tiered = assign_tiers(rfm_scores(rfm))
        seg = segment_summary(tiered)
        stats = {
            c: {"mean": float(rfm[c].mean()), "median": float(rfm[c].median())}
            for c in ("recency", "frequency", "monetary")
        }
        if out is not None:
            _write(tiered, out)
        report = {
            "file": str(transactions),
            "snapshot": str(rfm.attrs["snapshot"].date()),
            "cleaning": cleaning,
            "rows": len(df),
            "customers": len(rfm),
            "invoices": int(df[invoice].nunique()),
            "revenue": float(rfm["monetary"].sum()),
            **stats,
            "tiers": [
                {"tier": str(name), **{k: float(v) for k, v in row.items()}}
                | {"customers": int(row["customers"])}
                for name, row in seg.iterrows()
            ],
        }
        if as_json:
            _emit(report)
            return
        from rich.table import Table

        from autopersona.console import output_console

        con = output_console()
        con.print(
            f"{transactions}: {report['rows']:,} rows, {report['customers']:,} customers, "
            f"{report['invoices']:,} invoices, revenue {report['revenue']:,.2f}; "
            f"snapshot {report['snapshot']}"
        )
        con.print(
            "  ".join(
                f"{c[0].upper()}: mean {s['mean']:,.2f}, median {s['median']:,.2f}"
                for c, s in stats.items()
            )
        )
        t = Table()
        for c in ("tier", "customers", "share", "R", "F", "M"):
            t.add_column(c)
        for name, row in seg.iterrows():
            t.add_row(
                str(name),
                f"{int(row['customers']):,}",
                f"{row['share']:.1%}",
                f"{row['recency']:.0f}",
                f"{row['frequency']:.1f}",
                f"{row['monetary']:,.0f}",
            )
        con.print(t)
