"""Errors as structured JSON with a stable ``code``.

Every error response has the body ``{"error": {"code": …, "message": …, "details": …}}``.
Codes are part of the API: clients may branch on them; messages are for people.

=========================  ======  ==================================================
code                       status  meaning
=========================  ======  ==================================================
``unauthenticated``        401     no key, or an unknown, wrong or revoked key
``forbidden``              403     the key lacks the scope the endpoint needs
``not_found``              404     no such route, entity, tag, strategy or table
``method_not_allowed``     405     wrong HTTP method
``payload_too_large``      413     request body above the limit
``unsupported_media``      415     body is not JSON where JSON is expected
``invalid_request``        422     parameters or body fail validation
``invalid_expression``     422     an audience expression that does not parse or names
                                   an unknown tag (details: column)
``rate_limited``           429     the key's token bucket is empty (``Retry-After``)
``internal_error``         500     a bug; the message carries no internals
``not_implemented``        501     the module behind the endpoint is not installed
``unavailable``            503     the warehouse or store cannot be reached
=========================  ======  ==================================================
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["CODES", "ApiError", "ErrorBody", "ErrorResponse", "error_json", "install"]

log = logging.getLogger("autopersona.api")

CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    """The ``error`` object."""

    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """Body of every error response."""

    error: ErrorBody


class ApiError(Exception):
    """An error to answer with ``status`` and a stable ``code``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_json(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


def _jsonable(errors: Any) -> Any:
    out = []
    for e in errors:
        d = {k: v for k, v in e.items() if k in ("loc", "msg", "type")}
        d["loc"] = [str(x) for x in d.get("loc", [])]
        out.append(d)
    return out


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_json(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = CODES.get(exc.status_code, "error")
    msg = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_json(exc.status_code, code, msg, headers=getattr(exc, "headers", None))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errs = _jsonable(exc.errors())
    first = errs[0] if errs else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"])
    return error_json(422, "invalid_request", f"{where}: {first['msg']}", errs)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_json(500, "internal_error", "internal error; see the server log")


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into the structured body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
