"""Pseudonyms: keyed, stable, refused with the default key; vault reads audited; H3 cells."""

from __future__ import annotations

import warnings
from pathlib import Path

import h3
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from privcheck import Fleet
from pydantic import SecretStr

from autopersona.privacy.pseudo import (
    AUDIT_TABLE,
    COARSEN_TARGETS,
    InsecureKeyError,
    Pseudonymiser,
    Vault,
    check_settings,
    coarsen_point,
    coarsen_warehouse,
    is_pseudonym,
    pseudonymise_warehouse,
    scan_raw_identifiers,
)
from autopersona.settings import Settings
from autopersona.store.warehouse import Warehouse

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"'click\.utils\.get_\w+' is deprecated", category=DeprecationWarning
    )
    from typer.testing import CliRunner

    from autopersona.cli import app

KEY = "0123456789abcdef0123456789abcdef-test"


def test_default_or_short_key_is_refused_outside_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOPERSONA_PSEUDONYM_KEY", raising=False)
    with pytest.raises(InsecureKeyError, match="published default"):
        check_settings(Settings(demo=False))
    with pytest.raises(InsecureKeyError, match="at least 32"):
        check_settings(Settings(demo=False, pseudonym_key=SecretStr("short")))
    check_settings(Settings(demo=True))
    check_settings(Settings(demo=False, pseudonym_key=SecretStr(KEY)))


def test_environment_key_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from autopersona.privacy.pseudo import from_settings

    monkeypatch.setenv("AUTOPERSONA_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("AUTOPERSONA_DEMO", raising=False)
    assert from_settings().pseudonym("vin", "V1") == Pseudonymiser(KEY).pseudonym("vin", "V1")
    monkeypatch.delenv("AUTOPERSONA_PSEUDONYM_KEY")
    with pytest.raises(InsecureKeyError):
        from_settings()


@given(st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != ""))
def test_pseudonyms_are_keyed_stable_and_idempotent(value: str) -> None:
    a, b = Pseudonymiser(KEY), Pseudonymiser(KEY + "x")
    pa = a.pseudonym("vin", value)
    assert pa is not None and is_pseudonym(pa)
    assert pa == a.pseudonym("vin", value)  # stable
    assert pa != b.pseudonym("vin", value)  # keyed
    assert a.pseudonym("vin", pa) == pa  # a pseudonym stays itself
    assert value.strip().upper() not in pa.upper() or len(value.strip()) < 3


def test_vault_reads_are_audited_without_personal_data(tmp_path: Path) -> None:
    v = Vault(tmp_path / "vault.duckdb")
    p = Pseudonymiser(KEY, v)
    [pv] = p.many("phone", ["+86 138 0013 8000"])
    assert pv is not None
    assert v.reidentify(pv, actor="analyst-7", purpose="complaint 12") == "+86 138 0013 8000"
    assert v.reidentify("pp_" + "0" * 32, actor="analyst-7", purpose="probe") is None
    with pytest.raises(ValueError, match="actor and a purpose"):
        v.reidentify(pv, actor="", purpose="x")
    rows = v.con.execute(f"SELECT * FROM {AUDIT_TABLE} ORDER BY read_at").fetchall()
    assert [r[5] for r in rows] == [True, False]
    # the text columns (actor, purpose, kind) hold no part of the phone, and no column holds
    # the pseudonym (the read time and the fingerprint hash may hold any digits)
    text = repr([r[1:4] for r in rows])
    assert "138" not in text and "8000" not in text
    assert pv not in repr(rows) and all(r[4] not in pv for r in rows)
    assert v.forget([pv]) == 1 and v.reidentify(pv, actor="a", purpose="b") is None
    v.close()


def test_no_raw_vin_phone_or_email_in_any_table_after_pseudonymising(
    fleet: Fleet, tmp_path: Path
) -> None:
    known = fleet.known_identifiers()
    vault = Vault(tmp_path / "vault.duckdb")
    with Warehouse(fleet.copy(tmp_path)) as wh:
        assert scan_raw_identifiers(wh, known)  # the scan finds them before
        joined_before = wh.sql("SELECT count(*) FROM motion m JOIN vehicles v USING (vin)")
        changed = pseudonymise_warehouse(wh, Pseudonymiser(KEY, vault))
        assert changed["vehicles.vin"] == wh.count("vehicles") > 0
        assert scan_raw_identifiers(wh, known) == []
        # joins on pseudonymous VINs give the same rows
        assert wh.sql("SELECT count(*) FROM motion m JOIN vehicles v USING (vin)") == joined_before
        assert pseudonymise_warehouse(wh, Pseudonymiser(KEY, vault)) == {}  # idempotent
        vin = wh.sql("SELECT vin FROM vehicles LIMIT 1")[0][0]
    assert vault.reidentify(vin, actor="t", purpose="test") in known["vin"]
    vault.close()


def test_h3_coarsening_of_homes(tmp_path: Path) -> None:
    cell, la, lo = coarsen_point(31.2304, 121.4737, 7)
    assert h3.get_resolution(cell) == 7 and h3.latlng_to_cell(la, lo, 7) == cell
    with Warehouse(tmp_path / "wh.duckdb") as wh:
        table = COARSEN_TARGETS[0][0]
        wh.con.execute(
            f"CREATE TABLE {table} (vin VARCHAR, home_lat DOUBLE, home_lon DOUBLE, "
            "work_lat DOUBLE, work_lon DOUBLE)"
        )
        wh.con.execute(
            f"INSERT INTO {table} VALUES ('a', 31.2304, 121.4737, 31.20, 121.40), "
            "('b', 31.2305, 121.4738, NULL, NULL)"
        )
        assert coarsen_warehouse(wh, "ubi") == {}
        out = coarsen_warehouse(wh, "marketing")
        assert out == {f"{table}.home_lat": 2, f"{table}.work_lat": 1}
        got = wh.frame(f"SELECT * FROM {table} ORDER BY vin")
        assert got["home_lat"].nunique() == 1  # the two near homes share a cell centre
        assert (got.loc[0, "home_lat"], got.loc[0, "home_lon"]) == pytest.approx((la, lo))
        assert pd.isna(got.loc[1, "work_lat"])
        assert coarsen_warehouse(wh, "marketing") == {}
        with pytest.raises(ValueError, match="unknown purpose"):
            coarsen_warehouse(wh, "fun")


def test_cli_pseudonymise_and_audited_reidentify(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    wh, vault = fleet.copy(tmp_path), tmp_path / "vault.duckdb"
    monkeypatch.delenv("AUTOPERSONA_DEMO", raising=False)
    monkeypatch.delenv("AUTOPERSONA_PSEUDONYM_KEY", raising=False)
    r = runner.invoke(app, ["privacy", "pseudonymise", "--vault", str(vault), "-w", str(wh)])
    assert r.exit_code == 3 and "published default" in r.stderr
    monkeypatch.setenv("AUTOPERSONA_PSEUDONYM_KEY", KEY)
    r = runner.invoke(app, ["privacy", "pseudonymise", "--vault", str(vault), "-w", str(wh)])
    assert r.exit_code == 0, r.output
    assert "vehicles.vin" in r.stdout
    with Warehouse(wh, read_only=True) as w:
        pv = w.sql("SELECT vin FROM vehicles LIMIT 1")[0][0]
    args = ["privacy", "reidentify", pv, "--vault", str(vault), "--actor", "a", "--purpose", "p"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and r.stdout.strip() in fleet.known_identifiers()["vin"]


def test_pseudonymised_at_ingest_no_clear_identifier_in_any_table_or_log(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autopersona.ingest.engine import ingest

    known = fleet.known_identifiers()
    monkeypatch.setenv("AUTOPERSONA_PSEUDONYMISE", "1")
    monkeypatch.setenv("AUTOPERSONA_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("AUTOPERSONA_VAULT", str(tmp_path / "vault.duckdb"))
    with Warehouse(tmp_path / "wh.duckdb") as wh:
        rep = ingest([fleet.out / "tables"], wh)
        assert rep.loaded > 0 and rep.quarantined > 0  # the quarantine (a log) is checked too
        assert scan_raw_identifiers(wh, known) == []
        vins = [r[0] for r in wh.sql("SELECT vin FROM vehicles")]
        assert vins and all(is_pseudonym(v) for v in vins)
        raw = wh.sql("SELECT raw FROM _quarantine WHERE raw LIKE '%\"vin\"%' LIMIT 1")
        assert raw and '"vin":"pv_' in raw[0][0]
        # the same file again adds nothing: pseudonyms are deterministic
        again = ingest([fleet.out / "tables" / "vehicles.parquet"], wh)
        assert again.loaded == 0 and again.duplicates == len(vins)
        hook = wh.ingest_hook  # type: ignore[attr-defined]
        # identity linkage still links accounts by exact keys, on pseudonyms
        from autopersona.identity import link_identities

        linked = link_identities(wh, probabilistic=False)
    (tmp_path / "clear").mkdir()
    with Warehouse(fleet.copy(tmp_path / "clear")) as clear:
        reference = link_identities(clear, probabilistic=False)
    # ... exactly as in clear: phones are read in their account's region before hashing,
    # and the guards compare the stored keyed neighbourhoods (identity.keys)
    assert linked.accounts == reference.accounts
    assert linked.exact_links == reference.exact_links > 0
    assert linked.persons == reference.persons
    assert hook.p.vault.reidentify(vins[0], actor="t", purpose="test") in known["vin"]
    hook.p.vault.close()


def test_comparison_keys_are_erased_and_expire_with_their_accounts(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keyed comparison keys stored at ingest (identity.keys) name identifiers by their
    pseudonyms: erasure finds and removes the person's, and retention drops the keys of
    identifiers no account holds any more."""
    from datetime import UTC, datetime

    from autopersona.identity import link_identities
    from autopersona.identity.keys import KEYS_TABLE
    from autopersona.ingest.engine import ingest
    from autopersona.privacy.erase import enforce_retention, erase_person, resolve_person

    monkeypatch.setenv("AUTOPERSONA_PSEUDONYMISE", "1")
    monkeypatch.setenv("AUTOPERSONA_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("AUTOPERSONA_VAULT", str(tmp_path / "vault.duckdb"))
    with Warehouse(tmp_path / "wh.duckdb") as wh:
        ingest([fleet.out / "tables" / "accounts.parquet"], wh)
        link_identities(wh, probabilistic=False)
        kinds = dict(wh.sql(f"SELECT kind, count(*) FROM {KEYS_TABLE} GROUP BY 1"))
        assert set(kinds) == {"vin", "phone", "email"}
        # one row per distinct identifier of the accounts
        for kind, n in kinds.items():
            assert n == wh.sql(f"SELECT count(DISTINCT {kind}) FROM accounts")[0][0]
        tokens = wh.sql(f"SELECT head, near FROM {KEYS_TABLE} WHERE kind = 'phone' LIMIT 1")[0]
        assert tokens[0].isalpha() and all(t.isalpha() for t in tokens[1])

        person = wh.sql(
            "SELECT l.person_id FROM identity_links l JOIN accounts a USING (account_id) "
            "WHERE a.phone IS NOT NULL AND a.email IS NOT NULL ORDER BY 1 LIMIT 1"
        )[0][0]
        ids = resolve_person(wh, person)
        mine = (
            f"SELECT count(*) FROM {KEYS_TABLE} "
            "WHERE coalesce(vin, phone, email) IN (SELECT unnest(?::VARCHAR[]))"
        )
        assert wh.sql(mine, [sorted(ids.values)])[0][0] >= 2
        total = wh.count(KEYS_TABLE)
        rep = erase_person(wh, person, "ticket-1")
        assert rep.verified == {"duckdb": True}
        assert wh.sql(mine, [sorted(ids.values)])[0][0] == 0
        assert wh.count(KEYS_TABLE) == total - rep.deleted["duckdb"][KEYS_TABLE]

        out = enforce_retention(wh, now=datetime(2200, 1, 1, tzinfo=UTC))
        assert (
            wh.count("accounts") == 0
            and out[KEYS_TABLE] == total - rep.deleted["duckdb"][KEYS_TABLE]
        )
        assert wh.count(KEYS_TABLE) == 0
        wh.ingest_hook.p.vault.close()  # type: ignore[attr-defined]
