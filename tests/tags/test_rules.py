"""Rule and score tags built from features and master data.

One clean simulated fleet (30 vehicles x 7 days, seed 3) is simulated, ingested and
featurised once per session (``tagcheck.build_fleet``); only the scoring reads the
simulator's truth.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from tagcheck import build_fleet, consenting, full_catalogue, read_truth

from autopersona.privacy.consent import record_consent
from autopersona.store.warehouse import Warehouse
from autopersona.tags.rules import ASSIGNMENT_COLUMNS, build_rule_tags, evaluate_tag
from autopersona.tags.spec import builtin_dir, load_catalogue


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(simulation folder, warehouse file with features)."""
    return build_fleet(tmp_path_factory)


@pytest.fixture
def fleet_wh(fleet: tuple[Path, Path], tmp_path: Path) -> Warehouse:
    db = tmp_path / "wh.duckdb"
    shutil.copy(fleet[1], db)
    return Warehouse(db)


def test_l1_tier_and_energy_are_exact_on_clean_data(
    fleet: tuple[Path, Path], fleet_wh: Warehouse
) -> None:
    with fleet_wh as wh:
        out = build_rule_tags(wh, tags=["l1_vehicle_tier", "l1_energy_type"])
    truth = read_truth(fleet[0] / "truth" / "vehicles_truth.parquet")
    got = out.pivot(index="entity", columns="tag_id", values="value")
    # analytics tags: every vehicle whose people consent to analytics, and only those
    ok = consenting(fleet[1], "analytics")
    assert set(got.index) == ok and len(ok) >= 0.8 * len(truth)
    tier_acc = (got["l1_vehicle_tier"] == truth.loc[got.index, "tier"].astype(str)).mean()
    energy_acc = (got["l1_energy_type"] == truth.loc[got.index, "energy_type"].astype(str)).mean()
    assert tier_acc == 1.0
    assert energy_acc == 1.0


def test_assignments_have_reasons_and_versions(fleet_wh: Warehouse) -> None:
    as_of = datetime(2026, 1, 20, tzinfo=UTC)
    cat = full_catalogue()
    with fleet_wh as wh:
        out = build_rule_tags(wh, cat, as_of=as_of)
    assert list(out.columns) == ASSIGNMENT_COLUMNS
    assert (out["catalogue_version"] == cat.version).all()
    assert out["model_version"].isna().all()
    assert (out["as_of"] == pd.Timestamp(as_of)).all()
    assert not out.duplicated(["entity", "tag_id"]).any()
    for tid, vals in out.groupby("tag_id")["value"]:
        allowed = cat.tags[str(tid)].values
        if allowed is not None:
            assert set(vals) <= set(allowed), tid
    # every reason names the case that fired and the inputs it read
    r = out[out["tag_id"] == "l1_vehicle_tier"].iloc[0]
    reason = json.loads(r["reasons"])
    assert reason["case"] in (1, 2, 3) and "msrp_cny" in reason["inputs"]
    s = out[out["tag_id"] == "l2_usage_intensity"].iloc[0]
    reason = json.loads(s["reasons"])
    assert reason["score"] == "distance_km * 30 / 7" and "distance_km" in reason["inputs"]
    assert s["score"] == pytest.approx(reason["inputs"]["distance_km"] * 30 / 7)
    # customers get commerce tags; a tag reading a tag is computed after it
    assert {"lifecycle_stage", "cm_rfm_tier"} <= set(out["tag_id"])


def test_as_of_reads_only_earlier_feature_rows(fleet_wh: Warehouse) -> None:
    with fleet_wh as wh:
        before = build_rule_tags(
            wh, as_of=datetime(2020, 1, 1, tzinfo=UTC), tags=["l2_usage_intensity"]
        )
        later = build_rule_tags(
            wh, as_of=datetime(2026, 3, 1, tzinfo=UTC), tags=["l2_usage_intensity"]
        )
    assert before.empty and len(later) > 0


def test_unknown_or_unbuildable_tag(fleet_wh: Warehouse) -> None:
    with fleet_wh as wh:
        with pytest.raises(KeyError):
            build_rule_tags(wh, tags=["nope"])
        with pytest.raises(ValueError, match="cluster"):
            build_rule_tags(wh, tags=["l2_driving_style"])


def test_added_tag_is_built(fleet_wh: Warehouse, tmp_path: Path) -> None:
    folder = tmp_path / "catalogue"
    shutil.copytree(builtin_dir(), folder)
    (folder / "team.yaml").write_text(
        """purpose: analytics
tags:
  - id: premium_plugin
    tier: L1
    category: vehicle
    values: ["yes", "no"]
    definition: A plug-in vehicle of the luxury tier.
    method: rule
    inputs: [energy_type, l1_vehicle_tier]
    sources: [vehicles]
    cadence: static
    rule:
      cases:
        - {value: "yes", when: "energy_type in ['BEV', 'PHEV', 'EREV'] and l1_vehicle_tier == 'luxury'"}
      else: "no"
""",
        encoding="utf-8",
    )
    cat = load_catalogue(folder)
    with fleet_wh as wh:
        out = build_rule_tags(wh, cat, tags=["premium_plugin", "l1_vehicle_tier", "l1_energy_type"])
    got = out.pivot(index="entity", columns="tag_id", values="value")
    want = got["l1_energy_type"].isin(["BEV", "PHEV", "EREV"]) & (
        got["l1_vehicle_tier"] == "luxury"
    )
    assert (got["premium_plugin"] == want.map({True: "yes", False: "no"})).all()
    assert want.any() and (~want).any()


class TestEvaluateTag:
    def test_no_inputs_no_assignment_and_else(self) -> None:
        cat = full_catalogue()
        env = pd.DataFrame(
            {"top_genre": ["news", "rock", None]}, index=pd.Index(["A", "B", "C"], name="entity")
        )
        out = evaluate_tag(cat, "l3_content", env)
        assert out["value"].tolist() == ["news", "other"]

    def test_frequency_drop_for_churn_warning(self) -> None:
        cat = full_catalogue()
        env = pd.DataFrame(
            {
                "recency_days": [5.0, 5.0, 20.0, 5.0],
                "commerce_age_days": [0.0, 0.0, 100.0, 0.0],
                "frequency": [1.0, 3.0, 0.0, 1.0],
                "frequency_drop": [4.0, 0.0, None, 3.0],  # orders: previous minus recent window
                "monetary": [100.0, 2000.0, 0.0, 100.0],
            },
            index=pd.Index(["A", "B", "C", "D"], name="entity"),
        )
        out = evaluate_tag(cat, "cm_rfm_tier", env)
        assert out["value"].tolist() == [
            "churn_warning",
            "high_value",
            "churn_warning",
            "potential",
        ]
        assert json.loads(out["reasons"][0])["inputs"]["frequency_drop"] == 4.0

    def test_score_grades(self) -> None:
        cat = load_catalogue()
        env = pd.DataFrame(
            {"distance_km": [700.0, 300.0, 10.0, None]},
            index=pd.Index(list("ABCD"), name="entity"),
        )
        out = evaluate_tag(cat, "l2_usage_intensity", env)
        assert out["value"].tolist() == ["high", "mid", "low"]
        assert out["score"].tolist() == pytest.approx([3000.0, 300 * 30 / 7, 10 * 30 / 7])

    def test_open_values(self) -> None:
        cat = load_catalogue()
        env = pd.DataFrame(
            {"district": ["Xuhui", None, None], "city": ["Shanghai", "Beijing", None]},
            index=pd.Index(list("ABC"), name="entity"),
        )
        assert evaluate_tag(cat, "cm_region", env)["value"].tolist() == ["Xuhui", "Beijing"]


def test_age_days_tells_how_stale_the_latest_features_are(tmp_path: Path) -> None:
    folder = tmp_path / "catalogue"
    shutil.copytree(builtin_dir(), folder)
    (folder / "dormant.yaml").write_text(
        """purpose: analytics
tags:
  - id: dormant
    tier: L2
    category: usage
    values: ["yes", "no"]
    definition: No driving features for over 30 days.
    method: rule
    inputs: [driving_age_days, distance_km]
    sources: [motion]
    cadence: weekly
    rule:
      cases:
        - {value: "yes", when: "driving_age_days > 30"}
      else: "no"
""",
        encoding="utf-8",
    )
    cat = load_catalogue(folder)
    with Warehouse(":memory:") as wh:
        wh.con.execute("INSERT INTO vehicles (vin, energy_type) VALUES ('A', 'BEV'), ('B', 'ICE')")
        wh.con.execute(
            "INSERT INTO accounts (account_id, source, vin) VALUES "
            "('OA', 'owner', 'A'), ('OB', 'owner', 'B')"
        )
        for acc in ("OA", "OB"):
            record_consent(wh, acc, "analytics", "any", True, datetime(2026, 1, 1, tzinfo=UTC))
        df = pd.DataFrame(
            {
                "vin": ["A", "B"],
                "period_start": [datetime(2026, 1, 5), datetime(2026, 3, 2)],
                "period": "week",
                "distance_km": [10.0, 20.0],
            }
        )
        wh.con.register("_df", df)
        wh.con.execute("CREATE TABLE features_driving AS SELECT * FROM _df")
        out = build_rule_tags(wh, cat, as_of=datetime(2026, 3, 9, tzinfo=UTC), tags=["dormant"])
    got = out.set_index("entity")
    assert got["value"].to_dict() == {"A": "yes", "B": "no"}
    # A's week ended 2026-01-12: 56 days before the as-of time
    assert json.loads(got.loc["A", "reasons"])["inputs"]["driving_age_days"] == 56.0


def test_rule_tags_honour_consent_per_purpose(fleet_wh: Warehouse) -> None:
    """A withdrawal of analytics consent takes a vehicle out of the analytics tags at the
    next build; withdrawing UBI or marketing leaves its analytics tags alone."""
    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    tags = ["l1_vehicle_tier", "l2_usage_intensity"]
    with fleet_wh as wh:
        before = build_rule_tags(wh, as_of=as_of, tags=tags)
        links = wh.frame(
            "SELECT a.account_id, a.vin FROM accounts a JOIN identity_links l USING (account_id)"
        )
        vin = sorted(set(before["entity"]))[0]
        accounts = links.loc[links["vin"] == vin, "account_id"].tolist()
        for purpose in ("ubi", "marketing"):
            record_consent(wh, accounts[0], purpose, "any", False, as_of - timedelta(hours=2))
        same = build_rule_tags(wh, as_of=as_of, tags=tags)
        record_consent(wh, accounts[0], "analytics", "any", False, as_of - timedelta(hours=1))
        after = build_rule_tags(wh, as_of=as_of, tags=tags)
    cols = ["entity", "tag_id", "value"]
    assert same[cols].equals(before[cols])
    assert vin in set(before["entity"]) and vin not in set(after["entity"])
    rest = before[before["entity"] != vin][cols].reset_index(drop=True)
    assert after[cols].reset_index(drop=True).equals(rest)


def test_an_input_tag_is_computed_for_the_purpose_that_reads_it(tmp_path: Path) -> None:
    """A marketing tag reading an analytics tag: a person consenting to marketing only gets
    the marketing value (the vehicle tier is computed for that purpose), not the analytics
    tag itself; one consenting to neither gets nothing."""
    from autopersona.tags.build import build_tags

    folder = tmp_path / "catalogue"
    shutil.copytree(builtin_dir(), folder)
    (folder / "offer.yaml").write_text(
        """purpose: marketing
tags:
  - id: premium_offer
    tier: L4
    category: offer
    values: ["yes", "no"]
    definition: Premium offers for luxury cars.
    method: rule
    inputs: [l1_vehicle_tier]
    sources: [vehicles]
    cadence: weekly
    rule:
      cases:
        - {value: "yes", when: "l1_vehicle_tier == 'luxury'"}
      else: "no"
""",
        encoding="utf-8",
    )
    cat = load_catalogue(folder)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    with Warehouse(":memory:") as wh:
        wh.con.execute(
            "INSERT INTO vehicles (vin, msrp_cny) VALUES ('MKT', 500000), ('BOTH', 500000), "
            "('NONE', 500000)"
        )
        wh.con.execute(
            "INSERT INTO accounts (account_id, source, vin) VALUES "
            "('A-MKT', 'owner', 'MKT'), ('A-BOTH', 'owner', 'BOTH'), ('A-NONE', 'owner', 'NONE')"
        )
        since = datetime(2026, 1, 1, tzinfo=UTC)
        record_consent(wh, "A-MKT", "marketing", "any", True, since)
        record_consent(wh, "A-BOTH", "marketing", "any", True, since)
        record_consent(wh, "A-BOTH", "analytics", "any", True, since)
        tags = ["premium_offer", "l1_vehicle_tier"]
        for out in (
            build_rule_tags(wh, cat, as_of=at, tags=tags),
            build_tags(wh, cat, as_of=at, tags=tags),
        ):
            got = {(r.entity, r.tag_id): r.value for r in out.itertuples()}
            assert got == {
                ("MKT", "premium_offer"): "yes",
                ("BOTH", "premium_offer"): "yes",
                ("BOTH", "l1_vehicle_tier"): "luxury",
            }
