"""Experiments and reports from the feedback log (``marketing_feedback``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from autopersona.api.deps import Principal, require, state
from autopersona.api.errors import ApiError, ErrorResponse
from autopersona.api.models import ExperimentReport, ExperimentSummary
from autopersona.api.queries import campaigns, experiment_report

__all__ = ["router"]

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
}


@router.get("", response_model=list[ExperimentSummary], responses=_ERRORS)
async def list_experiments(
    request: Request,
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> list[ExperimentSummary]:
    """Campaigns with feedback events, their arms and sizes."""
    return [ExperimentSummary(**c) for c in await campaigns(state(request).backend)]


@router.get("/{campaign_id}", response_model=ExperimentReport, responses=_ERRORS)
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
