"""Audiences: a tag expression → count, sample, CSV export."""

from __future__ import annotations

import csv
import io
import random
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from autopersona.api.deps import Principal, require, state
from autopersona.api.errors import ErrorResponse
from autopersona.api.models import AudienceCount, AudienceQuery, AudienceSample
from autopersona.api.queries import audience_frame, evaluate_audience
from autopersona.api.routes.profiles import parse_when

__all__ = ["members", "router"]

router = APIRouter(prefix="/v1/audiences", tags=["audiences"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
}


async def members(request: Request, q: AudienceQuery) -> tuple[list[str], int]:
    """(members, entities of the type) of an audience query."""
    st = state(request)
    when = parse_when(q.as_of)
    frame = await audience_frame(st.backend, q.entity_type, when)
    known = {t.id: t.values for t in st.catalogue.tags.values() if t.entity == q.entity_type}
    hit = await anyio.to_thread.run_sync(evaluate_audience, frame, q.expression, known)
    return sorted(str(e) for e in hit), len(frame)


@router.post("/count", response_model=AudienceCount, responses=_ERRORS)
async def count(
    request: Request,
    q: AudienceQuery,
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> AudienceCount:
    """How many entities match the expression (null tags never match a comparison)."""
    ents, total = await members(request, q)
    return AudienceCount(
        expression=q.expression,
        entity_type=q.entity_type,
        as_of=parse_when(q.as_of),
        count=len(ents),
        total=total,
    )


@router.post("/sample", response_model=AudienceSample, responses=_ERRORS)
async def sample(
    request: Request,
    q: AudienceQuery,
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> AudienceSample:
    """The audience's size and a reproducible random sample (``limit``, ``seed``)."""
    ents, total = await members(request, q)
    pick = random.Random(q.seed).sample(ents, min(q.limit, len(ents)))
    return AudienceSample(
        expression=q.expression,
        entity_type=q.entity_type,
        as_of=parse_when(q.as_of),
        count=len(ents),
        total=total,
        entities=sorted(pick),
    )


def _csv(entity_type: str, ents: list[str]) -> Response:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["entity_type", "entity"])
    for e in ents:
        w.writerow([entity_type, e])
    return Response(
        buf.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audience.csv"'},
    )


_CSV = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}, **_ERRORS}


@router.post("/export", response_class=Response, responses=_CSV)
async def export(
    request: Request,
    q: AudienceQuery,
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> Response:
    """Every member as CSV (``entity_type,entity``)."""
    ents, _n = await members(request, q)
    return _csv(q.entity_type, ents)


@router.get("/export.csv", response_class=Response, responses=_CSV)
async def export_get(
    request: Request,
    expression: Annotated[str, Query(min_length=1, max_length=2000)],
    entity_type: Literal["vin", "customer_id"] = "vin",
    as_of: Annotated[str | None, Query(max_length=40)] = None,
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> Response:
    """The same export as a GET (a link a browser can follow)."""
    q = AudienceQuery(expression=expression, entity_type=entity_type, as_of=as_of)
    ents, _n = await members(request, q)
    return _csv(entity_type, ents)
