"""Keys and scopes: missing, wrong, revoked or insufficient keys get 401/403 and never data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from autopersona.api.config import ApiSettings
from autopersona.api.keys import KeyStore

from .apicheck import PSEUDONYM_KEY, SECRET, hdr, make_key

AUD = {"expression": "l1_vehicle_tier == 'luxury'"}
ROW = {
    "rows": [{"poi_id": "auth-1", "name": "x", "category": "restaurant", "lat": 31.2, "lon": 121.4}]
}
#: (method, path, body, scope needed)
ENDPOINTS = [
    ("GET", "/v1/profiles/vin/ANY", None, "read:profiles"),
    ("GET", "/v1/profiles/person/PER-X/history", None, "read:profiles"),
    ("GET", "/v1/tags", None, "read:profiles"),
    ("GET", "/v1/tags/l1_vehicle_tier", None, "read:profiles"),
    ("POST", "/v1/audiences/count", AUD, "read:profiles"),
    ("POST", "/v1/audiences/sample", AUD, "read:profiles"),
    ("POST", "/v1/audiences/export", AUD, "read:profiles"),
    (
        "GET",
        "/v1/audiences/export.csv?expression=l1_vehicle_tier%20%3D%3D%20%27mid%27",
        None,
        "read:profiles",
    ),
    ("GET", "/v1/experiments", None, "read:profiles"),
    ("GET", "/v1/strategies", None, "read:profiles"),
    ("POST", "/v1/events/pois", ROW, "write:events"),
    (
        "POST",
        "/v1/consents",
        {"consents": [{"account_id": "A", "purpose": "marketing", "granted": True}]},
        "write:events",
    ),
    ("POST", "/v1/strategies/validate", {"yaml": "strategies: []"}, "manage:strategies"),
    ("POST", "/v1/strategies/plan", {}, "manage:strategies"),
    ("POST", "/v1/erasure", {"kind": "vin", "subject": "X"}, "admin"),
]
IDS = [f"{m} {p.split('?')[0]}" for m, p, _, _ in ENDPOINTS]


def _call(c: TestClient, method: str, path: str, body: object, headers: dict[str, str]):
    return c.request(method, path, json=body, headers=headers)


def _no_data(r) -> None:
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=IDS)
def test_missing_and_wrong_keys_get_401(
    client: TestClient, keys: dict[str, str], method: str, path: str, body: object, scope: str
) -> None:
    good = keys["admin"]
    wrong = [
        {},
        {"X-API-Key": ""},
        {"X-API-Key": "not-a-key"},
        {"X-API-Key": good[:-1] + ("A" if good[-1] != "A" else "B")},  # right id, wrong secret
        {"X-API-Key": "apk_00000000_" + good.split("_", 2)[2]},  # unknown id
        {"Authorization": "Basic " + good},
        {"Cookie": f"autopersona_key={good}"},  # the API never reads the dashboard cookie
    ]
    for h in wrong:
        r = _call(client, method, path, body, h)
        assert r.status_code == 401, (h, r.text)
        assert r.json()["error"]["code"] == "unauthenticated"
        assert r.headers.get("www-authenticate") == "Bearer"
        _no_data(r)


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=IDS)
def test_insufficient_scope_gets_403(
    client: TestClient, keys: dict[str, str], method: str, path: str, body: object, scope: str
) -> None:
    for have in ("read:profiles", "write:events", "manage:strategies"):
        if have == scope:
            continue
        r = _call(client, method, path, body, hdr(keys[have]))
        assert r.status_code == 403, (have, r.text)
        assert r.json()["error"]["code"] == "forbidden"
        assert scope in r.json()["error"]["message"]
        _no_data(r)
    for ok in {scope, "admin"}:
        r = _call(client, method, path, body, hdr(keys[ok]))
        assert r.status_code not in (401, 403), (ok, r.text)


def test_revoked_key(client: TestClient, settings: ApiSettings) -> None:
    key = make_key(settings, "read:profiles")
    assert client.get("/v1/tags", headers=hdr(key)).status_code == 200
    ks = KeyStore(settings.keys_path(), settings.api_secret.get_secret_value())
    kid = key.split("_")[1]
    ks.revoke(kid)
    r = client.get("/v1/tags", headers=hdr(key))
    assert r.status_code == 401
    _no_data(r)


def test_rate_limit_429_with_retry_after(client: TestClient, settings: ApiSettings) -> None:
    key = make_key(settings, "read:profiles", rate=0.5, burst=3)
    codes = [client.get("/v1/ping", headers=hdr(key)).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200]
    r = client.get("/v1/tags", headers=hdr(key))
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 2
    _no_data(r)
    # another key is not affected
    other = make_key(settings, "read:profiles")
    assert client.get("/v1/ping", headers=hdr(other)).status_code == 200


def test_keys_are_stored_hashed(settings: ApiSettings, tmp_path: Path) -> None:
    ks = KeyStore(tmp_path / "k.json", SECRET)
    key, rec = ks.create(["write:events", "read:profiles"], name="etl")
    text = (tmp_path / "k.json").read_text()
    secret = key.split("_", 2)[2]
    assert secret not in text and rec.hash in text
    assert rec.scopes == ["read:profiles", "write:events"]
    assert (tmp_path / "k.json").stat().st_mode & 0o077 == 0
    # another server secret cannot verify the same file
    assert KeyStore(tmp_path / "k.json", "another-secret-0123456789").verify(key) is None
    assert ks.verify(key) is not None
    with pytest.raises(ValueError, match="unknown scope"):
        ks.create(["read:everything"])
    with pytest.raises(ValueError, match="at least one scope"):
        ks.create([])
    with pytest.raises(KeyError):
        ks.revoke("ffffffff")


def test_keys_cli(tmp_path: Path) -> None:
    env = {
        "AUTOPERSONA_WAREHOUSE": str(tmp_path / "wh.duckdb"),
        "AUTOPERSONA_API_SECRET": SECRET,
        "AUTOPERSONA_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "PATH": "/usr/bin:/bin",
    }
    run = [sys.executable, "-c", "from autopersona.cli import main; main()"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*run, *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )

    r = cli("keys", "create", "--scope", "read:profiles", "--scope", "write:events", "--name", "ci")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert key.startswith("apk_") and "only time" in r.stderr
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert listed[0]["scopes"] == ["read:profiles", "write:events"]
    assert key.split("_", 2)[2] not in json.dumps(listed)
    ks = KeyStore(tmp_path / "wh.duckdb.keys.json", SECRET)
    assert ks.verify(key) is not None
    r = cli("keys", "revoke", listed[0]["id"])
    assert r.returncode == 0 and ks.verify(key) is None
    env.pop("AUTOPERSONA_API_SECRET")
    r = cli("keys", "create", "--scope", "admin")
    assert r.returncode == 2 and "published default" in r.stderr


def test_dashboard_auth(client: TestClient, keys: dict[str, str]) -> None:
    # no key (not demo mode): the login form, no data
    r = client.get("/dashboard", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")
    r = client.get(
        "/dashboard/delivery", headers={"X-API-Key": "apk_00000000_x"}, follow_redirects=False
    )
    assert r.status_code == 303
    # a key without read:profiles is refused, with an error body only
    r = client.get("/dashboard", headers=hdr(keys["write:events"]))
    assert r.status_code == 403
    _no_data(r)
    # signing in sets an HTTP-only, same-site cookie that the dashboard (GET) accepts
    r = client.post(
        "/dashboard/login",
        content=f"key={keys['read:profiles']}",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    r = client.post(
        "/dashboard/login",
        content="key=" + keys["write:events"],
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 401
    client.cookies.clear()
