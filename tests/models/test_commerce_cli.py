"""The analyst commands (clv fit, rules mine, rfm) through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from autopersona.models.cli import register

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE = DATA / "online_retail" / "online_retail_sample_200_customers.csv"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """The commands on an app of their own (independent of the other stages' CLIs)."""
    a = typer.Typer()

    @a.callback()
    def _root() -> None:
        pass

    register(a)
    return a


def _run(app: typer.Typer, *args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def _json(app: typer.Typer, *args: str | Path) -> dict[str, Any]:
    res = _run(app, *args, "--json")
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.stdout)
    return out


@pytest.fixture(scope="module")
def cdnow_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tx = pd.read_csv(
        DATA / "cdnow" / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "customer", "date", "cds", "usd"],
        dtype={"date": str},
    )
    p = tmp_path_factory.mktemp("cdnow") / "cdnow.csv"
    tx.to_csv(p, index=False)
    return p


def test_registered_on_the_main_app() -> None:
    from autopersona.cli import app as main_app

    groups = {g.name for g in main_app.registered_groups}
    commands = {c.name for c in main_app.registered_commands}
    assert {"clv", "rules"} <= groups
    assert "rfm" in commands


# --------------------------------------------------------------------------- clv
class TestClv:
    ARGS = ("--customer", "customer", "--date", "date", "--amount", "usd")

    def test_cdnow_published_parameters(
        self, app: typer.Typer, cdnow_csv: Path, tmp_path: Path
    ) -> None:
        out = tmp_path / "clv.csv"
        rep = _json(
            app, "clv", "fit", "--transactions", cdnow_csv, *self.ARGS,
            "--until", "1997-09-30", "--unit", "week", "--out", out,
        )  # fmt: skip
        assert rep["customers"] == 2357 and rep["repeat_customers"] == 946
        assert rep["until"] == "1997-09-30" and rep["unit"] == "week"
        bg, gg = rep["bgnbd"], rep["gamma_gamma"]
        assert [round(bg[k], 3) for k in ("r", "alpha", "a", "b")] == [0.243, 4.414, 0.793, 2.426]
        assert [round(gg[k], 2) for k in ("p", "q", "v")] == [6.25, 3.74, 15.44]
        assert rep["fit_seconds"]["total"] > 0
        table = pd.read_csv(out, index_col="customer")
        assert len(table) == 2357
        assert {"p_alive", "expected_purchases", "expected_average_value", "clv"} <= set(table)
        assert table["p_alive"].between(0, 1).all() and (table["clv"] >= 0).all()

    def test_parquet_input_same_result(
        self, app: typer.Typer, cdnow_csv: Path, tmp_path: Path
    ) -> None:
        pq = tmp_path / "cdnow.parquet"
        df = pd.read_csv(cdnow_csv, dtype={"date": str})
        df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
        df.to_parquet(pq)
        rep = _json(
            app, "clv", "fit", "--transactions", pq, *self.ARGS,
            "--until", "1997-09-30", "--unit", "week",
        )  # fmt: skip
        assert round(rep["bgnbd"]["r"], 3) == 0.243

    def test_quantity_price_and_text_output(self, app: typer.Typer) -> None:
        args = ("clv", "fit", "-t", SAMPLE, "--customer", "CustomerID", "--date", "InvoiceDate",
                "--quantity", "Quantity", "--price", "UnitPrice")  # fmt: skip
        rep = _json(app, *args)
        assert rep["customers"] == 200
        assert rep["until"] == "2011-12-09"
        res = _run(app, *args)
        assert res.exit_code == 0 and "BG/NBD" in res.stdout

    def test_without_amount_fits_bgnbd_only(self, app: typer.Typer, cdnow_csv: Path) -> None:
        rep = _json(app, "clv", "fit", "-t", cdnow_csv, "--customer", "customer", "--date", "date")
        assert rep["gamma_gamma"] is None and "amount" in rep["gamma_gamma_note"]


# --------------------------------------------------------------------------- rules
class TestRules:
    def test_basket_file(self, app: typer.Typer, tmp_path: Path) -> None:
        p = tmp_path / "b.csv"
        p.write_text("milk,bread\nmilk,diapers,beer\nmilk,bread,diapers\nbread,diapers,beer\n"
                     "milk,bread,diapers,beer\n")  # fmt: skip
        out = tmp_path / "rules.csv"
        rep = _json(app, "rules", "mine", "--baskets", p, "--min-support", "0.6",
                    "--min-confidence", "0.75", "--out", out)  # fmt: skip
        assert rep["baskets"] == 5 and rep["items"] == 4
        assert rep["itemsets"] == 8 and rep["itemsets_by_size"] == {"1": 4, "2": 4}
        first = rep["rules"][0]
        assert first["antecedents"] == ["beer"] and first["consequents"] == ["diapers"]
        assert first["confidence"] == 1.0 and first["conviction"] is None  # infinite
        assert len(pd.read_csv(out)) == rep["n_rules"]
        res = _run(app, "rules", "mine", "--baskets", p, "--min-support", "0.6")
        assert res.exit_code == 0 and "beer" in res.stdout

    def test_transaction_table(self, app: typer.Typer) -> None:
        rep = _json(app, "rules", "mine", "--baskets", SAMPLE, "--basket-col", "InvoiceNo",
                    "--item-col", "StockCode", "--min-support", "0.05",
                    "--min-confidence", "0.3")  # fmt: skip
        assert rep["baskets"] == 900
        assert rep["itemsets"] > 0

    def test_groceries(self, app: typer.Typer, shared_data: Path) -> None:
        path = shared_data / "groceries" / "groceries.csv"
        if not path.is_file():
            pytest.skip(f"{path} not present")
        rep = _json(app, "rules", "mine", "--baskets", path, "--min-support", "0.01",
                    "--min-confidence", "0.5")  # fmt: skip
        assert rep["baskets"] == 9835
        assert rep["itemsets"] == 333 and rep["itemsets_by_size"] == {"1": 88, "2": 213, "3": 32}
        assert rep["n_rules"] == 15
        r = next(r for r in rep["rules"]
                 if r["antecedents"] == ["citrus fruit", "root vegetables"])  # fmt: skip
        assert r["consequents"] == ["other vegetables"]
        assert [round(r[k], 6) for k in ("support", "confidence", "lift")] == [
            0.010371, 0.586207, 3.029608,
        ]  # fmt: skip


# --------------------------------------------------------------------------- rfm
class TestRfm:
    ARGS = ("--customer", "CustomerID", "--date", "InvoiceDate", "--invoice", "InvoiceNo",
            "--quantity", "Quantity", "--price", "UnitPrice")  # fmt: skip

    def test_sample(self, app: typer.Typer, tmp_path: Path) -> None:
        out = tmp_path / "rfm.parquet"
        rep = _json(app, "rfm", "-t", SAMPLE, *self.ARGS, "--snapshot", "2011-12-10",
                    "--out", out)  # fmt: skip
        assert rep["customers"] == 200 and rep["rows"] == 14362 and rep["invoices"] == 770
        assert rep["cleaning"]["cancellations"] == 289
        assert rep["recency"]["mean"] == pytest.approx(97.74)
        assert sum(t["customers"] for t in rep["tiers"]) == 200
        t = pd.read_parquet(out)
        assert {"r_score", "f_score", "m_score", "tier", "value_tier"} <= set(t.columns)
        res = _run(app, "rfm", "-t", SAMPLE, *self.ARGS)
        assert res.exit_code == 0 and "champions" in res.stdout

    def test_no_clean_keeps_cancellations(self, app: typer.Typer) -> None:
        rep = _json(app, "rfm", "-t", SAMPLE, *self.ARGS, "--no-clean")
        assert rep["rows"] == 14651

    def test_online_retail(self, app: typer.Typer, shared_data: Path) -> None:
        path = shared_data / "online_retail" / "online_retail.parquet"
        if not path.is_file():
            pytest.skip(f"{path} not present")
        rep = _json(app, "rfm", "-t", path, *self.ARGS, "--snapshot", "2011-12-10")
        assert (rep["rows"], rep["customers"], rep["invoices"]) == (397884, 4338, 18532)
        assert round(rep["revenue"], 2) == 8911407.90
        assert round(rep["recency"]["mean"], 2) == 92.06 and rep["recency"]["median"] == 50
        assert round(rep["frequency"]["mean"], 2) == 4.27 and rep["frequency"]["median"] == 2
        assert round(rep["monetary"]["mean"], 2) == 2054.27


# --------------------------------------------------------------------------- bad input
class TestBadInput:
    def _err(self, app: typer.Typer, *args: str | Path) -> str:
        res = _run(app, *args)
        assert res.exit_code == 2, res.output
        assert res.stdout == ""
        msg: str = res.stderr
        assert msg.startswith("error: ")
        return msg

    def test_missing_column(self, app: typer.Typer) -> None:
        msg = self._err(app, "rfm", "-t", SAMPLE, *TestRfm.ARGS[:-1], "Price")
        assert str(SAMPLE) in msg and "'Price'" in msg and "not found" in msg
        msg = self._err(app, "clv", "fit", "-t", SAMPLE, "--customer", "Cust", "--date",
                        "InvoiceDate", "--amount", "UnitPrice")  # fmt: skip
        assert str(SAMPLE) in msg and "'Cust'" in msg

    def test_unparsable_date_and_number(self, app: typer.Typer, tmp_path: Path) -> None:
        p = tmp_path / "t.csv"
        p.write_text("c,d,v\n1,2024-01-01,3.5\n1,someday,2\n")
        msg = self._err(
            app, "clv", "fit", "-t", p, "--customer", "c", "--date", "d", "--amount", "v"
        )
        assert str(p) in msg and "column 'd'" in msg and "'someday'" in msg
        p.write_text("c,d,v\n1,2024-01-01,3.5\n1,2024-01-02,lots\n")
        msg = self._err(
            app, "clv", "fit", "-t", p, "--customer", "c", "--date", "d", "--amount", "v"
        )
        assert "column 'v'" in msg and "'lots'" in msg

    def test_empty_and_missing_files(self, app: typer.Typer, tmp_path: Path) -> None:
        empty = tmp_path / "empty.csv"
        empty.write_text("")
        for args in (
            ("rfm", "-t", empty, *TestRfm.ARGS),
            ("clv", "fit", "-t", empty, "--customer", "c", "--date", "d"),
            ("rules", "mine", "--baskets", empty),
        ):
            assert str(empty) in self._err(app, *args)
        header_only = tmp_path / "header.csv"
        header_only.write_text("c,d\n")
        assert "no rows" in self._err(app, "clv", "fit", "-t", header_only, "--customer", "c",
                                      "--date", "d")  # fmt: skip
        assert "no such file" in self._err(app, "rules", "mine", "--baskets", tmp_path / "nope.csv")
        assert "no such file" in self._err(
            app, "rfm", "-t", tmp_path / "nope.parquet", *TestRfm.ARGS
        )

    def test_bad_options(self, app: typer.Typer, cdnow_csv: Path) -> None:
        base = ("clv", "fit", "-t", cdnow_csv, "--customer", "customer", "--date", "date")
        assert "--until" in self._err(app, *base, "--until", "soon")
        assert "--unit" in self._err(app, *base, "--unit", "month")
        assert "--quantity" in self._err(app, *base, "--quantity", "cds")
        assert "1996" in self._err(app, *base, "--until", "1996-01-01")
        assert "--min-support" in self._err(app, "rules", "mine", "--baskets", cdnow_csv,
                                            "--min-support", "0")  # fmt: skip
        assert "--item-col" in self._err(app, "rules", "mine", "--baskets", cdnow_csv,
                                         "--basket-col", "customer")  # fmt: skip
        assert "--snapshot" in self._err(app, "rfm", "-t", SAMPLE, *TestRfm.ARGS,
                                         "--snapshot", "never")  # fmt: skip

    def test_unsupported_suffix(self, app: typer.Typer, tmp_path: Path) -> None:
        p = tmp_path / "t.xlsx"
        p.write_text("x")
        assert "unsupported" in self._err(app, "rfm", "-t", p, *TestRfm.ARGS)
