"""Command output keeps its columns whole off a terminal."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from autopersona.cli import app
from autopersona.console import PIPE_WIDTH, output_console


def test_width_off_a_terminal_and_with_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert output_console().width == PIPE_WIDTH  # pytest's stdout is not a terminal
    monkeypatch.setenv("COLUMNS", "100")
    assert output_console().width == 100


def test_piped_table_keeps_ids_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    res = CliRunner().invoke(app, ["strategies", "list"])
    assert res.exit_code == 0, res.output
    # at rich's 80 columns these were cut to "t2_brake_wear_comm…" and "mid_ownership ×…"
    assert "t2_brake_wear_commute" in res.output
    assert "mid_ownership × long_trip × BEV" in res.output
    assert "…" not in res.output
