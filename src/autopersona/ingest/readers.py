"""Readers: stream a source file into a DuckDB staging table, keeping its line numbers.

Every reader produces a temp table with the source's columns plus ``_row`` (the physical line
number for text formats, header included; the 1-based row index for Parquet and Excel), and
a temp table of rows the reader itself could not parse (``_row``, ``field``, ``reason``,
``raw``).  Memory stays bounded: text is parsed in blocks, Parquet is scanned by DuckDB.
"""

from __future__ import annotations

import csv as _csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from autopersona.ingest.errors import IngestError
from autopersona.ingest.mapping import CsvOptions, Format

__all__ = ["PLT_COLUMNS", "Staged", "detect_format", "stage_file"]

#: GeoLife .plt columns after its six header lines.
PLT_COLUMNS = ["lat", "lon", "zero", "alt_ft", "days", "date", "time"]
_EXT = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".plt": "plt",
    ".xlsx": "xlsx",
    ".log": "candump",
    ".candump": "candump",
}
BLOCK_BYTES = 8 << 20
JSON_BATCH = 50_000


@dataclass
class Staged:
    """A staged source: table names, its columns, and row counts."""

    table: str
    errors_table: str
    columns: list[str]
    binary: bool = False
    rows: int = 0
    reader_errors: int = 0
    first_row: int = 1
    notes: list[str] = field(default_factory=list)


def detect_format(path: Path) -> Format:
    """Guess the format from the file extension.

    Raises
    ------
    IngestError
        For an extension no reader handles.
    """
    fmt = _EXT.get(path.suffix.lower())
    if fmt is None:
        raise IngestError(
            f"cannot tell the format of {path.name} from its extension; "
            "give --mapping with a format",
            file=str(path),
        )
    return fmt  # type: ignore[return-value]


def _errors_ddl(name: str) -> str:
    return (
        f'CREATE OR REPLACE TEMP TABLE "{name}" '
        "(_row BIGINT, field VARCHAR, reason VARCHAR, raw VARCHAR)"
    )


def stage_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: Format,
    csv_opts: CsvOptions,
    name: str,
    *,
    sheet: str | int | None = None,
) -> Staged:
    """Stage ``path`` as temp table (or view) ``name``, and ``name + '_err'`` for reader errors.

    Parquet is staged as a view over the file (DuckDB scans it again when needed); text
    formats are parsed once into a temp table.

    Raises
    ------
    IngestError
        If the file cannot be read at all (empty, unreadable, not the declared format).
    """
    if not path.exists():
        raise IngestError("file does not exist", file=str(path))
    if path.stat().st_size == 0:
        raise IngestError("file is empty (0 bytes)", file=str(path))
    errors = f"{name}_err"
    con.execute(_errors_ddl(errors))
    if fmt == "parquet":
        return _stage_parquet(con, path, name, errors)
    if fmt in ("csv", "plt"):
        if fmt == "plt" and csv_opts.column_names is None:
            csv_opts = csv_opts.model_copy(
                update={
                    "skip_rows": max(csv_opts.skip_rows, 6),
                    "header": False,
                    "column_names": PLT_COLUMNS,
                }
            )
        return _stage_csv(con, path, csv_opts, name, errors)
    if fmt == "jsonl":
        return _stage_jsonl(con, path, name, errors)
    if fmt == "xlsx":
        return _stage_xlsx(con, path, name, errors, sheet)
    if fmt == "candump":
        raise IngestError("candump logs are decoded by the CAN reader", file=str(path))
    raise IngestError(f"no reader for format {fmt!r}", file=str(path))  # pragma: no cover


# ----------------------------------------------------------------------------- parquet
def _stage_parquet(con: duckdb.DuckDBPyConnection, path: Path, name: str, errors: str) -> Staged:
    try:
        con.execute(
            f'CREATE OR REPLACE TEMP VIEW "{name}" AS SELECT * EXCLUDE (file_row_number), '
            f"file_row_number + 1 AS _row FROM read_parquet({_sql_str(str(path))}, "
            "file_row_number = true)"
        )
        con.execute(f'SELECT * FROM "{name}" LIMIT 0')  # fail now on an unreadable file
    except duckdb.Error as exc:
        raise IngestError(
            f"not a readable Parquet file: {_first_line(exc)}", file=str(path)
        ) from None
    cols = [c for c in _columns(con, name) if c != "_row"]
    rows = _count(con, name)
    return Staged(name, errors, cols, rows=rows)


# ----------------------------------------------------------------------------- csv
def _header(path: Path, opts: CsvOptions) -> tuple[list[str], int]:
    """Column names and the number of lines before the first data line."""
    skip = opts.skip_rows
    if not opts.header:
        if not opts.column_names:
            raise IngestError("header: false needs column_names in the mapping", file=str(path))
        names = list(opts.column_names)
        lead = skip
    else:
        with path.open("rb") as fh:
            for i in range(skip):
                if not fh.readline():
                    raise IngestError(f"file ends before line {i + 1}", file=str(path))
            raw = fh.readline()
        if not raw.strip():
            raise IngestError("no header line", file=str(path), row=skip + 1)
        try:
            text = raw.decode(opts.encoding)
        except UnicodeDecodeError as exc:
            raise IngestError(
                f"header is not valid {opts.encoding}: {exc.reason} at byte {exc.start}",
                file=str(path),
                row=skip + 1,
            ) from None
        names = next(_csv.reader([text.rstrip("\r\n")], delimiter=opts.delimiter))
        names = [n.strip() for n in names]
        if opts.trailing_delimiter and names and names[-1] == "":
            names = names[:-1]
        if opts.column_names:
            names = list(opts.column_names)
        lead = skip + 1
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise IngestError(f"duplicate column names in header: {dup}", file=str(path), row=lead)
    if opts.trailing_delimiter:
        names = [*names, "__trailing__"]
    return names, lead


_BLANK = re.compile(rb"(?m)^[ \t\r]*$")


def blank_lines(path: Path, after: int = 0) -> list[int]:
    r"""Line numbers (1-based) of blank lines after line ``after``, by a streaming byte scan.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
    >>> _ = p.write_bytes(b"a\n1\n\n2\r\n\r\n")
    >>> blank_lines(p)
    [3, 5]
    """
    out: list[int] = []
    lineno = 1  # number of the first line in the current body
    carry = b""
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(BLOCK_BYTES), b""):
            data = carry + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            body, carry = data[:cut], data[cut + 1 :]  # complete lines, without the last newline
            pos = 0
            for m in _BLANK.finditer(body):
                lineno += body.count(b"\n", pos, m.start())
                pos = m.start()
                out.append(lineno)
            lineno += body.count(b"\n", pos) + 1
    if carry and not carry.strip(b" \t\r"):
        out.append(lineno)
    return [n for n in out if n > after]


def _stage_csv(
    con: duckdb.DuckDBPyConnection, path: Path, opts: CsvOptions, name: str, errors: str
) -> Staged:
    names, lead = _header(path, opts)
    utf8 = opts.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    typ = pa.binary() if utf8 else pa.string()
    bad: list[tuple[int, str | None, str, str]] = []
    blank: list[int] = blank_lines(path, after=lead)

    # ordinal k (non-blank lines) -> physical line: k + number of blank lines before it
    shifted = np.asarray(blank, dtype=np.int64) - np.arange(len(blank), dtype=np.int64) - 1

    def to_physical(k: np.ndarray) -> np.ndarray:
        return k + np.searchsorted(shifted, k, side="left")

    def on_invalid(row: Any) -> str:
        text = row.text or ""
        if text.strip(" \t\r") != "" or row.number is None:
            bad.append(
                (
                    int(row.number) if row.number is not None else -1,
                    None,
                    f"expected {row.expected_columns} fields, found {row.actual_columns}"
                    + (" (truncated line?)" if row.actual_columns < row.expected_columns else ""),
                    text[:500],
                )
            )
        return "skip"

    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                use_threads=False,
                block_size=BLOCK_BYTES,
                skip_rows=lead,
                column_names=names,
                encoding=opts.encoding,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=opts.delimiter,
                invalid_row_handler=on_invalid,
                ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: typ for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestError(f"cannot read as CSV: {_first_line(exc)}", file=str(path)) from None

    next_line = lead + 1
    created = False
    rows = 0
    consumed_bad = 0
    try:
        for batch in reader:
            n = batch.num_rows
            # Lines skipped by the handler are known before their block's batch is emitted.
            # pyarrow numbers lines skipping the blank ones it ignored: count in that space
            skipped = sorted(b[0] for b in bad[consumed_bad:] if b[0] >= 0)
            consumed_bad = len(bad)
            numbers: list[int] = []
            si = 0
            line = next_line
            while len(numbers) < n:
                while si < len(skipped) and skipped[si] < line:
                    si += 1
                if si < len(skipped) and skipped[si] == line:
                    si += 1
                else:
                    numbers.append(line)
                line += 1
            next_line = line
            physical = to_physical(np.asarray(numbers, dtype=np.int64))
            tbl = pa.Table.from_batches([batch]).append_column("_row", pa.array(physical))
            if opts.trailing_delimiter:
                tbl = tbl.drop_columns(["__trailing__"])
            con.register("_ap_batch", tbl)
            if not created:
                con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT * FROM _ap_batch')
                created = True
            else:
                con.execute(f'INSERT INTO "{name}" SELECT * FROM _ap_batch')
            con.unregister("_ap_batch")
            rows += n
    except pa.ArrowInvalid as exc:
        raise IngestError(
            f"CSV parse error near line {next_line}: {_first_line(exc)}", file=str(path)
        ) from None
    cols = [n for n in names if n != "__trailing__"]
    if not created:
        # Header only: an empty staging table with the right columns.
        coldefs = ", ".join(f'"{c}" {"BLOB" if utf8 else "VARCHAR"}' for c in cols)
        con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" ({coldefs}, _row BIGINT)')
    if bad:
        fixed = to_physical(np.asarray([b[0] for b in bad], dtype=np.int64))
        bad = [(int(n), *b[1:]) for n, b in zip(fixed, bad, strict=True)]
        con.executemany(f'INSERT INTO "{errors}" VALUES (?, ?, ?, ?)', bad)
    st = Staged(
        name,
        errors,
        cols,
        binary=utf8,
        rows=rows + len(bad),
        reader_errors=len(bad),
        first_row=lead + 1,
    )
    if blank:
        st.notes.append(f"{len(blank)} blank line(s) skipped")
    return st


# ----------------------------------------------------------------------------- jsonl
def _scalar_text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None, str]]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, None, f"non-UTF-8 bytes at byte {exc.start}", repr(raw[:200])
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield lineno, None, f"invalid JSON: {exc.msg} at column {exc.colno}", text[:500]
                continue
            if not isinstance(obj, dict):
                yield (
                    lineno,
                    None,
                    f"expected a JSON object, found {type(obj).__name__}",
                    text[:500],
                )
                continue
            yield lineno, obj, None, text


def _stage_jsonl(con: duckdb.DuckDBPyConnection, path: Path, name: str, errors: str) -> Staged:
    cols: list[str] = []
    created = False
    rows = 0
    nerr = 0
    batch: list[tuple[int, dict[str, Any]]] = []
    errs: list[tuple[int, str | None, str, str]] = []

    def flush() -> None:
        nonlocal created
        if not batch:
            return
        for _, obj in batch:
            for k in obj:
                if k not in cols:
                    cols.append(k)
                    if created:
                        con.execute(f'ALTER TABLE "{name}" ADD COLUMN "{k}" VARCHAR')
        data = {c: [_scalar_text(o.get(c)) for _, o in batch] for c in cols}
        data["_row"] = [n for n, _ in batch]  # type: ignore[misc]
        tbl = pa.table(
            {c: pa.array(v, pa.int64() if c == "_row" else pa.string()) for c, v in data.items()}
        )
        con.register("_ap_batch", tbl)
        if not created:
            con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT * FROM _ap_batch')
            created = True
        else:
            collist = ", ".join(f'"{c}"' for c in [*cols, "_row"])
            con.execute(f'INSERT INTO "{name}" ({collist}) SELECT {collist} FROM _ap_batch')
        con.unregister("_ap_batch")
        batch.clear()

    for lineno, obj, err, raw in _iter_jsonl(path):
        rows += 1
        if obj is None:
            errs.append((lineno, None, err or "unreadable", raw))
            nerr += 1
            continue
        batch.append((lineno, obj))
        if len(batch) >= JSON_BATCH:
            flush()
    flush()
    if not created:
        con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" (_row BIGINT)')
    if errs:
        con.executemany(f'INSERT INTO "{errors}" VALUES (?, ?, ?, ?)', errs)
    return Staged(name, errors, cols, rows=rows, reader_errors=nerr)


# ----------------------------------------------------------------------------- xlsx
def _stage_xlsx(
    con: duckdb.DuckDBPyConnection, path: Path, name: str, errors: str, sheet: str | int | None
) -> Staged:
    import pandas as pd

    try:
        df = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype=str)
    except Exception as exc:
        raise IngestError(
            f"not a readable Excel file: {_first_line(exc)}", file=str(path)
        ) from None
    df = df.astype(object).where(df.notna(), None)
    df["_row"] = range(2, len(df) + 2)  # spreadsheet row numbers; the header is row 1
    tbl = pa.Table.from_pandas(df, preserve_index=False)
    con.register("_ap_batch", tbl)
    con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT * FROM _ap_batch')
    con.unregister("_ap_batch")
    cols = [str(c) for c in df.columns if c != "_row"]
    return Staged(name, errors, cols, rows=len(df), first_row=2)


# ----------------------------------------------------------------------------- helpers
def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()]


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    rows = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()
    return int(rows[0][0]) if rows else 0


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
