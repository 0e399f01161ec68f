"""Cleaning scored against the simulator's hidden truth (only this test reads ``truth/``).

The simulator injects GPS drift spikes, CAN signal jumps, duplicate rows, missing values and
late records, and records each one in ``truth/mess.parquet``.  Ingestion must quarantine
exactly the spikes and jumps, drop exactly the duplicates, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from autopersona.ingest.engine import IngestReport, ingest
from autopersona.simulate import MessConfig, simulate
from autopersona.store.warehouse import Warehouse

FLEET = {"vehicles": 8, "days": 4, "seed": 11}


@pytest.fixture(scope="module")
def messy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, Warehouse, IngestReport]]:
    out = tmp_path_factory.mktemp("fleet")
    simulate(**FLEET, out=out, workers=1)
    wh = Warehouse(":memory:")
    rep = ingest([out / "tables"], wh, keep_going=False)
    yield out, wh, rep
    wh.close()


def _truth(out: Path, kind: str, table: str) -> set[tuple[str, pd.Timestamp]]:
    """The injected mess, its VINs pseudonymised with the key as ingestion did (a scoring
    harness holds the key; the warehouse holds no clear VIN)."""
    from autopersona.privacy.pseudo import live_pseudonyms

    ps = live_pseudonyms()
    m = pd.read_parquet(out / "truth" / "mess.parquet")
    m = m[(m.kind == kind) & (m.table == table)]
    return {
        (v if ps is None else ps(v), pd.Timestamp(t).tz_convert("UTC"))
        for v, t in zip(m.vin, m.ts, strict=True)
    }


def _quarantined(wh: Warehouse, table: str, prefix: str) -> set[tuple[str, pd.Timestamp]]:
    rows = wh.sql(
        "SELECT json_extract_string(raw, '$.vin'), json_extract_string(raw, '$.ts') "
        "FROM _quarantine WHERE target_table = ? AND starts_with(reason, ?)",
        [table, prefix],
    )
    return {(v, pd.Timestamp(t).tz_convert("UTC")) for v, t in rows}


def test_gps_drift_recovered_exactly(messy: tuple[Path, Warehouse, IngestReport]) -> None:
    out, wh, _ = messy
    injected = _truth(out, "gps_drift", "motion")
    found = _quarantined(wh, "motion", "GPS drift")
    assert len(injected) > 20
    assert found == injected


def test_can_jumps_recovered_exactly(messy: tuple[Path, Warehouse, IngestReport]) -> None:
    out, wh, _ = messy
    injected = _truth(out, "can_jump", "vehicle_signals")
    found = _quarantined(wh, "vehicle_signals", "signal jump")
    assert len(injected) > 5
    assert found == injected


def test_duplicates_dropped_exactly(messy: tuple[Path, Warehouse, IngestReport]) -> None:
    out, _, rep = messy
    m = pd.read_parquet(out / "truth" / "mess.parquet")
    injected = m[m.kind == "duplicate"].groupby("table").size().to_dict()
    got = {t: r.duplicates for t, r in rep.by_table().items() if r.duplicates}
    assert got == injected


def test_nothing_else_is_quarantined(messy: tuple[Path, Warehouse, IngestReport]) -> None:
    _, _, rep = messy
    for table, r in rep.by_table().items():
        kinds = set(r.reasons)
        assert kinds <= {"GPS drift", "signal jump in soc_pct", "signal jump in fuel_level_pct"}, (
            table
        )


def test_late_records_counted_and_loaded(messy: tuple[Path, Warehouse, IngestReport]) -> None:
    out, wh, rep = messy
    m = pd.read_parquet(out / "truth" / "mess.parquet")
    injected = m[m.kind == "out_of_order"].groupby("table").size()
    motion = rep.by_table()["motion"]
    assert motion.out_of_order == pytest.approx(injected["motion"], rel=0.1)
    # order is restored: per vehicle, time never goes back in the loaded table
    back = wh.sql(
        "SELECT count(*) FROM (SELECT ts < lag(ts) OVER (PARTITION BY vin ORDER BY ts) b "
        "FROM motion) WHERE b"
    )[0][0]
    assert back == 0


def test_missing_signal_values_are_forward_filled(
    messy: tuple[Path, Warehouse, IngestReport],
) -> None:
    out, wh, _ = messy
    m = pd.read_parquet(out / "truth" / "mess.parquet")
    soc = m[(m.kind == "missing") & (m.table == "vehicle_signals") & (m.column == "soc_pct")]
    assert len(soc) > 0
    nulls = wh.sql(
        "SELECT count(*) FROM vehicle_signals s JOIN vehicles v USING (vin) "
        "WHERE v.energy_type <> 'ICE' AND s.soc_pct IS NULL"
    )[0][0]
    assert nulls <= 8  # only a vehicle's very first samples can stay null


def test_clean_fleet_loads_everything(tmp_path: Path) -> None:
    out = tmp_path / "clean"
    simulate(vehicles=3, days=2, seed=5, out=out, mess=MessConfig.clean(), workers=1)
    with Warehouse(":memory:") as wh:
        rep = ingest([out / "tables"], wh, keep_going=False)
        assert rep.quarantined == 0
        assert rep.duplicates == 0
        assert rep.loaded == rep.read
        assert rep.skipped == []
