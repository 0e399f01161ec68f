"""Batch event ingestion and consent updates, through the file-ingestion engine.

A batch is written to a temporary JSON Lines file named after its table and ingested with
:func:`autopersona.ingest.engine.ingest_file` — the very code path of ``autopersona ingest``:
the same contract checks, duplicate and key-conflict rules, cleaning and quarantine.  The
answer has the counts (``read = loaded + duplicates + quarantined``), the reasons and the
quarantined rows with their 1-based position in the batch.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Request

from autopersona.api.data import Backend
from autopersona.api.deps import Principal, require, state
from autopersona.api.errors import ApiError, ErrorResponse
from autopersona.api.models import ConsentBatch, EventBatch, IngestResult, QuarantinedRow
from autopersona.api.queries import linked_entities

__all__ = ["ingest_rows", "router"]

router = APIRouter(prefix="/v1", tags=["events"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(f"cannot write {type(v).__name__} as JSON")


def ingest_rows(be: Backend, table: str, rows: list[dict[str, Any]]) -> IngestResult:
    """Ingest JSON rows into ``table`` with the file-ingestion rules (blocking)."""
    from autopersona.ingest.engine import ingest_file
    from autopersona.ingest.errors import IngestError
    from autopersona.store.warehouse import QUARANTINE_TABLE

    if be.settings.api_read_only:
        raise ApiError(503, "unavailable", "the warehouse is open read-only in this server")
    wh = be.warehouse()
    run_id = "api-" + uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory(prefix="autopersona-api-") as tmp:
        path = FsPath(tmp) / f"{table}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, default=_json_default, ensure_ascii=False) + "\n")
        with be.write_lock:
            try:
                rep = ingest_file(wh, path, table=table, run_id=run_id)
            except IngestError as exc:
                msg = str(exc).replace(str(path), f"batch for {table}")
                raise ApiError(422, "invalid_batch", msg) from None
            cur = wh.con.cursor()
            try:
                q = cur.execute(
                    f"SELECT row_number, field, reason FROM {QUARANTINE_TABLE} "
                    "WHERE run_id = ? ORDER BY row_number, field LIMIT 200",
                    [run_id],
                ).fetchall()
            finally:
                cur.close()
    t = next((x for x in rep.targets if x.table == table), None)
    if t is None:  # pragma: no cover - a contract-shaped file has exactly its own target
        raise ApiError(500, "internal_error", "ingestion reported no target")
    return IngestResult(
        table=table,
        run_id=run_id,
        read=t.read,
        loaded=t.loaded,
        duplicates=t.duplicates,
        quarantined=t.quarantined,
        reasons=dict(t.reasons),
        quarantine=[
            QuarantinedRow(row=None if r is None else int(r), field=f, reason=str(reason))
            for r, f, reason in q
        ],
        notes=[n.replace(str(path), f"batch for {table}") for n in rep.notes],
    )


@router.post("/events/{table}", response_model=IngestResult, responses=_ERRORS)
async def post_events(
    request: Request,
    table: Annotated[str, Path(max_length=64, description="Canonical table, e.g. motion")],
    batch: EventBatch,
    _: Principal = Depends(require("write:events")),  # noqa: B008
) -> IngestResult:
    """Validate and load a batch of rows of one canonical table; bad rows are quarantined."""
    from autopersona.contracts import load_contracts

    st = state(request)
    if table not in load_contracts():
        raise ApiError(404, "not_found", f"unknown table {table!r}")
    if len(batch.rows) > st.settings.api_max_rows:
        raise ApiError(
            413,
            "payload_too_large",
            f"{len(batch.rows)} rows in one batch; at most {st.settings.api_max_rows}",
        )
    return await anyio.to_thread.run_sync(ingest_rows, st.backend, table, batch.rows)


@router.post("/consents", response_model=IngestResult, responses=_ERRORS)
async def post_consents(
    request: Request,
    batch: ConsentBatch,
    _: Principal = Depends(require("write:events")),  # noqa: B008
) -> IngestResult:
    """Record consents given or withdrawn (the ``consents`` table, same ingestion rules)."""
    now = datetime.now(UTC)
    rows = []
    for c in batch.consents:
        d = c.model_dump()
        ts = d["ts"] or now
        d["ts"] = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC)
        rows.append(d)
    st = state(request)
    be = st.backend
    res = await anyio.to_thread.run_sync(ingest_rows, be, "consents", rows)
    withdrawn = sorted({c.account_id for c in batch.consents if not c.granted})
    if withdrawn and be.cache is not None:
        # cached profiles of these people are forgotten here and, by the notification, in
        # every other process (what a purpose tag may show follows the consent)
        await be.profiles_changed(await linked_entities(be, withdrawn), notify=True)
    return res
