"""The app served by uvicorn over loopback, with a real HTTP client; PostgreSQL as the store."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from autopersona.api.app import create_app
from autopersona.api.config import ApiSettings

from .apicheck import hdr, make_key


def test_real_http(live_server: str, keys: dict[str, str], settings: ApiSettings) -> None:
    with httpx.Client(base_url=live_server, timeout=30) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/v1/ping").status_code == 401
        h = hdr(keys["read:profiles"])
        vins = c.post(
            "/v1/audiences/sample",
            json={"expression": "not isnull(l1_vehicle_tier)", "limit": 5},
            headers=h,
        ).json()["entities"]
        r = c.get(f"/v1/profiles/vin/{vins[0]}", headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert {t["entity"] for t in r.json()["tags"]} == {vins[0]}
        # a declared body above the limit is refused before it is read
        r = c.post(
            "/v1/events/pois",
            content=b"{" + b" " * (settings.api_max_body + 10) + b"}",
            headers={**hdr(keys["write:events"]), "content-type": "application/json"},
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        slow = make_key(settings, "read:profiles", rate=0.2, burst=1)
        assert c.get("/v1/ping", headers=hdr(slow)).status_code == 200
        r = c.get("/v1/ping", headers=hdr(slow))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def _norm(tags: list[dict[str, object]]) -> list[dict[str, object]]:
    out = []
    for t in tags:
        d = dict(t)
        for k in ("as_of", "valid_from", "valid_to", "confirmed_at", "computed_at"):
            d[k] = None if d[k] is None else pd.Timestamp(str(d[k])).isoformat()
        out.append(d)
    return out


@pytest.mark.integration
def test_postgres_store_answers_like_duckdb(
    pg_settings: ApiSettings, client: TestClient, keys: dict[str, str]
) -> None:
    h = hdr(keys["read:profiles"])
    aud = {"expression": "l1_vehicle_tier in ['luxury', 'mid']"}
    duck_count = client.post("/v1/audiences/count", json=aud, headers=h).json()
    vin = client.post("/v1/audiences/sample", json={**aud, "limit": 1}, headers=h).json()[
        "entities"
    ][0]
    duck = client.get(f"/v1/profiles/vin/{vin}", headers=h).json()
    duck_hist = client.get(f"/v1/profiles/vin/{vin}/history", headers=h).json()
    mid = duck_hist[0]["valid_from"]
    duck_mid = client.get(f"/v1/profiles/vin/{vin}", params={"as_of": mid}, headers=h).json()
    with TestClient(create_app(pg_settings)) as pg:
        assert pg.app.state.ap.backend.store_kind == "postgresql"  # type: ignore[attr-defined]
        got = pg.get(f"/v1/profiles/vin/{vin}", headers=h).json()
        assert _norm(got["tags"]) == _norm(duck["tags"])
        got_mid = pg.get(f"/v1/profiles/vin/{vin}", params={"as_of": mid}, headers=h).json()
        assert _norm(got_mid["tags"]) == _norm(duck_mid["tags"])
        assert _norm(pg.get(f"/v1/profiles/vin/{vin}/history", headers=h).json()) == _norm(
            duck_hist
        )
        assert pg.post("/v1/audiences/count", json=aud, headers=h).json() == duck_count
        assert pg.get("/v1/profiles/vin/NOPE", headers=h).status_code == 404
