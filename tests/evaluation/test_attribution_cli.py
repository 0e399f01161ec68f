"""``attribution compute`` through typer's CliRunner, on its own app."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

with warnings.catch_warnings():
    # click 8.5 deprecates a name typer imports at import time (not our code)
    warnings.simplefilter("ignore", DeprecationWarning)
    import typer
    from typer.testing import CliRunner

    from autopersona.evaluation.attribution_cli import register


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()

    @a.callback()
    def _root() -> None:
        pass

    register(a)
    return a


def run(app: typer.Typer, *args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def touches(tmp_path: Path) -> Path:
    rows = [
        ("a", "email", "2024-01-02 10:00", 1, 20.0),
        ("a", "app", "2024-01-01 09:00", 1, 20.0),  # earlier: the path is app -> email
        ("b", "email", "2024-01-01", 0, 0.0),
        ("b", "push", "2024-01-03", 0, 0.0),
        ("c", "push", "2024-01-05", 1, 5.0),
    ]
    path = tmp_path / "touches.csv"
    pd.DataFrame(rows, columns=["person", "channel", "ts", "bought", "amount"]).to_csv(
        path, index=False
    )
    return path


ARGS = ["--journey", "person", "--channel", "channel", "--time", "ts", "--converted", "bought"]


def test_compute_json(app, touches, tmp_path):
    fig = tmp_path / "attr.png"
    res = run(app, "attribution", "compute", "--touches", touches, *ARGS, "--value", "amount",
              "--figure", fig, "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["journeys"], out["conversions"], out["distinct_paths"]) == (3, 2, 3)
    credit = out["credit"]
    assert credit["email"]["last_touch"] == 1.0 and credit["app"]["first_touch"] == 1.0
    for method in credit["email"]:
        assert sum(c[method] for c in credit.values()) == pytest.approx(2.0)
    assert out["value"] == 25.0
    assert out["value_credit"]["push"]["last_touch"] == 5.0
    assert set(out["removal_effect"]) == {"app", "email", "push"}
    assert fig.stat().st_size > 1000
    table = run(app, "attribution", "compute", "--touches", touches, *ARGS)
    assert table.exit_code == 0 and "2 conversions in 3 journeys" in table.stdout


def test_compute_errors(app, touches, tmp_path):
    res = run(app, "attribution", "compute", "--touches", touches, *ARGS[:-1], "won")
    assert res.exit_code == 2 and "column 'won' not found" in res.stderr
    bad = tmp_path / "bad.csv"
    pd.read_csv(touches).assign(bought=[1, 1, 0, 0, 3]).to_csv(bad, index=False)
    res = run(app, "attribution", "compute", "--touches", bad, *ARGS)
    assert res.exit_code == 2 and f"{bad}: bought: row 4 is 3, not 0 or 1" in res.stderr
    bad.write_text("person,channel,ts,bought\na,email,later,1\n")
    res = run(app, "attribution", "compute", "--touches", bad, *ARGS)
    assert res.exit_code == 2 and "'later' (row 1) is not a date" in res.stderr
