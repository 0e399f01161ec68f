"""Shared helpers of the API tests: a small demo warehouse, settings, keys."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from autopersona.api.config import ApiSettings
from autopersona.api.keys import KeyStore

SECRET = "test-secret-for-api-keys-0123456789"
PSEUDONYM_KEY = "test-pseudonym-key-0123456789abcdef0123"
#: Campaign whose A/B feedback the tests post through the API.
CAMPAIGN = "api_test_campaign"


def hdr(key: str) -> dict[str, str]:
    """Headers carrying ``key``."""
    return {"X-API-Key": key}


def build_demo(base: Path) -> Path:
    """Simulate 8 vehicles x 8 days, ingest, build features, link identities, refresh twice."""
    from autopersona.features.build import build_features
    from autopersona.identity.link import link_identities
    from autopersona.ingest.engine import ingest
    from autopersona.simulate import simulate
    from autopersona.store.profiles import open_store, refresh
    from autopersona.store.warehouse import Warehouse

    sim = base / "sim"
    simulate(vehicles=8, days=8, seed=3, out=sim, workers=1)
    db = base / "demo.duckdb"
    with Warehouse(db, memory_limit="1GB") as wh:
        ingest([sim / "tables"], wh)
        # mobility (stay points, HMM) is left out: it is the slow domain and no page needs it
        build_features(wh, only=["driving", "cabin", "service", "charging", "commerce"])
        link_identities(wh)
        last = wh.sql("SELECT max(ts) FROM motion")[0][0]
        ps = open_store(warehouse=wh)
        refresh(wh, ps, as_of=last - timedelta(days=3), due_only=False)
        refresh(wh, ps, as_of=last + timedelta(days=1), due_only=False)
    shutil.rmtree(sim)
    return db


def settings_for(db: Path, **kw: object) -> ApiSettings:
    """Settings on a copy-free warehouse ``db`` with the test secret (not demo mode)."""
    base = {
        "warehouse": db,
        "api_secret": SECRET,
        "pseudonym_key": PSEUDONYM_KEY,
        "api_keys_file": db.with_suffix(".keys.json"),
        "memory_limit": "1GB",
        "threads": 1,
    }
    base.update(kw)
    return ApiSettings(**base)  # type: ignore[arg-type]


def make_key(s: ApiSettings, *scopes: str, **kw: object) -> str:
    """A new key with ``scopes`` in the settings' key file."""
    key, _ = KeyStore(s.keys_path(), s.api_secret.get_secret_value()).create(
        list(scopes),
        name="-".join(scopes),
        **kw,  # type: ignore[arg-type]
    )
    return key
