"""The tag catalogue as data: the built-in catalogue, broken fixture catalogues, the CLI.

Every broken catalogue under ``fixtures/`` must fail with the file and line of its problem,
through :func:`load_catalogue` and through ``autopersona tags validate``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tagcheck import full_catalogue
from typer.testing import CliRunner

from autopersona.catalog import CatalogError
from autopersona.cli import app
from autopersona.features.dictionary import feature_dictionary
from autopersona.tags.spec import (
    builtin_dir,
    known_names,
    load_catalogue,
)

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()

PAPER_000 = {
    "L1": {"l1_vehicle_tier", "l1_energy_type", "l1_main_activity_area"},
    "L2": {"l2_driving_style", "l2_travel_pattern", "l2_usage_intensity"},
    "L3": {"l3_lifestyle", "l3_content"},
    "L4": {"l4_aftermarket_propensity", "l4_ubi_risk", "l4_vas_sensitivity"},
}


class TestBuiltin:
    def test_active_catalogue_loads(self) -> None:
        cat = load_catalogue()
        assert {"l1_vehicle_tier", "l1_energy_type", "l2_usage_intensity"} <= set(cat.tags)
        # every tag's features have landed: nothing waits in pending/ any more
        assert set(cat.tags) == set(full_catalogue().tags)

    def test_pending_files_are_valid_catalogue_files(self) -> None:
        full_catalogue()

    def test_loads_and_covers_the_papers(self) -> None:
        cat = full_catalogue()
        for tier, ids in PAPER_000.items():
            assert ids <= set(cat.tags), tier
            assert all(cat.tags[i].tier == tier for i in ids)
        commerce_levels = {t.tier for t in cat.tags.values() if t.entity == "customer_id"}
        assert commerce_levels == {"basic", "behaviour", "interest", "value", "attitude"}
        assert cat.tags["lifecycle_stage"].values == [
            "prospect",
            "new",
            "active",
            "loyal",
            "at_risk",
            "churned",
        ]
        assert set(cat.tags["cm_rfm_tier"].values or []) == {
            "high_value",
            "potential",
            "churn_warning",
        }

    def test_table_1_details(self) -> None:
        cat = full_catalogue()
        tier = cat.tags["l1_vehicle_tier"]
        assert tier.cadence == "static" and tier.sources == ["vehicles"]
        assert tier.rule is not None
        assert [c.when for c in tier.rule.cases][:2] == ["msrp_cny > 400000", "msrp_cny >= 150000"]
        style = cat.tags["l2_driving_style"]
        assert style.method == "cluster" and style.cluster is not None
        assert style.cluster.algorithms == ["kmeans", "gmm", "dbscan"]
        assert style.cluster.selection == ["silhouette", "calinski_harabasz"]
        ubi = cat.tags["l4_ubi_risk"]
        assert ubi.method == "model" and ubi.model is not None and ubi.cadence == "quarterly"
        assert "l2_driving_style" in cat.dependencies("l4_ubi_risk")

    def test_inputs_are_known_features(self) -> None:
        feats = set(feature_dictionary())
        cat = full_catalogue()
        for t in cat.tags.values():
            for n in t.inputs:
                assert n in cat.tags or n in known_names(t.entity), (t.id, n)
        assert "aggressiveness_index" in feats

    def test_version_is_a_content_hash(self, tmp_path: Path) -> None:
        shutil.copytree(builtin_dir(), tmp_path / "c")
        v1 = load_catalogue(tmp_path / "c").version
        assert v1 == load_catalogue().version
        p = tmp_path / "c" / "l1_basic.yaml"
        p.write_text(p.read_text().replace("above 400k CNY", "above 400 000 CNY"))
        assert load_catalogue(tmp_path / "c").version != v1

    def test_order_puts_dependencies_first(self) -> None:
        order = full_catalogue().order(["lifecycle_stage"])
        assert order == ["cm_rfm_tier", "lifecycle_stage"]


# fixture folder -> (file name, line, message fragment)
BROKEN = {
    "unknown_key": ("tags.yaml", 11, "colour: unknown key"),
    "duplicate_id": ("b.yaml", 16, "duplicate tag id 'tier_a' (first declared at"),
    "unknown_input": ("tags.yaml", 10, "unknown feature or tag 'warp_speed_kmh'"),
    "unknown_in_expression": ("tags.yaml", 14, "column 1: unknown feature or tag 'l9_not_a_tag'"),
    "value_not_allowed": ("tags.yaml", 14, "value 'platinum' is not in values"),
    "cycle": ("tags.yaml", 21, "dependency cycle: tag_a -> tag_b -> tag_a"),
    "bad_expression": ("tags.yaml", 14, "is not allowed"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_catalogue_fails_with_file_and_line(case: str) -> None:
    name, line, fragment = BROKEN[case]
    with pytest.raises(CatalogError) as info:
        load_catalogue(FIXTURES / case)
    issues = info.value.errors
    assert len(issues) == 1, [str(i) for i in issues]
    issue = issues[0]
    assert Path(issue.file).name == name
    assert issue.line == line
    assert fragment in str(issue)
    assert str(issue).startswith(f"{FIXTURES / case / name}:{line}:")


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_cli_validate_reports_file_and_line(case: str) -> None:
    name, line, fragment = BROKEN[case]
    res = runner.invoke(app, ["tags", "validate", str(FIXTURES / case)])
    assert res.exit_code == 1
    assert f"{name}:{line}:" in res.output and fragment in res.output


def test_every_fixture_folder_is_tested() -> None:
    assert {p.name for p in FIXTURES.iterdir() if p.is_dir()} == set(BROKEN)


def _write(p: Path, text: str) -> Path:
    p.write_text(text, encoding="utf-8")
    return p


def test_more_problems_are_all_reported(tmp_path: Path) -> None:
    _write(
        tmp_path / "x.yaml",
        """tags:
  - id: a_tag
    tier: L5
    category: x
    values: [p]
    definition: d
    method: rule
    inputs: [distance_km]
    sources: [nowhere]
    cadence: weekly
    rule:
      cases:
        - {value: p, when: "distance_km > 1 and prev(l1_vehicle_tier) > 1"}
  - id: distance_km
    tier: L2
    category: x
    values: [p]
    definition: d
    method: score
    inputs: [distance_km]
    sources: [motion]
    cadence: fortnightly
    score: {expression: distance_km, grades: [{value: p, min: 1}, {value: p, min: 2}]}
""",
    )
    with pytest.raises(CatalogError) as info:
        load_catalogue(tmp_path)
    text = str(info.value)
    assert "x.yaml:3: tags -> 0 -> tier" in text
    assert "x.yaml:22: tags -> 1 -> cadence" in text
    assert "grades must be ordered" in text


def test_semantic_checks(tmp_path: Path) -> None:
    _write(
        tmp_path / "x.yaml",
        """tags:
  - id: a_tag
    tier: L2
    category: x
    values: [p, q]
    definition: d
    method: rule
    inputs: [distance_km, cm_rfm_tier]
    sources: [nowhere]
    cadence: weekly
    rule:
      cases:
        - {value: p, when: "night_share > 1"}
        - {value_of: "distance_km", when: "distance_km > 1"}
      else: q
  - id: cm_rfm_tier
    tier: value
    category: x
    entity: customer_id
    values: [a]
    definition: d
    method: rule
    inputs: [frequency]
    sources: [orders]
    cadence: weekly
    rule:
      cases:
        - {value: a, when: "frequency > 1"}
""",
    )
    with pytest.raises(CatalogError) as info:
        load_catalogue(tmp_path)
    text = str(info.value)
    assert "x.yaml:9: tags -> 0 -> sources -> 0: unknown source table 'nowhere'" in text
    assert "tag 'cm_rfm_tier' is per customer_id, this tag is per vin" in text
    assert "x.yaml:13:" in text and "'night_share' is read but not listed in inputs" in text
    assert "x.yaml:14:" in text and "value_of needs open values" in text


def test_user_adds_a_tag_by_editing_yaml(tmp_path: Path) -> None:
    folder = tmp_path / "catalogue"
    shutil.copytree(builtin_dir(), folder)
    _write(
        folder / "team_night_owls.yaml",
        """description: A tag added by the marketing team, YAML only.
purpose: marketing
tags:
  - id: night_owl
    tier: L2
    category: driving time
    values: ["yes", "no"]
    definition: Drives mostly at night, in a luxury car.
    method: rule
    inputs: [night_share, l1_vehicle_tier]
    sources: [motion, vehicles]
    cadence: weekly
    rule:
      cases:
        - {value: "yes", when: "night_share >= 0.3 and l1_vehicle_tier == 'luxury'"}
      else: "no"
""",
    )
    cat = load_catalogue(folder)
    assert "night_owl" in cat.tags and cat.dependencies("night_owl") == ["l1_vehicle_tier"]
    assert cat.tags["night_owl"].purpose == "marketing"
    res = runner.invoke(app, ["tags", "list", "--catalogue", str(folder), "--json"])
    assert res.exit_code == 0, res.output
    # JSON on stdout; the catalogue's warning (night features serve analytics and UBI, the
    # tag marketing) goes to stderr
    assert "night_owl" in {t["id"] for t in json.loads(res.stdout)}
    assert "warning:" in res.stderr and "night_owl" in res.stderr
    res = runner.invoke(app, ["tags", "show", "night_owl", "--catalogue", str(folder)])
    assert res.exit_code == 0 and json.loads(res.stdout)["depends_on"] == ["l1_vehicle_tier"]
    # it is built too: see test_rules.py::test_added_tag_is_built


def test_literal_must_be_a_value_of_the_tag_read(tmp_path: Path) -> None:
    shutil.copytree(builtin_dir(), tmp_path / "c")
    _write(
        tmp_path / "c" / "z.yaml",
        """tags:
  - id: z_tag
    tier: L3
    category: x
    values: [p]
    definition: d
    method: rule
    inputs: [l1_vehicle_tier]
    sources: [vehicles]
    cadence: weekly
    rule:
      cases:
        - {value: p, when: "l1_vehicle_tier == 'platinum'"}
""",
    )
    with pytest.raises(CatalogError, match=r"z.yaml:13: .*'platinum' is not a value of tag"):
        load_catalogue(tmp_path / "c")


class TestCli:
    def test_list(self) -> None:
        res = runner.invoke(app, ["tags", "list"])
        assert res.exit_code == 0 and "l1_vehicle_tier" in res.output

    def test_list_tier_json(self) -> None:
        full_catalogue()
        res = runner.invoke(app, ["tags", "list", "--tier", "L4", "--pending", "--json"])
        # the paper's three L4 tags and the one learnt from the feedback loop
        want = PAPER_000["L4"] | {"l4_marketing_responsiveness"}
        assert {t["id"] for t in json.loads(res.output)} == want

    def test_show(self) -> None:
        res = runner.invoke(app, ["tags", "show", "l1_vehicle_tier"])
        d = json.loads(res.output)
        assert d["rule"]["cases"][0] == {"value": "luxury", "when": "msrp_cny > 400000"}
        assert d["declared_at"].endswith("l1_basic.yaml:6")

    def test_show_unknown(self) -> None:
        res = runner.invoke(app, ["tags", "show", "nope"])
        assert res.exit_code == 2

    def test_validate_a_file_with_the_builtin_catalogue(self, tmp_path: Path) -> None:
        p = _write(
            tmp_path / "extra.yaml",
            """tags:
  - id: big_driver
    tier: L2
    category: usage
    values: ["yes"]
    definition: d
    method: rule
    inputs: [distance_km, l1_vehicle_tier]
    sources: [motion, vehicles]
    cadence: monthly
    rule:
      cases:
        - {value: "yes", when: "distance_km > 500 and l1_vehicle_tier == 'luxury'"}
purpose: analytics
""",
        )
        res = runner.invoke(app, ["tags", "validate", str(p)])
        assert res.exit_code == 0, res.output
        assert "ok:" in res.output


def test_cluster_config_checks(tmp_path: Path) -> None:
    _write(
        tmp_path / "c.yaml",
        """tags:
  - id: style
    tier: L2
    category: driving style
    values: [a, b, c]
    definition: d
    method: cluster
    inputs: [aggressiveness_index, speed_volatility]
    sources: [motion]
    cadence: weekly
    cluster:
      features: [aggressiveness_index, speed_volatility, night_share]
      algorithms: [kmeans]
      k: {min: 2, max: 5}
      selection: [silhouette]
      naming: {rank_by: "harsh_brake_per_100km"}
""",
    )
    with pytest.raises(CatalogError) as info:
        load_catalogue(tmp_path)
    text = str(info.value)
    assert (
        "c.yaml:12: tags -> 0 -> cluster -> features -> 2: 'night_share' is used but not listed"
        in text
    )
    assert "c.yaml:14: tags -> 0 -> cluster -> k -> min: k.min 2 is below the 3 values" in text
    assert (
        "c.yaml:16: tags -> 0 -> cluster -> naming -> rank_by: column 1: 'harsh_brake_per_100km' is not a clustering feature"
        in text
    )


def test_every_tag_has_a_purpose_from_the_file_or_its_own(tmp_path: Path) -> None:
    """A file's ``purpose`` is the default of its tags, a tag's own overrides it, and a tag
    left without one is an error at its line (the built-in catalogue declares them all)."""
    cat = load_catalogue()
    assert all(t.purpose is not None for t in cat.tags.values())
    assert cat.tags["l2_driving_style"].purpose == "analytics"
    assert cat.tags["l4_aftermarket_propensity"].purpose == "marketing"
    assert cat.tags["l4_ubi_risk"].purpose == "ubi"  # overrides its file's marketing
    tag = """  - id: {id}
    tier: L2
    category: x
    values: [p]
    definition: d
    method: rule
    inputs: [distance_km]
    sources: [motion]
    cadence: weekly
{extra}    rule:
      cases:
        - {{value: p, when: "distance_km > 1"}}
"""
    body = tag.format(id="own", extra="    purpose: ubi\n") + tag.format(id="inherits", extra="")
    _write(tmp_path / "a.yaml", "purpose: partner_sharing\ntags:\n" + body)
    got = load_catalogue(tmp_path).tags
    assert (got["own"].purpose, got["inherits"].purpose) == ("ubi", "partner_sharing")
    _write(tmp_path / "a.yaml", "tags:\n" + body)
    with pytest.raises(CatalogError) as info:
        load_catalogue(tmp_path)
    assert [str(e).split(": ", 1)[0] for e in info.value.errors] == [f"{tmp_path / 'a.yaml'}:15"]
    assert "tag 'inherits' has no purpose" in str(info.value)
    _write(tmp_path / "a.yaml", "purpose: ads\ntags:\n" + body)
    with pytest.raises(CatalogError, match=r"a.yaml:1: purpose: .*'marketing'"):
        load_catalogue(tmp_path)
