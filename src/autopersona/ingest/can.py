"""Raw CAN logs (candump) → ``vehicle_signals`` rows, decoded through a DBC file with cantools.

Three stages, each usable alone:

1. :func:`parse_candump` streams a candump file line by line (bounded memory) and yields, for
   every line that is not blank or a comment, either a :class:`Frame` or a :class:`FrameError`
   naming file, line, field and reason.  It accepts what ``candump -l`` writes::

       (1617181920.123456) can0 1A0#0102030405060708
       (1617181920.123456) can0 18FF45F4#0102030405060708 R    # 29-bit ID, -x direction
       (1617181920.123456) can0 123#R                          # remote frame
       (1617181920.123456) can0 123##1112233                   # CAN FD, flags nibble 1 (BRS)

   and candump's default screen output recorded with absolute timestamps (``candump -t a``)::

       (1617181920.123456)  can0  1A0   [8]  01 02 03 04 05 06 07 08

2. :func:`decode_candump` decodes every frame with ``cantools`` (``decode_message`` with
   ``decode_choices``) and maps DBC signals to contract columns (:data:`VEHICLE_SIGNALS_MAP`),
   converting units with :func:`autopersona.units.affine` (km/h → m/s …).
3. It then samples the signals onto a time grid: the row at grid time ``T`` holds, for each
   column, the latest value observed at or before ``T`` (so the last value in the period
   ``(T - period, T]``, or an older one carried forward as long as it is not older than the
   column's maximum staleness).  The result has exactly the ``vehicle_signals`` contract
   columns, ``ts`` as ``timestamp[us, tz=UTC]``.

Every line is accounted for (see :class:`CanCounts`)::

    lines  = skipped + errors + frames
    errors = parse_errors + decode_errors
    frames = decoded + unknown_id + remote + error_frames

Test data comes from :func:`write_sample_candump`, which simulates a plug-in hybrid drive
with a charging session and *encodes* it with ``db.encode_message`` at each message's cycle
time.

Examples
--------
>>> import tempfile, pathlib
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> info = write_sample_candump(tmp / "drive.log", seconds=60, seed=1, min_cycle_s=1.0)
>>> res = decode_candump(tmp / "drive.log", vin="LSVAU2180N2000001")
>>> res.counts.check()
>>> res.counts.lines == info.lines
True
>>> list(res.signals.columns)[:4]
['vin', 'ts', 'odometer_km', 'speed_mps']
>>> str(res.signals["ts"].dtype)
'datetime64[us, UTC]'
"""

from __future__ import annotations

import heapq
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import cantools
import pandas as pd
import pyarrow as pa
from cantools.database.can import Database, Message, Signal
from cantools.database.errors import DecodeError
from cantools.database.namedsignalvalue import NamedSignalValue

from autopersona.contracts import Contract, get_contract
from autopersona.units import affine

__all__ = [
    "DEFAULT_DBC",
    "VEHICLE_SIGNALS_MAP",
    "CanCounts",
    "CanDecodeResult",
    "CandumpStats",
    "Frame",
    "FrameError",
    "SampleLog",
    "SignalMap",
    "decode_candump",
    "decode_frames",
    "format_candump_line",
    "load_dbc",
    "parse_candump",
    "parse_candump_batches",
    "parse_candump_line",
    "sample_drive_messages",
    "write_sample_candump",
]

#: The DBC shipped with autopersona (a plausible plug-in hybrid passenger-car bus).
DEFAULT_DBC: Path = (
    Path(str(resources.files("autopersona.ingest"))) / "dbc" / "autopersona_vehicle.dbc"
)

#: Lines longer than this (bytes) are reported as errors without being held in memory.
MAX_LINE_BYTES = 8192
#: Timestamps before 2000-01-01 look relative (``candump -t d`` / ``-t z``), not epoch seconds.
MIN_EPOCH_S = 946_684_800
#: Timestamps after 2100-01-01 are rejected as corrupt.
MAX_EPOCH_S = 4_102_444_800

_CAN_SFF_MASK = 0x7FF
_CAN_EFF_MASK = 0x1FFFFFFF
_CAN_ERR_FLAG = 0x20000000
_CANFD_LENGTHS = frozenset({*range(9), 12, 16, 20, 24, 32, 48, 64})

FieldName = Literal[
    "line", "encoding", "timestamp", "interface", "can_id", "data", "dlc", "format", "decode"
]


# --------------------------------------------------------------------------------------------
# Frames and errors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    r"""One CAN frame read from a log line.

    Attributes
    ----------
    ts_us : int
        Reception time, microseconds since the Unix epoch (UTC).  Nanosecond log timestamps
        (``candump -N``) are truncated to microseconds.
    interface : str
        CAN interface name as logged (``can0``, ``vcan1``…).
    arbitration_id : int
        11-bit or 29-bit identifier without flag bits (for error frames: the error class).
    is_extended : bool
        29-bit identifier (written with 8 hex digits).
    data : bytes
        Payload (empty for remote frames).
    line : int
        1-based line number in the file.
    is_remote, is_fd, is_error_frame : bool
        Remote request (``123#R``), CAN FD (``123##1...``), error frame (CAN_ERR_FLAG set).
    fd_flags : int
        CAN FD flags nibble (bit 0 BRS, bit 1 ESI).
    dlc : int or None
        Requested DLC of a remote frame, or the raw DLC 9..15 of an 8-byte classical frame
        (``_X`` suffix); ``None`` when the data length says it all.
    direction : str or None
        ``"T"``/``"R"`` when candump ran with ``-x``.

    Examples
    --------
    >>> f = parse_candump_line("(1617181920.123456) can0 1A0#0102")
    >>> f.arbitration_id == 0x1A0, f.data, f.ts_us
    (True, b'\x01\x02', 1617181920123456)
    >>> f.timestamp.isoformat()
    '2021-03-31T09:12:00.123456+00:00'
    """

    ts_us: int
    interface: str
    arbitration_id: int
    is_extended: bool
    data: bytes
    line: int = 0
    is_remote: bool = False
    is_fd: bool = False
    is_error_frame: bool = False
    fd_flags: int = 0
    dlc: int | None = None
    direction: str | None = None

    @property
    def ts(self) -> float:
        """Reception time in epoch seconds (float; use :attr:`ts_us` for exact values)."""
        return self.ts_us / 1_000_000

    @property
    def timestamp(self) -> datetime:
        """Reception time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts_us // 1_000_000, UTC).replace(
            microsecond=self.ts_us % 1_000_000
        )


@dataclass(frozen=True, slots=True)
class FrameError:
    """A line that could not be read, or a frame that could not be decoded.

    Attributes
    ----------
    file : str
        The log file.
    line : int
        1-based line number.
    field : str
        What was wrong: ``line`` (too long), ``encoding`` (not UTF-8), ``timestamp``,
        ``interface``, ``can_id``, ``data`` (hex), ``dlc`` (length), ``format`` (neither
        candump syntax) or ``decode`` (cantools rejected the payload).
    reason : str
        Human-readable explanation.
    text : str
        The offending line (at most 200 characters; undecodable bytes backslash-escaped).

    Examples
    --------
    >>> e = parse_candump_line("(1617181920.123456) can0 1A0#0102030", line=7, file="x.log")
    >>> e.file, e.line, e.field
    ('x.log', 7, 'data')
    >>> e.reason
    'odd number of hex digits (7)'
    """

    file: str
    line: int
    field: str
    reason: str
    text: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


@dataclass(slots=True)
class CandumpStats:
    """Line counts kept by :func:`parse_candump` (``lines = skipped + frames + errors``).

    ``skipped`` counts blank lines, comments (``#`` or ``;``) and candump ``DROPCOUNT``
    notices; ``dropped_reported`` sums the frames those notices say the kernel dropped.
    """

    lines: int = 0
    skipped: int = 0
    frames: int = 0
    errors: int = 0
    dropped_reported: int = 0


# --------------------------------------------------------------------------------------------
# Line parser
# --------------------------------------------------------------------------------------------

_HEX_RE = re.compile(r"[0-9A-Fa-f]*")
_TS_RE = re.compile(r"(\d{1,12})(?:\.(\d{1,9}))?")
_REMOTE_RE = re.compile(r"[Rr](?:([0-8])(?:_([9A-Fa-f]))?)?")
_LEN_RE = re.compile(r"\[(\d{1,2})\]|\{([0-9A-Fa-f])\}")
_DEFAULT_RE = re.compile(
    r"(?P<iface>\S+)\s+(?:(?P<dir>[TR])X\s+[-BS]\s+[-ER]\s+)?(?P<id>\S+)\s+"
    r"(?P<len>\[\d{1,2}\]|\{[0-9A-Fa-f]\})(?P<data>.*)"
)
_DATA_HEAD_RE = re.compile(r"((?:\s+[0-9A-Fa-f]+(?=\s|$))*)\s*(.*)")
_DROPCOUNT_RE = re.compile(r"DROPCOUNT: dropped (\d+) CAN frame")


class _LineError(Exception):
    def __init__(self, field: FieldName, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _parse_ts(text: str | None) -> int:
    if text is None:
        raise _LineError(
            "timestamp",
            "missing timestamp: record with 'candump -l' or 'candump -t a'",
        )
    t = text.strip()
    m = _TS_RE.fullmatch(t)
    if m is None:
        if re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", t):
            raise _LineError(
                "timestamp",
                f"wall-clock timestamp {t!r} (candump -t A) is local time without a zone; "
                "record with -l or -t a",
            )
        raise _LineError("timestamp", f"timestamp {t!r} is not epoch seconds")
    sec = int(m.group(1))
    frac = (m.group(2) or "").ljust(6, "0")[:6]
    if sec < MIN_EPOCH_S:
        raise _LineError(
            "timestamp",
            f"timestamp {t} is before 2000-01-01: relative (candump -t d / -t z)? "
            "need absolute epoch seconds",
        )
    if sec >= MAX_EPOCH_S:
        raise _LineError("timestamp", f"timestamp {t} is after 2100-01-01")
    return sec * 1_000_000 + int(frac)


def _parse_id(text: str) -> tuple[int, bool, bool]:
    """Return ``(arbitration_id, is_extended, is_error_frame)``."""
    if not text or _HEX_RE.fullmatch(text) is None:
        raise _LineError("can_id", f"CAN ID {text!r} is not hexadecimal")
    value = int(text, 16)
    if len(text) == 3:
        if value > _CAN_SFF_MASK:
            raise _LineError("can_id", f"standard CAN ID 0x{value:03X} exceeds 0x7FF")
        return value, False, False
    if len(text) == 8:
        if value & _CAN_ERR_FLAG and value <= (_CAN_ERR_FLAG | _CAN_EFF_MASK):
            return value & _CAN_EFF_MASK, False, True
        if value > _CAN_EFF_MASK:
            raise _LineError("can_id", f"extended CAN ID 0x{value:08X} exceeds 0x1FFFFFFF")
        return value, True, False
    if len(text) == 5:
        raise _LineError("can_id", "CAN XL frames (5-digit priority/VCID) are not supported")
    raise _LineError(
        "can_id",
        f"CAN ID {text!r} has {len(text)} hex digits; expected 3 (standard) or 8 (extended)",
    )


def _hex_bytes(text: str) -> bytes:
    if _HEX_RE.fullmatch(text) is None:
        bad = next(i for i, ch in enumerate(text) if ch not in "0123456789abcdefABCDEF")
        raise _LineError("data", f"invalid hex digit {text[bad]!r} at data position {bad + 1}")
    if len(text) % 2:
        raise _LineError("data", f"odd number of hex digits ({len(text)})")
    return bytes.fromhex(text)


@dataclass(slots=True)
class _Body:
    data: bytes = b""
    is_remote: bool = False
    is_fd: bool = False
    fd_flags: int = 0
    dlc: int | None = None


def _parse_body(body: str) -> _Body:
    """Parse what follows ``ID#`` in the log format."""
    if body[:1] in ("R", "r"):
        m = _REMOTE_RE.fullmatch(body)
        if m is None:
            raise _LineError("data", f"malformed remote frame {body!r} (expected R, R<len>)")
        dlc = None
        if m.group(2):
            dlc = int(m.group(2), 16)
        elif m.group(1):
            dlc = int(m.group(1))
        return _Body(is_remote=True, dlc=dlc)
    if body[:1] == "#":
        if len(body) < 2 or _HEX_RE.fullmatch(body[1]) is None:
            raise _LineError("data", "CAN FD frame needs a flags hex digit after '##'")
        data = _hex_bytes(body[2:].replace(".", ""))
        if len(data) not in _CANFD_LENGTHS:
            raise _LineError(
                "dlc", f"{len(data)} data bytes is not a valid CAN FD length (0-8,12,...,64)"
            )
        return _Body(data=data, is_fd=True, fd_flags=int(body[1], 16))
    raw_dlc = None
    if "_" in body:
        body, _, suffix = body.partition("_")
        if len(suffix) != 1 or suffix not in "9ABCDEFabcdef":
            raise _LineError("dlc", f"raw DLC suffix _{suffix} must be one hex digit 9..F")
        raw_dlc = int(suffix, 16)
    data = _hex_bytes(body.replace(".", "") if "." in body else body)
    if len(data) > 8:
        raise _LineError(
            "dlc",
            f"{len(data)} data bytes; classical CAN carries at most 8 (CAN FD is written ID##F...)",
        )
    if raw_dlc is not None and len(data) != 8:
        raise _LineError("dlc", "a raw DLC suffix needs exactly 8 data bytes")
    return _Body(data=data, dlc=raw_dlc)


def _parse_default(rest: str, ts_text: str | None, line: int) -> Frame:
    m = _DEFAULT_RE.fullmatch(rest)
    if m is None:  # pragma: no cover - callers only come here after a match
        raise _LineError("format", "unrecognised candump line")
    ts_us = _parse_ts(ts_text)
    arb, ext, err = _parse_id(m.group("id"))
    lm = _LEN_RE.fullmatch(m.group("len"))
    assert lm is not None
    is_fd = False
    raw_dlc = None
    if lm.group(1) is not None:
        digits = lm.group(1)
        length = int(digits)
        is_fd = len(digits) == 2
    else:
        raw_dlc = int(lm.group(2), 16)
        length = min(raw_dlc, 8)
        raw_dlc = raw_dlc if raw_dlc > 8 else None
    data_text = m.group("data")
    if data_text.strip() == "remote request":
        if is_fd:
            raise _LineError("data", "CAN FD has no remote frames")
        return Frame(
            ts_us,
            m.group("iface"),
            arb,
            ext,
            b"",
            line,
            is_remote=True,
            dlc=length or None,
            direction=m.group("dir"),
        )
    head = _DATA_HEAD_RE.fullmatch(data_text)
    assert head is not None
    tokens = head.group(1).split()
    tail = head.group(2).rstrip()
    for i, tok in enumerate(tokens):
        if len(tok) != 2:
            raise _LineError("data", f"data byte {i + 1} {tok!r} is not two hex digits")
    if tail and not (
        (tail[0] == tail[-1] and tail[0] in "'`" and len(tail) >= 2)
        or (tail == "ERRORFRAME" and err)
    ):
        bad = tail.split()[0]
        raise _LineError("data", f"unexpected {bad!r} after the data bytes")
    data = bytes.fromhex("".join(tokens))
    if len(data) != length:
        raise _LineError("dlc", f"length field {m.group('len')} but {len(data)} data bytes follow")
    if is_fd and length not in _CANFD_LENGTHS:
        raise _LineError("dlc", f"{length} is not a valid CAN FD length")
    if not is_fd and length > 8:
        raise _LineError("dlc", f"classical CAN length {length} exceeds 8")
    return Frame(
        ts_us,
        m.group("iface"),
        arb,
        ext,
        data,
        line,
        is_fd=is_fd,
        is_error_frame=err,
        dlc=raw_dlc,
        direction=m.group("dir"),
    )


def _parse_line(s: str, line: int) -> Frame | None:
    """Parse a stripped line; ``None`` for blank/comment lines; raise :class:`_LineError`."""
    if not s or s[0] in "#;" or s.startswith("DROPCOUNT"):
        return None
    ts_text: str | None = None
    rest = s
    if s[0] == "(":
        close = s.find(")")
        if close < 0:
            raise _LineError("timestamp", "'(' without a closing ')' around the timestamp")
        ts_text = s[1:close]
        rest = s[close + 1 :].strip()
    tokens = rest.split()
    if len(tokens) >= 2 and "#" in tokens[1]:
        # candump -l:  (ts) iface ID#DATA [T|R]
        if len(tokens) > 3 or (len(tokens) == 3 and tokens[2] not in ("T", "R")):
            raise _LineError("format", f"unexpected {tokens[2]!r} after the frame")
        ts_us = _parse_ts(ts_text)
        iface = tokens[0]
        if "#" in iface:
            raise _LineError("interface", f"interface name {iface!r} contains '#'")
        id_text, _, body = tokens[1].partition("#")
        arb, ext, err = _parse_id(id_text)
        b = _parse_body(body)
        return Frame(
            ts_us,
            iface,
            arb,
            ext,
            b.data,
            line,
            is_remote=b.is_remote,
            is_fd=b.is_fd,
            is_error_frame=err,
            fd_flags=b.fd_flags,
            dlc=b.dlc,
            direction=tokens[2] if len(tokens) == 3 else None,
        )
    if len(tokens) >= 3 and _DEFAULT_RE.fullmatch(rest):
        return _parse_default(rest, ts_text, line)
    if not tokens:
        raise _LineError("format", "timestamp without a frame")
    raise _LineError(
        "format",
        "not a candump line: expected '(ts) iface ID#DATA' or '(ts) iface ID [len] DATA'",
    )


def parse_candump_line(
    text: str, *, line: int = 1, file: str = "<string>"
) -> Frame | FrameError | None:
    """Parse one candump line.

    Parameters
    ----------
    text : str
        The line, with or without its newline.
    line : int
        Line number to record in the frame or error.
    file : str
        File name to record in an error.

    Returns
    -------
    Frame or FrameError or None
        ``None`` for blank lines, comments (``#``/``;``) and ``DROPCOUNT`` notices.

    Examples
    --------
    >>> parse_candump_line("(1617181920.000001) can0 18FF45F4#R").is_remote
    True
    >>> parse_candump_line(" (1617181920.000001)  can0  0C9   [2]  0A FF").data.hex()
    '0aff'
    >>> parse_candump_line("  can0  0C9   [2]  0A FF").field
    'timestamp'
    >>> parse_candump_line("# a comment") is None
    True
    """
    try:
        return _parse_line(text.strip(), line)
    except _LineError as exc:
        return FrameError(file, line, exc.field, exc.reason, text.rstrip("\r\n")[:200])


def parse_candump(
    path: str | Path, *, stats: CandumpStats | None = None
) -> Iterator[Frame | FrameError]:
    r"""Stream a candump log: one :class:`Frame` or :class:`FrameError` per non-blank line.

    The file is read in binary, one line at a time (never more than :data:`MAX_LINE_BYTES`
    held), and decoded as UTF-8.  Nothing raises for bad content: malformed lines, bytes that
    are not UTF-8, over-long lines and a truncated last line all become :class:`FrameError`
    with the line number.  Blank lines, ``#``/``;`` comments and candump ``DROPCOUNT``
    notices yield nothing but are counted in ``stats``.

    Parameters
    ----------
    path : str or Path
        The log file.
    stats : CandumpStats, optional
        Updated in place while iterating (``lines = skipped + frames + errors``).

    Yields
    ------
    Frame or FrameError

    Raises
    ------
    OSError
        If the file cannot be opened.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.log"
    >>> _ = p.write_bytes(b"(1617181920.000000) can0 0F1#00\n\n(1617181920.1) can0 0F1#0\n")
    >>> st = CandumpStats()
    >>> [type(x).__name__ for x in parse_candump(p, stats=st)]
    ['Frame', 'FrameError']
    >>> (st.lines, st.skipped, st.frames, st.errors)
    (3, 1, 1, 1)
    """
    st = stats if stats is not None else CandumpStats()
    name = str(path)
    with open(path, "rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            lineno += 1
            st.lines += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while True:  # skip the rest of the over-long line without keeping it
                    chunk = fh.readline(65536)
                    if not chunk or chunk.endswith(b"\n"):
                        break
                st.errors += 1
                yield FrameError(
                    name,
                    lineno,
                    "line",
                    f"line longer than {MAX_LINE_BYTES} bytes",
                    raw[:200].decode("utf-8", "backslashreplace"),
                )
                continue
            complete = raw.endswith(b"\n")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                st.errors += 1
                yield FrameError(
                    name,
                    lineno,
                    "encoding",
                    f"not UTF-8: byte 0x{raw[exc.start]:02X} at column {exc.start + 1}",
                    raw.rstrip(b"\r\n")[:200].decode("utf-8", "backslashreplace"),
                )
                continue
            stripped = text.strip()
            try:
                frame = _parse_line(stripped, lineno)
            except _LineError as exc:
                st.errors += 1
                reason = exc.reason
                if not complete:
                    reason += " (last line has no newline: truncated file?)"
                yield FrameError(name, lineno, exc.field, reason, text.rstrip("\r\n")[:200])
                continue
            if frame is None:
                st.skipped += 1
                if stripped.startswith("DROPCOUNT"):
                    m = _DROPCOUNT_RE.match(stripped)
                    if m:
                        st.dropped_reported += int(m.group(1))
                continue
            st.frames += 1
            yield frame


def parse_candump_batches(
    path: str | Path, batch_size: int = 10_000, *, stats: CandumpStats | None = None
) -> Iterator[list[Frame | FrameError]]:
    r""":func:`parse_candump` grouped into lists of at most ``batch_size`` items.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.log"
    >>> _ = p.write_text("".join(f"(1617181920.{i:06d}) can0 0F1#00\n" for i in range(5)))
    >>> [len(b) for b in parse_candump_batches(p, batch_size=2)]
    [2, 2, 1]
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    batch: list[Frame | FrameError] = []
    for item in parse_candump(path, stats=stats):
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def format_candump_line(frame: Frame, style: Literal["log", "default"] = "log") -> str:
    """Write ``frame`` the way candump does (no newline).

    ``style="log"`` is ``candump -l``; ``style="default"`` is the screen format with an
    absolute timestamp (``candump -t a``).

    Examples
    --------
    >>> f = Frame(1617181920123456, "can0", 0x1A0, False, bytes(range(1, 9)))
    >>> format_candump_line(f)
    '(1617181920.123456) can0 1A0#0102030405060708'
    >>> format_candump_line(f, "default")
    ' (1617181920.123456)  can0  1A0   [8]  01 02 03 04 05 06 07 08'
    """
    ts = f"({frame.ts_us // 1_000_000:010d}.{frame.ts_us % 1_000_000:06d})"
    if frame.is_error_frame:
        ident = f"{(frame.arbitration_id & _CAN_EFF_MASK) | _CAN_ERR_FLAG:08X}"
    elif frame.is_extended:
        ident = f"{frame.arbitration_id:08X}"
    else:
        ident = f"{frame.arbitration_id:03X}"
    if style == "log":
        if frame.is_remote:
            body = "R"
            if frame.dlc:
                body += f"{min(frame.dlc, 8):X}"
                if frame.dlc > 8:
                    body += f"_{frame.dlc:X}"
        elif frame.is_fd:
            body = f"#{frame.fd_flags:X}{frame.data.hex().upper()}"
        else:
            body = frame.data.hex().upper()
            if frame.dlc is not None and frame.dlc > 8 and len(frame.data) == 8:
                body += f"_{frame.dlc:X}"
        tail = f" {frame.direction}" if frame.direction else ""
        return f"{ts} {frame.interface} {ident}#{body}{tail}"
    extra = f"  {frame.direction}X - -" if frame.direction else ""
    pad = ident.ljust(5) if len(ident) == 3 else ident + "  "
    if frame.is_fd:
        head = f"{pad}[{len(frame.data):02d}]"
    elif frame.is_remote:
        return f" {ts}  {frame.interface}{extra}  {pad} [{frame.dlc or 0}]  remote request"
    else:
        head = f"{pad} [{len(frame.data)}]"
    data = "".join(f" {b:02X}" for b in frame.data)
    tail = "  ERRORFRAME" if frame.is_error_frame else ""
    return f" {ts}  {frame.interface}{extra}  {head} {data}{tail}"


# --------------------------------------------------------------------------------------------
# DBC and signal mapping
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _load_dbc_cached(path: str) -> Database:
    db = cantools.database.load_file(path, database_format="dbc")
    if not isinstance(db, Database):  # pragma: no cover - dbc format always gives a CAN db
        raise TypeError(f"{path} is not a CAN database")
    return db


def load_dbc(path: str | Path | None = None) -> Database:
    """Load a DBC file with cantools (cached per path).

    Parameters
    ----------
    path : str or Path, optional
        Defaults to :data:`DEFAULT_DBC`, the bus autopersona ships.

    Examples
    --------
    >>> db = load_dbc()
    >>> sorted(m.name for m in db.messages)  # doctest: +NORMALIZE_WHITESPACE
    ['BMS_Status', 'CCU_ChargeStatus', 'ECM_EngineData', 'IC_Odometer', 'VCU_DriveState']
    >>> db.get_message_by_name("VCU_DriveState").cycle_time
    20
    """
    return _load_dbc_cached(str(Path(path if path is not None else DEFAULT_DBC).resolve()))


@dataclass(frozen=True, slots=True)
class SignalMap:
    """Where one contract column comes from.

    The conversion follows the contract column's type: ``float64`` columns get the DBC
    signal's unit converted to the contract unit; ``string`` columns get the choice name
    (``rename`` can translate names; names in ``null_choices`` become null); ``bool`` columns
    are true when the choice name is in ``true_choices`` (or, without choices, when the value
    is non-zero).

    Examples
    --------
    >>> sm = VEHICLE_SIGNALS_MAP[1]
    >>> sm.column, sm.message, sm.signal
    ('speed_mps', 'VCU_DriveState', 'VehicleSpeed')
    >>> sorted(m.column for m in VEHICLE_SIGNALS_MAP if m.true_choices)
    ['charging', 'ignition_on']
    """

    column: str
    message: str
    signal: str
    true_choices: frozenset[str] = frozenset()
    null_choices: frozenset[str] = frozenset({"SNA"})
    rename: tuple[tuple[str, str], ...] = ()


#: How the shipped DBC fills the ``vehicle_signals`` contract.
VEHICLE_SIGNALS_MAP: tuple[SignalMap, ...] = (
    SignalMap("odometer_km", "IC_Odometer", "Odometer"),
    SignalMap("speed_mps", "VCU_DriveState", "VehicleSpeed"),
    SignalMap("soc_pct", "BMS_Status", "BatterySOC"),
    SignalMap("fuel_level_pct", "IC_Odometer", "FuelLevel"),
    SignalMap("battery_temp_c", "BMS_Status", "BatteryTempAvg"),
    SignalMap("coolant_temp_c", "ECM_EngineData", "CoolantTemp"),
    SignalMap("engine_rpm", "ECM_EngineData", "EngineSpeed"),
    SignalMap("engine_load_pct", "ECM_EngineData", "EngineLoad"),
    SignalMap("throttle_pct", "VCU_DriveState", "AccelPedalPos"),
    SignalMap("gear", "VCU_DriveState", "GearSelector"),
    SignalMap("ignition_on", "VCU_DriveState", "IgnitionState", frozenset({"ON", "START"})),
    SignalMap("charging", "CCU_ChargeStatus", "ChargingActive", frozenset({"Charging"})),
    SignalMap("charge_power_kw", "CCU_ChargeStatus", "ChargePower"),
    SignalMap(
        "charger_type", "CCU_ChargeStatus", "ChargerType", null_choices=frozenset({"SNA", "None"})
    ),
)

Value = float | bool | str | None
_Converter = Callable[[Any], Value]


def _converter(sm: SignalMap, signal: Signal, contract: Contract) -> _Converter:
    col = contract.column(sm.column)
    nulls = sm.null_choices
    if col.type == "float64":
        if not col.unit:
            a, b = 1.0, 0.0
        else:
            src = signal.unit or ""
            try:
                a, b = affine(src, col.unit)
            except ValueError as exc:
                raise ValueError(
                    f"{sm.message}.{sm.signal} unit {src!r} cannot feed {sm.column} "
                    f"({col.unit}): {exc}"
                ) from exc

        def num(v: Any) -> Value:
            if isinstance(v, NamedSignalValue):
                return None  # a named raw value (SNA, …) is not a measurement
            return a * float(v) + b

        return num
    if col.type == "bool":
        trues = sm.true_choices

        def flag(v: Any) -> Value:
            if isinstance(v, NamedSignalValue | str):
                name = str(v)
                return None if name in nulls else name in trues
            return bool(v)

        return flag
    if col.type == "string":
        ren = dict(sm.rename)

        def text(v: Any) -> Value:
            name = str(v.name) if isinstance(v, NamedSignalValue) else str(v)
            return None if name in nulls else ren.get(name, name)

        return text
    raise ValueError(f"cannot map a CAN signal to {sm.column} of type {col.type}")


@dataclass(frozen=True, slots=True)
class _MsgPlan:
    message: Message
    targets: tuple[tuple[int, str, _Converter], ...]  # (column index, signal, converter)


def _plan(
    db: Database,
    mapping: Sequence[SignalMap],
    contract: Contract,
    period_us: int,
    max_staleness_s: float | None,
    staleness_cycles: float,
) -> tuple[list[str], dict[str, _MsgPlan], list[int]]:
    """Columns mapped, per-message plans and the staleness limit (µs) of each column."""
    columns = [sm.column for sm in mapping]
    if len(set(columns)) != len(columns):
        raise ValueError("a column is mapped twice")
    for c in columns:
        if c in ("vin", contract.time_column):
            raise ValueError(f"{c} cannot come from a CAN signal")
        if c not in contract.column_names:
            raise ValueError(f"{contract.table} has no column {c!r}")
    targets: dict[str, list[tuple[int, str, _Converter]]] = {}
    stale: list[int] = []
    for i, sm in enumerate(mapping):
        try:
            msg = db.get_message_by_name(sm.message)
        except KeyError:
            raise ValueError(f"DBC has no message {sm.message!r} (mapped to {sm.column})") from None
        try:
            sig = msg.get_signal_by_name(sm.signal)
        except KeyError:
            raise ValueError(f"{sm.message} has no signal {sm.signal!r}") from None
        targets.setdefault(msg.name, []).append((i, sig.name, _converter(sm, sig, contract)))
        if max_staleness_s is not None:
            stale.append(round(max_staleness_s * 1_000_000))
            continue
        cycle_s = (msg.cycle_time or 1000) / 1000.0
        if sig.multiplexer_ids:
            pages = {mid for s in msg.signals for mid in (s.multiplexer_ids or ())}
            cycle_s *= max(len(pages), 1)
        stale.append(round(staleness_cycles * max(cycle_s, period_us / 1_000_000) * 1_000_000))
    plans = {name: _MsgPlan(db.get_message_by_name(name), tuple(t)) for name, t in targets.items()}
    return columns, plans, stale


# --------------------------------------------------------------------------------------------
# Decoding and resampling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CanCounts:
    """Where every line of a log went.

    ``lines = skipped + errors + frames``; ``errors = parse_errors + decode_errors``;
    ``frames = decoded + unknown_id + remote + error_frames``.  ``frames`` counts frames
    that were read *and* did not fail decoding; a frame cantools rejects is a decode error.
    ``dropped_reported`` sums candump ``DROPCOUNT`` notices; ``rows`` is the output size.

    Examples
    --------
    >>> c = CanCounts(lines=5, skipped=1, frames=3, decoded=2, unknown_id=1, remote=0,
    ...               error_frames=0, parse_errors=1, decode_errors=0, dropped_reported=0,
    ...               rows=1)
    >>> c.errors
    1
    >>> c.check()
    """

    lines: int
    skipped: int
    frames: int
    decoded: int
    unknown_id: int
    remote: int
    error_frames: int
    parse_errors: int
    decode_errors: int
    dropped_reported: int
    rows: int

    @property
    def errors(self) -> int:
        """Lines that became :class:`FrameError` (parse + decode)."""
        return self.parse_errors + self.decode_errors

    def check(self) -> None:
        """Raise :class:`AssertionError` unless the counts add up."""
        if self.lines != self.skipped + self.errors + self.frames:
            raise AssertionError(f"lines do not add up: {self}")
        if self.frames != self.decoded + self.unknown_id + self.remote + self.error_frames:
            raise AssertionError(f"frames do not add up: {self}")


@dataclass(frozen=True)
class CanDecodeResult:
    """What :func:`decode_candump` returns.

    Attributes
    ----------
    signals : pandas.DataFrame
        Exactly the ``vehicle_signals`` columns in contract order: ``ts`` is
        ``datetime64[us, UTC]``, numbers ``float64`` (NaN when unknown), ``ignition_on`` and
        ``charging`` nullable ``boolean``, strings ``str``.
    table : pyarrow.Table
        The same rows with the contract's Arrow schema (``timestamp[us, tz=UTC]``…).
    errors : list of FrameError
        Every parse and decode error, in line order (first ``max_errors`` kept).
    counts : CanCounts
        Line accounting.
    unknown_ids : dict
        Frames per identifier absent from the DBC (``"0x3B3"``, ``"0x18DAF110x"`` for
        extended).
    """

    signals: pd.DataFrame
    table: Any
    errors: list[FrameError]
    counts: CanCounts
    unknown_ids: dict[str, int] = field(default_factory=dict)


def _arrow_type(t: str) -> Any:
    return {
        "string": pa.string(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "int64": pa.int64(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[t]


def decode_frames(
    items: Iterable[Frame | FrameError],
    vin: str,
    dbc: Database | str | Path | None = None,
    *,
    period_s: float = 1.0,
    max_staleness_s: float | None = None,
    staleness_cycles: float = 3.0,
    mapping: Sequence[SignalMap] = VEHICLE_SIGNALS_MAP,
    max_errors: int | None = None,
    stats: CandumpStats | None = None,
    file: str = "<frames>",
) -> CanDecodeResult:
    """Decode parsed frames into ``vehicle_signals`` rows; see :func:`decode_candump`.

    Use it to decode frames that do not come from a file (a live socket, another parser).
    ``stats`` supplies the line counts of the parse (blank lines are not items); without it
    ``lines`` counts the items only.  ``file`` names the source in decode errors.

    Examples
    --------
    >>> data = load_dbc().encode_message("IC_Odometer", {"Odometer": 4321.5,
    ...     "FuelLevel": 62.0, "OutsideTemp": 18.0, "IC_AliveCounter": 0})
    >>> frames = [Frame(1_700_000_000_250_000, "can0", 0x520, False, data),
    ...           Frame(1_700_000_000_300_000, "can0", 0x520, False, data[:4])]
    >>> res = decode_frames(frames, vin="VIN1")
    >>> float(res.signals.odometer_km.iloc[0]), res.counts.decoded, res.errors[0].field
    (4321.5, 1, 'dlc')
    """
    if not vin:
        raise ValueError("vin must be a non-empty string")
    if not (period_s > 0 and math.isfinite(period_s)):
        raise ValueError("period_s must be a positive number of seconds")
    if max_staleness_s is not None and not max_staleness_s >= 0:
        raise ValueError("max_staleness_s must be >= 0")
    if not staleness_cycles > 0:
        raise ValueError("staleness_cycles must be > 0")
    period_us = max(round(period_s * 1_000_000), 1)
    database = dbc if isinstance(dbc, Database) else load_dbc(dbc)
    contract = get_contract("vehicle_signals")
    columns, plans, stale_us = _plan(
        database, mapping, contract, period_us, max_staleness_s, staleness_cycles
    )
    ncol = len(columns)
    by_id: dict[tuple[int, bool], _MsgPlan | Message | None] = {}
    # bin k covers (k*P - P, k*P]; per bin and column: (ts of last value, value)
    bins: dict[int, list[tuple[int, Value] | None]] = {}
    errors: list[FrameError] = []
    unknown: Counter[str] = Counter()
    n_items = decoded = unknown_id = remote = error_frames = parse_errors = decode_errors = 0
    file_name = file

    def add_error(e: FrameError) -> None:
        if max_errors is None or len(errors) < max_errors:
            errors.append(e)

    for item in items:
        n_items += 1
        if isinstance(item, FrameError):
            parse_errors += 1
            add_error(item)
            continue
        if item.is_error_frame:
            error_frames += 1
            continue
        key = (item.arbitration_id, item.is_extended)
        if key in by_id:
            plan = by_id[key]
        else:
            try:
                msg = database.get_message_by_frame_id(
                    item.arbitration_id, force_extended_id=item.is_extended
                )
            except KeyError:
                plan = None
            else:
                plan = plans.get(msg.name, msg)
            by_id[key] = plan
        if plan is None:
            unknown_id += 1
            unknown[f"0x{item.arbitration_id:X}" + ("x" if item.is_extended else "")] += 1
            continue
        if item.is_remote:
            remote += 1
            continue
        message = plan.message if isinstance(plan, _MsgPlan) else plan
        if len(item.data) != message.length:
            decode_errors += 1
            add_error(
                FrameError(
                    file_name,
                    item.line,
                    "dlc",
                    f"{message.name} (0x{item.arbitration_id:X}) expects {message.length} "
                    f"data bytes, got {len(item.data)}",
                    format_candump_line(item),
                )
            )
            continue
        try:
            values = database.decode_message(
                item.arbitration_id,
                item.data,
                decode_choices=True,
                force_extended_id=item.is_extended,
            )
        except (DecodeError, ValueError, KeyError, IndexError) as exc:
            decode_errors += 1
            add_error(
                FrameError(
                    file_name,
                    item.line,
                    "decode",
                    f"cantools cannot decode {message.name}: {exc}",
                    format_candump_line(item),
                )
            )
            continue
        decoded += 1
        k = -(-item.ts_us // period_us)
        slot = bins.get(k)
        if slot is None:
            slot = bins[k] = [None] * ncol
        if not isinstance(plan, _MsgPlan) or not isinstance(values, dict):
            continue
        for idx, sig_name, conv in plan.targets:
            if sig_name not in values:  # other multiplexer page
                continue
            prev = slot[idx]
            if prev is None or prev[0] <= item.ts_us:
                slot[idx] = (item.ts_us, conv(values[sig_name]))

    # as-of sampling on the grid
    ts_out: list[int] = []
    cols_out: list[list[Value]] = [[] for _ in range(ncol)]
    last: list[tuple[int, Value] | None] = [None] * ncol
    for k in sorted(bins):
        t = k * period_us
        slot = bins[k]
        row: list[Value] = [None] * ncol
        any_value = False
        for j in range(ncol):
            obs = slot[j]
            if obs is not None:
                prev = last[j]
                if prev is None or prev[0] <= obs[0]:
                    last[j] = obs
            cur = last[j]
            if cur is not None and t - cur[0] <= stale_us[j]:
                row[j] = cur[1]
                any_value = any_value or cur[1] is not None
        if not any_value:
            continue
        ts_out.append(t)
        for j in range(ncol):
            cols_out[j].append(row[j])

    n = len(ts_out)
    arrays: dict[str, Any] = {}
    for col in contract.columns:
        typ = _arrow_type(col.type)
        if col.name == "vin":
            arrays[col.name] = pa.array([vin] * n, type=typ)
        elif col.name == contract.time_column:
            arrays[col.name] = pa.array(ts_out, type=pa.int64()).cast(typ)
        elif col.name in columns:
            arrays[col.name] = pa.array(cols_out[columns.index(col.name)], type=typ)
        else:
            arrays[col.name] = pa.nulls(n, type=typ)
    table = pa.table(arrays)
    frame = table.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)

    frames = decoded + unknown_id + remote + error_frames
    if stats is not None:
        lines, skipped, dropped = stats.lines, stats.skipped, stats.dropped_reported
    else:
        lines, skipped, dropped = n_items, 0, 0
    counts = CanCounts(
        lines=lines,
        skipped=skipped,
        frames=frames,
        decoded=decoded,
        unknown_id=unknown_id,
        remote=remote,
        error_frames=error_frames,
        parse_errors=parse_errors,
        decode_errors=decode_errors,
        dropped_reported=dropped,
        rows=n,
    )
    return CanDecodeResult(frame, table, errors, counts, dict(unknown))


def decode_candump(
    path: str | Path,
    vin: str,
    dbc: Database | str | Path | None = None,
    *,
    period_s: float = 1.0,
    max_staleness_s: float | None = None,
    staleness_cycles: float = 3.0,
    mapping: Sequence[SignalMap] = VEHICLE_SIGNALS_MAP,
    max_errors: int | None = None,
) -> CanDecodeResult:
    r"""Decode a candump log of one vehicle into ``vehicle_signals`` rows.

    Parameters
    ----------
    path : str or Path
        candump log (``-l`` format or ``-t a`` screen format, may be mixed).
    vin : str
        The vehicle the log belongs to (candump logs carry no VIN).
    dbc : cantools Database or path, optional
        Defaults to the shipped :data:`DEFAULT_DBC`.
    period_s : float
        Grid period.  The row at grid time ``T`` (a multiple of ``period_s`` since the epoch)
        holds each column's latest value at or before ``T``.  Rows are produced only for
        periods in which at least one frame decoded, and only if some column has a value.
    max_staleness_s : float, optional
        How old a carried-forward value may be.  By default each column allows
        ``staleness_cycles × max(cycle, period_s)``, with the message cycle time from the DBC
        (``GenMsgCycleTime``; 1 s when absent) times the number of multiplexer pages for
        multiplexed signals.
    staleness_cycles : float
        See ``max_staleness_s``.
    mapping : sequence of SignalMap
        DBC signal → contract column; defaults to :data:`VEHICLE_SIGNALS_MAP`.
    max_errors : int, optional
        Keep at most this many :class:`FrameError` records (counts stay exact).

    Returns
    -------
    CanDecodeResult

    Raises
    ------
    OSError
        If the log cannot be read.
    ValueError
        If ``mapping`` does not fit the DBC or the contract, or ``vin``/``period_s`` is bad.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> db = load_dbc()
    >>> data = db.encode_message("VCU_DriveState", {"VehicleSpeed": 72.0, "AccelPedalPos": 20,
    ...     "GearSelector": "D", "IgnitionState": "ON", "BrakePedalPressed": 0,
    ...     "DriveMode": "EV", "VCU_AliveCounter": 0})
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "one.log"
    >>> _ = p.write_text(f"(1700000000.500000) can0 0F1#{data.hex()}\n"
    ...                  "(1700000000.600000) can0 7FF#00\n")
    >>> res = decode_candump(p, vin="VIN1")
    >>> row = res.signals.iloc[0]
    >>> str(row.ts), float(row.speed_mps), row.gear, bool(row.ignition_on)
    ('2023-11-14 22:13:21+00:00', 20.0, 'D', True)
    >>> res.counts.decoded, res.counts.unknown_id, res.unknown_ids
    (1, 1, {'0x7FF': 1})
    """
    stats = CandumpStats()
    return decode_frames(
        parse_candump(path, stats=stats),
        vin,
        dbc,
        period_s=period_s,
        max_staleness_s=max_staleness_s,
        staleness_cycles=staleness_cycles,
        mapping=mapping,
        max_errors=max_errors,
        stats=stats,
        file=str(path),
    )


# --------------------------------------------------------------------------------------------
# Sample data: a simulated plug-in hybrid drive, encoded with the DBC
# --------------------------------------------------------------------------------------------

#: 2025-06-02 07:30:00 UTC
DEFAULT_START_S = 1_748_849_400

_CHARGERS = {"home_ac": (7.2, 7.2), "public_ac": (11.0, 11.0), "public_dc": (50.0, 90.0)}


def _pick_charger(seed: int) -> str:
    return random.Random(seed * 7919 + 17).choices(list(_CHARGERS), weights=[4, 2, 4])[0]


@dataclass(frozen=True, slots=True)
class SampleLog:
    """What :func:`write_sample_candump` wrote."""

    path: Path
    lines: int
    frames_by_message: dict[str, int]
    start_us: int
    end_us: int
    charger: str


def _quantize(sig: Signal, value: float) -> float:
    lo = sig.minimum if sig.minimum is not None else -math.inf
    hi = sig.maximum if sig.maximum is not None else math.inf
    v = min(max(value, lo), hi)
    raw = math.floor((v - sig.offset) / sig.scale + 0.5)
    q = raw * sig.scale + sig.offset
    if q > hi:
        q -= sig.scale
    if q < lo:
        q += sig.scale
    # remove binary noise so that the value prints as the bus resolution
    decimals = max(0, -math.floor(math.log10(sig.scale)) + 1) if sig.scale < 1 else 0
    return round(q, decimals) if decimals else float(round(q))


class _Drive:
    """A plug-in hybrid drive sampled every ``dt`` seconds (physical values, not quantized)."""

    dt = 0.01

    def __init__(self, seconds: float, seed: int, charger: str | None) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.seconds = seconds
        self.charger = charger or _pick_charger(seed)
        lo, hi = _CHARGERS[self.charger]
        self.charge_kw = round(rng.uniform(lo, hi), 1)
        self.ambient = round(rng.uniform(5.0, 28.0), 1)
        n = int(seconds / self.dt) + 1
        self.n = n
        t_r0, t_r1, t_n1 = 0.03 * seconds, 0.07 * seconds, 0.08 * seconds
        t_d1, t_off, t_c0, t_c1 = 0.66 * seconds, 0.68 * seconds, 0.70 * seconds, 0.97 * seconds
        self.phases = (t_r0, t_r1, t_n1, t_d1, t_off, t_c0, t_c1)
        # piecewise-constant speed targets (km/h) during D
        legs: list[tuple[float, float]] = []
        t = t_n1
        while t < t_d1:
            span = (t_d1 - t_n1) * rng.uniform(0.12, 0.3)
            target = 0.0 if legs and rng.random() < 0.2 else rng.uniform(25.0, 95.0)
            legs.append((t, target))
            t += span
        odo = round(rng.uniform(3_000.0, 60_000.0), 1)
        soc = rng.uniform(45.0, 85.0)
        fuel_l = rng.uniform(15.0, 40.0)
        coolant = self.ambient + rng.uniform(0.0, 4.0)
        batt_t = self.ambient + rng.uniform(1.0, 4.0)
        v = 0.0  # m/s
        engine = False
        leg = 0
        cols: dict[str, list[Any]] = {
            k: []
            for k in (
                "speed_kmh",
                "pedal",
                "gear",
                "ign",
                "brake",
                "mode",
                "rpm",
                "load",
                "coolant",
                "torque",
                "running",
                "soc",
                "batt_t",
                "current",
                "voltage",
                "odo",
                "fuel",
                "charging",
                "charger",
                "plug",
                "charge_kw",
                "remaining",
            )
        }
        for i in range(n):
            t = i * self.dt
            # ---- gear, ignition, speed target
            if t < t_r0:
                gear, target, t_end, decel = "P", 0.0, t_r0, 1.0
            elif t < t_r1:
                gear, target, t_end, decel = "R", 6.0, t_r1, 1.0
            elif t < t_n1:
                gear, target, t_end, decel = "N", 0.0, t_n1, 1.0
            elif t < t_d1:
                while leg + 1 < len(legs) and legs[leg + 1][0] <= t:
                    leg += 1
                gear, target, t_end, decel = "D", legs[leg][1], t_d1, 2.0
            else:
                gear, target, t_end, decel = "P", 0.0, t_d1, 2.0
            ign = "ACC" if t < 0.01 * seconds else ("ON" if t < t_off else "OFF")
            accel_lim = 1.0 if gear == "R" else 1.8
            v_target = min(target / 3.6, max(0.0, decel * (t_end - t)))
            dv = max(-decel * self.dt, min(accel_lim * self.dt, v_target - v))
            v = max(0.0, v + dv)
            a = dv / self.dt
            kmh = v * 3.6
            # ---- driver and engine
            pedal = 0.0
            if gear in ("D", "R") and a > -0.05 and v > 0.01:
                pedal = min(100.0, 6.0 + kmh * 0.18 + max(a, 0.0) * 22.0)
            brake = gear != "P" and ign == "ON" and (a < -0.3 or v < 0.01)
            if not engine and (kmh > 62.0 or pedal > 70.0):
                engine = True
            elif engine and kmh < 45.0 and pedal < 50.0:
                engine = False
            if ign != "ON":
                engine = False
            if engine:
                rpm = min(5_500.0, 850.0 + kmh * 24.0 + pedal * 12.0)
                load = min(100.0, 18.0 + pedal * 0.7)
                torque = load * 2.2 if pedal > 1.0 else -15.0
                coolant += (92.0 - coolant) * self.dt / 90.0
                fuel_l -= (0.8 + load * 0.09) / 3600.0 * self.dt
            else:
                rpm = load = torque = 0.0
                coolant += (self.ambient - coolant) * self.dt / 1_200.0
            # ---- traction battery
            m = 1_900.0
            p_wheel = (m * a * v + 0.5 * 1.2 * 0.62 * v**3 + 0.011 * m * 9.81 * v) / 1_000.0
            p_batt = p_wheel / 0.9 if p_wheel > 0 else p_wheel * 0.6
            if engine and p_batt > 0:
                p_batt *= 0.25
            p_batt += 0.4 if ign == "ON" else 0.15
            plugged = t >= t_off
            charging = t_c0 <= t < t_c1 and soc < 99.5
            charge_kw = 0.0
            if charging:
                frac = (t - t_c0) / max(t_c1 - t_c0, 1e-9)
                ramp = min(1.0, frac / 0.1, (1.0 - frac) / 0.1)
                charge_kw = self.charge_kw * max(ramp, 0.05)
                p_batt -= charge_kw * 0.94
            soc = min(100.0, max(0.0, soc - p_batt * self.dt / 3_600.0 / 18.0 * 100.0))
            voltage = 320.0 + 0.8 * soc
            current = p_batt * 1_000.0 / voltage
            batt_t += (abs(p_batt) * 0.0008 - (batt_t - self.ambient) / 1_500.0) * self.dt
            odo += v * self.dt / 1_000.0
            remaining = (100.0 - soc) / 100.0 * 18.0 / charge_kw * 60.0 if charging else 0.0
            for k, val in (
                ("speed_kmh", kmh),
                ("pedal", pedal),
                ("gear", gear),
                ("ign", ign),
                ("brake", int(brake)),
                ("mode", "HEV" if engine else "EV"),
                ("rpm", rpm),
                ("load", load),
                ("coolant", coolant),
                ("torque", torque),
                ("running", "Running" if engine else "Stopped"),
                ("soc", soc),
                ("batt_t", batt_t),
                ("current", current),
                ("voltage", voltage),
                ("odo", odo),
                ("fuel", fuel_l / 45.0 * 100.0),
                ("charging", "Charging" if charging else "NotCharging"),
                ("charger", self.charger if plugged else "None"),
                ("plug", ("Locked" if charging else "Plugged") if plugged else "Unplugged"),
                ("charge_kw", charge_kw),
                ("remaining", min(remaining, 65_534.0)),
            ):
                cols[k].append(val)
        self.cols = cols

    def signals(self, message: str, i: int, counter: int, page: int) -> dict[str, Any]:
        c = {k: v[i] for k, v in self.cols.items()}
        if message == "ECM_EngineData":
            return {
                "EngineSpeed": c["rpm"],
                "EngineLoad": c["load"],
                "CoolantTemp": c["coolant"],
                "EngineTorque": c["torque"],
                "EngineRunning": c["running"],
                "ECM_AliveCounter": counter,
            }
        if message == "VCU_DriveState":
            return {
                "VehicleSpeed": c["speed_kmh"],
                "AccelPedalPos": c["pedal"],
                "GearSelector": c["gear"],
                "IgnitionState": c["ign"],
                "BrakePedalPressed": c["brake"],
                "DriveMode": c["mode"],
                "VCU_AliveCounter": counter,
            }
        if message == "BMS_Status":
            if page == 0:
                return {
                    "BMS_MuxPage": 0,
                    "BMS_AliveCounter": counter,
                    "BatterySOC": c["soc"],
                    "BatteryTempAvg": c["batt_t"],
                    "BatteryCurrent": c["current"],
                    "BatteryVoltage": c["voltage"],
                }
            cell = c["voltage"] / 96.0
            return {
                "BMS_MuxPage": 1,
                "BMS_AliveCounter": counter,
                "BatteryTempMin": c["batt_t"] - 1.0,
                "BatteryTempMax": c["batt_t"] + 1.5,
                "CellVoltageMin": cell - 0.012,
                "CellVoltageMax": cell + 0.009,
            }
        if message == "IC_Odometer":
            return {
                "Odometer": c["odo"],
                "FuelLevel": c["fuel"],
                "OutsideTemp": self.ambient,
                "IC_AliveCounter": counter,
            }
        if message == "CCU_ChargeStatus":
            return {
                "ChargingActive": c["charging"],
                "ChargerType": c["charger"],
                "ChargePlugState": c["plug"],
                "ChargePower": c["charge_kw"],
                "ChargeTimeRemaining": c["remaining"],
                "CCU_AliveCounter": counter,
            }
        raise KeyError(message)


_PHASE_S = {
    "ECM_EngineData": 0.0031,
    "VCU_DriveState": 0.0087,
    "BMS_Status": 0.0135,
    "IC_Odometer": 0.4502,
    "CCU_ChargeStatus": 0.6204,
}


def sample_drive_messages(
    seconds: float = 180.0,
    seed: int = 0,
    *,
    start_s: int = DEFAULT_START_S,
    min_cycle_s: float | None = None,
    charger: str | None = None,
    dbc: Database | None = None,
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Yield the messages of a simulated drive: ``(ts_us, message name, signal values)``.

    Values are quantized to each signal's resolution and clamped to its range, so they are
    exactly what decoding the encoded frame gives back.  Each message is sent every
    ``max(cycle_time, min_cycle_s)`` seconds with a fixed phase and up to 0.8 ms of jitter;
    ``BMS_Status`` alternates its multiplexer pages.

    Scenario (fractions of ``seconds``): ignition ACC then ON in P; reverse out of a parking
    space (0.03–0.07); N; drive in D with random speed legs, some stops and a PHEV engine
    that starts above ~62 km/h (0.08–0.66); stop, P; ignition OFF and plug in (0.68);
    charging session with ramped power (0.70–0.97).

    Examples
    --------
    >>> msgs = list(sample_drive_messages(10, seed=3, min_cycle_s=1.0))
    >>> msgs[0][1], sorted(msgs[0][2])[:2]
    ('ECM_EngineData', ['CoolantTemp', 'ECM_AliveCounter'])
    """
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    if charger is not None and charger not in _CHARGERS:
        raise ValueError(f"charger must be one of {sorted(_CHARGERS)}")
    db = dbc or load_dbc()
    drive = _Drive(seconds, seed, charger)
    rng = random.Random(seed + 1)
    messages = [db.get_message_by_name(name) for name in _PHASE_S]
    heap: list[tuple[int, int, int]] = []  # (ts_us, message index, emission number)
    start_us = start_s * 1_000_000
    periods: list[float] = []
    for idx, msg in enumerate(messages):
        period = max((msg.cycle_time or 1000) / 1000.0, min_cycle_s or 0.0)
        periods.append(period)
        heap.append((start_us + round(_PHASE_S[msg.name] % period * 1e6), idx, 0))
    heapq.heapify(heap)
    end_us = start_us + round(seconds * 1e6)
    while heap:
        ts_us, idx, k = heapq.heappop(heap)
        if ts_us >= end_us:
            continue
        msg = messages[idx]
        i = min((ts_us - start_us) // round(drive.dt * 1e6), drive.n - 1)
        page = k % 2 if msg.is_multiplexed() else 0
        raw = drive.signals(msg.name, i, k % 16, page)
        out: dict[str, Any] = {}
        for name, value in raw.items():
            sig = msg.get_signal_by_name(name)
            out[name] = value if isinstance(value, str) else _quantize(sig, float(value))
        yield ts_us, msg.name, out
        nxt = (
            start_us
            + round((_PHASE_S[msg.name] % periods[idx] + (k + 1) * periods[idx]) * 1e6)
            + round(rng.uniform(0.0, 0.0008) * 1e6)
        )
        heapq.heappush(heap, (nxt, idx, k + 1))


def write_sample_candump(
    path: str | Path,
    seconds: float = 180.0,
    seed: int = 0,
    *,
    start_s: int = DEFAULT_START_S,
    min_cycle_s: float | None = None,
    charger: str | None = None,
    interface: str = "can0",
    foreign_ids: bool = True,
) -> SampleLog:
    """Simulate a drive (:func:`sample_drive_messages`) and write it as a ``candump -l`` log.

    Every frame is produced by ``db.encode_message`` on the shipped DBC.  With
    ``foreign_ids`` the log also carries a body-controller message (0x3B3, every 500 ms) that
    the DBC does not describe, as real bus logs do.

    Parameters
    ----------
    path : str or Path
        Output file (overwritten).
    seconds : float
        Length of the drive, including the charging session.
    seed : int
        Seed of the scenario and the jitter.
    start_s : int
        Epoch second of the first frame.
    min_cycle_s : float, optional
        Send no message more often than this (e.g. ``1.0`` for a small file).
    charger : {'home_ac', 'public_ac', 'public_dc'}, optional
        Charger of the session; drawn from the seed when omitted.
    interface : str
        Interface name written in each line.
    foreign_ids : bool
        Add frames with an identifier that is not in the DBC.

    Returns
    -------
    SampleLog

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.log"
    >>> info = write_sample_candump(p, seconds=30, seed=7, min_cycle_s=1.0)
    >>> info.lines == len(p.read_text().splitlines())
    True
    >>> p.read_text().splitlines()[0][:29]
    '(1748849400.003100) can0 0C9#'
    """
    db = load_dbc()
    out = Path(path)
    counts: Counter[str] = Counter()
    lines = 0
    start_us = start_s * 1_000_000
    foreign_period = max(0.5, min_cycle_s or 0.0)
    next_foreign = start_us + 300_000
    foreign_k = 0
    end_us = start_us
    drive_charger = ""
    with open(out, "w", encoding="ascii", newline="\n") as fh:

        def foreign_until(ts_us: int) -> None:
            nonlocal next_foreign, foreign_k, lines
            while foreign_ids and next_foreign <= ts_us:
                payload = bytes([0x00, 0x40, 0x00, 0x00, 0x11, 0x00, 0x00, foreign_k % 16])
                fh.write(format_candump_line(Frame(next_foreign, interface, 0x3B3, False, payload)))
                fh.write("\n")
                lines += 1
                counts["0x3B3"] += 1
                foreign_k += 1
                next_foreign = start_us + 300_000 + round(foreign_k * foreign_period * 1e6)

        drive_iter = sample_drive_messages(
            seconds, seed, start_s=start_s, min_cycle_s=min_cycle_s, charger=charger, dbc=db
        )
        for ts_us, name, values in drive_iter:
            foreign_until(ts_us)
            msg = db.get_message_by_name(name)
            data = db.encode_message(name, values)
            frame = Frame(ts_us, interface, msg.frame_id, msg.is_extended_frame, data)
            fh.write(format_candump_line(frame))
            fh.write("\n")
            lines += 1
            counts[name] += 1
            end_us = ts_us
        foreign_until(end_us)
        drive_charger = charger or _pick_charger(seed)
    return SampleLog(out, lines, dict(counts), start_us, end_us, drive_charger)
