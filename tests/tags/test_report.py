"""The demo's Profile stage report: tag value counts per tier group, printed as tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from rich.console import Console

from autopersona.store.profiles import DuckDBProfileStore
from autopersona.store.warehouse import Warehouse
from autopersona.tags.report import GROUPS, _print_tables, data_end, tag_distribution
from autopersona.tags.spec import load_catalogue

T = datetime(2026, 1, 12, tzinfo=UTC)


def _assign(tag: str, values: list[str], entity_type: str = "vin") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity_type": entity_type,
            "entity": [f"{tag}-{i}" for i in range(len(values))],
            "tag_id": tag,
            "value": values,
            "score": 1.0,
            "reasons": "{}",
            "as_of": T,
            "catalogue_version": "c",
            "model_version": None,
        }
    )


def _store() -> DuckDBProfileStore:
    ps = DuckDBProfileStore(":memory:")
    ps.write(
        pd.concat(
            [
                _assign("l1_vehicle_tier", ["mid", "mid", "luxury", "economy"]),
                _assign("cm_region", ["A", "B", "B", "C", "D", "E", "F"], "customer_id"),
                _assign("lifecycle_stage", ["loyal", "at_risk", "loyal"], "customer_id"),
                _assign("cm_rfm_tier", ["potential", "churn_warning"], "customer_id"),
            ],
            ignore_index=True,
        )
    )
    # a closed version does not count: entity 0 changes tier
    ps.write(_assign("l1_vehicle_tier", ["luxury"]).assign(as_of=datetime(2026, 2, 1, tzinfo=UTC)))
    return ps


def test_distribution_counts_current_versions_by_group() -> None:
    cat = load_catalogue()
    with _store() as ps:
        dist = tag_distribution(ps, cat)
    tier = dist[dist["tag_id"] == "l1_vehicle_tier"]
    assert tier[["value", "n"]].values.tolist() == [["luxury", 2], ["economy", 1], ["mid", 1]]
    assert tier["share"].sum() == 1.0 and set(tier["group"]) == {"L1 basic"}
    groups = dist.drop_duplicates("tag_id").set_index("tag_id")["group"].to_dict()
    assert groups == {
        "l1_vehicle_tier": "L1 basic",
        "cm_region": "E-commerce levels",
        "cm_rfm_tier": "E-commerce levels",
        "lifecycle_stage": "Lifecycle",
    }
    # catalogue order within the report
    order = list(dict.fromkeys(dist["tag_id"]))
    assert order.index("cm_region") < order.index("cm_rfm_tier")


def test_tables_show_every_group_and_every_tag() -> None:
    cat = load_catalogue()
    console = Console(record=True, width=200)
    with _store() as ps:
        _print_tables(console, tag_distribution(ps, cat), cat)
    text = console.export_text()
    for group in GROUPS:
        assert f"{group} — value counts per tag" in text
    for tid in cat.tags:
        assert tid in text
    assert "luxury 2 (50%)" in text
    assert "… 6 distinct" in text  # an open-valued tag shows its top values only
    assert text.count("no value yet") == len(cat.tags) - 4


def test_data_end_is_the_day_after_the_latest_event() -> None:
    with Warehouse(":memory:") as wh:
        assert data_end(wh).tzinfo is not None  # empty warehouse: now
        wh.con.execute(
            "INSERT INTO orders (order_id, line_no, customer_id, ts, product_id, quantity, "
            "unit_price, currency) VALUES ('O', 1, 'C', TIMESTAMPTZ '2026-01-07 22:30:00+00', "
            "'P', 1, 1.0, 'CNY')"
        )
        assert data_end(wh) == datetime(2026, 1, 8, tzinfo=UTC)
