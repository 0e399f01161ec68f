"""``autopersona identity link`` and ``identity show``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from idcheck import Linked
from typer.testing import CliRunner

from autopersona.identity.cli import register
from autopersona.store.warehouse import Warehouse


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # a group, as under the real ``autopersona`` command
        pass

    return app


def test_link_json(app: typer.Typer, linked: Linked, tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    shutil.copy(linked.path, path)
    res = CliRunner().invoke(app, ["identity", "link", "-w", str(path), "--exact-only", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["accounts"] == linked.report.accounts
    assert rep["probabilistic"] is False and rep["probabilistic_links"] == 0
    assert rep["exact_links"] + rep["singletons"] == rep["accounts"]
    # exact-only after a full run splits what only Splink had joined, and records it
    assert rep["split_persons"] == rep["new_persons"] > 0
    with Warehouse(path, read_only=True) as wh:
        assert (
            wh.con.execute("SELECT count(*) FROM person_merges WHERE kind = 'split'").fetchall()[0][
                0
            ]
            > 0
        )


def test_link_table_and_bad_threshold(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    res = CliRunner().invoke(app, ["identity", "link", "-w", str(path), "--threshold", "0.95"])
    assert res.exit_code == 0, res.output
    assert "persons" in res.stdout and "threshold 0.95" in res.stdout
    res = CliRunner().invoke(app, ["identity", "link", "-w", str(path), "--threshold", "1.5"])
    assert res.exit_code == 2 and "threshold" in res.output


def test_show_by_account_and_vin(app: typer.Typer, linked: Linked) -> None:
    with Warehouse(linked.path, read_only=True) as wh:
        account, vin, person = wh.con.execute(
            """SELECT a.account_id, a.vin, l.person_id FROM accounts a
               JOIN identity_links l USING (account_id)
               WHERE a.source = 'owner' ORDER BY a.account_id LIMIT 1"""
        ).fetchall()[0]
        n = wh.con.execute(
            "SELECT account_count FROM persons WHERE person_id = ?", [person]
        ).fetchall()[0][0]
    res = CliRunner().invoke(app, ["identity", "show", account, "-w", str(linked.path), "--json"])
    assert res.exit_code == 0, res.output
    (p,) = json.loads(res.stdout)
    assert p["person_id"] == person and len(p["accounts"]) == n == p["account_count"]
    assert account in {a["account_id"] for a in p["accounts"]} and vin in p["vins"]
    # by VIN, typed in lower case: the same person
    res = CliRunner().invoke(
        app, ["identity", "show", vin.lower(), "-w", str(linked.path), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert [q["person_id"] for q in json.loads(res.stdout)] == [person]
    # human-readable form
    res = CliRunner().invoke(app, ["identity", "show", account, "-w", str(linked.path)])
    assert res.exit_code == 0 and person in res.stdout


def test_show_unknown(app: typer.Typer, linked: Linked, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["identity", "show", "NOPE-1", "-w", str(linked.path)])
    assert res.exit_code == 1 and "no person" in res.output
    res = CliRunner().invoke(app, ["identity", "show", "X", "-w", str(tmp_path / "absent.duckdb")])
    assert res.exit_code == 2 and "no warehouse" in res.output
