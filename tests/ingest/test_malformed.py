"""Bad input: clear errors naming file, row and field, or quarantine — counts always add up."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autopersona.ingest.engine import ingest
from autopersona.ingest.errors import IngestError
from autopersona.store.warehouse import Warehouse

HEADER = "vin,ts,lat,lon,speed_mps\n"


def _q(wh: Warehouse) -> list[tuple[int, str, str]]:
    return [
        (int(r), str(f), str(m))
        for r, f, m in wh.sql(
            "SELECT row_number, field, reason FROM _quarantine ORDER BY row_number, reason"
        )
    ]


def _adds_up(rep: object) -> None:
    d = rep.to_dict()  # type: ignore[attr-defined]
    assert d["read"] == d["loaded"] + d["duplicates"] + d["quarantined"]


def test_wrong_types_are_quarantined_with_row_and_field(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "motion.csv"
    p.write_text(
        HEADER
        + "V1,2026-01-05T08:00:00Z,31.2,121.4,10\n"
        + "V1,2026-01-05T08:00:01Z,abc,121.4,10\n"
        + "V1,2026-01-05T08:00:02Z,31.2,121.4,fast\n"
        + "V1,2026-01-05T08:00:03Z,31.2,121.4,-3\n"
    )
    rep = ingest([p], wh)
    _adds_up(rep)
    assert (rep.read, rep.loaded, rep.quarantined) == (4, 1, 3)
    assert _q(wh) == [
        (3, "lat", "lat: cannot parse 'abc' as float64"),
        (4, "speed_mps", "speed_mps: cannot parse 'fast' as float64"),
        (5, "speed_mps", "speed_mps: -3.0 below minimum 0"),
    ]


def test_every_problem_of_a_row_is_reported(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "motion.csv"
    p.write_text(HEADER + "V1,2026-01-05T08:00:00Z,95,200,10\n")
    ingest([p], wh)
    ((row, field, reason),) = _q(wh)
    assert (row, field) == (2, "lat")
    assert reason == "lat: 95.0 above maximum 90; lon: 200.0 above maximum 180"


def test_missing_required_column_is_a_clear_error(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "motion.csv"
    p.write_text("vin,lat,lon\nV1,31.2,121.4\n")
    with pytest.raises(
        IngestError, match=r"motion.csv: missing required column\(s\) ts for table motion"
    ):
        ingest([p], wh, keep_going=False)
    assert wh.count("motion") == 0


def test_missing_nullable_columns_load_as_null_with_a_note(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "motion.csv"
    p.write_text("vin,ts,lat,lon,extra\nV1,2026-01-05 08:00:00,31.2,121.4,x\n")
    rep = ingest([p], wh)
    assert rep.loaded == 1
    notes = " ".join(rep.files[0].notes)
    assert "loaded as null: alt_m" in notes
    assert "not in the contract, ignored: extra" in notes


def test_unparsable_and_implausible_timestamps(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "motion.csv"
    p.write_text(
        HEADER
        + "V1,yesterday,31.2,121.4,1\n"
        + "V1,1901-01-01T00:00:00Z,31.2,121.4,1\n"
        + "V1,2999-01-01T00:00:00Z,31.2,121.4,1\n"
        + "V1,,31.2,121.4,1\n"
    )
    rep = ingest([p], wh)
    _adds_up(rep)
    assert rep.quarantined == 4
    reasons = [r for _, _, r in _q(wh)]
    assert reasons[0] == "ts: cannot parse 'yesterday' as timestamp"
    assert "outside the plausible range" in reasons[1]
    assert "outside the plausible range" in reasons[2]
    assert reasons[3] == "ts: missing value (required)"


def test_backwards_timestamps_are_loaded_in_order_and_counted(
    wh: Warehouse, tmp_path: Path
) -> None:
    p = tmp_path / "motion.csv"
    p.write_text(
        HEADER
        + "V1,2026-01-05T08:00:02Z,31.2002,121.4,1\n"
        + "V1,2026-01-05T08:00:00Z,31.2000,121.4,1\n"
        + "V1,2026-01-05T08:00:01Z,31.2001,121.4,1\n"
    )
    rep = ingest([p], wh)
    assert rep.loaded == 3
    assert rep.by_table()["motion"].out_of_order == 1
    lats = [r[0] for r in wh.sql("SELECT lat FROM motion ORDER BY ts")]
    assert lats == [31.2, 31.2001, 31.2002]


# the refusal names the clear VIN: in clear (AUTOPERSONA_PSEUDONYMISE=0)
@pytest.mark.usefixtures("clear_identifiers")
def test_duplicate_timestamps_with_other_values_are_a_key_conflict(
    wh: Warehouse, tmp_path: Path
) -> None:
    p = tmp_path / "motion.csv"
    p.write_text(
        HEADER
        + "V1,2026-01-05T08:00:00Z,31.2,121.4,1\n"
        + "V1,2026-01-05T08:00:00Z,31.2,121.4,1\n"
        + "V1,2026-01-05T08:00:00Z,31.3,121.4,1\n"
    )
    rep = ingest([p], wh)
    assert (rep.loaded, rep.duplicates, rep.quarantined) == (1, 1, 1)
    ((row, field, reason),) = _q(wh)
    assert row == 4 and field == "vin"
    assert reason.startswith(
        "duplicate key (vin=V1, ts=2026-01-05 08:00:00+00) with different values"
    )
    assert reason.endswith("first at row 2")


def test_truncated_csv_keeps_good_rows_and_quarantines_the_cut_line(
    wh: Warehouse, tmp_path: Path
) -> None:
    p = tmp_path / "motion.csv"
    p.write_text(HEADER + "V1,2026-01-05T08:00:00Z,31.2,121.4,1\nV1,2026-01-05T08:00:01Z,31.2")
    rep = ingest([p], wh)
    _adds_up(rep)
    assert (rep.read, rep.loaded, rep.quarantined) == (2, 1, 1)
    assert _q(wh)[0][0] == 3
    assert "expected 5 fields, found 3 (truncated line?)" in _q(wh)[0][2]
    raw = wh.sql("SELECT raw FROM _quarantine")[0][0]
    assert raw == "V1,2026-01-05T08:00:01Z,31.2"


def test_truncated_parquet_is_a_clear_error_and_loads_nothing(
    wh: Warehouse, tmp_path: Path
) -> None:
    p = tmp_path / "motion.parquet"
    tbl = pa.table(
        {
            "vin": ["V1"] * 100,
            "ts": pa.array(
                [1_767_600_000_000_000 + i for i in range(100)], pa.timestamp("us", tz="UTC")
            ),
            "lat": [31.0] * 100,
            "lon": [121.0] * 100,
        }
    )
    pq.write_table(tbl, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match=r"motion.parquet: not a readable Parquet file"):
        ingest([p], wh, keep_going=False)
    assert wh.count("motion") == 0
    rep = ingest([p], wh)  # keep_going: recorded as an error, not raised
    assert rep.errors and "not a readable Parquet file" in rep.errors[0]


def test_non_utf8_bytes_are_quarantined_naming_the_field(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "pois.csv"
    p.write_bytes(
        b"poi_id,name,category,lat,lon\n"
        b"p1,Caf\xe9 Latin-1,restaurant,31.2,121.4\n"
        b"p2,Caf\xc3\xa9 UTF-8,restaurant,31.2,121.4\n"
    )
    rep = ingest([p], wh)
    _adds_up(rep)
    assert (rep.loaded, rep.quarantined) == (1, 1)
    assert _q(wh) == [(2, "name", "non-UTF-8 bytes in field name")]
    assert wh.sql("SELECT name FROM pois")[0][0] == "Café UTF-8"


def test_latin1_declared_in_a_mapping_is_transcoded(wh: Warehouse, tmp_path: Path) -> None:
    from autopersona.ingest.mapping import load_mapping

    p = tmp_path / "pois.csv"
    p.write_bytes(b"poi_id,name,category,lat,lon\np1,Caf\xe9,restaurant,31.2,121.4\n")
    m = tmp_path / "m.yaml"
    m.write_text(
        "name: latin\ncsv: {encoding: latin-1}\ntargets:\n  - table: pois\n    columns:\n"
        "      poi_id: {from: poi_id}\n      name: {from: name}\n      category: {from: category}\n"
        "      lat: {from: lat}\n      lon: {from: lon}\n"
    )
    rep = ingest([p], wh, mapping=load_mapping(m))
    assert rep.loaded == 1
    assert wh.sql("SELECT name FROM pois")[0][0] == "Café"


def test_empty_file_and_header_only(wh: Warehouse, tmp_path: Path) -> None:
    empty = tmp_path / "motion.csv"
    empty.write_text("")
    with pytest.raises(IngestError, match=r"motion.csv: file is empty"):
        ingest([empty], wh, keep_going=False)
    header = tmp_path / "pois.csv"
    header.write_text("poi_id,name,category,lat,lon\n")
    rep = ingest([header], wh)
    assert (rep.read, rep.loaded) == (0, 0)


def test_unknown_table_and_format(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "stuff.csv"
    p.write_text("a\n1\n")
    with pytest.raises(IngestError, match="cannot tell which table"):
        ingest([p], wh, keep_going=False)
    q = tmp_path / "pois.xyz"
    q.write_text("a\n")
    with pytest.raises(IngestError, match="cannot tell the format"):
        ingest([q], wh, keep_going=False)


def test_reingest_adds_nothing(wh_file: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "motion.csv"
    p.write_text(
        HEADER + "V1,2026-01-05T08:00:00Z,31.2,121.4,1\nV1,2026-01-05T08:00:01Z,x,121.4,1\n"
    )
    first = ingest([p], wh_file)
    assert (first.loaded, first.quarantined) == (1, 1)
    before = {t: wh_file.count(t) for t in ("motion", "_quarantine")}
    again = ingest([p], wh_file)
    assert (again.loaded, again.duplicates, again.quarantined) == (0, 1, 1)
    assert {t: wh_file.count(t) for t in ("motion", "_quarantine")} == before


def test_changed_value_for_a_loaded_key_is_quarantined(wh: Warehouse, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "motion.csv").write_text(HEADER + "V1,2026-01-05T08:00:00Z,31.2,121.4,1\n")
    (b / "motion.csv").write_text(HEADER + "V1,2026-01-05T08:00:00Z,31.2,121.4,2\n")
    ingest([a], wh)
    rep = ingest([b], wh)
    assert (rep.loaded, rep.quarantined) == (0, 1)
    assert "already loaded with different values" in _q(wh)[0][2]


def test_jsonl_errors_name_the_line(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "pois.jsonl"
    p.write_bytes(
        b'{"poi_id": "p1", "name": "A", "category": "park", "lat": 31.2, "lon": 121.4}\n'
        b"\n"
        b'{"poi_id": "p2", "name": "B", "category": "park", "lat": 31.2\n'
        b"[1, 2]\n"
        b'{"poi_id": "p3", "name": "\xff", "category": "park", "lat": 31.2, "lon": 121.4}\n'
        b'{"poi_id": "p4", "category": "park", "lat": "31.2", "lon": 121.4, "extra": {"a": 1}}\n'
    )
    rep = ingest([p], wh)
    _adds_up(rep)
    assert (rep.read, rep.loaded, rep.quarantined) == (5, 2, 3)
    rows = [(r, m.split(":")[0]) for r, _, m in _q(wh)]
    assert rows == [
        (3, "invalid JSON"),
        (4, "expected a JSON object, found list"),
        (5, "non-UTF-8 bytes at byte 26"),
    ]


def test_cli_json_counts_add_up(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from autopersona.cli import app

    p = tmp_path / "motion.csv"
    p.write_text(HEADER + "V1,2026-01-05T08:00:00Z,31.2,121.4,1\nV1,bad,31.2,121.4,1\n")
    res = CliRunner().invoke(
        app, ["ingest", str(p), "--warehouse", str(tmp_path / "w.duckdb"), "--json"]
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert {k: d[k] for k in ("read", "loaded", "duplicates", "quarantined")} == {
        "read": 2,
        "loaded": 1,
        "duplicates": 0,
        "quarantined": 1,
    }
    res = CliRunner().invoke(
        app, ["quarantine", "--warehouse", str(tmp_path / "w.duckdb"), "--json"]
    )
    assert json.loads(res.stdout)[0]["row"] == 3


def test_cli_reports_file_errors_with_exit_code(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from autopersona.cli import app

    p = tmp_path / "motion.csv"
    p.write_text("")
    res = CliRunner().invoke(app, ["ingest", str(p), "--warehouse", str(tmp_path / "w.duckdb")])
    assert res.exit_code == 1
    assert "motion.csv: file is empty" in res.output


def test_ground_truth_is_refused(wh: Warehouse, tmp_path: Path) -> None:
    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / ".autopersona-truth").write_text("")
    (truth / "persons.csv").write_text("a\n1\n")
    with pytest.raises(IngestError, match="ground truth"):
        ingest([truth / "persons.csv"], wh, keep_going=False)
    with pytest.raises(IngestError, match="ground truth"):
        ingest([truth], wh, keep_going=False)
    # a parent folder that holds truth underneath: truth files are skipped, never read
    (tmp_path / "pois.csv").write_text("poi_id,name,category,lat,lon\np1,A,park,1,2\n")
    rep = ingest([tmp_path], wh)
    assert [Path(f.path).name for f in rep.files] == ["pois.csv"]


def test_future_is_allowed_for_end_dates_not_event_times(wh: Warehouse, tmp_path: Path) -> None:
    p = tmp_path / "subscriptions.csv"
    p.write_text(
        "event_id,vin,product,event,ts,ends_at\n"
        "e1,V1,adas_pilot,trial_start,2026-01-05T00:00:00Z,2031-01-05T00:00:00Z\n"
        "e2,V1,adas_pilot,trial_start,2031-01-05T00:00:00Z,2031-02-05T00:00:00Z\n"
    )
    rep = ingest([p], wh)
    assert (rep.loaded, rep.quarantined) == (1, 1)
    assert "ts: 2031-01-05" in _q(wh)[0][2]


def test_folder_walk_skips_files_of_no_table(wh: Warehouse, tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"seed": 1}\n')
    (tmp_path / "pois.csv").write_text("poi_id,name,category,lat,lon\np1,A,park,1,2\n")
    rep = ingest([tmp_path], wh, keep_going=False)
    assert rep.loaded == 1
    assert [Path(p).name for p in rep.skipped] == ["manifest.json"]
    with pytest.raises(IngestError, match="cannot tell which table"):
        ingest([tmp_path / "manifest.json"], wh, keep_going=False)
