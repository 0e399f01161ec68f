"""Contracts are data: every canonical table is declared, and bad files fail with file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopersona.catalog import CatalogError
from autopersona.cli import app
from autopersona.contracts import contract_names, get_contract, load_contract

TABLES = {
    "vehicles",
    "accounts",
    "vehicle_signals",
    "motion",
    "dtc_events",
    "cabin_events",
    "v2x_context",
    "pois",
    "service_records",
    "warnings",
    "subscriptions",
    "commerce_events",
    "orders",
    "reviews",
    "consents",
    "marketing_feedback",
}


def test_every_canonical_table_has_a_contract() -> None:
    assert set(contract_names()) == TABLES


@pytest.mark.parametrize("table", sorted(TABLES))
def test_contract_is_complete(table: str) -> None:
    c = get_contract(table)
    assert c.primary_key and c.description
    for col in c.columns:
        assert col.description
    if c.time_column:
        assert c.column(c.time_column).type == "timestamp"
    for col in c.columns:
        if col.type == "float64" and col.name.endswith(
            ("_mps", "_km", "_pct", "_cny", "_kg", "_m", "_c")
        ):
            assert col.unit, f"{table}.{col.name} needs a unit"


def test_units_are_canonical() -> None:
    assert get_contract("motion").column("accel_long_mps2").unit == "m/s^2"
    assert get_contract("vehicle_signals").column("soc_pct").unit == "%"
    assert get_contract("service_records").column("amount_cny").unit == "CNY"


def _bad(tmp_path: Path, text: str) -> CatalogError:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(CatalogError) as ei:
        load_contract(p)
    return ei.value


GOOD = """table: t
domain: master
description: d
primary_key: [id]
columns:
  - {name: id, type: string, nullable: false, description: key}
  - {name: speed, type: float64, unit: m/s, description: speed}
"""


def test_good_minimal_contract_loads(tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_text(GOOD)
    assert load_contract(p).column("speed").unit == "m/s"


def test_unknown_key_points_at_its_line(tmp_path: Path) -> None:
    err = _bad(tmp_path, GOOD.replace("  - {name: speed,", "  - {name: speed, colour: red,"))
    (issue,) = err.errors
    assert (issue.line, issue.path, issue.message) == (7, "columns -> 1 -> colour", "unknown key")
    assert str(issue).endswith("bad.yaml:7: columns -> 1 -> colour: unknown key")


def test_duplicate_key_points_at_the_second_one(tmp_path: Path) -> None:
    err = _bad(tmp_path, GOOD + "description: again\n")
    assert err.errors[0].line == 8
    assert err.errors[0].message == "duplicate key"


def test_unknown_unit_and_bad_type(tmp_path: Path) -> None:
    err = _bad(
        tmp_path, GOOD.replace("unit: m/s", "unit: kmh").replace("type: float64", "type: float65")
    )
    got = {(e.line, e.path): e.message for e in err.errors}
    assert got[(7, "columns -> 1 -> type")].startswith("Input should be 'string', 'int64'")
    assert got[(7, "columns -> 1 -> unit")] == "Value error, unknown unit 'kmh'"


def test_linkage_flag_only_on_identifier_columns(tmp_path: Path) -> None:
    """``linkage`` (keyed comparison keys at ingest) needs a pii vin, phone or email column."""
    err = _bad(tmp_path, GOOD.replace("unit: m/s,", "unit: m/s, linkage: true,"))
    (issue,) = err.errors
    assert issue.line == 7 and "linkage: only on a pii column named vin, phone or email" in str(
        issue
    )
    assert [c.name for c in get_contract("accounts").columns if c.linkage] == [
        "vin",
        "phone",
        "email",
    ]


def test_key_referencing_unknown_column(tmp_path: Path) -> None:
    err = _bad(tmp_path, GOOD.replace("primary_key: [id]", "primary_key: [nope]"))
    assert "primary_key names unknown column 'nope'" in str(err)
    assert err.errors[0].line == 1


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    err = _bad(tmp_path, GOOD + "columns: [unclosed\n")
    assert err.errors[0].line >= 8
    assert "invalid YAML" in err.errors[0].message


def test_schema_cli_list_and_show() -> None:
    r = CliRunner().invoke(app, ["schema", "list", "--json"])
    assert r.exit_code == 0
    assert {t["table"] for t in json.loads(r.stdout)} == TABLES
    r = CliRunner().invoke(app, ["schema", "show", "motion", "--json"])
    d = json.loads(r.stdout)
    assert d["primary_key"] == ["vin", "ts"]
    assert {c["name"]: c["unit"] for c in d["columns"]}["speed_mps"] == "m/s"
    r = CliRunner().invoke(app, ["schema", "show", "motion"], env={"COLUMNS": "200"})
    assert "accel_long_mps2" in r.stdout and "m/s^2" in r.stdout
    r = CliRunner().invoke(app, ["schema", "show", "nope"])
    assert r.exit_code == 2
    assert "unknown table 'nope'" in r.output
