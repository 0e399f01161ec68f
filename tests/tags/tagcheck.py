"""Helpers shared by the tag tests (imported by name, not from conftest)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from autopersona.catalog import CatalogError
from autopersona.store.warehouse import Warehouse
from autopersona.tags.spec import Catalogue, load_catalogue


def full_catalogue() -> Catalogue:
    """The catalogue with its pending files; skips while their features have not landed."""
    try:
        return load_catalogue(include_pending=True)
    except CatalogError as exc:
        missing = [e for e in exc.errors if "unknown feature or tag" in e.message]
        follow_on = [e for e in exc.errors if "prev() needs a feature" in e.message]
        if len(missing) + len(follow_on) != len(exc.errors):
            raise
        names = sorted({e.message.rsplit(" ", 1)[-1] for e in missing})
        pytest.skip(f"pending tags wait for features not in the dictionary yet: {names}")


def build_fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The clean fleet of the tag tests: 30 vehicles x 7 days (seed 3), simulated, ingested,
    its accounts linked into persons and featurised, once per test process (later calls
    reuse it).  Linkage matters to consent: a VIN is profiled when every person linked to it
    consents, and unlinked accounts of one person would each count as a person; so it comes
    before the feature build, which keeps consenting vehicles only.

    Returns (simulation folder, warehouse file with features).  Kept out of a
    ``conftest.py``: with ``--doctest-modules`` two test folders' ``conftest`` modules clash.
    """
    from autopersona.features.build import build_features
    from autopersona.identity.link import link_identities
    from autopersona.ingest.engine import ingest
    from autopersona.simulate import MessConfig, simulate
    from autopersona.store.warehouse import Warehouse

    base = tmp_path_factory.getbasetemp() / "tags-fleet"
    sim, db, done = base / "sim", base / "wh.duckdb", base / "done"
    if not done.exists():
        base.mkdir(parents=True, exist_ok=True)
        simulate(vehicles=30, days=7, seed=3, out=sim, mess=MessConfig.clean(), workers=1)
        with Warehouse(db) as wh:
            ingest([sim / "tables"], wh)
            link_identities(wh)  # first: the feature build keeps consenting persons only
            build_features(wh)
        done.touch()
    return sim, db


def consenting(db: Path, purpose: str, at: datetime | None = None) -> set[str]:
    """VINs of the fleet whose people consent to ``purpose`` at ``at`` (default now).

    Tags of a purpose are built for these only, so recovery is scored over them: the
    truth scoring measures accuracy among the people who are profiled.
    """
    from autopersona.privacy.consent import consented
    from autopersona.store.warehouse import Warehouse

    with Warehouse(db, read_only=True) as wh:
        vins = {str(r[0]) for r in wh.sql("SELECT vin FROM vehicles")}
        return consented(wh, purpose, "any", at, "vin") & vins


def consent_everyone(wh: Warehouse, vins: list[str], at: datetime) -> None:
    """An owner account per VIN (``O-<vin>``) that consents to every purpose since ``at``:
    synthetic warehouses of unit tests whose subject is not consent."""
    from autopersona.privacy.consent import PURPOSES

    acc = pd.DataFrame({"account_id": [f"O-{v}" for v in vins], "vin": vins})
    con = pd.DataFrame(
        [(a, p, "any", True, at, "test") for a in acc["account_id"] for p in PURPOSES],
        columns=["account_id", "purpose", "channel", "granted", "ts", "source"],
    )
    wh.con.register("_acc", acc)
    wh.con.register("_con", con)
    wh.con.execute(
        "INSERT INTO accounts (account_id, source, vin) SELECT account_id, 'owner', vin FROM _acc"
    )
    wh.con.execute(
        "INSERT INTO consents (account_id, purpose, channel, granted, ts, source) "
        "SELECT * FROM _con"
    )
    wh.con.unregister("_acc")
    wh.con.unregister("_con")


def read_truth(path: Path) -> pd.DataFrame:
    """A simulator truth file indexed by VIN as the warehouse names vehicles.

    With pseudonymisation on (the default) the warehouse holds keyed-HMAC pseudonyms: the
    truth's VINs are pseudonymised with the same key, as a scoring harness holding the key
    does (the warehouse itself never sees a clear VIN).
    """
    from autopersona.privacy.pseudo import live_pseudonyms

    df = pd.read_parquet(path)
    ps = live_pseudonyms()
    if ps is not None:
        df["vin"] = [ps(str(v)) for v in df["vin"]]
    return df.set_index("vin")
