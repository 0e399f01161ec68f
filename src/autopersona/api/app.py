"""The FastAPI application: JSON API under ``/v1``, the dashboard under ``/dashboard``.

``/openapi.json`` publishes the schema; ``/docs`` is a page rendered on the server from that
schema (no JavaScript, nothing loaded from elsewhere — FastAPI's own docs pages are disabled
because they fetch Swagger UI from a CDN).

Examples
--------
>>> from fastapi.testclient import TestClient
>>> app = create_app(ApiSettings(demo=True, warehouse=":memory:"))
>>> with TestClient(app) as c:
...     c.get("/healthz").json(), c.get("/v1/ping").json()["error"]["code"]
({'status': 'ok'}, 'unauthenticated')
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from autopersona import __version__
from autopersona.api.config import ApiSettings
from autopersona.api.deps import AppState, Principal, authenticate, document_security
from autopersona.api.errors import ErrorResponse, install
from autopersona.api.limits import BodyLimit
from autopersona.api.models import Ping

__all__ = ["create_app"]

_DESCRIPTION = """Profiles, audiences, the tag catalogue, strategies, experiments, event
ingestion, consent and erasure of **autopersona**.

Every `/v1` endpoint needs an API key (`X-API-Key: apk_…` or `Authorization: Bearer apk_…`)
with the endpoint's scope: `read:profiles`, `write:events`, `manage:strategies` or `admin`
(admin implies all).  Errors are JSON `{"error": {"code", "message", "details"}}` with a
stable `code`; rate-limited requests get 429 with `Retry-After`; bodies above the limit 413.
"""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: from the environment, checked)."""
    s = (settings or ApiSettings()).checked()
    st = AppState(s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await st.backend.open()
        try:
            yield
        finally:
            await st.backend.close()

    app = FastAPI(
        title="autopersona",
        version=__version__,
        description=_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
        responses={
            c: {"model": ErrorResponse, "description": d}
            for c, d in (
                (400, "Malformed request"),
                (401, "No valid key"),
                (403, "Key lacks the scope"),
                (413, "Body too large"),
                (422, "Invalid parameters or body"),
                (429, "Rate limited"),
                (500, "Internal error"),
            )
        },
    )
    app.state.ap = st
    install(app)
    app.add_middleware(BodyLimit, limit=s.api_max_body)

    @app.get("/healthz", tags=["meta"], response_model=dict[str, str])
    async def healthz() -> dict[str, str]:
        """Liveness: always ``{"status": "ok"}`` (no key needed)."""
        return {"status": "ok"}

    async def any_key(request: Request) -> Principal:
        return authenticate(request, None)

    @app.get(
        "/v1/ping",
        tags=["meta"],
        response_model=Ping,
        responses={401: {"model": ErrorResponse}, 429: {"model": ErrorResponse}},
    )
    async def ping(_: Principal = Depends(any_key)) -> Ping:  # noqa: B008
        """A constant answer behind the same key check and rate limit as every endpoint."""
        return Ping()

    from autopersona.api.routes import (
        audiences,
        events,
        feedback,
        privacy,
        profiles,
        strategies,
        tags,
    )

    routers = (profiles, tags, audiences, events, strategies, feedback, privacy)
    for r in routers:
        app.include_router(r.router)

    from autopersona.api.dashboard import routes as dash

    app.include_router(dash.router)

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            declared = [*app.routes, *(x for r in routers for x in r.router.routes)]
            document_security(declared, generate())
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    async def docs() -> HTMLResponse:
        return HTMLResponse(_docs_page(app.openapi()))

    return app


def _docs_page(spec: dict[str, Any]) -> str:
    """The API reference as one HTML page, from the OpenAPI document."""
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(spec['info']['title'])} API</title>",
        "<link rel='stylesheet' href='/dashboard/static/style.css'></head><body>",
        f"<header><h1>{esc(spec['info']['title'])} API {esc(spec['info']['version'])}</h1>",
        "<nav><a href='/openapi.json'>openapi.json</a> <a href='/dashboard'>dashboard</a></nav>",
        "</header><main>",
        f"<pre class='intro'>{esc(spec['info'].get('description', ''))}</pre>",
    ]
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            parts.append("<section class='op'>")
            parts.append(
                f"<h2><span class='method {esc(method)}'>{esc(method.upper())}</span> "
                f"<code>{esc(path)}</code></h2>"
            )
            parts.append(f"<p>{esc(op.get('description') or op.get('summary', ''))}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append(
                    "<table><tr><th>parameter</th><th>in</th><th>required</th>"
                    "<th>description</th></tr>"
                )
                for p in params:
                    parts.append(
                        f"<tr><td><code>{esc(p['name'])}</code></td><td>{esc(p['in'])}</td>"
                        f"<td>{'yes' if p.get('required') else 'no'}</td>"
                        f"<td>{esc(p.get('description', ''))}</td></tr>"
                    )
                parts.append("</table>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                ref = body.get("schema", {}).get("$ref", "")
                parts.append(f"<p>body: <code>{esc(ref.rsplit('/', 1)[-1] or 'JSON')}</code></p>")
            codes = ", ".join(sorted(op.get("responses", {})))
            parts.append(f"<p class='muted'>responses: {esc(codes)}</p></section>")
    parts.append("<h2>Schemas</h2>")
    for name, sch in spec.get("components", {}).get("schemas", {}).items():
        props = ", ".join(sch.get("properties", {}))
        parts.append(f"<p><code>{esc(name)}</code>: {esc(props)}</p>")
    parts.append("</main></body></html>")
    return "".join(parts)
