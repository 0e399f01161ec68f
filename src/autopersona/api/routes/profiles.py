"""Profiles by VIN, customer (account) or person, now or as of a point in time."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from autopersona.api.deps import Principal, require, state
from autopersona.api.errors import ApiError, ErrorResponse
from autopersona.api.models import Profile, TagAssignment
from autopersona.api.queries import history, person_entities, profile_json

__all__ = ["parse_when", "router"]

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])
Kind = Literal["vin", "customer", "person"]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
}
AsOf = Annotated[
    str | None,
    Query(
        max_length=40,
        description="ISO date (end of that day, UTC) or time; default: now.",
        examples=["2026-01-10"],
    ),
]
Ident = Annotated[str, Path(min_length=1, max_length=200, description="VIN, account or person id")]


def _iso(v: object) -> str:
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(f"cannot serialise {type(v).__name__}")


def parse_when(text: str | None) -> datetime | None:
    """An ``as_of`` parameter as a UTC time (422 ``invalid_request`` when it does not parse)."""
    if text is None or text == "":
        return None
    from autopersona.store.profiles import parse_as_of

    try:
        return parse_as_of(text)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"as_of: {exc}") from None


async def _entities(request: Request, kind: Kind, ident: str) -> list[str]:
    if kind == "vin":  # a clear VIN is looked up by its pseudonym (a pseudonym stays itself)
        return [state(request).stored_vin(ident)]
    if kind != "person":
        return [ident]
    ents = await person_entities(state(request).backend, ident)
    if ents is None:
        raise ApiError(404, "not_found", f"no person {ident!r}")
    return ents


@router.get("/{kind}/{ident}", response_model=Profile, responses=_ERRORS)
async def get_profile(
    request: Request,
    kind: Kind,
    ident: Ident,
    as_of: AsOf = None,
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> Response:
    """An entity's tags with reasons: current, or as they were at ``as_of``."""
    when = parse_when(as_of)
    ents = await _entities(request, kind, ident)
    tags = await profile_json(state(request).backend, ents, when)
    if tags == "[]":
        at = f" as of {as_of}" if as_of else ""
        raise ApiError(404, "not_found", f"no profile for {kind} {ident!r}{at}")
    # the tag array comes as JSON text (built by the database on PostgreSQL) and is passed
    # through instead of being validated row by row; its shape is Profile's (tested)
    head = {"kind": kind, "id": ident, "as_of": when, "entities": ents}
    text = json.dumps(head, default=_iso, ensure_ascii=False, separators=(",", ":"))
    return Response(text[:-1] + ',"tags":' + tags + "}", media_type="application/json")


@router.get("/{kind}/{ident}/history", response_model=list[TagAssignment], responses=_ERRORS)
async def get_history(
    request: Request,
    kind: Kind,
    ident: Ident,
    tag_id: Annotated[str | None, Query(max_length=100)] = None,
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> list[TagAssignment]:
    """Every version of the entity's tags (or of one tag), oldest first."""
    ents = await _entities(request, kind, ident)
    rows = await history(state(request).backend, ents, tag_id)
    if not rows:
        raise ApiError(404, "not_found", f"no tag history for {kind} {ident!r}")
    return [TagAssignment.model_validate(r) for r in rows]
