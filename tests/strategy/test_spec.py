"""The strategy and channel catalogues: the built-in files, broken fixtures, the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from autopersona.catalog import CatalogError
from autopersona.strategy.spec import load_channels, load_strategies

from .stratcheck import FIXTURES

with warnings.catch_warnings():
    # typer (0.20) imports a name click 8.5 deprecates; nothing of ours
    warnings.filterwarnings("ignore", "'click.utils.get_", DeprecationWarning)
    from typer.testing import CliRunner

    from autopersona.cli import app


def test_builtin_catalogue_has_table2_and_lifecycle_plays() -> None:
    cat = load_strategies()
    assert {"t2_bev_long_trip", "t2_brake_wear_commute", "t2_adas_trial_end"} <= set(cat.strategies)
    assert {"lc_welcome", "lc_first_purchase", "lc_loyalty_perk", "lc_winback"} <= set(
        cat.strategies
    )
    kinds = {s.id: s.trigger.kind for s in cat.strategies.values()}
    assert kinds["t2_bev_long_trip"] == "event"
    assert kinds["t2_brake_wear_commute"] == "metric"
    assert kinds["t2_adas_trial_end"] == "calendar"
    adas = cat.strategies["t2_adas_trial_end"].trigger.calendar
    assert adas is not None and (adas.from_days, adas.to_days) == (-30, 0)
    for s in cat.strategies.values():
        assert s.file.endswith(".yaml") and s.line > 1
        assert ("audience",) in cat.parsed[s.id]
    assert set(cat.channels) == {"head_unit", "app_push", "sms", "email"}
    assert cat.channels["head_unit"].driving_safety is not None


def _errors(folder: str) -> list[str]:
    with pytest.raises(CatalogError) as exc:
        load_strategies(FIXTURES / "empty", sorted((FIXTURES / folder).glob("*.yaml")))
    return [f"{Path(e.file).name}:{e.line}: {e.path}: {e.message}" for e in exc.value.errors]


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("unknown_key", ["s.yaml:9: strategies -> 0 -> colour: unknown key"]),
        (
            "bad_expression",
            ["s.yaml:5: strategies -> 0 -> audience: column 26: function '__import__' is not"],
        ),
        ("unknown_channel", ["s.yaml:10: strategies -> 0 -> channels -> 1: unknown channel"]),
        ("duplicate_id", ["b.yaml:3: strategies -> 0 -> id: duplicate strategy id 'same'"]),
        (
            "bad_template",
            ["s.yaml:12: strategies -> 0 -> content -> variants -> 0 -> body: unknown template"],
        ),
        (
            "prev_not_feature",
            ["s.yaml:8: strategies -> 0 -> trigger -> metric -> condition: prev() needs a"],
        ),
        ("bad_value", ["s.yaml:5: strategies -> 0 -> audience: column 1: 'outdoors' is not a"]),
        (
            "bad_calendar",
            [
                "s.yaml:9: strategies -> 0 -> trigger -> calendar -> column: 'price_cny' is not",
                "s.yaml:10: strategies -> 0 -> trigger -> calendar -> where -> product: "
                "'adas_autopilot' is not allowed",
            ],
        ),
        (
            "no_default_variant",
            ["s.yaml:9: strategies -> 0 -> content: Value error, the last variant is the default"],
        ),
        ("two_triggers", ["s.yaml:6: strategies -> 0 -> trigger: Value error, give exactly one"]),
    ],
)
def test_broken_files_name_file_and_line(folder: str, expected: list[str]) -> None:
    got = _errors(folder)
    assert len(got) == len(expected), got
    for g, e in zip(got, expected, strict=True):
        assert g.startswith(e), g


def test_broken_channels_file() -> None:
    with pytest.raises(CatalogError) as exc:
        load_channels(FIXTURES / "bad_channels" / "channels.yaml")
    got = [(e.line, e.path) for e in exc.value.errors]
    assert got == [
        (3, "policy -> default_timezone"),
        (7, "channels -> 0 -> quiet_hours -> end"),
        (9, "channels -> 1 -> consent_channel"),
    ]


runner = CliRunner()


def test_cli_list_and_validate() -> None:
    res = runner.invoke(app, ["strategies", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert {r["id"] for r in rows} >= {"t2_adas_trial_end", "lc_winback"}
    ok = runner.invoke(
        app, ["strategies", "validate", str(FIXTURES / "engine" / "strategies.yaml")]
    )
    assert ok.exit_code == 0 and "3 strategies" in ok.output
    bad = runner.invoke(app, ["strategies", "validate", str(FIXTURES / "bad_value" / "s.yaml")])
    assert bad.exit_code == 1
    assert "s.yaml:5: strategies -> 0 -> audience" in bad.output


def test_cli_plan_and_run_on_a_warehouse(tmp_path: Path) -> None:
    from autopersona.store.warehouse import Warehouse

    from .stratcheck import fill

    db = tmp_path / "wh.duckdb"
    with Warehouse(db) as wh:
        fill(wh)
    common = ["--warehouse", str(db), "--catalogue", str(FIXTURES / "engine")]
    res = runner.invoke(app, ["strategies", "plan", *common, "--as-of", "2026-02-11", "--json"])
    assert res.exit_code == 0, res.output
    plan = {r["strategy_id"]: r for r in json.loads(res.output)["strategies"]}
    assert plan["weekly_all"]["audience"] == 3 and plan["weekly_all"]["no_consent"] == 1
    assert plan["weekly_all"]["by_channel"] == {"sms": 1, "email": 1}
    res = runner.invoke(app, ["strategies", "run", *common, "--as-of", "2026-02-11", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["logged"] and out["decisions"] == 3
    row = next(r for r in out["strategies"] if r["strategy_id"] == "weekly_all")
    assert row["send"] + row["suppressed"] == 3 and row["by_guard"]["consent"] >= 1
    again = json.loads(
        runner.invoke(app, ["strategies", "run", *common, "--as-of", "2026-02-11", "--json"]).output
    )
    row = next(r for r in again["strategies"] if r["strategy_id"] == "weekly_all")
    assert row["send"] == 0  # a rerun for the same week sends nothing again
    bad = runner.invoke(app, ["strategies", "run", *common, "--as-of", "someday"])
    assert bad.exit_code == 2
