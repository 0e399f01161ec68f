"""Strategies: list, validate and plan (a dry run of the strategy engine), when installed."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from autopersona.api.deps import Principal, require, state
from autopersona.api.errors import ApiError, ErrorResponse
from autopersona.api.routes._optional import optional
from autopersona.api.routes.profiles import parse_when

__all__ = ["PlanRequest", "ValidateRequest", "router"]

router = APIRouter(prefix="/v1/strategies", tags=["strategies"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
    501: {"model": ErrorResponse},
}


class ValidateRequest(BaseModel):
    """A strategy catalogue file (YAML text), checked together with the built-in catalogue."""

    model_config = ConfigDict(extra="forbid", strict=True)
    yaml: str = Field(min_length=1, max_length=200_000)


class PlanRequest(BaseModel):
    """A dry run of the engine as of a time (nothing is logged or sent)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    as_of: str | None = Field(default=None, max_length=40, description="ISO; default now.")
    strategy_id: str | None = Field(default=None, max_length=100)
    limit: StrictInt = Field(default=50, ge=0, le=1000, description="Decisions returned.")


def _strategy_row(s: Any) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "entity": s.entity,
        "purpose": s.purpose,
        "audience": s.audience,
        "trigger": s.trigger.model_dump(mode="json", exclude_none=True),
        "channels": list(s.channels),
        "priority": s.priority,
        "enabled": s.enabled,
    }


@router.get("", response_model=list[dict[str, Any]], responses=_ERRORS)
async def list_strategies(
    _: Principal = Depends(require("read:profiles")),  # noqa: B008
) -> list[dict[str, Any]]:
    """The strategy catalogue."""
    load = optional("autopersona.strategy.spec", "load_strategies")
    cat = await anyio.to_thread.run_sync(load)
    return [_strategy_row(s) for _, s in sorted(cat.strategies.items())]


@router.post("/validate", response_model=dict[str, Any], responses=_ERRORS)
async def validate(
    body: ValidateRequest,
    _: Principal = Depends(require("manage:strategies")),  # noqa: B008
) -> dict[str, Any]:
    """Check a strategy file; ``ok`` false with every problem as ``line, path, message``."""
    load = optional("autopersona.strategy.spec", "load_strategies")
    from autopersona.catalog import CatalogError

    def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="autopersona-api-") as tmp:
            p = Path(tmp) / "submitted.yaml"
            p.write_text(body.yaml, encoding="utf-8")
            try:
                cat = load(extra_files=[p])
            except CatalogError as exc:
                return {
                    "ok": False,
                    "errors": [
                        {
                            "file": Path(e.file).name,
                            "line": e.line,
                            "path": e.path,
                            "message": e.message,
                        }
                        for e in exc.errors
                    ],
                }
            except Exception as exc:
                return {
                    "ok": False,
                    "errors": [
                        {
                            "file": p.name,
                            "line": 1,
                            "path": "",
                            "message": str(exc).replace(tmp, ""),
                        }
                    ],
                }
            ids = sorted(i for i, s in cat.strategies.items() if Path(s.file).name == p.name)
            return {"ok": True, "strategies": ids, "version": cat.version}

    return await anyio.to_thread.run_sync(run)


@router.post("/plan", response_model=dict[str, Any], responses=_ERRORS)
async def plan(
    request: Request,
    body: PlanRequest,
    _: Principal = Depends(require("manage:strategies")),  # noqa: B008
) -> dict[str, Any]:
    """Dry-run the engine as of a time: audiences per strategy, decisions by status, a sample."""
    engine_cls = optional("autopersona.strategy.engine", "StrategyEngine")
    st = state(request)
    when = parse_when(body.as_of) or datetime.now(UTC)

    def run() -> tuple[list[Any], list[dict[str, Any]]]:
        wh = st.backend.warehouse()
        with st.backend.write_lock:
            eng = engine_cls(wh)
            audiences = list(eng.plan(when)) if hasattr(eng, "plan") else []
            return list(eng.run_batch(when, log=False)), audiences

    try:
        decisions, audiences = await anyio.to_thread.run_sync(run)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    if body.strategy_id is not None:
        decisions = [d for d in decisions if getattr(d, "strategy_id", None) == body.strategy_id]
    by = Counter(str(getattr(d, "status", "")) for d in decisions)
    sample = []
    for d in decisions[: body.limit]:
        rec = (
            dataclasses.asdict(d)
            if dataclasses.is_dataclass(d) and not isinstance(d, type)
            else dict(vars(d))
        )
        sample.append(
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in rec.items()}
        )
    if body.strategy_id is not None:
        audiences = [a for a in audiences if a.get("strategy_id") == body.strategy_id]
    return {
        "as_of": when.isoformat(),
        "audiences": json.loads(json.dumps(audiences, default=str)),
        "decisions": len(decisions),
        "by_status": dict(sorted(by.items())),
        "sample": sample,
    }
