"""Same seed → same bytes (whatever the worker count); vehicle k does not depend on N."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from autopersona.cli import app
from autopersona.simulate import MessConfig, simulate
from autopersona.simulate.core import CHUNK


def _hashes(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("det_a")
    simulate(CHUNK + 2, 2, seed=5, out=out, workers=1)
    return out


def test_same_seed_same_bytes_whatever_the_workers(base: Path, tmp_path: Path) -> None:
    simulate(CHUNK + 2, 2, seed=5, out=tmp_path, workers=2)
    a, b = _hashes(base), _hashes(tmp_path)
    assert len(a) > 20
    assert a == b


def test_different_seed_different_data(base: Path, tmp_path: Path) -> None:
    simulate(CHUNK + 2, 2, seed=6, out=tmp_path, workers=1)
    a, b = _hashes(base), _hashes(tmp_path)
    for name in ("tables/motion.parquet", "tables/accounts.parquet", "truth/persons.parquet"):
        assert a[name] != b[name], name


def test_vehicle_data_does_not_depend_on_fleet_size(base: Path, tmp_path: Path) -> None:
    simulate(3, 2, seed=5, out=tmp_path, workers=1)
    small = pq.read_table(tmp_path / "tables" / "vehicles.parquet")
    big = pq.read_table(base / "tables" / "vehicles.parquet")
    assert big.slice(0, 3).equals(small)
    vins = small.column("vin")
    for table in ("motion", "vehicle_signals", "service_records", "cabin_events"):
        t_small = pq.read_table(tmp_path / "tables" / f"{table}.parquet")
        t_big = pq.read_table(base / "tables" / f"{table}.parquet")
        t_big = t_big.filter(pc.is_in(t_big.column("vin"), value_set=vins))
        assert t_big.equals(t_small), table


def test_cli_clean_run(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--vehicles",
            "2",
            "--days",
            "1",
            "--seed",
            "3",
            "--out",
            str(tmp_path),
            "--clean",
            "--quiet",
            "--workers",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "tables").glob("*.parquet"))) == 16
    assert pq.read_table(tmp_path / "truth" / "mess.parquet").num_rows == 0


def test_cli_mess_rate_scales_faults(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--vehicles",
            "2",
            "--days",
            "2",
            "--seed",
            "3",
            "--out",
            str(tmp_path),
            "--mess-rate",
            "2",
            "--workers",
            "1",
            "--start",
            "2026-03-02",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "motion" in res.output
    import json

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["mess"]["gps_drift_rate"] == pytest.approx(2 * MessConfig().gps_drift_rate)
    assert manifest["start"] == "2026-03-02"
    assert pq.read_table(tmp_path / "truth" / "mess.parquet").num_rows > 0


def test_rejects_empty_fleet(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        simulate(0, 1, seed=1, out=tmp_path)
