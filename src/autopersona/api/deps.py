"""Request dependencies: the process state, and authentication with scopes and rate limits.

A key is sent as ``X-API-Key: apk_…`` or ``Authorization: Bearer apk_…``.  Dashboard pages
(GET only) also accept the ``autopersona_key`` cookie set by the dashboard's login form;
the JSON API never reads the cookie, so a browser cannot be tricked into writing through it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.routing import BaseRoute

from autopersona.api.config import ApiSettings
from autopersona.api.data import Backend
from autopersona.api.errors import ApiError
from autopersona.api.keys import ApiKey, KeyStore, has_scope
from autopersona.api.limits import RateLimiter

if TYPE_CHECKING:
    from autopersona.privacy.pseudo import VinPseudonyms
    from autopersona.tags.spec import Catalogue

__all__ = [
    "COOKIE",
    "AppState",
    "Principal",
    "authenticate",
    "document_security",
    "require",
    "state",
]

COOKIE = "autopersona_key"
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (apk_…)")
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")


@dataclass
class Principal:
    """Who is calling: a key, or the anonymous reader of a demo dashboard."""

    key_id: str
    name: str
    scopes: list[str]


class AppState:
    """Everything a server process holds: settings, keys, buckets, connections, catalogue."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.keys = KeyStore(settings.keys_path(), settings.api_secret.get_secret_value())
        self.limiter = RateLimiter()
        self.backend = Backend(settings)

    @cached_property
    def catalogue(self) -> Catalogue:
        """The tag catalogue (built-in), loaded once."""
        from autopersona.tags.spec import load_catalogue

        return load_catalogue()

    @cached_property
    def vin_pseudonyms(self) -> VinPseudonyms | None:
        """Clear VIN -> its pseudonym when pseudonymisation is on (None when off)."""
        from autopersona.privacy.pseudo import live_pseudonyms

        return live_pseudonyms(self.settings)

    def stored_vin(self, vin: str) -> str:
        """The VIN as the stores hold it: a clear VIN in a request becomes its pseudonym."""
        vp = self.vin_pseudonyms
        return vin if vp is None else vp(vin)


def state(request: Request) -> AppState:
    """The process state of the app serving ``request``."""
    st: AppState = request.app.state.ap
    return st


def _key_from(request: Request, cookie: bool) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if cookie and request.method == "GET":
        return request.cookies.get(COOKIE)
    return None


def authenticate(request: Request, scope: str | None, *, cookie: bool = False) -> Principal:
    """Check the request's key for ``scope`` (None: any) and take a token from its bucket.

    Raises
    ------
    ApiError
        401 without a valid key, 403 without the scope, 429 when the bucket is empty.
    """
    st = state(request)
    raw = _key_from(request, cookie)
    if not raw:
        raise ApiError(
            401,
            "unauthenticated",
            "an API key is required (X-API-Key header or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    rec: ApiKey | None = st.keys.verify(raw)
    if rec is None:
        raise ApiError(
            401,
            "unauthenticated",
            "unknown, wrong or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if scope is not None and not has_scope(rec.scopes, scope):
        raise ApiError(403, "forbidden", f"this key lacks the scope {scope!r}")
    s = st.settings
    wait = st.limiter.take(
        rec.id,
        rec.rate if rec.rate is not None else s.api_rate,
        rec.burst if rec.burst is not None else s.api_burst,
        time.monotonic(),
    )
    if wait:
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of key {rec.id} exceeded; retry after {wait} s",
            headers={"Retry-After": str(wait)},
        )
    return Principal(rec.id, rec.name, list(rec.scopes))


#: Marks the dependencies made by :func:`require` (their scope).
_SCOPE_ATTR = "autopersona_scope"


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits keys with ``scope`` (documented as API-key security).

    It reads the key headers itself: one dependency per request for FastAPI to solve (two
    ``Security`` sub-dependencies used only for the documentation cost every lookup a
    quarter of its time); :func:`document_security` puts the security requirement into the
    OpenAPI document of every operation that uses it.
    """

    async def dep(request: Request) -> Principal:
        return authenticate(request, scope)

    dep.__name__ = f"require_{scope.replace(':', '_')}"
    setattr(dep, _SCOPE_ATTR, scope)
    return dep


def document_security(routes: Iterable[BaseRoute], spec: dict[str, Any]) -> dict[str, Any]:
    """Add the key schemes and, per operation behind :func:`require`, the requirement.

    ``routes`` are the app's routes as declared (the routers' own, with their prefixes).
    """
    schemes = {
        "APIKeyHeader": _header.model.model_dump(mode="json", by_alias=True, exclude_none=True),
        "HTTPBearer": _bearer.model.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    spec.setdefault("components", {}).setdefault("securitySchemes", {}).update(schemes)
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        if not any(hasattr(d.call, _SCOPE_ATTR) for d in route.dependant.dependencies):
            continue
        ops = spec.get("paths", {}).get(route.path_format, {})
        for method in route.methods or ():
            op = ops.get(method.lower())
            if op is not None:
                op["security"] = [{"APIKeyHeader": []}, {"HTTPBearer": []}]
    return spec
