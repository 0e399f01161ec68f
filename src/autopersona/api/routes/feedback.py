"""Experiments and reports from the feedback log (``marketing_feedback``); feedback webhook.

``POST /v1/feedback`` takes the channels' events: joined to their decisions and ingested with
the file-ingestion rules by :class:`autopersona.delivery.feedback.FeedbackIntake`, the same
intake as the MQTT listener (``autopersona feedback listen``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from autopersona.api.deps import Principal, require, state
from autopersona.api.errors import ApiError, ErrorResponse
from autopersona.api.models import EventBatch, ExperimentReport, ExperimentSummary
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


class FeedbackResult(BaseModel):
    """What a feedback batch did: ``received = loaded + duplicates + quarantined``."""

    run_id: str
    received: int
    loaded: int
    duplicates: int
    quarantined: int
    joined: int = Field(description="Events joined to a logged decision.")
    reasons: dict[str, int]


@router.post(
    "/feedback",
    response_model=FeedbackResult,
    responses={**_ERRORS, 413: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
async def post_feedback(
    request: Request,
    batch: EventBatch,
    _: Principal = Depends(require("write:events")),  # noqa: B008
) -> FeedbackResult:
    """Channel feedback webhook: events joined to their decisions, validated, loaded.

    Each event names its decision by ``decision_id`` or ``idempotency_key``; refused events
    are quarantined with the reason, repeats are counted as duplicates.
    """
    st = state(request)
    if st.settings.api_read_only:
        raise ApiError(503, "unavailable", "the warehouse is open read-only in this server")
    if len(batch.rows) > st.settings.api_max_rows:
        raise ApiError(
            413,
            "payload_too_large",
            f"{len(batch.rows)} rows in one batch; at most {st.settings.api_max_rows}",
        )

    def run() -> FeedbackResult:
        from autopersona.delivery.feedback import FeedbackIntake, Inbound

        wh = st.backend.warehouse()
        with st.backend.write_lock:
            rep = FeedbackIntake(wh).ingest([Inbound(r, "webhook") for r in batch.rows])
        return FeedbackResult(**rep.as_dict())

    return await anyio.to_thread.run_sync(run)
