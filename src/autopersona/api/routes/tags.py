"""The tag catalogue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from autopersona.api.deps import Principal, require, state
from autopersona.api.errors import ApiError, ErrorResponse
from autopersona.api.models import TagInfo

__all__ = ["router"]

router = APIRouter(prefix="/v1/tags", tags=["tags"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
}


@router.get("", response_model=list[TagInfo], responses=_ERRORS)
async def list_tags(
    request: Request,
    tier: Annotated[str | None, Query(max_length=20, description="e.g. L2 or value")] = None,
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> list[TagInfo]:
    """Every tag of the catalogue (optionally one tier), by tier and id."""
    cat = state(request).catalogue
    rows = [t for t in cat.tags.values() if tier is None or t.tier == tier]
    rows.sort(key=lambda t: (t.tier, t.id))
    return [
        TagInfo(
            id=t.id,
            tier=t.tier,
            category=t.category,
            entity=t.entity,
            method=t.method,
            cadence=t.cadence,
            values=t.values,
            definition=t.definition,
            inputs=list(t.inputs),
            sources=list(t.sources),
        )
        for t in rows
    ]


@router.get("/{tag_id}", response_model=dict[str, Any], responses=_ERRORS)
async def get_tag(
    request: Request,
    tag_id: Annotated[str, Path(max_length=100)],
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> dict[str, Any]:
    """One tag's full declaration, with the tags it reads."""
    cat = state(request).catalogue
    if tag_id not in cat.tags:
        raise ApiError(404, "not_found", f"unknown tag {tag_id!r}")
    t = cat.tags[tag_id]
    d: dict[str, Any] = t.model_dump(mode="json", by_alias=True, exclude_none=True)
    d["depends_on"] = cat.dependencies(tag_id)
    d["catalogue_version"] = cat.version
    return d
