"""Warehouse helpers keep the connection usable between calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autopersona.cli import main
from autopersona.store.warehouse import Warehouse, WarehouseBusy


def test_count_then_frame_on_one_connection(wh: Warehouse) -> None:
    # a half-read result left by count() made the next con.sql() fail ("unfinished result")
    wh.con.execute("INSERT INTO vehicles (vin, msrp_cny, energy_type) VALUES ('V1', 1, 'BEV')")
    assert wh.count("vehicles") == 1
    assert wh.frame("SELECT vin FROM vehicles")["vin"].tolist() == ["V1"]
    assert wh.count("motion") == 0
    assert wh.frame("SELECT count(*) AS n FROM motion")["n"].tolist() == [0]


def _hold(path: Path) -> subprocess.Popen[str]:
    """Another process that opens ``path`` for writing and keeps it until its stdin closes."""
    code = (
        "import sys\n"
        "from autopersona.store.warehouse import Warehouse\n"
        f"wh = Warehouse({str(path)!r})\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_warehouse_held_elsewhere_is_reported_by_file_and_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "held.duckdb"
    proc = _hold(path)
    try:
        with pytest.raises(WarehouseBusy) as info:
            Warehouse(path)
        assert info.value.path == str(path)
        assert info.value.holder is not None and f"PID {proc.pid}" in info.value.holder
        with pytest.raises(WarehouseBusy):
            Warehouse(path, read_only=True)  # nor may a reader open it meanwhile
        # the command line: one line naming the file and the process, exit code 1
        monkeypatch.setattr(sys, "argv", ["autopersona", "features", "build"])
        monkeypatch.setenv("AUTOPERSONA_WAREHOUSE", str(path))
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: warehouse {path} is in use by ")
        assert f"PID {proc.pid}" in err and "Traceback" not in err
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()
    with Warehouse(path) as wh:  # free again once the other process is gone
        assert wh.count("motion") == 0
