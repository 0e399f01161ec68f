"""Erasure requests, through the privacy module when it is installed."""

from __future__ import annotations

import uuid
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request

from autopersona.api.deps import Principal, require, state
from autopersona.api.errors import ApiError, ErrorResponse
from autopersona.api.models import ErasureRequest
from autopersona.api.routes._optional import optional

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["privacy"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
    501: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


@router.post("/erasure", response_model=dict[str, Any], responses=_ERRORS)
async def erasure(
    request: Request,
    body: ErasureRequest,
    _: Principal = Depends(require("admin")),  # noqa: B008
) -> dict[str, Any]:
    """Erase a person (everything linked to a person id, account id or VIN) everywhere (admin).

    Runs :func:`autopersona.privacy.erase.erase_person` on the warehouse and, when the profile
    store is PostgreSQL, on it too; answers its report (counts per table, verification, no
    identifiers).  501 ``not_implemented`` while the privacy module is not installed.
    """
    erase = optional("autopersona.privacy.erase", "erase_person")
    st = state(request)
    be = st.backend
    if be.settings.api_read_only:
        raise ApiError(503, "unavailable", "the warehouse is open read-only in this server")

    def run() -> Any:
        wh = be.warehouse()
        extra: list[Any] = []
        con = None
        if be.store_kind == "postgresql":
            import psycopg

            pg_backend = optional("autopersona.privacy.erase", "PostgresBackend")
            con = psycopg.connect(be.pg_url, autocommit=True)
            extra.append(pg_backend(con, be.schema))
        try:
            with be.write_lock:
                return erase(wh, body.subject, body.request_id or uuid.uuid4().hex, extra=extra)
        finally:
            if con is not None:
                con.close()

    try:
        res = await anyio.to_thread.run_sync(run)
    except ValueError as exc:
        await be.profiles_changed(None, notify=True)
        raise ApiError(422, "invalid_request", str(exc)) from None
    except RuntimeError as exc:
        await be.profiles_changed(None, notify=True)
        raise ApiError(500, "erasure_unverified", str(exc)) from None
    # no cached profile outlives the erasure: this process forgets them all before answering,
    # and the other processes by the notification (the store's trigger sends one too when
    # the erasure deleted tag assignments)
    await be.profiles_changed(None, notify=True)
    out: dict[str, Any] = res.to_dict() if hasattr(res, "to_dict") else {"result": str(res)}
    return {"kind": body.kind, **out}
