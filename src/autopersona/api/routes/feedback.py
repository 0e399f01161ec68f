"""Experiments and reports from the feedback log (``marketing_feedback``)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request

from autopersona.api.deps import Principal, require, state
from autopersona.api.errors import ApiError, ErrorResponse
from autopersona.api.models import ExperimentReport, ExperimentSummary
from autopersona.api.queries import campaigns, experiment_report
from autopersona.api.routes._optional import optional

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["experiments"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
    501: {"model": ErrorResponse},
}


@router.get("/experiments", response_model=list[ExperimentSummary], responses=_ERRORS)
async def list_experiments(
    request: Request,
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> list[ExperimentSummary]:
    """Campaigns with feedback events, their arms and sizes."""
    return [ExperimentSummary(**c) for c in await campaigns(state(request).backend)]


@router.get("/experiments/{campaign_id}", response_model=ExperimentReport, responses=_ERRORS)
async def get_report(
    request: Request,
    campaign_id: Annotated[str, Path(max_length=200)],
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> ExperimentReport:
    """Four-layer funnel per arm; conversion rates and their difference with 95% intervals."""
    rep = await experiment_report(state(request).backend, campaign_id)
    if rep is None:
        raise ApiError(404, "not_found", f"no feedback events for campaign {campaign_id!r}")
    return ExperimentReport(**rep)


Dimension = Literal["strategy", "channel", "segment", "day", "arm"]


@router.get("/reports/funnel", response_model=list[dict[str, Any]], responses=_ERRORS)
async def funnel_report(
    request: Request,
    by: Annotated[list[Dimension] | None, Query(description="Group by (repeatable).")] = None,
    strategy: Annotated[list[str] | None, Query(max_length=200)] = None,
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> list[dict[str, Any]]:
    """Four-layer funnel metrics from the evaluation module (``evaluation.funnel``), grouped."""
    metrics = optional("autopersona.evaluation.funnel", "funnel_metrics")
    st = state(request)

    def run() -> list[dict[str, Any]]:
        wh = st.backend.warehouse()
        with st.backend.write_lock:
            df = metrics(wh, by or ["strategy"], strategies=strategy)
        recs: list[dict[str, Any]] = json.loads(df.to_json(orient="records", date_format="iso"))
        return recs

    try:
        return await anyio.to_thread.run_sync(run)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
