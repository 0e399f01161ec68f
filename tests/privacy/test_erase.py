"""Erasure over every table of DuckDB and PostgreSQL, verified and audited; retention."""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from privcheck import Fleet

from autopersona.identity import link_identities
from autopersona.privacy.erase import (
    AUDIT_TABLE,
    EXEMPT_TABLES,
    DuckDBBackend,
    PostgresBackend,
    _is_identifier,
    enforce_retention,
    erase_person,
    resolve_person,
    suppressed,
)
from autopersona.privacy.pseudo import Pseudonymiser, Vault
from autopersona.store.profiles import DuckDBProfileStore, PostgresProfileStore
from autopersona.store.warehouse import Warehouse

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"'click\.utils\.get_\w+' is deprecated", category=DeprecationWarning
    )
    from typer.testing import CliRunner

    from autopersona.cli import app

_spec = importlib.util.spec_from_file_location(
    "pgcheck", Path(__file__).resolve().parents[1] / "store" / "pgcheck.py"
)
assert _spec and _spec.loader
pgcheck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pgcheck)


def _assignments(entities: list[str], tag: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "entity_type": "vin" if not e.startswith("PER-") else "person",
                "entity": e,
                "tag_id": tag,
                "value": "x",
                "score": None,
                "reasons": json.dumps({"why": e}),
                "as_of": datetime(2026, 1, 5, tzinfo=UTC),
                "catalogue_version": "c1",
                "model_version": None,
            }
            for e in entities
        ]
    )


def _other_stage_tables(con: Any, persons: pd.DataFrame, pg: bool = False) -> None:
    """Tables other stages add (decision log, outbox, features): erasure must find them."""
    j = "JSONB" if pg else "JSON"
    arr = "TEXT[]" if pg else "VARCHAR[]"
    stmts = [
        "CREATE TABLE strategy_decisions (decision_id VARCHAR, person_id VARCHAR, vin VARCHAR, "
        "strategy VARCHAR, decided_at TIMESTAMPTZ)",
        f"CREATE TABLE delivery_outbox (message_id VARCHAR, account_id VARCHAR, payload {j})",
        f"CREATE TABLE features_demo (subject_vin VARCHAR, related {arr}, score DOUBLE PRECISION)",
    ]
    for s in stmts:
        con.execute(s)
    ph = "%s" if pg else "?"
    for i, r in enumerate(persons.itertuples()):
        vin = r.vins[0] if len(r.vins) else None
        con.execute(
            f"INSERT INTO strategy_decisions VALUES ({ph}, {ph}, {ph}, 'S1', now())",
            [f"D{i}", r.person_id, vin],
        )
        payload = json.dumps({"to": r.person_id, "vin": vin, "text": "hello"})
        con.execute(
            f"INSERT INTO delivery_outbox VALUES ({ph}, {ph}, CAST({ph} AS {j}))",
            [f"M{i}", f"X-{i}", payload],
        )
        con.execute(
            f"INSERT INTO features_demo VALUES ({ph}, CAST({ph} AS {arr}), 1.0)",
            [vin, list(r.vins)],
        )


@pytest.fixture
def linked(fleet: Fleet, tmp_path: Path) -> Iterator[Warehouse]:
    with Warehouse(fleet.copy(tmp_path)) as wh:
        link_identities(wh, probabilistic=False)
        persons = wh.frame("SELECT person_id, vins FROM persons")
        ps = DuckDBProfileStore(wh.con)
        vins = [v for vs in persons["vins"] for v in vs]
        ps.write(_assignments(vins + list(persons["person_id"]), "l1_vehicle_tier"))
        _other_stage_tables(wh.con, persons)
        yield wh


def _target(wh: Warehouse) -> str:
    """A person with several accounts and a vehicle of their own."""
    rows = wh.sql(
        "SELECT person_id FROM persons WHERE account_count >= 2 AND len(vins) = 1 "
        "ORDER BY person_id LIMIT 1"
    )
    assert rows, "the fleet has a multi-account person"
    return str(rows[0][0])


def _remaining(backend: Any, values: set[str]) -> dict[str, int]:
    """Rows in any table (any column, as text) that still name one of the values."""
    out: dict[str, int] = {}
    by_table: dict[str, list[str]] = {}
    for t, c, kind in backend.columns():
        if t not in EXEMPT_TABLES and kind != "other":  # numbers and times hold no identifier
            by_table.setdefault(t, []).append(c)
    long_values = [v for v in values if len(v) >= 6]
    for t, cols in by_table.items():
        texts = " OR ".join(backend.contains_any(c, len(long_values)) for c in cols)
        n = backend.scalar(
            f"SELECT count(*) FROM {backend.qualified(t)} WHERE {texts}", long_values * len(cols)
        )
        if n:
            out[t] = int(n)
    return out


def test_erasure_over_every_duckdb_table(linked: Warehouse, tmp_path: Path) -> None:
    wh = linked
    person = _target(wh)
    ids = resolve_person(wh, person)
    assert len(ids.account_ids) >= 2 and ids.vins
    backend = DuckDBBackend(wh.con)
    tables = {t for t, _, _ in backend.columns()}
    assert {"tag_assignments", "strategy_decisions", "delivery_outbox", "_quarantine"} <= tables
    before = _remaining(backend, ids.values)
    assert {
        "accounts",
        "motion",
        "tag_assignments",
        "strategy_decisions",
        "delivery_outbox",
        "features_demo",
        "identity_links",
        "persons",
    } <= set(before)
    totals = {t: wh.count(t) for t in tables}
    vault = Vault(tmp_path / "vault.duckdb")
    vin = sorted(ids.vins)[0]
    Pseudonymiser(b"k" * 32, vault).many("vin", [vin])
    rep = erase_person(wh, person, "ticket-4711", vault=vault)
    assert rep.verified == {"duckdb": True}
    # every table, every column: nothing of the person is left (a broader check than erasure's)
    assert _remaining(backend, ids.values) == {}
    # only the person's rows went: totals fell by exactly the counts erased
    for t in tables:
        assert wh.count(t) == totals[t] - rep.deleted["duckdb"].get(t, 0), t
    assert sum(totals.values()) - sum(wh.count(t) for t in tables) == rep.total > 0
    # the audit row holds a hash of the request and counts, nothing that names the person
    cur = wh.con.execute(f"SELECT * FROM {AUDIT_TABLE}")
    audit = pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
    assert len(audit) == 1 and bool(audit["verified"].iloc[0])
    text = audit.to_json(date_format="iso")
    assert not any(v in text for v in ids.values if len(v) >= 4)
    assert "ticket-4711" not in text
    # future ingests / training sets can drop a re-delivered record of the person
    assert suppressed(wh, [vin, "SOMEONE-ELSE"]) == {vin}
    assert rep.vault_mappings == 1
    assert (
        vault.reidentify(
            Pseudonymiser(b"k" * 32).pseudonym("vin", vin) or "", actor="t", purpose="t"
        )
        is None
    )
    vault.close()


def test_erase_cli_by_vin(linked: Warehouse) -> None:
    wh = linked
    person = _target(wh)
    vin = sorted(resolve_person(wh, person).vins)[0]
    path = wh.path
    wh.close()
    r = CliRunner().invoke(
        app, ["privacy", "erase", vin, "--request-id", "R-1", "-w", path, "--json"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["verified"] == {"duckdb": True} and out["total"] > 0
    assert vin not in r.stdout
    with Warehouse(path) as w2:
        assert w2.sql("SELECT count(*) FROM motion WHERE vin = ?", [vin]) == [(0,)]
        assert w2.sql("SELECT count(*) FROM persons WHERE person_id = ?", [person]) == [(0,)]
        wh.con = w2.con  # the fixture closes its warehouse; hand it the open one
        r = CliRunner().invoke(app, ["privacy", "erase", " ", "--request-id", "R-2", "-w", path])
    assert r.exit_code == 1


@pytest.mark.integration
def test_erasure_over_every_postgresql_table(linked: Warehouse) -> None:
    reason = pgcheck.pg_unavailable()
    if reason:
        pytest.skip(f"PostgreSQL not available: {reason}")
    wh = linked
    schema = f"ap_erase_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    pg = PostgresProfileStore(pgcheck.PG_URL, schema=schema)
    try:
        persons = wh.frame("SELECT person_id, vins FROM persons")
        vins = [v for vs in persons["vins"] for v in vs]
        pg.write(_assignments(vins + list(persons["person_id"]), "l1_vehicle_tier"))
        pg.con.execute(f'SET search_path TO "{schema}"')
        _other_stage_tables(pg.con, persons, pg=True)
        person = _target(wh)
        ids = resolve_person(wh, person)
        backend = PostgresBackend(pg.con, schema)
        tables = {t for t, _, _ in backend.columns()}
        assert {
            "tag_assignments",
            "tag_runs",
            "strategy_decisions",
            "delivery_outbox",
            "features_demo",
        } <= tables
        assert set(_remaining(backend, ids.values)) >= {
            "tag_assignments",
            "strategy_decisions",
            "delivery_outbox",
            "features_demo",
        }
        totals = {
            t: int(backend.scalar(f"SELECT count(*) FROM {backend.qualified(t)}")) for t in tables
        }
        rep = erase_person(wh, person, "ticket-pg", extra=[backend])
        assert rep.verified == {"duckdb": True, "postgresql": True}
        assert _remaining(backend, ids.values) == {}
        assert _remaining(DuckDBBackend(wh.con), ids.values) == {}
        for t in tables:
            n = int(backend.scalar(f"SELECT count(*) FROM {backend.qualified(t)}"))
            assert n == totals[t] - rep.deleted["postgresql"].get(t, 0), t
        audit = backend.scalar(f"SELECT count(*) FROM {backend.qualified(AUDIT_TABLE)}")
        assert audit == 1
    finally:
        pg.drop_schema()
        pg.close()


def test_retention_deletes_rows_past_each_tables_period(fleet: Fleet, tmp_path: Path) -> None:
    with Warehouse(fleet.copy(tmp_path)) as wh:
        newest = wh.sql("SELECT max(ts) FROM motion")[0][0]
        later = newest + timedelta(days=365 + 1)
        dry = enforce_retention(wh, later, dry_run=True)
        assert dry["motion"] == wh.count("motion") > 0  # 365 days
        assert dry["vehicles"] == dry["accounts"] == 0  # active within 10 years
        kept_orders = wh.count("orders")
        out = enforce_retention(wh, later)
        assert out == dry
        assert wh.count("motion") == 0
        cutoff = later - timedelta(days=3650)
        assert wh.count("orders") == kept_orders - int(
            out["orders"] if isinstance(out["orders"], int) else 0
        )
        assert wh.sql("SELECT count(*) FROM orders WHERE ts < ?", [cutoff]) == [(0,)]
        assert enforce_retention(wh, later)["motion"] == 0
        # ten years after the last activity, master data goes too
        decade = newest + timedelta(days=3650 + 2)
        gone = enforce_retention(wh, decade)
        assert gone["vehicles"] == 16 and wh.count("vehicles") == 0
        assert gone["accounts"] > 0 and wh.count("accounts") == 0


def test_retention_of_tables_without_a_time_column_follows_the_last_activity(
    tmp_path: Path,
) -> None:
    """Vehicles and accounts age by their rows' last activity: related time-stamped rows,
    their own dates, else the latest ingest of their table; untouched ones past the period go."""
    now = datetime(2036, 6, 1, tzinfo=UTC)
    recent, old = now - timedelta(days=100), now - timedelta(days=3650 + 30)
    with Warehouse(tmp_path / "wh.duckdb") as wh:
        wh.con.execute(
            "INSERT INTO vehicles (vin, registration_date) VALUES "
            "('ACTIVE', DATE '2020-01-01'), ('IDLE', DATE '2020-01-01'), "
            "('NEWREG', ?), ('UNDATED', NULL), ('UNDATED_OLD', NULL)",
            [recent.date()],
        )
        wh.con.execute(
            "INSERT INTO service_records (service_id, vin, ts) VALUES "
            "('S1', 'ACTIVE', ?), ('S2', 'IDLE', ?)",
            [recent, old],
        )
        wh.con.execute(
            "INSERT INTO accounts (account_id, source, created_at) VALUES "
            "('BUYER', 'ecommerce', ?), ('DORMANT', 'ecommerce', ?), ('NEW', 'app', ?)",
            [old, old, recent],
        )
        wh.con.execute(  # an account is a commerce customer: its orders keep it
            "INSERT INTO orders (order_id, line_no, customer_id, ts) VALUES ('O1', 1, 'BUYER', ?)",
            [recent],
        )
        wh.con.execute(  # the undated vehicles: only their table's ingest runs date them
            "INSERT INTO _ingest_runs VALUES "
            "('r1', 'vehicles.csv', '-', 'identity:vehicles', 'vehicles', 5, 5, 0, 0, ?, 1)",
            [old],
        )
        dry = enforce_retention(wh, now, dry_run=True)
        assert (dry["vehicles"], dry["accounts"]) == (3, 1)  # IDLE and both undated; DORMANT
        wh.con.execute(
            "INSERT INTO _ingest_runs VALUES "
            "('r2', 'vehicles.csv', '-', 'identity:vehicles', 'vehicles', 1, 1, 0, 0, ?, 1)",
            [recent],
        )  # a recent delivery of the table: undated rows may be that recent, they are kept
        out = enforce_retention(wh, now)
        assert out["vehicles"] == 1 and out["accounts"] == 1
        assert sorted(r[0] for r in wh.sql("SELECT vin FROM vehicles")) == [
            "ACTIVE",
            "NEWREG",
            "UNDATED",
            "UNDATED_OLD",
        ]
        assert sorted(r[0] for r in wh.sql("SELECT account_id FROM accounts")) == ["BUYER", "NEW"]
        assert enforce_retention(wh, now) == {k: 0 for k in out}


def test_identifier_columns_are_found_by_name() -> None:
    assert _is_identifier("vin") and _is_identifier("owner_vin") and _is_identifier("person_id")
    assert not _is_identifier("vintage") and not _is_identifier("decision_id")
