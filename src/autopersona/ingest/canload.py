"""Stage a raw CAN log (candump) for ingestion into ``vehicle_signals``.

The log is decoded through the DBC with :func:`autopersona.ingest.can.decode_candump` and
resampled onto a 1 s grid; those samples are the rows the engine validates and loads.  Lines
that do not parse, or frames that do not decode, become reader errors that the engine
quarantines with their line numbers.  A sample's ``row`` is its position on the grid (1 = the
first sample), since one sample combines many lines.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from autopersona.ingest.errors import IngestError
from autopersona.ingest.readers import Staged

__all__ = ["stage_candump"]


def stage_candump(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    name: str,
    *,
    vin: str | None,
    period_s: float = 1.0,
) -> Staged:
    """Decode ``path`` and stage its samples as temp table ``name`` (errors in ``name_err``).

    Raises
    ------
    IngestError
        When no VIN is given (a CAN log carries none), or the file is empty.
    """
    import pyarrow as pa

    from autopersona.ingest.can import decode_candump

    if not vin:
        raise IngestError("a CAN log carries no VIN: pass --vin", file=str(path))
    if not path.exists():
        raise IngestError("file does not exist", file=str(path))
    if path.stat().st_size == 0:
        raise IngestError("file is empty (0 bytes)", file=str(path))
    res = decode_candump(path, vin=vin, period_s=period_s)
    res.counts.check()
    tbl = res.table
    tbl = tbl.append_column("_row", pa.array(range(1, tbl.num_rows + 1), pa.int64()))
    con.register("_ap_batch", tbl)
    con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT * FROM _ap_batch')
    con.unregister("_ap_batch")
    err = f"{name}_err"
    con.execute(
        f'CREATE OR REPLACE TEMP TABLE "{err}" (_row BIGINT, field VARCHAR, reason VARCHAR, raw VARCHAR)'
    )
    if res.errors:
        con.executemany(
            f'INSERT INTO "{err}" VALUES (?, ?, ?, ?)',
            [(e.line, e.field, e.reason, e.text) for e in res.errors],
        )
    c = res.counts
    notes = [
        f"{c.lines:,} lines: {c.frames:,} frames ({c.decoded:,} decoded, {c.unknown_id:,} with IDs "
        f"not in the DBC), {c.errors:,} errors, {c.skipped:,} blank/comment; "
        f"{tbl.num_rows:,} samples at {period_s:g} s"
    ]
    cols = [f for f in tbl.column_names if f != "_row"]
    return Staged(
        name,
        err,
        cols,
        rows=tbl.num_rows + len(res.errors),
        reader_errors=len(res.errors),
        notes=notes,
    )
