"""Golden ingestion tests on the real datasets: exact counts, checked against pandas.

The expected numbers were cross-checked with an independent pandas reading of each file
(see the comments); a change in any of them means the pipeline changed what it keeps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autopersona.ingest.engine import IngestReport, ingest
from autopersona.ingest.mapping import resolve_mapping
from autopersona.store.warehouse import Warehouse

pytestmark = pytest.mark.realdata


def _run(wh: Warehouse, mapping: str, *paths: Path) -> IngestReport:
    rep = ingest(list(paths), wh, mapping=resolve_mapping(mapping), keep_going=False)
    for f in rep.files:
        for t in f.targets:
            assert t.read == t.loaded + t.duplicates + t.quarantined
    return rep


def _counts(rep: IngestReport, table: str) -> tuple[int, int, int, int]:
    t = rep.by_table()[table]
    return t.read, t.loaded, t.duplicates, t.quarantined


# ------------------------------------------------------------------ always available (tests/data)
def test_twizy_pieces(wh: Warehouse, tests_data: Path) -> None:
    rep = _run(wh, "twizy", tests_data / "twizy")
    # T1_03_29_2021: 6,189 rows, 10 with a corrupted date; T3_06_07_2021: 1,703 rows, 3 fixes
    # with longitude 1555.6333.
    assert _counts(rep, "motion") == (7892, 7879, 0, 13)
    assert _counts(rep, "v2x_context") == (7892, 7882, 0, 10)
    bad = wh.sql(
        "SELECT row_number, field, reason FROM _quarantine WHERE target_table = 'motion' "
        "AND source_file LIKE '%T1_03_29_2021.csv' ORDER BY row_number LIMIT 1"
    )
    row, field, reason = bad[0]
    assert field == "Date, Time"
    assert reason.startswith("ts: cannot parse '")
    assert row > 1
    # Morocco was UTC+1 on 2021-03-29: 11:13:45 local is 10:13:45 UTC.
    first = wh.sql("SELECT min(ts)::VARCHAR FROM motion WHERE trip_id = 'T1_03_29_2021'")[0][0]
    assert first.startswith("2021-03-29 10:13:45")
    # units: GpsSpeed km/h -> m/s
    vmax = wh.sql("SELECT max(speed_mps) FROM motion")[0][0]
    assert 10 < vmax < 30


# looks vehicles up by their VED ids: in clear (AUTOPERSONA_PSEUDONYMISE=0)
@pytest.mark.usefixtures("clear_identifiers")
def test_ved_static(wh: Warehouse, tests_data: Path) -> None:
    rep = _run(wh, "ved", tests_data / "ved" / "ved_static_all.csv")
    assert _counts(rep, "vehicles") == (384, 384, 0, 0)
    mix = dict(wh.sql("SELECT energy_type, count(*) FROM vehicles GROUP BY 1"))
    assert mix == {"ICE": 264, "HEV": 93, "PHEV": 24, "BEV": 3}
    leafs = wh.sql("SELECT vin FROM vehicles WHERE energy_type = 'BEV' ORDER BY vin")
    assert [r[0] for r in leafs] == ["VED-10", "VED-455", "VED-541"]
    # "NO DATA" is a missing value; 3500 lb = 1587.6 kg
    assert wh.sql("SELECT count(*) FROM vehicles WHERE body_type IS NULL")[0][0] == 352
    kg = wh.sql("SELECT curb_weight_kg FROM vehicles WHERE vin = 'VED-10'")[0][0]
    assert kg == pytest.approx(3500 * 0.45359237)


def test_online_retail_sample(wh: Warehouse, tests_data: Path) -> None:
    path = tests_data / "online_retail" / "online_retail_sample_200_customers.csv"
    rep = _run(wh, "online_retail", path)
    import pandas as pd

    ref = pd.read_csv(path, dtype=str)
    ref_dups = int(ref.duplicated().sum())
    kept = ref[~ref.duplicated()]
    assert _counts(rep, "orders") == (14651, 14651 - ref_dups, ref_dups, 0)
    assert ref_dups == 196
    n_cancel = wh.sql("SELECT count(*) FROM orders WHERE is_cancellation")[0][0]
    assert n_cancel == int(kept.InvoiceNo.str.startswith("C").sum()) == 288
    assert wh.sql("SELECT count(DISTINCT order_id) FROM orders")[0][0] == 900
    assert wh.sql("SELECT count(DISTINCT customer_id) FROM orders")[0][0] == 200


# ------------------------------------------------------------------ ../shared/data
def test_twizy_all(wh: Warehouse, shared_data: Path) -> None:
    rep = _run(wh, "twizy", shared_data / "twizy_ev")
    # 55,645 rows; 170 corrupted dates (README); 3 longitudes of 1555.6333; one SOC sample
    # that drops 14.72 -> 0.02 -> 13.32 within seconds (a CAN glitch).
    assert _counts(rep, "motion") == (55645, 55472, 0, 173)
    assert _counts(rep, "vehicle_signals") == (55645, 55474, 0, 171)
    assert _counts(rep, "v2x_context") == (55645, 55475, 0, 170)
    jump = wh.sql("SELECT reason FROM _quarantine WHERE reason LIKE 'signal jump%'")
    assert jump == [("signal jump in soc_pct: 14.72 -> 0.02 -> 13.32",)]


def test_carobd(wh: Warehouse, shared_data: Path) -> None:
    rep = _run(wh, "carobd", shared_data / "carobd")
    # 20,706 records (README); pandas .duplicated() finds 1,783 exact duplicates over the 9
    # files; idle1's last line is cut after 17 of 28 fields; idle2 ends with a blank line.
    assert _counts(rep, "vehicle_signals") == (20706, 18922, 1783, 1)
    (row, reason) = wh.sql("SELECT row_number, reason FROM _quarantine")[0]
    assert row == 1214 and "expected 28 fields, found 17" in reason
    # speed converted from km/h; ICE: fuel level present, no SOC
    assert wh.sql("SELECT max(speed_mps) < 45, count(soc_pct) FROM vehicle_signals")[0] == (True, 0)


def test_ved_xlsx_matches_csv(wh: Warehouse, shared_data: Path) -> None:
    rep = _run(wh, "ved", shared_data / "ved_static" / "ved_static_all.csv")
    assert rep.loaded == 384


def test_online_retail_full(wh: Warehouse, shared_data: Path) -> None:
    rep = _run(wh, "online_retail", shared_data / "online_retail" / "online_retail.parquet")
    # pandas: df.duplicated().sum() == 5268; 2 "Adjust bad debt" rows have a negative price.
    assert _counts(rep, "orders") == (541909, 536639, 5268, 2)
    # 135,080 null CustomerIDs; 43 of them in duplicate records, 2 in the negative-price rows
    assert wh.sql("SELECT count(*) FROM orders WHERE customer_id IS NULL")[0][0] == 135035
    # UK local time -> UTC: 2010-12-01 08:26 GMT is 08:26 UTC (winter)
    assert str(wh.sql("SELECT min(ts) FROM orders")[0][0]).startswith("2010-12-01 08:26:00")
    reasons = wh.sql("SELECT DISTINCT field FROM _quarantine")
    assert reasons == [("UnitPrice",)]


def test_hillstrom(wh: Warehouse, shared_data: Path) -> None:
    rep = _run(wh, "hillstrom", shared_data / "hillstrom" / "hillstrom.csv")
    assert _counts(rep, "accounts") == (64000, 64000, 0, 0)
    # 64,000 assigned + 42,694 e-mailed + 9,394 visits + 578 conversions (README totals)
    assert _counts(rep, "marketing_feedback") == (116666, 116666, 0, 0)
    arms = dict(
        wh.sql(
            "SELECT arm, count(*) FROM marketing_feedback WHERE event_type = 'assigned' GROUP BY 1"
        )
    )
    assert arms == {"Mens E-Mail": 21307, "Womens E-Mail": 21387, "No E-Mail": 21306}
    spend = wh.sql(
        "SELECT round(sum(value), 2) FROM marketing_feedback WHERE event_type = 'converted'"
    )
    assert spend[0][0] == pytest.approx(67258.13 - _spend_without_conversion(shared_data), abs=0.01)


def _spend_without_conversion(shared_data: Path) -> float:
    import pandas as pd

    d = pd.read_csv(shared_data / "hillstrom" / "hillstrom.csv")
    return float(d.loc[d.conversion == 0, "spend"].sum())


def test_geolife(wh: Warehouse, shared_data: Path) -> None:
    rep = _run(wh, "geolife", shared_data / "geolife" / "ten_users")
    # pandas over the 111 files: 164,531 points; (user, time) repeats 213 times, of which 8
    # are identical records; 3 altitudes below -500 m are nulled (repairs), not dropped.
    assert _counts(rep, "motion") == (164531, 164318, 8, 205)
    assert rep.by_table()["motion"].repaired == 3
    assert wh.sql("SELECT count(*) FROM _repairs")[0][0] == 3
    users = wh.sql("SELECT count(DISTINCT vin) FROM motion")[0][0]
    assert users == 11
