"""Fixtures of the API tests: one demo warehouse per session, an app and keys on it."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from autopersona.api.app import create_app
from autopersona.api.config import ApiSettings
from autopersona.api.data import PROFILE_COLUMNS

from .apicheck import CAMPAIGN, build_demo, make_key, settings_for

PG_URL = os.environ.get("AUTOPERSONA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _log_decisions(db: Path) -> bool:
    """Run the strategy engine once (logging decisions) when the module is installed."""
    try:
        from autopersona.strategy.engine import StrategyEngine
    except ImportError:
        return False
    from autopersona.store.warehouse import Warehouse

    with Warehouse(db, memory_limit="1GB") as wh:
        last = wh.sql("SELECT max(ts) FROM motion")[0][0]
        StrategyEngine(wh).run_batch(last + timedelta(days=1))
    return True


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated fleet, ingested, featurised, linked and profiled (twice)."""
    base = tmp_path_factory.mktemp("api-demo")
    cache = os.environ.get("AUTOPERSONA_API_DEMO_CACHE")  # speeds up local iterations only
    if cache and Path(cache).is_file():
        db = base / "demo.duckdb"
        shutil.copy(cache, db)
        return db
    db = build_demo(base)
    _log_decisions(db)
    if cache:
        shutil.copy(db, cache)
    return db


@pytest.fixture(scope="session")
def settings(demo_db: Path) -> ApiSettings:
    return settings_for(demo_db)


@pytest.fixture(scope="session")
def keys(settings: ApiSettings) -> dict[str, str]:
    """One key per scope, plus admin; generous rate limits."""
    out = {
        s: make_key(settings, s, rate=10_000.0, burst=10_000)
        for s in ("read:profiles", "write:events", "manage:strategies", "admin")
    }
    return out


@pytest.fixture(scope="session")
def client(settings: ApiSettings, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="session")
def feedback(client: TestClient, keys: dict[str, str]) -> dict[str, int]:
    """Post an A/B test's feedback events through the API: treatment 12/20, control 5/20.

    Per arm, ``conv + 4`` persons click and two more only answer by voice (interaction is
    ``conv + 6``); the first converter refers someone."""
    rows = []
    n = 0
    for arm, conv in (("treatment", 12), ("control", 5)):
        for i in range(20):
            pid = f"PER-TEST{arm[0]}{i:03d}"
            steps = ["assigned", "sent", "delivered"]
            if i < conv + 4:
                steps.append("clicked")
            elif i < conv + 6:
                steps.append("voice_reply")
            if i < conv:
                steps.append("converted")
            if i == 0:
                steps.append("referral")
            for step in steps:
                n += 1
                rows.append(
                    {
                        "event_id": f"fb-{n}",
                        "person_id": pid,
                        "ts": f"2026-01-12T{8 + i % 10:02d}:00:00Z",
                        "campaign_id": CAMPAIGN,
                        "arm": arm,
                        "channel": "app",
                        "event_type": step,
                        "value": 100.0 if step == "converted" else None,
                    }
                )
    r = client.post(
        "/v1/events/marketing_feedback",
        json={"rows": rows},
        headers={"X-API-Key": keys["write:events"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["loaded"] == len(rows)
    return {"treatment": 12, "control": 5, "n": 20}


@pytest.fixture(scope="session")
def live_server(settings: ApiSettings, keys: dict[str, str]) -> Iterator[str]:
    """The app under uvicorn on 127.0.0.1 and a free port, in a thread; yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    else:  # pragma: no cover
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _pg() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as con:
            con.execute("SELECT 1")
        return None
    except Exception as exc:  # any failure to connect means: skip
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@pytest.fixture
def pg_settings(settings: ApiSettings, client: TestClient) -> Iterator[ApiSettings]:
    """A PostgreSQL schema holding a copy of the demo's tag assignments."""
    reason = _pg()
    if reason:
        pytest.skip(f"PostgreSQL not available at {PG_URL}: {reason}")
    import psycopg

    from autopersona.store.profiles import PostgresProfileStore

    schema = f"ap_api_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    ps = PostgresProfileStore(PG_URL, schema=schema)
    wh = client.app.state.ap.backend.warehouse()  # type: ignore[attr-defined]
    rows = wh.con.cursor().execute(f"SELECT {', '.join(PROFILE_COLUMNS)} FROM tag_assignments")
    data = rows.fetchall()
    cols = ", ".join(PROFILE_COLUMNS)
    marks = ", ".join("%s" for _ in PROFILE_COLUMNS)
    with ps.con.cursor() as cur:
        cur.executemany(f'INSERT INTO "{schema}".tag_assignments ({cols}) VALUES ({marks})', data)
    ps.close()
    try:
        yield settings.model_copy(update={"store": f"{PG_URL}?schema={schema}"})
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
