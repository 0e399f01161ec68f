"""The feature build honours consent: rows, values and the fleet-fitted models.

One small simulated fleet (6 vehicles x 8 days from Monday 2026-01-05, so two ISO weeks) is
ingested once, with pseudonymisation on as in production; tests work on copies.  One of its
vehicles is made non-consenting by removing every consent decision of its accounts (opt-in:
no decision, no consent).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import autopersona.features.runner as runner
from autopersona.catalog import CatalogError
from autopersona.features.build import STEPS, build_features
from autopersona.features.consent import keep_consented
from autopersona.features.dictionary import (
    DomainDictionary,
    FeatureSpec,
    all_domains,
    domain_purposes,
    feature_dictionary,
    load_domain,
)
from autopersona.features.mobility_build import HMM_FEATURES, consenting_vehicles
from autopersona.features.purpose import fit_purpose_model
from autopersona.ingest.engine import ingest
from autopersona.privacy.consent import PURPOSES, consented, record_consent
from autopersona.simulate import simulate
from autopersona.store.warehouse import Warehouse
from autopersona.tags.spec import load_catalogue

FLEET = {"vehicles": 6, "days": 8, "seed": 21}
VIN_DOMAINS = ["driving", "cabin", "service", "charging"]


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("consent_fleet")
    simulate(out=out, workers=1, **FLEET)  # type: ignore[arg-type]
    db = out / "wh.duckdb"
    with Warehouse(db) as wh:
        ingest([out / "tables"], wh, keep_going=False)
    return db


def _copy(db: Path, to: Path) -> Warehouse:
    shutil.copy(db, to)
    return Warehouse(to)


def _accounts_of(wh: Warehouse, vin: str) -> list[str]:
    return [r[0] for r in wh.sql("SELECT account_id FROM accounts WHERE vin = ?", [vin])]


def _silence(wh: Warehouse, vin: str) -> None:
    """Make ``vin`` non-consenting: no decision by any of its accounts."""
    for acc in _accounts_of(wh, vin):
        wh.con.execute("DELETE FROM consents WHERE account_id = ?", [acc])


def _rows(wh: Warehouse, table: str) -> pd.DataFrame:
    key = "customer_id" if table == "features_commerce" else "vin"
    return wh.frame(f"SELECT * EXCLUDE (computed_at) FROM {table} ORDER BY {key}, period_start")


class _Spy:
    """Records what the purpose HMM is fitted on."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[int]]] = []
        self._fit = fit_purpose_model

    def __call__(self, symbols: Any, lengths: list[int], **kw: Any) -> Any:
        self.calls.append((int(np.asarray(symbols).size), [int(v) for v in lengths]))
        return self._fit(symbols, lengths, **kw)


def _pick(wh: Warehouse) -> tuple[str, set[str]]:
    """A consenting vehicle with trips to silence, and the vehicles consenting after."""
    _, fit = consenting_vehicles(wh)
    assert len(fit) >= 3, "the fleet should have consenting vehicles"
    victim = sorted(fit)[0]
    return victim, fit - {victim}


def test_non_consenting_vehicle_changes_no_model_and_gets_no_rows(
    fleet_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _Spy()
    monkeypatch.setattr(runner, "fit_purpose_model", spy)
    # A: the vehicle silenced; B: the vehicle silenced and its motion perturbed (its trips
    # shifted by 3 hours and its fixes moved): nobody else's features may change.
    with _copy(fleet_db, tmp_path / "a.duckdb") as wh:
        victim, others = _pick(wh)
        _silence(wh, victim)
        assert victim not in consented(wh, "analytics", entity="vin")
        build_features(wh, full=True)
        a = {d: _rows(wh, f"features_{d}") for d in [*STEPS, "mobility"]}
        a_trips = wh.frame("SELECT * FROM mobility_trips ORDER BY vin, started_at")
        a_locs = wh.sql("SELECT count(*) FROM mobility_locations WHERE vin = ?", [victim])[0][0]
        n_victim = wh.sql("SELECT count(*) FROM motion WHERE vin = ?", [victim])[0][0]
    with _copy(fleet_db, tmp_path / "b.duckdb") as wh:
        _silence(wh, victim)
        wh.con.execute(
            "UPDATE motion SET ts = ts + INTERVAL 3 HOUR, lat = lat + 0.01, "
            "accel_long_mps2 = accel_long_mps2 * 3 WHERE vin = ?",
            [victim],
        )
        build_features(wh, full=True)
        b = {d: _rows(wh, f"features_{d}") for d in [*STEPS, "mobility"]}
        b_trips = wh.frame("SELECT * FROM mobility_trips ORDER BY vin, started_at")
    assert n_victim > 1000
    for d in ("driving", "cabin", "service", "charging", "mobility"):
        assert victim not in set(a[d]["vin"]), d  # no feature rows
        pd.testing.assert_frame_equal(a[d], b[d], check_dtype=False)  # nothing else moved
    assert victim not in set(a_trips["vin"]) and a_locs == 0  # no state either
    pd.testing.assert_frame_equal(a_trips, b_trips)
    assert set(a["mobility"]["vin"]) <= others | {victim}
    # the HMM saw only the consenting vehicles' trips
    n_fit = int(a_trips[a_trips["vin"].isin(others)].shape[0])
    assert spy.calls and all(n == n_fit for n, _ in spy.calls), (spy.calls, n_fit)
    assert all(len(lengths) == len(others) for _, lengths in spy.calls)
    assert a["mobility"][list(HMM_FEATURES)].notna().any().all()


def test_consenting_vehicle_does_shape_the_model(fleet_db: Path, tmp_path: Path) -> None:
    """The control of the test above: the same perturbation of a *consenting* vehicle moves
    the fitted purpose model, hence other vehicles' trip purpose confidences."""
    with _copy(fleet_db, tmp_path / "a.duckdb") as wh:
        victim, _others = _pick(wh)
        build_features(wh, full=True, only=["mobility"])
        a = wh.frame(
            "SELECT * FROM mobility_trips WHERE vin <> ? ORDER BY vin, started_at", [victim]
        )
    with _copy(fleet_db, tmp_path / "b.duckdb") as wh:
        wh.con.execute("DELETE FROM motion WHERE vin = ?", [victim])
        build_features(wh, full=True, only=["mobility"])
        b = wh.frame(
            "SELECT * FROM mobility_trips WHERE vin <> ? ORDER BY vin, started_at", [victim]
        )
    assert len(a) == len(b)
    assert not np.allclose(a["purpose_confidence"], b["purpose_confidence"])


def test_withdrawal_takes_effect_at_the_next_build(fleet_db: Path, tmp_path: Path) -> None:
    with _copy(fleet_db, tmp_path / "w.duckdb") as wh:
        victim, _ = _pick(wh)
        first = datetime(2026, 2, 1, tzinfo=UTC)
        build_features(wh, full=True, now=first)
        before = {d: _rows(wh, f"features_{d}") for d in [*VIN_DOMAINS, "mobility"]}
        assert all(victim in set(df["vin"]) for df in before.values())
        # the owner withdraws every purpose on every account
        when = datetime(2026, 2, 2, tzinfo=UTC)
        for acc in _accounts_of(wh, victim):
            for p in PURPOSES:
                record_consent(wh, acc, p, "any", False, when)
        rep = build_features(wh, now=datetime(2026, 2, 3, tzinfo=UTC))  # incremental
        assert rep.since is not None
        for d in [*VIN_DOMAINS, "mobility"]:
            after = _rows(wh, f"features_{d}")
            # an incremental build recomputes from the latest stored period on
            recomputed = after["period_start"] >= before[d]["period_start"].max()
            assert recomputed.any() and victim not in set(after.loc[recomputed, "vin"]), d
            # the earlier periods stay as stored (erasure removes them); the others' rows
            # are untouched (mobility's are refitted: the purpose HMM lost a vehicle, and
            # the incremental build starts from the stored locations)
            earlier = before[d][before[d]["period_start"] < before[d]["period_start"].max()]
            assert victim in set(earlier["vin"]), d
            if d == "mobility":
                continue
            pd.testing.assert_frame_equal(
                after[after["vin"] != victim].reset_index(drop=True),
                before[d][before[d]["vin"] != victim].reset_index(drop=True),
                check_dtype=False,
            )
        # a full rebuild at a later time does not bring the withdrawn vehicle back
        build_features(wh, full=True, now=datetime(2026, 3, 1, tzinfo=UTC))
        for d in [*VIN_DOMAINS, "mobility"]:
            assert victim not in set(_rows(wh, f"features_{d}")["vin"]), d


def test_consent_counts_as_of_the_period(fleet_db: Path, tmp_path: Path) -> None:
    """A grant after a period's end does not open that period's data."""
    with _copy(fleet_db, tmp_path / "w.duckdb") as wh:
        victim, _ = _pick(wh)
        _silence(wh, victim)
        for acc in _accounts_of(wh, victim):
            record_consent(wh, acc, "analytics", "any", True, datetime(2026, 1, 12, 12, tzinfo=UTC))
        build_features(
            wh, full=True, only=["driving", "mobility"], now=datetime(2026, 2, 1, tzinfo=UTC)
        )
        df = _rows(wh, "features_driving")
        mob = _rows(wh, "features_mobility")
        trips = wh.frame("SELECT vin, iso_year, iso_week FROM mobility_trips")
    weeks = sorted(set(df.loc[df["vin"] == victim, "period_start"]))
    assert weeks == [pd.Timestamp("2026-01-12")]  # the week of the grant, not the one before
    # mobility too, and its trip state keeps only the consented weeks' trips
    assert sorted(set(mob.loc[mob["vin"] == victim, "period_start"])) == weeks
    mine = trips[trips["vin"] == victim]
    assert len(mine) and set(zip(mine["iso_year"], mine["iso_week"], strict=True)) == {(2026, 3)}
    assert trips["vin"].nunique() > 1  # other vehicles keep every week's trips


# ----------------------------------------------------------------------------- declarations
def test_every_domain_declares_purposes_and_features_inherit_them() -> None:
    doms = all_domains()
    assert set(doms) == {*STEPS, "mobility", "churn", "sentiment"}
    assert all(d.purposes and set(d.purposes) <= set(PURPOSES) for d in doms.values())
    fd = feature_dictionary()
    assert fd["commute_share"].purposes == domain_purposes()["mobility"]
    assert all(f.purposes for f in fd.values())


def test_a_bad_purpose_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text(
        "domain: charging\nentity: vin\ntable: features_charging\n"
        "purposes: [analytics, astrology]\ndescription: x\nfeatures:\n"
        "  - {name: a, unit: count, sources: [motion], definition: d, purposes: [ubi, ubi]}\n"
    )
    with pytest.raises(CatalogError) as e:
        load_domain(p)
    msgs = [str(i) for i in e.value.errors]
    assert any(m.startswith(f"{p}:4: purposes -> 1") for m in msgs), msgs
    assert any(m.startswith(f"{p}:7: features -> 0 -> purposes") for m in msgs), msgs
    p.write_text(
        "domain: charging\nentity: vin\ntable: features_charging\ndescription: x\nfeatures: []\n"
    )
    with pytest.raises(CatalogError, match="purposes"):
        load_domain(p)


def test_a_tag_reading_a_feature_not_serving_its_purpose_is_warned(tmp_path: Path) -> None:
    p = tmp_path / "partner.yaml"
    p.write_text(
        "purpose: partner_sharing\n"
        "tags:\n"
        "  - id: l4_partner_km\n"
        "    tier: L4\n"
        "    category: partner\n"
        "    values: [low, high]\n"
        "    definition: Mileage band shared with a partner.\n"
        "    method: rule\n"
        "    inputs: [distance_km]\n"
        "    sources: [motion]\n"
        "    cadence: weekly\n"
        "    rule:\n"
        "      cases:\n"
        "        - {value: high, when: 'distance_km > 100'}\n"
        "        - {value: low, when: 'distance_km >= 0'}\n"
    )
    assert load_catalogue().warnings == []  # the built-in tags read only features serving them
    cat = load_catalogue(extra_files=[p])
    msgs = [str(i) for i in cat.warnings]
    hits = [m for m in msgs if "l4_partner_km" in m and "serves only" in m]
    assert len(hits) == 1 and hits[0].startswith(f"{p}:3: "), msgs
    assert "features/dictionary/driving.yaml" in hits[0]
    # the CLI prints the warning (file:line) and still validates
    from typer.testing import CliRunner

    from autopersona.cli import app

    res = CliRunner().invoke(app, ["tags", "validate", str(p)])
    assert res.exit_code == 0, res.output
    assert f"warning: {p}:3: " in res.output and "1 warning" in res.output


def test_a_narrowed_feature_is_null_for_other_purposes(
    wh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feature serving ``ubi`` only is null for a vehicle consenting to analytics only."""
    import autopersona.features.consent as fc

    dom = DomainDictionary(
        domain="driving",
        entity="vin",
        table="features_driving",
        description="d",
        purposes=("analytics", "ubi"),
        features=[
            FeatureSpec(
                name="samples",
                unit="count",
                definition="d",
                sources=["motion"],
                purposes=("analytics", "ubi"),
            ),
            FeatureSpec(
                name="night_share",
                unit="ratio",
                definition="d",
                sources=["motion"],
                purposes=("ubi",),
            ),
        ],
    )
    monkeypatch.setattr(fc, "all_domains", lambda: {"driving": dom})
    monkeypatch.setattr(
        fc, "feature_purposes", lambda _d: {f.name: f.purposes for f in dom.features}
    )
    wh.con.execute(
        "INSERT INTO accounts (account_id, source, vin) VALUES "
        "('A1', 'owner', 'V1'), ('A2', 'owner', 'V2'), ('A3', 'owner', 'V3')"
    )
    t = datetime(2026, 1, 1, tzinfo=UTC)
    record_consent(wh, "A1", "analytics", "any", True, t)
    record_consent(wh, "A2", "ubi", "any", True, t)
    record_consent(wh, "A3", "marketing", "any", True, t)
    df = pd.DataFrame(
        {
            "vin": ["V1", "V2", "V3"],
            "period_start": [pd.Timestamp("2026-01-05")] * 3,
            "samples": [1, 2, 3],
            "night_share": [0.1, 0.2, 0.3],
        }
    )
    out = keep_consented(wh, df, "driving", "week").set_index("vin")
    assert list(out.index) == ["V1", "V2"]  # V3 consents to none of the domain's purposes
    assert out["night_share"].isna().tolist() == [True, False]
    assert out["night_share"].tolist()[1] == 0.2
    assert out["samples"].tolist() == [1, 2]
