"""Erasure requests, through the privacy module when it is installed."""

from __future__ import annotations

import inspect
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request

from autopersona.api.deps import Principal, require, state
from autopersona.api.errors import ErrorResponse
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
}


@router.post("/erasure", response_model=dict[str, Any], responses=_ERRORS)
async def erasure(
    request: Request,
    body: ErasureRequest,
    _: Principal = Depends(require("admin")),  # noqa: B008
) -> dict[str, Any]:
    """Erase a person, account or VIN everywhere (admin); 501 until the privacy module lands."""
    erase = optional("autopersona.privacy.erasure", "erase")
    st = state(request)

    def run() -> Any:
        wh = st.backend.warehouse()
        kwargs: dict[str, Any] = {}
        params = inspect.signature(erase).parameters
        if "reason" in params:
            kwargs["reason"] = body.reason
        with st.backend.write_lock:
            return erase(wh, body.kind, body.subject, **kwargs)

    res = await anyio.to_thread.run_sync(run)
    if hasattr(res, "to_dict"):
        res = res.to_dict()
    elif not isinstance(res, dict):
        res = {"result": str(res)}
    return {"kind": body.kind, "subject": body.subject, **res}
