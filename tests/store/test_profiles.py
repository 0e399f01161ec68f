"""The profile store on both backends: history, as-of reads, due-only refresh, CLI.

Every test runs on DuckDB and on PostgreSQL (skipped with the reason when PostgreSQL cannot
be had).  The warehouse is a small hand-made one: three vehicles with two weeks of features.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pgcheck import PG_URL, open_together, pg_unavailable
from typer.testing import CliRunner

from autopersona.cli import app
from autopersona.privacy.consent import record_consent
from autopersona.store.profiles import (
    PostgresProfileStore,
    ProfileStore,
    due_tags,
    open_store,
    parse_as_of,
    refresh,
)
from autopersona.store.warehouse import Warehouse
from autopersona.tags.build import BUILDABLE
from autopersona.tags.spec import Catalogue, builtin_dir, load_catalogue

T0 = datetime(2026, 1, 19, tzinfo=UTC)  # Monday after the two feature weeks
WEEK1 = datetime(2026, 1, 5)
WEEK2 = datetime(2026, 1, 12)


def _rows(
    value: str, when: datetime, score: float | None = None, entity: str = "V1"
) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "entity_type": "vin",
                "entity": entity,
                "tag_id": "l2_usage_intensity",
                "value": value,
                "score": score,
                "reasons": json.dumps({"case": 1, "inputs": {"distance_km": 1.0}}),
                "as_of": when,
                "catalogue_version": "c1",
                "model_version": None,
            }
        ]
    )


def _day(d: int) -> datetime:
    return datetime(2026, 1, d, tzinfo=UTC)


class TestHistory:
    def test_new_value_closes_the_previous_one(self, store: ProfileStore) -> None:
        assert store.write(_rows("low", _day(5))).opened == 1
        assert store.write(_rows("low", _day(12))).confirmed == 1
        rep = store.write(_rows("high", _day(19)))
        assert (rep.opened, rep.closed) == (1, 1)
        hist = store.history("V1")
        assert hist["value"].tolist() == ["low", "high"]
        assert hist["valid_from"].tolist() == [pd.Timestamp(_day(5)), pd.Timestamp(_day(19))]
        assert hist["valid_to"].iloc[0] == pd.Timestamp(_day(19)) and pd.isna(
            hist["valid_to"].iloc[1]
        )
        assert hist["confirmed_at"].iloc[0] == pd.Timestamp(_day(12))

    def test_as_of_returns_the_tags_as_they_were(self, store: ProfileStore) -> None:
        store.write(_rows("low", _day(5)))
        store.write(_rows("mid", _day(12)))
        store.write(_rows("high", _day(19)))
        at = {
            d: store.profile_show("V1", as_of=_day(d))["value"].tolist()
            for d in (4, 5, 11, 12, 18, 19, 30)
        }
        assert at == {
            4: [],
            5: ["low"],
            11: ["low"],
            12: ["mid"],
            18: ["mid"],
            19: ["high"],
            30: ["high"],
        }
        assert store.profile_show("V1")["value"].tolist() == ["high"]
        shown = store.profile_show("V1", as_of=_day(13)).iloc[0]
        assert shown["as_of"] == pd.Timestamp(_day(12))
        assert json.loads(shown["reasons"]) == {"case": 1, "inputs": {"distance_km": 1.0}}

    def test_score_change_is_a_new_version(self, store: ProfileStore) -> None:
        store.write(_rows("high", _day(5), score=3000.0))
        assert store.write(_rows("high", _day(12), score=3000.0)).confirmed == 1
        assert store.write(_rows("high", _day(19), score=3500.0)).opened == 1
        assert store.profile_show("V1", as_of=_day(13))["score"].tolist() == [3000.0]
        assert store.profile_show("V1")["score"].tolist() == [3500.0]

    def test_same_time_rewrite_replaces_and_older_is_refused(self, store: ProfileStore) -> None:
        store.write(_rows("low", _day(5)))
        store.write(_rows("mid", _day(12)))
        store.write(_rows("high", _day(12)))  # same as_of: no zero-length version kept
        hist = store.history("V1")
        assert hist["value"].tolist() == ["low", "high"]
        with pytest.raises(ValueError, match="older than the current version"):
            store.write(_rows("low", _day(6)))
        with pytest.raises(ValueError, match="duplicate"):
            store.write(pd.concat([_rows("low", _day(20)), _rows("mid", _day(20))]))

    def test_entities_are_independent(self, store: ProfileStore) -> None:
        store.write(pd.concat([_rows("low", _day(5)), _rows("high", _day(5), entity="V2")]))
        store.write(_rows("mid", _day(12), entity="V2"))
        assert store.profile_show("V1")["value"].tolist() == ["low"]
        assert store.profile_show("V2")["value"].tolist() == ["mid"]
        assert store.count() == 3


# ----------------------------------------------------------------------------- refresh
CONSENTED_SINCE = datetime(2025, 1, 1, tzinfo=UTC)


def _consent_everyone(w: Warehouse, vins: list[str]) -> None:
    """An owner account ``O-<vin>`` per VIN, consenting to every purpose since 2025."""
    from autopersona.privacy.consent import PURPOSES, record_consent

    for v in vins:
        w.con.execute(
            "INSERT INTO accounts (account_id, source, vin) VALUES (?, 'owner', ?)", [f"O-{v}", v]
        )
        for purpose in PURPOSES:
            record_consent(w, f"O-{v}", purpose, "any", True, CONSENTED_SINCE)


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    """Three vehicles whose owners consent to every purpose; driving and cabin features for
    two weeks (V1's mileage rises)."""
    with Warehouse(tmp_path / "wh.duckdb") as w:
        w.con.execute(
            "INSERT INTO vehicles (vin, msrp_cny, energy_type, region) VALUES "
            "('V1', 450000, 'BEV', 'Shanghai'), ('V2', 200000, 'PHEV', 'Beijing'), "
            "('V3', 90000, 'ICE', NULL)"
        )
        _consent_everyone(w, ["V1", "V2", "V3"])
        drv = pd.DataFrame(
            {
                "vin": ["V1", "V2", "V1", "V2"],
                "period_start": [WEEK1, WEEK1, WEEK2, WEEK2],
                "period": "week",
                "distance_km": [100.0, 400.0, 700.0, 400.0],
                "night_share": [0.1, 0.5, 0.3, 0.5],
            }
        )
        cab = pd.DataFrame(
            {
                "vin": ["V1", "V3"],
                "period_start": [WEEK2, WEEK2],
                "period": "week",
                "top_genre": ["news", "rock"],
            }
        )
        for name, df in (("features_driving", drv), ("features_cabin", cab)):
            w.con.register("_df", df)
            w.con.execute(f"CREATE TABLE {name} AS SELECT * FROM _df")
            w.con.unregister("_df")
        yield w


NIGHT_DRIVER = """purpose: analytics
tags:
  - id: night_driver
    tier: L2
    category: driving time
    values: ["yes", "no"]
    definition: Over a fifth of the moving time at night.
    method: rule
    inputs: [night_share]
    sources: [motion, vehicles]
    cadence: weekly
    rule:
      cases:
        - {value: "yes", when: "night_share > 0.2"}
      else: "no"
"""


@pytest.fixture
def cat_dir(tmp_path: Path) -> Path:
    """The built-in catalogue plus a weekly tag added as YAML."""
    folder = tmp_path / "catalogue"
    shutil.copytree(builtin_dir(), folder)
    (folder / "night.yaml").write_text(NIGHT_DRIVER, encoding="utf-8")
    return folder


@pytest.fixture
def cat(cat_dir: Path) -> Catalogue:
    return load_catalogue(cat_dir)


def _buildable(cat: Catalogue) -> list[str]:
    return sorted(t for t, s in cat.tags.items() if s.method in BUILDABLE)


def test_refresh_only_recomputes_due_tags(
    wh: Warehouse, store: ProfileStore, cat: Catalogue
) -> None:
    rep = refresh(wh, store, cat, as_of=T0)
    assert rep.refreshed == _buildable(cat) and rep.skipped == []
    assert rep.assignments > 0
    by_cadence = {
        c: {t for t in rep.refreshed if cat.tags[t].cadence == c}
        for c in ("static", "weekly", "monthly")
    }

    assert refresh(wh, store, cat, as_of=T0 + timedelta(days=1)).refreshed == []
    week = refresh(wh, store, cat, as_of=T0 + timedelta(days=7))
    assert "night_driver" in by_cadence["weekly"]
    assert set(week.refreshed) == by_cadence["weekly"]
    assert set(week.skipped) == set(_buildable(cat)) - by_cadence["weekly"]
    month = refresh(wh, store, cat, as_of=T0 + timedelta(days=30))
    assert set(month.refreshed) == by_cadence["weekly"] | by_cadence["monthly"]
    assert by_cadence["static"].isdisjoint(month.refreshed)
    # due_only=False recomputes everything
    assert refresh(
        wh, store, cat, as_of=T0 + timedelta(days=31), due_only=False
    ).refreshed == _buildable(cat)


def test_purpose_tag_needs_consent_and_a_withdrawal_closes_it(
    wh: Warehouse, store: ProfileStore, tmp_path: Path
) -> None:
    """A tag declaring ``purpose: ubi`` is built only for vehicles whose people consent to UBI
    processing; withdrawing that consent closes the value at the next refresh (history kept)."""
    folder = tmp_path / "purpose-cat"
    folder.mkdir()
    (folder / "ubi.yaml").write_text(
        NIGHT_DRIVER.replace("cadence: weekly", "cadence: weekly\n    purpose: ubi"),
        encoding="utf-8",
    )
    cat = load_catalogue(folder)
    assert cat.tags["night_driver"].purpose == "ubi"
    wh.con.execute(
        "INSERT INTO accounts (account_id, source, vin) VALUES "
        "('A1', 'owner', 'V1'), ('A2', 'owner', 'V2')"
    )
    granted = T0 - timedelta(days=30)
    wh.con.execute(
        "INSERT INTO consents (account_id, purpose, channel, granted, ts) VALUES "
        "('A1', 'ubi', 'any', true, ?), ('A2', 'ubi', 'any', true, ?), "
        "('A1', 'marketing', 'any', true, ?)",
        [granted, granted, granted],
    )
    refresh(wh, store, cat, as_of=T0, due_only=False)
    assert set(store.profile_show("V1")["tag_id"]) == {"night_driver"}
    assert set(store.profile_show("V2")["tag_id"]) == {"night_driver"}
    # A2 withdraws UBI consent the day after
    wh.con.execute(
        "INSERT INTO consents (account_id, purpose, channel, granted, ts) VALUES "
        "('A2', 'ubi', 'any', false, ?)",
        [T0 + timedelta(days=1)],
    )
    later = T0 + timedelta(days=2)
    rep = refresh(wh, store, cat, as_of=later, due_only=False)
    assert store.profile_show("V2").empty
    assert "no ubi consent" in rep.notes["night_driver"]
    assert store.profile_show("V1")["value"].tolist() == ["yes"]
    # history: as of T0 the value was there
    assert store.profile_show("V2", as_of=T0 + timedelta(hours=1))["value"].tolist() == ["yes"]


def test_withdrawing_one_purpose_ends_only_that_purposes_tags(
    wh: Warehouse, store: ProfileStore, tmp_path: Path
) -> None:
    """Withdrawing analytics consent: the next refresh gives the person no analytics tag (the
    values they had are closed) and leaves their UBI tag; withdrawing UBI consent ends only
    the UBI tag; other people are untouched.  The UBI tag is the night-driver rule declared
    with ``purpose: ubi`` next to the built-in catalogue."""
    folder = tmp_path / "cat"
    shutil.copytree(builtin_dir(), folder)
    (folder / "ubi.yaml").write_text(
        NIGHT_DRIVER.replace("night_driver", "night_ubi").replace(
            "purpose: analytics", "purpose: ubi"
        ),
        encoding="utf-8",
    )
    cat = load_catalogue(folder)
    by_purpose = {t: s.purpose for t, s in cat.tags.items()}
    assert by_purpose["night_ubi"] == "ubi" and by_purpose["l1_vehicle_tier"] == "analytics"

    def purposes(vin: str) -> set[str | None]:
        return {by_purpose[t] for t in store.profile_show(vin)["tag_id"]}

    refresh(wh, store, cat, as_of=T0, due_only=False)
    assert purposes("V1") == purposes("V2") == {"analytics", "ubi"}
    v2 = store.profile_show("V2")[["tag_id", "value"]]
    # V1's owner withdraws analytics
    record_consent(wh, "O-V1", "analytics", "any", False, T0 + timedelta(days=1))
    rep = refresh(wh, store, cat, as_of=T0 + timedelta(days=2), due_only=False)
    assert purposes("V1") == {"ubi"}
    assert store.profile_show("V1")["tag_id"].tolist() == ["night_ubi"]
    assert "no analytics consent" in rep.notes["l1_vehicle_tier"]
    assert store.profile_show("V2")[["tag_id", "value"]].equals(v2)
    # V2's owner withdraws UBI: only the UBI tag goes
    record_consent(wh, "O-V2", "ubi", "any", False, T0 + timedelta(days=3))
    refresh(wh, store, cat, as_of=T0 + timedelta(days=4), due_only=False)
    assert purposes("V2") == {"analytics"}
    assert (
        store.profile_show("V2")
        .query("tag_id != 'night_ubi'")[["tag_id", "value"]]
        .reset_index(drop=True)
        .equals(v2.query("tag_id != 'night_ubi'").reset_index(drop=True))
    )
    assert purposes("V1") == {"ubi"}
    # history is kept: as of T0 V1 had its analytics tags
    assert "analytics" in {
        by_purpose[t] for t in store.profile_show("V1", as_of=T0 + timedelta(hours=1))["tag_id"]
    }


def test_a_withdrawal_closes_values_of_tags_that_are_not_due(
    wh: Warehouse, store: ProfileStore
) -> None:
    """A static tag is never due again, yet a withdrawal ends its value at the next refresh."""
    cat = load_catalogue()
    refresh(wh, store, cat, as_of=T0)
    assert store.profile_show("V3").set_index("tag_id").loc["l1_vehicle_tier", "value"] == (
        "economy"
    )
    record_consent(wh, "O-V3", "analytics", "any", False, T0 + timedelta(hours=1))
    rep = refresh(wh, store, cat, as_of=T0 + timedelta(hours=2))
    assert rep.refreshed == [] and cat.tags["l1_vehicle_tier"].cadence == "static"
    assert store.profile_show("V3").empty
    assert "no analytics consent" in rep.notes["l1_vehicle_tier"]
    assert not store.profile_show("V1").empty  # the others keep theirs
    assert "l1_vehicle_tier" in set(store.profile_show("V3", as_of=T0)["tag_id"])


def test_redefined_tag_is_due_again(wh: Warehouse, store: ProfileStore, tmp_path: Path) -> None:
    refresh(wh, store, load_catalogue(), as_of=T0)
    folder = tmp_path / "cat"
    shutil.copytree(builtin_dir(), folder)
    p = folder / "l1_basic.yaml"
    p.write_text(p.read_text().replace('"msrp_cny > 400000"', '"msrp_cny > 500000"'))
    cat2 = load_catalogue(folder)
    assert due_tags(cat2, store, T0 + timedelta(hours=1)) == ["l1_vehicle_tier"]
    refresh(wh, store, cat2, as_of=T0 + timedelta(hours=1))
    assert store.profile_show("V1").set_index("tag_id").loc["l1_vehicle_tier", "value"] == "mid"
    old = store.profile_show("V1", as_of=T0).set_index("tag_id")
    assert old.loc["l1_vehicle_tier", "value"] == "luxury"
    assert old.loc["l1_vehicle_tier", "catalogue_version"] != cat2.version


def test_profile_as_of_after_features_change(
    wh: Warehouse, store: ProfileStore, cat: Catalogue
) -> None:
    refresh(wh, store, cat, as_of=datetime(2026, 1, 12, 12, tzinfo=UTC))  # week 2 not complete
    refresh(wh, store, cat, as_of=datetime(2026, 2, 13, tzinfo=UTC))  # sees week 2, monthly due
    before = store.profile_show("V1", as_of=datetime(2026, 1, 20, tzinfo=UTC)).set_index("tag_id")
    now = store.profile_show("V1").set_index("tag_id")
    assert before.loc["l2_usage_intensity", "value"] == "low"  # 100 km a week
    assert now.loc["l2_usage_intensity", "value"] == "high"  # 700 km a week -> 3000 a month
    assert json.loads(now.loc["l2_usage_intensity", "reasons"])["inputs"] == {"distance_km": 700.0}
    assert now.loc["l1_vehicle_tier", "value"] == "luxury"
    assert now.loc["l1_main_activity_area", "value"] == "Shanghai"
    assert before.loc["night_driver", "value"] == "no" and now.loc["night_driver", "value"] == "yes"
    assert len(store.history("V1", "night_driver")) == 2
    v3 = store.profile_show("V3").set_index("tag_id")
    assert v3.loc["l1_vehicle_tier", "value"] == "economy"
    assert "l2_usage_intensity" not in v3.index  # no driving features: no assignment
    assert "l1_main_activity_area" not in v3.index  # no region


# ----------------------------------------------------------------------------- misc, CLI
def test_parse_as_of() -> None:
    assert parse_as_of("2026-01-31") == datetime(2026, 2, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="not an ISO"):
        parse_as_of("31/01/2026")


def test_open_store_kinds(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "p.duckdb")) as ps:
        assert type(ps).__name__ == "DuckDBProfileStore"
    with pytest.raises(ValueError, match="invalid schema"):
        open_store(":memory:", schema="x; DROP TABLE y")


def _store_url(kind: str, tmp_path: Path) -> tuple[str, str | None]:
    if kind == "duckdb":
        return str(tmp_path / "profiles.duckdb"), None
    reason = pg_unavailable()
    if reason:
        pytest.skip(f"PostgreSQL not available: {reason}")
    schema = f"ap_cli_{datetime.now().strftime('%H%M%S%f')}"
    return f"{PG_URL}?schema={schema}", schema


@pytest.mark.parametrize("kind", ["duckdb", "postgresql"])
def test_cli_refresh_and_show(kind: str, wh: Warehouse, tmp_path: Path, cat_dir: Path) -> None:
    runner = CliRunner()
    url, schema = _store_url(kind, tmp_path)
    wh_path = wh.path
    wh.close()
    try:
        res = runner.invoke(
            app,
            [
                "profile",
                "refresh",
                "--store",
                url,
                "--warehouse",
                wh_path,
                "--as-of",
                "2026-01-19",
                "--catalogue",
                str(cat_dir),
            ],
        )
        assert res.exit_code == 0, res.output
        assert "refreshed" in res.output
        res = runner.invoke(app, ["profile", "show", "V1", "--store", url, "--json"])
        assert res.exit_code == 0, res.output
        tags = {r["tag_id"]: r for r in json.loads(res.output)}
        assert tags["l1_vehicle_tier"]["value"] == "luxury"
        assert tags["l1_vehicle_tier"]["reasons"]["case"] == 1
        assert tags["l1_vehicle_tier"]["valid_to"] is None
        assert tags["l1_vehicle_tier"]["valid_from"].startswith("2026-01-20T00:00:00")
        res = runner.invoke(app, ["profile", "show", "V1", "--store", url, "--as-of", "2026-01-01"])
        assert res.exit_code == 0 and "no tags for V1" in res.output
        res = runner.invoke(app, ["profile", "show", "V1", "--store", url])
        assert res.exit_code == 0 and "night_driver" in res.output
        res = runner.invoke(app, ["profile", "show", "V1", "--store", url, "--as-of", "soon"])
        assert res.exit_code == 2
        args = ["profile", "refresh", "--store", url, "--warehouse", wh_path, "--all"]
        res = runner.invoke(app, [*args, "--as-of", "2026-01-01", "--catalogue", str(cat_dir)])
        assert res.exit_code == 2 and "older than the current version" in res.output
    finally:
        if schema:
            with PostgresProfileStore(PG_URL, schema=schema) as pg:
                assert isinstance(pg, PostgresProfileStore)
                pg.drop_schema()


# ----------------------------------------------------------------------------- cluster, model
def _learnable_warehouse(path: Path) -> Warehouse:
    """120 vehicles: three driving styles (weekly driving features) and a latent aftermarket
    propensity behind spend per visit and the rate of accessory visits (the label)."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = 120
    vins = [f"W{i:03d}" for i in range(n)]
    level = np.repeat([0.1, 0.45, 0.8], n // 3)
    p = rng.uniform(0, 1, n)
    w = Warehouse(path)
    veh = pd.DataFrame({"vin": vins, "msrp_cny": 200000.0, "energy_type": "ICE"})
    drv = pd.DataFrame(
        [
            {
                "vin": v,
                "period_start": wk,
                "period": "week",
                "distance_km": 300.0,
                "aggressiveness_index": 100 * c + rng.normal(0, 3),
                "harsh_accel_per_100km": 60 * c + rng.normal(0, 2),
                "harsh_brake_per_100km": 50 * c + rng.normal(0, 2),
                "harsh_corner_per_100km": 20 * c + rng.normal(0, 1),
                "speed_volatility": 0.5,
            }
            for v, c in zip(vins, level, strict=True)
            for wk in (WEEK1, WEEK2)
        ]
    )
    mob = pd.DataFrame(  # the driving-style clusters read jerk from the mobility pass
        [
            {
                "vin": v,
                "period_start": wk,
                "period": "week",
                "jerk_abs_mean_mps3": 0.08 + 0.1 * c + rng.normal(0, 0.004),
                "high_jerk_share": 0.05 * c + rng.normal(0, 0.002),
            }
            for v, c in zip(vins, level, strict=True)
            for wk in (WEEK1, WEEK2)
        ]
    )
    svc = pd.DataFrame(
        [
            {
                "vin": v,
                "period_start": wk,
                "period": "week",
                "spend_per_visit_cny": 400 + 1200 * q + rng.normal(0, 100),
                "visits_to_date": 5.0,
                "vehicle_age_years": 3.0,
            }
            for v, q in zip(vins, p, strict=True)
            for wk in pd.date_range("2024-01-01", "2026-01-12", freq="28D")
        ]
    )
    recs = []
    end = pd.Timestamp("2026-01-19")
    for v, q in zip(vins, p, strict=True):
        t = pd.Timestamp("2024-01-01")
        while (t := t + pd.Timedelta(days=float(rng.exponential(365 / (0.2 + 10 * q))))) < end:
            recs.append(
                {"service_id": f"S{len(recs)}", "vin": v, "ts": t, "visit_type": "accessory"}
            )
    for name, df in (
        ("_veh", veh),
        ("_d", drv),
        ("_m", mob),
        ("_s", svc),
        ("_r", pd.DataFrame(recs)),
    ):
        w.con.register(name, df)
    w.con.execute("INSERT INTO vehicles (vin, msrp_cny, energy_type) SELECT * FROM _veh")
    _consent_everyone(w, vins)
    w.con.execute("CREATE TABLE features_driving AS SELECT * FROM _d")
    w.con.execute("CREATE TABLE features_mobility AS SELECT * FROM _m")
    w.con.execute("CREATE TABLE features_service AS SELECT * FROM _s")
    w.con.execute(
        "INSERT INTO service_records (service_id, vin, ts, visit_type) "
        "SELECT service_id, vin, ts AT TIME ZONE 'UTC', visit_type FROM _r"
    )
    return w


def test_refresh_stores_cluster_and_model_tags(store: ProfileStore, tmp_path: Path) -> None:
    from autopersona.tags.model import list_models

    folder = tmp_path / "catalogue"
    shutil.copytree(builtin_dir(), folder)
    (folder / "offer.yaml").write_text(
        """purpose: marketing
tags:
  - id: calm_buyer
    tier: L4
    category: offer
    values: ["yes", "no"]
    definition: A cautious driver likely to buy aftermarket (reads a cluster and a model tag).
    method: rule
    inputs: [l2_driving_style, l4_aftermarket_propensity]
    sources: [motion, service_records]
    cadence: weekly
    rule:
      cases:
        - {value: "yes", when: "l2_driving_style == 'cautious' and l4_aftermarket_propensity != 'low'"}
      else: "no"
""",
        encoding="utf-8",
    )
    cat = load_catalogue(folder)
    tags = ["l2_driving_style", "l4_aftermarket_propensity"]
    with _learnable_warehouse(tmp_path / "learn.duckdb") as w:
        rep = refresh(w, store, cat, as_of=T0)
        # a rule tag reading the cluster and model tags is built after them
        yes = 0
        for v in [f"W{i:03d}" for i in range(0, 120, 3)]:
            got = store.profile_show(v).set_index("tag_id")["value"]
            want = got["l2_driving_style"] == "cautious" and got["l4_aftermarket_propensity"] in (
                "high",
                "mid",
            )
            assert got["calm_buyer"] == ("yes" if want else "no")
            yes += int(want)
        assert 0 < yes < 40
        assert "l2_driving_style" not in rep.notes and "l4_aftermarket_propensity" not in rep.notes
        shown = store.profile_show("W000").set_index("tag_id")
        assert shown.loc["l2_driving_style", "value"] == "cautious"
        assert store.profile_show("W119").set_index("tag_id").loc["l2_driving_style", "value"] == (
            "aggressive"
        )
        for t, prefix in zip(tags, ("cl-", "m-"), strict=True):
            assert str(shown.loc[t, "model_version"]).startswith(prefix)
        reasons = json.loads(shown.loc["l4_aftermarket_propensity", "reasons"])
        assert len(reasons["top_reasons"]) == 3
        assert reasons["model"] == shown.loc["l4_aftermarket_propensity", "model_version"]
        assert 0 <= shown.loc["l4_aftermarket_propensity", "score"] <= 1
        models = list_models(w)
        assert set(models["tag_id"]) >= set(tags)
        # a week later the weekly cluster tag is due, the monthly model tag is not
        week = refresh(w, store, cat, as_of=T0 + timedelta(days=7))
        assert "l2_driving_style" in week.refreshed
        assert "l4_aftermarket_propensity" in week.skipped
        assert (list_models(w)["method"] == "model").sum() == (models["method"] == "model").sum()


def test_processes_opening_a_fresh_postgres_store_together_all_start() -> None:
    """API workers (or batch jobs) opening one fresh PostgreSQL profile store at the same
    moment all start: ``CREATE … IF NOT EXISTS`` racing in the catalog used to fail all but
    one of them with a unique violation."""
    reason = pg_unavailable()
    if reason:
        pytest.skip(f"PostgreSQL not available: {reason}")
    for _ in range(3):
        schema, errors = open_together(
            lambda sc: PostgresProfileStore(PG_URL, schema=sc).close(), "ap_ps"
        )
        store = PostgresProfileStore(PG_URL, schema=schema)
        try:
            assert errors == []
            assert store.count() == 0 and store.last_runs() == {}
        finally:
            store.drop_schema()
            store.close()
