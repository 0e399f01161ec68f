"""The in-memory read path of current profiles: nothing stale or erased is ever served.

Every test runs on the DuckDB store (no cache: the service reads the database) and on
PostgreSQL (a cache per app, invalidated by the store's trigger and ``NOTIFY``); on
PostgreSQL two app instances share one schema, as two server processes do.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from autopersona.api.app import create_app
from autopersona.api.config import ApiSettings
from autopersona.api.data import Backend
from autopersona.store.profiles import DuckDBProfileStore, PostgresProfileStore, ProfileStore

from .apicheck import hdr

NEEDS_ERASE = pytest.mark.skipif(
    importlib.util.find_spec("autopersona.privacy.erase") is None,
    reason="the privacy module's erasure is not installed",
)


def _be(c: TestClient) -> Backend:
    be: Backend = c.app.state.ap.backend  # type: ignore[attr-defined]
    return be


@dataclass
class Env:
    """Apps on one profile store: ``kind`` is ``duckdb`` (the warehouse) or ``postgresql``."""

    kind: str
    base: ApiSettings
    tmp: Path
    key: str

    @contextmanager
    def apps(self, n: int) -> Iterator[list[TestClient]]:
        """``n`` app instances, each on its own copy of the demo warehouse."""
        with ExitStack() as stack:
            out = []
            for i in range(n):
                db = self.tmp / f"wh{i}.duckdb"
                shutil.copy(self.base.warehouse, db)
                s = self.base.model_copy(update={"warehouse": db})
                out.append(stack.enter_context(TestClient(create_app(s))))
            yield out

    def store(self, c: TestClient) -> ProfileStore:
        """A profile store writing where app ``c`` reads (not through the app)."""
        if self.kind == "postgresql":
            assert self.base.store is not None
            return PostgresProfileStore(self.base.store)
        return DuckDBProfileStore(_be(c).warehouse().con.cursor())

    def get(self, c: TestClient, path: str, **params: str) -> Any:
        r = c.get(path, params=params, headers=hdr(self.key))
        return r.json() if r.status_code == 200 else r.status_code


@pytest.fixture(params=["duckdb", "postgresql"])
def env(
    request: pytest.FixtureRequest,
    settings: ApiSettings,
    client: TestClient,
    keys: dict[str, str],
    tmp_path: Path,
) -> Env:
    _be(client).warehouse().con.cursor().execute("CHECKPOINT")
    base = settings
    if request.param == "postgresql":
        base = request.getfixturevalue("pg_settings")
    return Env(request.param, base, tmp_path, keys["admin"])


def _db_generation(be: Backend) -> int:
    import psycopg

    with psycopg.connect(be.pg_url) as con:
        row = con.execute(
            f'SELECT generation FROM "{be.schema}".profile_generation WHERE id = 1'
        ).fetchone()
    assert row is not None
    return int(row[0])


def settle(c: TestClient) -> None:
    """Wait until app ``c`` has read the notification of every committed change (PostgreSQL)."""
    be = _be(c)
    if be.invalidator is None:
        return
    want = _db_generation(be)
    end = time.monotonic() + 10
    while be.invalidator.generation < want:
        assert time.monotonic() < end, f"no notification of generation {want} within 10 s"
        time.sleep(0.002)


def _person(c: TestClient) -> tuple[str, str, str]:
    """A VIN with tags, its person and one of the person's accounts."""
    wh = _be(c).warehouse()
    rows = (
        wh.con.cursor()
        .execute(
            "SELECT v.vin, p.person_id, min(l.account_id) FROM vehicles v "
            "JOIN persons p ON list_contains(p.vins, v.vin) "
            "JOIN identity_links l ON l.person_id = p.person_id "
            "JOIN tag_assignments t ON t.entity = v.vin AND t.valid_to IS NULL "
            "GROUP BY 1, 2 ORDER BY 1 LIMIT 1"
        )
        .fetchall()
    )
    assert rows, "the demo warehouse has no linked person with tags"
    vin, pid, acc = rows[0]
    return str(vin), str(pid), str(acc)


def _values(profile: Any) -> dict[str, Any]:
    assert isinstance(profile, dict), profile
    return {(t["entity"], t["tag_id"]): t["value"] for t in profile["tags"]}


def test_a_refresh_is_visible_one_request_after_the_generation_bump(env: Env) -> None:
    with env.apps(1) as (c,):
        vin, _, _ = _person(c)
        path = f"/v1/profiles/vin/{vin}"
        first = env.get(c, path)
        assert env.get(c, path) == first
        be = _be(c)
        if env.kind == "postgresql":
            assert be.cache is not None and be.cache.hits >= 1  # the repeat came from memory
            gen = _db_generation(be)
        else:
            assert be.cache is None  # DuckDB is read directly
        tag = first["tags"][0]
        row = {k: tag[k] for k in ("entity_type", "entity", "tag_id", "catalogue_version")}
        row.update(value="set-by-test", score=None, reasons="{}", model_version=None)
        row["as_of"] = datetime.now(UTC)
        with env.store(c) as ps:
            assert ps.write(pd.DataFrame([row])).opened == 1
        settle(c)
        if env.kind == "postgresql":
            assert _db_generation(be) == gen + 1  # one write transaction, one bump
        got = _values(env.get(c, path))
        assert got[(vin, tag["tag_id"])] == "set-by-test"
        assert {k: v for k, v in got.items() if k[1] != tag["tag_id"]} == {
            k: v for k, v in _values(first).items() if k[1] != tag["tag_id"]
        }
        # history and as_of still read the database: the old value is where it was
        old = env.get(c, path, as_of=tag["valid_from"])
        assert _values(old)[(vin, tag["tag_id"])] == tag["value"]


@NEEDS_ERASE
def test_b_an_erased_person_is_never_served_from_a_cache(env: Env) -> None:
    n = 2 if env.kind == "postgresql" else 1
    with env.apps(n) as apps:
        a, b = apps[0], apps[-1]
        vin, pid, _ = _person(a)
        for c in apps:  # both hold the VIN's and the person's profiles
            for path in (f"/v1/profiles/vin/{vin}", f"/v1/profiles/person/{pid}"):
                assert isinstance(env.get(c, path), dict)
                assert isinstance(env.get(c, path), dict)
        if env.kind == "postgresql":
            assert all((_be(c).cache is not None and len(_be(c).cache or ()) >= 2) for c in apps)
        r = a.post("/v1/erasure", json={"kind": "vin", "subject": vin}, headers=hdr(env.key))
        assert r.status_code == 200, r.text
        # no waiting: the first request after the erasure answered, in either instance
        for c in apps:
            assert env.get(c, f"/v1/profiles/vin/{vin}") == 404
        assert env.get(a, f"/v1/profiles/person/{pid}") == 404
        # b's warehouse copy still links the person, but the store has nothing of theirs
        assert env.get(b, f"/v1/profiles/person/{pid}") == 404


def test_c_consent_withdrawal_is_reflected(env: Env) -> None:
    n = 2 if env.kind == "postgresql" else 1
    with env.apps(n) as apps:
        a, b = apps[0], apps[-1]
        vin, pid, acc = _person(a)
        ppath = f"/v1/profiles/person/{pid}"
        before = {id(c): _values(env.get(c, ppath)) for c in apps}
        for c in apps:
            assert _values(env.get(c, f"/v1/profiles/vin/{vin}"))
        body = {"consents": [{"account_id": acc, "purpose": "ubi", "granted": False}]}
        r = a.post("/v1/consents", json=body, headers=hdr(env.key))
        assert r.status_code == 200 and r.json()["loaded"] == 1, r.text
        cache = _be(a).cache
        if cache is not None:  # the person's entries left at once, in the process that took it
            assert all(vin not in k and acc not in k for k in cache._data)
            settle(b)
            assert len(_be(b).cache or ()) == 0  # the other instance was told
        # the refresh closes values the withdrawn purpose produced (here: the VIN's first tag)
        tag = sorted(t for e, t in before[id(a)] if e == vin)[0]
        with env.store(a) as ps:
            assert ps.close_except(tag, set(), datetime.now(UTC)) >= 1
        for c in apps:
            settle(c)
            after = _values(env.get(c, ppath))
            assert (vin, tag) not in after
            assert after == {k: v for k, v in before[id(c)].items() if k[1] != tag}


def test_a_lost_listener_turns_the_cache_off_until_it_listens_again(
    pg_settings: ApiSettings, client: TestClient, keys: dict[str, str], tmp_path: Path
) -> None:
    import psycopg

    _be(client).warehouse().con.cursor().execute("CHECKPOINT")
    env = Env("postgresql", pg_settings, tmp_path, keys["admin"])
    with env.apps(1) as (c,):
        be = _be(c)
        inv = be.invalidator
        assert inv is not None and inv.listening and be.cache is not None
        vin, _, _ = _person(c)
        path = f"/v1/profiles/vin/{vin}"
        first = env.get(c, path)
        assert env.get(c, path) == first and be.cache.hits >= 1
        assert inv.backend_pid is not None
        with psycopg.connect(be.pg_url, autocommit=True) as con:
            con.execute("SELECT pg_terminate_backend(%s)", [inv.backend_pid])
        end = time.monotonic() + 10
        while inv.listening:  # the socket wakes the loop, or the next lookup's poll notices
            env.get(c, path)
            assert time.monotonic() < end, "the lost listening connection went unnoticed"
            time.sleep(0.01)
        assert be.profile_cache() is None and len(be.cache) == 0
        tag = first["tags"][0]
        with env.store(c) as ps:  # a change nobody is told about
            assert ps.close_except(tag["tag_id"], set(), datetime.now(UTC)) >= 1
        assert (vin, tag["tag_id"]) not in _values(env.get(c, path))
        end = time.monotonic() + 15
        while not inv.listening:  # listening again after the retry delay
            assert time.monotonic() < end, "did not listen again"
            time.sleep(0.05)
        assert (vin, tag["tag_id"]) not in _values(env.get(c, path))
        assert env.get(c, path) == env.get(c, path)
        assert be.profile_cache() is be.cache
