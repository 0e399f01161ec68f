"""Tests for raw CAN log decoding (candump + DBC via cantools)."""

from __future__ import annotations

import dataclasses
import doctest
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from cantools.database.can import Message, Signal
from hypothesis import given, settings
from hypothesis import strategies as st

import autopersona.ingest.can as can_mod
from autopersona.contracts import get_contract
from autopersona.ingest.can import (
    MAX_EPOCH_S,
    MIN_EPOCH_S,
    VEHICLE_SIGNALS_MAP,
    CandumpStats,
    Frame,
    FrameError,
    SignalMap,
    decode_candump,
    format_candump_line,
    load_dbc,
    parse_candump,
    parse_candump_batches,
    parse_candump_line,
    sample_drive_messages,
    write_sample_candump,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "can"
SAMPLE = DATA / "sample_drive.log"
EXPECTED: dict[str, Any] = json.loads((DATA / "sample_drive.expected.json").read_text())
DB = load_dbc()
CONTRACT = get_contract("vehicle_signals")
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z, a whole grid second
KMH = 1 / 3.6


def write_log(path: Path, lines: list[str], *, final_newline: bool = True) -> Path:
    text = "\n".join(lines) + ("\n" if final_newline and lines else "")
    path.write_bytes(text.encode("utf-8"))
    return path


def enc(name: str, **values: Any) -> str:
    """Encode a message with defaults for the signals not given; return hex data."""
    msg = DB.get_message_by_name(name)
    page = values.get("BMS_MuxPage", 0)
    full: dict[str, Any] = {}
    for sig in msg.signals:
        if sig.multiplexer_ids and page not in sig.multiplexer_ids:
            continue
        full[sig.name] = values.get(sig.name, _default(sig))
    return bytes(DB.encode_message(name, full)).hex().upper()


def _default(sig: Signal) -> Any:
    if sig.choices and not sig.unit:
        return str(sig.choices[min(sig.choices)])
    return max(sig.minimum or 0.0, 0.0) if sig.minimum is not None else 0


def line(ts_s: float, ident: str, data: str, iface: str = "can0") -> str:
    us = round(ts_s * 1_000_000)
    return f"({us // 1_000_000}.{us % 1_000_000:06d}) {iface} {ident}#{data}"


# --------------------------------------------------------------------------------------------
# DBC
# --------------------------------------------------------------------------------------------


def test_dbc_messages_are_plausible() -> None:
    msgs = {m.name: m for m in DB.messages}
    assert set(msgs) == {
        "ECM_EngineData",
        "VCU_DriveState",
        "BMS_Status",
        "IC_Odometer",
        "CCU_ChargeStatus",
    }
    assert all(m.length == 8 for m in DB.messages)
    assert all(m.cycle_time for m in DB.messages)
    assert msgs["CCU_ChargeStatus"].is_extended_frame
    assert msgs["CCU_ChargeStatus"].frame_id == 0x18FF45F4
    assert msgs["BMS_Status"].is_multiplexed()
    assert msgs["ECM_EngineData"].get_signal_by_name("EngineTorque").is_signed
    assert msgs["IC_Odometer"].get_signal_by_name("Odometer").byte_order == "big_endian"
    speed = msgs["VCU_DriveState"].get_signal_by_name("VehicleSpeed")
    assert (speed.scale, speed.unit) == (0.01, "km/h")
    assert msgs["BMS_Status"].get_signal_by_name("BatteryTempAvg").offset == -40
    gear = msgs["VCU_DriveState"].get_signal_by_name("GearSelector")
    assert gear.choices is not None
    assert {str(v) for v in gear.choices.values()} >= {"P", "R", "N", "D"}
    charger = msgs["CCU_ChargeStatus"].get_signal_by_name("ChargerType")
    assert charger.choices is not None
    assert {str(v) for v in charger.choices.values()} >= {"home_ac", "public_ac", "public_dc"}


def test_mapping_covers_every_contract_column() -> None:
    mapped = {m.column for m in VEHICLE_SIGNALS_MAP}
    assert mapped == set(CONTRACT.column_names) - {"vin", "ts"}


def test_hand_computed_frames_decode_to_known_values(tmp_path: Path) -> None:
    # VCU_DriveState: speed 50.00 km/h = raw 5000 = 0x1388 (Intel) -> 88 13; pedal 20 % =
    # raw 50 = 0x32; byte 3 = gear D (3) | ignition ON (2) << 3 = 0x13.
    # IC_Odometer (Motorola): 12345.6 km = raw 123456 = 0x01E240 -> 01 E2 40; fuel 50 % =
    # raw 125 = 0x7D.  BMS page 0: SOC 55.5 % = raw 111 = 0x6F; avg temp 25 degC = raw 65;
    # current -12.3 A = raw -123 = 0xFF85 (two's complement, Intel) -> 85 FF.
    # CCU (29-bit): active, public_dc (3) << 1, locked (2) << 4 -> 0x27; 60.5 kW = 605 = 0x025D.
    log = write_log(
        tmp_path / "hand.log",
        [
            line(T0 + 0.1, "0F1", "8813321300000000"),
            line(T0 + 0.2, "520", "01E2407D78000050"),
            line(T0 + 0.3, "3E9", "306F4185FFAE0D00"),
            line(T0 + 0.4, "18FF45F4", "275D021E00000001"),
        ],
    )
    res = decode_candump(log, vin="VIN")
    row = res.signals.iloc[0]
    assert row["ts"] == pd.Timestamp(T0 + 1, unit="s", tz="UTC")
    assert row["speed_mps"] == pytest.approx(50 / 3.6, abs=1e-12)
    assert row["throttle_pct"] == pytest.approx(20.0)
    assert (row["gear"], row["ignition_on"]) == ("D", True)
    assert row["odometer_km"] == pytest.approx(12345.6)
    assert row["fuel_level_pct"] == pytest.approx(50.0)
    assert row["soc_pct"] == pytest.approx(55.5)
    assert row["battery_temp_c"] == pytest.approx(25.0)
    bms = DB.decode_message(0x3E9, bytes.fromhex("306F4185FFAE0D00"))
    assert isinstance(bms, dict)
    assert bms["BatteryCurrent"] == pytest.approx(-12.3)
    assert (row["charging"], row["charger_type"]) == (True, "public_dc")
    assert row["charge_power_kw"] == pytest.approx(60.5)
    assert pd.isna(row["engine_rpm"])  # no ECM frame in this log


# --------------------------------------------------------------------------------------------
# Golden sample
# --------------------------------------------------------------------------------------------


def test_sample_is_small_and_regenerates_identically(tmp_path: Path) -> None:
    text = SAMPLE.read_text()
    assert 200 <= len(text.splitlines()) == EXPECTED["lines"] <= 1000
    info = write_sample_candump(tmp_path / "again.log", **EXPECTED["params"])
    assert (tmp_path / "again.log").read_text() == text
    assert info.frames_by_message == EXPECTED["frames_by_message"]


def test_golden_decode_of_sample() -> None:
    res = decode_candump(SAMPLE, vin=EXPECTED["vin"])
    c = res.counts
    c.check()
    assert (c.lines, c.skipped, c.frames, c.errors) == (EXPECTED["lines"], 0, EXPECTED["lines"], 0)
    assert c.unknown_id == EXPECTED["frames_by_message"]["0x3B3"]
    assert c.decoded == c.frames - c.unknown_id
    assert res.unknown_ids == {"0x3B3": c.unknown_id}
    assert res.errors == []
    df = res.signals
    assert list(df.columns) == CONTRACT.column_names
    assert c.rows == len(df) == EXPECTED["params"]["seconds"]
    assert str(df["ts"].dtype) == "datetime64[us, UTC]"
    assert df["ts"].is_monotonic_increasing
    assert df["ts"].is_unique
    assert (df["vin"] == EXPECTED["vin"]).all()
    assert df["odometer_km"].is_monotonic_increasing
    assert set(df["gear"]) == {"P", "R", "N", "D"}
    assert df["charging"].any()
    assert not df["charging"].all()
    by_ts = df.set_index("ts")
    for exp in EXPECTED["rows"]:
        got = by_ts.loc[pd.Timestamp(exp["ts"])]
        for col, want in exp.items():
            if col == "ts":
                continue
            have = got[col]
            if want is None:
                assert pd.isna(have), (exp["ts"], col, have)
            elif isinstance(want, bool | str):
                assert have == want, (exp["ts"], col, have, want)
            else:
                assert have == pytest.approx(want, abs=1e-9), (exp["ts"], col, have, want)


def test_golden_arrow_schema_matches_contract() -> None:
    res = decode_candump(SAMPLE, vin=EXPECTED["vin"])
    schema = res.table.schema
    assert schema.names == CONTRACT.column_names
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("speed_mps").type == pa.float64()
    assert schema.field("ignition_on").type == pa.bool_()
    assert schema.field("gear").type == pa.string()
    assert res.table.num_rows == len(res.signals)


def test_sample_values_are_within_contract_ranges() -> None:
    df = decode_candump(SAMPLE, vin="V").signals
    for col in CONTRACT.columns:
        if col.min is not None:
            assert (df[col.name].dropna() >= col.min).all(), col.name
            assert (df[col.name].dropna() <= col.max).all(), col.name
        if col.allowed:
            assert set(df[col.name].dropna()) <= set(col.allowed), col.name


# --------------------------------------------------------------------------------------------
# Line parser
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ident", "ext", "data", "extra"),
    [
        ("(1617181920.123456) can0 1A0#0102030405060708", 0x1A0, False, "0102030405060708", {}),
        ("(1617181920.123456) can0 1a0#0a0B", 0x1A0, False, "0a0b", {}),
        ("(1617181920.123456) can0 1A0#", 0x1A0, False, "", {}),
        ("(1617181920.123456) can0 1A0#11.22.33", 0x1A0, False, "112233", {}),
        ("(1617181920.123456) vcan1 18FF45F4#0102 R", 0x18FF45F4, True, "0102", {"direction": "R"}),
        ("(1617181920.123456) can0 123#R", 0x123, False, "", {"is_remote": True, "dlc": None}),
        ("(1617181920.123456) can0 123#R5", 0x123, False, "", {"is_remote": True, "dlc": 5}),
        ("(1617181920.123456) can0 123#R8_D", 0x123, False, "", {"is_remote": True, "dlc": 13}),
        ("(1617181920.123456) can0 123#1122334455667788_E", 0x123, False, "1122334455667788",
         {"dlc": 14}),
        ("(1617181920.123456) can0 123##1112233", 0x123, False, "112233",
         {"is_fd": True, "fd_flags": 1}),
        ("(1617181920.123456) can0 123##3", 0x123, False, "", {"is_fd": True, "fd_flags": 3}),
        ("(1617181920.123456) can0 20000080#0000000000000000", 0x80, False, "0" * 16,
         {"is_error_frame": True}),
        ("(1617181920.123456789) can0 1A0#01", 0x1A0, False, "01", {}),
        ("can0  1A0   [8]  01 02 03 04 05 06 07 08", None, None, None, {}),
        (" (1617181920.123456)  can0  1A0   [8]  01 02 03 04 05 06 07 08", 0x1A0, False,
         "0102030405060708", {}),
        (" (1617181920.123456)  can0  18FF45F4   [2]  01 02", 0x18FF45F4, True, "0102", {}),
        (" (1617181920.123456)  can0       1A0   [2]  41 42   'AB'", 0x1A0, False, "4142", {}),
        (" (1617181920.123456)  can0  1A0   [4]  remote request", 0x1A0, False, "",
         {"is_remote": True, "dlc": 4}),
        (" (1617181920.123456)  can0  1A0  [12]  00 01 02 03 04 05 06 07 08 09 0A 0B", 0x1A0,
         False, "000102030405060708090a0b", {"is_fd": True}),
        (" (1617181920.123456)  can0  RX - -  1A0   [1]  FF", 0x1A0, False, "ff",
         {"direction": "R"}),
        ("(1617181920.123456) can0 1A0#0102\r", 0x1A0, False, "0102", {}),
    ],
)  # fmt: skip
def test_accepted_formats(
    text: str, ident: int | None, ext: bool | None, data: str | None, extra: dict[str, Any]
) -> None:
    got = parse_candump_line(text, line=4, file="f.log")
    if ident is None:  # screen format without a timestamp
        assert isinstance(got, FrameError)
        assert (got.file, got.line, got.field) == ("f.log", 4, "timestamp")
        return
    assert isinstance(got, Frame), got
    assert (got.arbitration_id, got.is_extended, got.data.hex(), got.line) == (
        ident,
        ext,
        data,
        4,
    )
    assert got.ts_us == 1617181920123456
    for k, v in extra.items():
        assert getattr(got, k) == v, k


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    ts_us = draw(st.integers(MIN_EPOCH_S * 1_000_000, MAX_EPOCH_S * 1_000_000 - 1))
    iface = draw(st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True))
    direction = draw(st.sampled_from([None, "T", "R"]))
    ext = draw(st.booleans())
    kind = draw(st.sampled_from(["data", "data", "data", "remote", "fd", "error"]))
    if kind == "error":
        arb = draw(st.integers(0, 0x1FFFFFFF))
        payload = draw(st.binary(min_size=8, max_size=8))
        return Frame(ts_us, iface, arb, False, payload, is_error_frame=True, direction=direction)
    arb = draw(st.integers(0, 0x1FFFFFFF if ext else 0x7FF))
    if kind == "remote":
        dlc = draw(st.sampled_from([None, 1, 2, 3, 4, 5, 6, 7, 8]))
        return Frame(ts_us, iface, arb, ext, b"", is_remote=True, dlc=dlc, direction=direction)
    if kind == "fd":
        n = draw(st.sampled_from([0, 1, 2, 5, 8, 12, 16, 20, 24, 32, 48, 64]))
        payload = draw(st.binary(min_size=n, max_size=n))
        flags = draw(st.integers(0, 15))
        return Frame(
            ts_us, iface, arb, ext, payload, is_fd=True, fd_flags=flags, direction=direction
        )
    payload = draw(st.binary(max_size=8))
    return Frame(ts_us, iface, arb, ext, payload, direction=direction)


@settings(max_examples=300, deadline=None)
@given(frame=frames(), lineno=st.integers(1, 10**6))
def test_any_frame_round_trips_through_both_syntaxes(frame: Frame, lineno: int) -> None:
    want = dataclasses.replace(frame, line=lineno)
    log = parse_candump_line(format_candump_line(frame, "log"), line=lineno)
    assert log == want
    screen = parse_candump_line(format_candump_line(frame, "default"), line=lineno)
    assert isinstance(screen, Frame)
    keys: tuple[str, ...] = ("ts_us", "interface", "arbitration_id", "is_extended", "data")
    keys += ("line", "is_remote", "is_fd", "is_error_frame", "direction")
    assert {k: getattr(screen, k) for k in keys} == {k: getattr(want, k) for k in keys}
    if frame.is_remote:
        assert screen.dlc == frame.dlc


_LINE_CHARS = st.characters(blacklist_categories=["Cs"], blacklist_characters="\n")


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(st.text(_LINE_CHARS, max_size=80), max_size=25))
def test_arbitrary_text_never_raises_and_every_line_is_counted(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    path = tmp_path_factory.mktemp("garbage") / "g.log"
    write_log(path, lines)
    stats = CandumpStats()
    items = list(parse_candump(path, stats=stats))
    assert stats.lines == len(lines)
    assert stats.lines == stats.skipped + stats.frames + stats.errors
    assert len(items) == stats.frames + stats.errors
    seen = {item.line: item for item in items}
    assert len(seen) == len(items)
    for i, text in enumerate(lines, start=1):
        single = parse_candump_line(text, line=i, file=str(path))
        if single is None:
            assert i not in seen
        else:
            assert seen[i] == single


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.text(
            st.characters(blacklist_categories=["Cs"], blacklist_characters="\n#[{"),
            max_size=60,
        ).map(lambda s: "x" + s),
        min_size=1,
        max_size=15,
    )
)
def test_garbage_lines_give_errors_with_line_numbers(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    path = tmp_path_factory.mktemp("garbage") / "g.log"
    write_log(path, lines)
    items = list(parse_candump(path))
    assert [type(i) for i in items] == [FrameError] * len(lines)
    assert [i.line for i in items] == list(range(1, len(lines) + 1))
    assert all(isinstance(i, FrameError) and i.file == str(path) and i.reason for i in items)


@settings(max_examples=100, deadline=None)
@given(blob=st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), max_size=20))
def test_arbitrary_bytes_never_raise(
    tmp_path_factory: pytest.TempPathFactory, blob: list[bytes]
) -> None:
    path = tmp_path_factory.mktemp("bytes") / "b.log"
    path.write_bytes(b"".join(b + b"\n" for b in blob))
    stats = CandumpStats()
    items = list(parse_candump(path, stats=stats))
    assert stats.lines == len(blob) == stats.skipped + stats.frames + stats.errors
    assert len(items) == stats.frames + stats.errors
    for item in items:
        if isinstance(item, FrameError) and item.field == "encoding":
            assert "not UTF-8" in item.reason


TS = "(1700000000.000000)"


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (f"{TS} can0 0F1#01020G", "data", "invalid hex digit 'G'"),
        (f"{TS} can0 0F1#0102030", "data", "odd number of hex digits (7)"),
        (f"{TS} can0 0F1#010203040506070809", "dlc", "at most 8"),
        (f"{TS} can0 0F1##1" + "00" * 9, "dlc", "valid CAN FD length"),
        (f"{TS} can0 0F1##", "data", "flags"),
        (f"{TS} can0 0F1#R9", "data", "remote"),
        (f"{TS} can0 0F1#0102_9", "dlc", "8 data bytes"),
        (f" {TS}  can0  0F1   [8]  01 02 03 04 05 06 07", "dlc", "[8] but 7"),
        (f" {TS}  can0  0F1   [2]  01 0G", "data", "'0G'"),
        (f" {TS}  can0  0F1   [2]  01 002", "data", "not two hex digits"),
        (f" {TS}  can0  0F1   [9]  " + " 00" * 9, "dlc", "exceeds 8"),
        ("can0 0F1#0102", "timestamp", "missing timestamp"),
        ("  can0  0F1   [2]  01 02", "timestamp", "missing timestamp"),
        ("(000.000123) can0 0F1#01", "timestamp", "relative"),
        ("(2021-03-31 12:00:00.123456)  can0  0F1   [1]  01", "timestamp", "-t A"),
        ("(1700000000,5) can0 0F1#01", "timestamp", "not epoch seconds"),
        ("(5000000000.000000) can0 0F1#01", "timestamp", "after 2100"),
        ("(1700000000.0 can0 0F1#01", "timestamp", "closing"),
        (f"{TS} can0 0F1A#01", "can_id", "4 hex digits"),
        (f"{TS} can0 8FF#01", "can_id", "exceeds 0x7FF"),
        (f"{TS} can0 0XZ#01", "can_id", "not hexadecimal"),
        (f"{TS} can0 #01", "can_id", "not hexadecimal"),
        (f"{TS} can0 4FFFFFFF#01", "can_id", "exceeds 0x1FFFFFFF"),
        (f"{TS} can0 00123#80:00:11223344#0102", "can_id", "CAN XL"),
        (f"{TS} can0 0F1#01 extra", "format", "'extra'"),
        (f"{TS} ca#n0 0F1#01", "interface", "contains '#'"),
        ("hello world", "format", "not a candump line"),
        (TS, "format", "without a frame"),
    ],
)
def test_malformed_lines_name_file_line_and_field(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = write_log(tmp_path / "bad.log", [line(T0, "0F1", enc("VCU_DriveState")), "", text])
    stats = CandumpStats()
    items = list(parse_candump(path, stats=stats))
    assert isinstance(items[0], Frame)
    err = items[1]
    assert isinstance(err, FrameError), err
    assert (err.file, err.line, err.field) == (str(path), 3, field)
    assert reason in err.reason
    assert err.text == text
    assert str(err).startswith(f"{path}:3: {field}: ")
    assert (stats.lines, stats.skipped, stats.frames, stats.errors) == (3, 1, 1, 1)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.log"
    path.write_bytes(b"(1700000000.000000) can0 0F1#01\n(1700000000.1) can\xe70 0F1#01\n")
    items = list(parse_candump(path))
    err = items[1]
    assert isinstance(err, FrameError)
    assert (err.line, err.field) == (2, "encoding")
    assert "0xE7" in err.reason
    assert "column 19" in err.reason
    assert "\\xe7" in err.text


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    assert list(parse_candump(path)) == []
    res = decode_candump(path, vin="V")
    res.counts.check()
    assert res.counts.lines == res.counts.rows == 0
    assert list(res.signals.columns) == CONTRACT.column_names
    assert str(res.signals["ts"].dtype) == "datetime64[us, UTC]"
    assert res.table.schema.field("ts").type == pa.timestamp("us", tz="UTC")


def test_truncated_last_line(tmp_path: Path) -> None:
    full = enc("VCU_DriveState", VehicleSpeed=10.0)
    path = write_log(
        tmp_path / "cut.log", [line(T0, "0F1", full), line(T0 + 0.02, "0F1", full[:7])],
        final_newline=False,
    )  # fmt: skip
    err = list(parse_candump(path))[1]
    assert isinstance(err, FrameError)
    assert (err.line, err.field) == (2, "data")
    assert "truncated" in err.reason
    # cut on a byte boundary the line still parses, and decoding catches the short frame
    path = write_log(
        tmp_path / "cut2.log", [line(T0, "0F1", full), line(T0 + 0.02, "0F1", full[:6])],
        final_newline=False,
    )  # fmt: skip
    res = decode_candump(path, vin="V")
    assert [(e.line, e.field) for e in res.errors] == [(2, "dlc")]
    assert "expects 8 data bytes, got 3" in res.errors[0].reason
    res.counts.check()


def test_overlong_line_is_an_error_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "long.log"
    ok = line(T0, "0F1", enc("VCU_DriveState"))
    path.write_text(ok + "\n" + "A" * 50_000 + "\n" + ok + "\n")
    items = list(parse_candump(path))
    assert [type(i).__name__ for i in items] == ["Frame", "FrameError", "Frame"]
    assert isinstance(items[1], FrameError)
    assert items[1].field == "line"
    assert [i.line for i in items] == [1, 2, 3]


def test_crlf_comments_and_dropcount(tmp_path: Path) -> None:
    path = tmp_path / "crlf.log"
    body = (
        "# recorded on the test bench\r\n; another comment\r\n"
        f"{line(T0, '0F1', '00' * 8)}\r\n   \r\n"
        "DROPCOUNT: dropped 3 CAN frames on 'can0' socket (total drops 3)\r\n"
    )
    path.write_bytes(body.encode())
    stats = CandumpStats()
    items = list(parse_candump(path, stats=stats))
    assert len(items) == 1
    assert isinstance(items[0], Frame)
    assert items[0].line == 3
    assert (stats.lines, stats.skipped, stats.dropped_reported) == (5, 4, 3)


def test_batches_bound_the_work(tmp_path: Path) -> None:
    path = write_log(tmp_path / "b.log", [line(T0 + i / 100, "0F1", "00") for i in range(25)])
    sizes = [len(b) for b in parse_candump_batches(path, batch_size=10)]
    assert sizes == [10, 10, 5]
    with pytest.raises(ValueError, match="batch_size"):
        next(parse_candump_batches(path, batch_size=0))


# --------------------------------------------------------------------------------------------
# Decoding: round trip and semantics
# --------------------------------------------------------------------------------------------


def _is_enum(sig: Signal) -> bool:
    return bool(sig.choices) and not sig.unit


def _value_strategy(sig: Signal) -> st.SearchStrategy[Any]:
    if sig.choices and _is_enum(sig):
        return st.sampled_from([str(v) for v in sig.choices.values()])
    assert sig.minimum is not None
    assert sig.maximum is not None
    lo, hi = float(sig.minimum), float(sig.maximum)
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def message_values(draw: st.DrawFn, msg: Message) -> dict[str, Any]:
    page = draw(st.sampled_from([0, 1])) if msg.is_multiplexed() else None
    out: dict[str, Any] = {}
    for sig in msg.signals:
        if sig.is_multiplexer:
            out[sig.name] = page
        elif sig.multiplexer_ids and page not in sig.multiplexer_ids:
            continue
        else:
            out[sig.name] = draw(_value_strategy(sig))
    return out


ALL_MESSAGES = st.fixed_dictionaries({m.name: message_values(m) for m in DB.messages})


def _expected_column(sm: SignalMap, value: Any) -> Any:
    col = CONTRACT.column(sm.column)
    if col.type == "bool":
        return None if value in sm.null_choices else value in sm.true_choices
    if col.type == "string":
        return None if value in sm.null_choices else value
    return value


@settings(max_examples=60, deadline=None)
@given(values=ALL_MESSAGES, style=st.sampled_from(["log", "default"]))
def test_encode_log_decode_round_trip(
    tmp_path_factory: pytest.TempPathFactory, values: dict[str, dict[str, Any]], style: str
) -> None:
    path = tmp_path_factory.mktemp("rt") / "rt.log"
    lines = []
    for i, (name, vals) in enumerate(sorted(values.items())):
        msg = DB.get_message_by_name(name)
        data = DB.encode_message(name, vals)
        frame = Frame(T0 * 1_000_000 + 100_000 * (i + 1), "can0", msg.frame_id,
                      msg.is_extended_frame, data)  # fmt: skip
        lines.append(format_candump_line(frame, style))  # type: ignore[arg-type]
    write_log(path, lines)
    # every signal of every frame comes back within its scale
    for item in parse_candump(path):
        assert isinstance(item, Frame)
        msg = DB.get_message_by_frame_id(item.arbitration_id, force_extended_id=item.is_extended)
        got = DB.decode_message(item.arbitration_id, item.data, force_extended_id=item.is_extended)
        assert isinstance(got, dict)
        for sig_name, want in values[msg.name].items():
            sig = msg.get_signal_by_name(sig_name)
            if isinstance(want, str):
                assert str(got[sig_name]) == want
            else:
                have = got[sig_name]
                assert isinstance(have, int | float), sig_name
                assert float(have) == pytest.approx(want, abs=sig.scale), sig_name
    # and the contract row carries the mapped ones, in canonical units
    res = decode_candump(path, vin="RT")
    res.counts.check()
    assert (res.counts.decoded, res.counts.rows) == (len(values), 1)
    row = res.signals.iloc[0]
    for sm in VEHICLE_SIGNALS_MAP:
        sig = DB.get_message_by_name(sm.message).get_signal_by_name(sm.signal)
        if sm.signal not in values[sm.message]:  # other multiplexer page
            assert pd.isna(row[sm.column])
            continue
        want = _expected_column(sm, values[sm.message][sm.signal])
        have = row[sm.column]
        if want is None:
            assert pd.isna(have), sm.column
        elif isinstance(want, bool | str):
            assert have == want, sm.column
        else:
            factor = KMH if sm.column == "speed_mps" else 1.0
            assert have == pytest.approx(want * factor, abs=sig.scale * factor), sm.column


def test_resampling_last_value_carry_forward_and_staleness(tmp_path: Path) -> None:
    lines = [
        line(T0 + 0.2, "0F1", enc("VCU_DriveState", VehicleSpeed=36.0)),
        line(T0 + 0.5, "520", enc("IC_Odometer", Odometer=100.0)),
        line(T0 + 0.7, "0F1", enc("VCU_DriveState", VehicleSpeed=72.0)),
        line(T0 + 1.0, "0F1", enc("VCU_DriveState", VehicleSpeed=90.0)),  # on the grid point
    ]
    lines += [
        line(T0 + s + 0.5, "0F1", enc("VCU_DriveState", VehicleSpeed=18.0)) for s in range(1, 6)
    ]
    lines.append(line(T0 + 100.5, "0F1", enc("VCU_DriveState", VehicleSpeed=0.0)))
    path = write_log(tmp_path / "grid.log", lines)
    df = decode_candump(path, vin="V").signals.set_index("ts")
    ts = [pd.Timestamp(T0 + s, unit="s", tz="UTC") for s in (1, 2, 3, 4, 5, 6, 101)]
    assert list(df.index) == ts  # no rows for the silent gap
    assert df["speed_mps"].tolist() == pytest.approx([25.0, 5.0, 5.0, 5.0, 5.0, 5.0, 0.0])
    # IC cycles at 1 s: carried for 3 s (3 cycles), then null
    odo = df["odometer_km"].tolist()
    assert odo[:3] == pytest.approx([100.0, 100.0, 100.0])
    assert all(math.isnan(v) for v in odo[3:])
    longer = decode_candump(path, vin="V", max_staleness_s=10).signals
    assert longer["odometer_km"].notna().sum() == 6
    half = decode_candump(path, vin="V", period_s=0.5).signals
    assert half["ts"].iloc[0] == pd.Timestamp(T0 + 0.5, unit="s", tz="UTC")
    assert half["speed_mps"].iloc[0] == pytest.approx(10.0)


def test_out_of_order_frames_keep_the_latest_timestamp(tmp_path: Path) -> None:
    path = write_log(
        tmp_path / "ooo.log",
        [
            line(T0 + 0.9, "0F1", enc("VCU_DriveState", VehicleSpeed=72.0)),
            line(T0 + 0.3, "0F1", enc("VCU_DriveState", VehicleSpeed=36.0), iface="can1"),
        ],
    )
    assert decode_candump(path, vin="V").signals["speed_mps"].tolist() == [pytest.approx(20.0)]


def test_sna_and_choice_nulls(tmp_path: Path) -> None:
    sna_speed = "FFFF" + enc("VCU_DriveState", GearSelector="SNA")[4:]
    path = write_log(
        tmp_path / "sna.log",
        [
            line(T0 + 0.1, "0F1", sna_speed),
            line(T0 + 0.2, "18FF45F4", enc("CCU_ChargeStatus", ChargerType="None")),
        ],
    )
    row = decode_candump(path, vin="V").signals.iloc[0]
    assert pd.isna(row["speed_mps"])
    assert pd.isna(row["gear"])
    assert pd.isna(row["charger_type"])
    assert row["charging"] == False  # noqa: E712 - pandas BooleanDtype scalar
    assert row["charge_power_kw"] == 0.0


def test_counts_add_up_on_a_mixed_log(tmp_path: Path) -> None:
    vcu = enc("VCU_DriveState", VehicleSpeed=50.0)
    lines = [
        "# bench log",
        line(T0 + 0.1, "0F1", vcu),
        " (1700000000.200000)  can0  0F1   [8]  "
        + " ".join(vcu[i : i + 2] for i in range(0, 16, 2)),
        line(T0 + 0.3, "3B3", "0040000011000000"),  # not in the DBC
        line(T0 + 0.35, "000000F1", vcu),  # 29-bit 0xF1 is not the 11-bit 0x0F1
        line(T0 + 0.4, "0F1", "R"),  # remote request for a known message
        line(T0 + 0.45, "20000004", "0000080000000000"),  # bus error frame
        line(T0 + 0.5, "0F1", vcu[:14]),  # 7 bytes: DLC mismatch -> decode error
        line(T0 + 0.6, "3E9", "05" + "00" * 7),  # multiplexer page 5 is undefined
        line(T0 + 0.7, "0F1", "ZZ"),  # parse error
        "",
        line(T0 + 0.8, "18FF45F4", enc("CCU_ChargeStatus")),
    ]
    path = write_log(tmp_path / "mixed.log", lines)
    res = decode_candump(path, vin="V")
    c = res.counts
    c.check()
    assert (c.lines, c.skipped, c.frames, c.errors) == (12, 2, 7, 3)
    assert (c.decoded, c.unknown_id, c.remote, c.error_frames) == (3, 2, 1, 1)
    assert (c.parse_errors, c.decode_errors) == (1, 2)
    assert res.unknown_ids == {"0x3B3": 1, "0xF1x": 1}
    assert [(e.line, e.field) for e in res.errors] == [(8, "dlc"), (9, "decode"), (10, "data")]
    assert all(e.file == str(path) for e in res.errors)
    assert "multiplexer" in res.errors[1].reason
    assert res.errors[0].text.startswith("(1700000000.500000) can0 0F1#")
    assert c.lines == c.skipped + c.errors + c.decoded + c.unknown_id + c.remote + c.error_frames
    capped = decode_candump(path, vin="V", max_errors=1)
    assert len(capped.errors) == 1
    assert capped.counts.errors == 3


def test_bad_arguments_and_mappings(tmp_path: Path) -> None:
    path = write_log(tmp_path / "a.log", [line(T0, "0F1", enc("VCU_DriveState"))])
    with pytest.raises(ValueError, match="vin"):
        decode_candump(path, vin="")
    with pytest.raises(ValueError, match="period_s"):
        decode_candump(path, vin="V", period_s=0)
    with pytest.raises(ValueError, match="no message 'Nope'"):
        decode_candump(path, vin="V", mapping=[SignalMap("speed_mps", "Nope", "X")])
    with pytest.raises(ValueError, match="no signal 'X'"):
        decode_candump(path, vin="V", mapping=[SignalMap("speed_mps", "VCU_DriveState", "X")])
    with pytest.raises(ValueError, match="cannot feed"):
        decode_candump(
            path, vin="V", mapping=[SignalMap("speed_mps", "ECM_EngineData", "EngineSpeed")]
        )
    with pytest.raises(ValueError, match="no column"):
        decode_candump(path, vin="V", mapping=[SignalMap("warp", "ECM_EngineData", "EngineLoad")])
    with pytest.raises(FileNotFoundError):
        decode_candump(tmp_path / "missing.log", vin="V")
    # a partial mapping leaves the other contract columns null
    res = decode_candump(
        path, vin="V", mapping=[SignalMap("speed_mps", "VCU_DriveState", "VehicleSpeed")]
    )
    assert list(res.signals.columns) == CONTRACT.column_names
    assert res.signals["odometer_km"].isna().all()


def test_generator_drive_is_plausible() -> None:
    msgs = list(sample_drive_messages(120, seed=5, min_cycle_s=1.0, charger="home_ac"))
    vcu = [v for _, m, v in msgs if m == "VCU_DriveState"]
    odo = [v["Odometer"] for _, m, v in msgs if m == "IC_Odometer"]
    soc = [v["BatterySOC"] for _, m, v in msgs if m == "BMS_Status" and "BatterySOC" in v]
    ccu = [v for _, m, v in msgs if m == "CCU_ChargeStatus"]
    assert max(v["VehicleSpeed"] for v in vcu) > 20
    assert vcu[0]["GearSelector"] == "P"
    assert vcu[-1]["GearSelector"] == "P"
    assert {"R", "N", "D"} <= {v["GearSelector"] for v in vcu}
    assert odo == sorted(odo)
    assert odo[-1] > odo[0]
    assert any(v["ChargingActive"] == "Charging" for v in ccu)
    assert all(v["ChargePower"] == 0 for v in ccu if v["ChargingActive"] == "NotCharging")
    drive_soc = soc[: len(soc) // 2]
    assert drive_soc[-1] <= drive_soc[0]  # used while driving
    assert soc[-1] > drive_soc[-1]  # then charged
    ts = [t for t, _, _ in msgs]
    assert ts == sorted(ts)
    with pytest.raises(ValueError, match="charger"):
        next(sample_drive_messages(10, charger="wireless"))


def test_docstring_examples() -> None:
    failed, tried = doctest.testmod(can_mod, optionflags=doctest.ELLIPSIS)
    assert tried > 10
    assert failed == 0


# ------------------------------------------------------------------ ingestion of CAN logs
def test_ingest_candump_into_the_warehouse(tmp_path: Path) -> None:
    from autopersona.ingest.engine import ingest
    from autopersona.ingest.errors import IngestError
    from autopersona.store.warehouse import Warehouse

    log = tmp_path / "drive.log"
    write_sample_candump(log, seconds=120, seed=3, min_cycle_s=1.0)
    with log.open("a") as fh:
        fh.write("(1617181920.5) can0 0C9#ZZ\n")
    with Warehouse(":memory:") as wh:
        with pytest.raises(IngestError, match="pass --vin"):
            ingest([log], wh, keep_going=False)
        rep = ingest([log], wh, vin="LSVAU2180N2000001", keep_going=False)
        t = rep.by_table()["vehicle_signals"]
        assert t.read == t.loaded + t.duplicates + t.quarantined
        assert t.quarantined >= 1
        assert t.loaded >= 100
        (row, field, reason) = wh.sql("SELECT row_number, field, reason FROM _quarantine")[0]
        assert reason == "invalid hex digit 'Z' at data position 1"
        assert row == log.read_text().count("\n") and field == "data"
        odo = [r[0] for r in wh.sql("SELECT odometer_km FROM vehicle_signals ORDER BY ts")]
        assert odo == sorted(odo)
        again = ingest([log], wh, vin="LSVAU2180N2000001")
        assert again.loaded == 0
