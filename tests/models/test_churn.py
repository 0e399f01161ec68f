"""Churn warning (paper 001): purchase frequency down by more than 3, at the boundary."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopersona.models.churn import (
    DROP_THRESHOLD,
    build_churn_features,
    churn_warning,
    purchase_windows,
)
from autopersona.privacy.consent import record_consent
from autopersona.store.warehouse import Warehouse

AS_OF = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday: the week of 23 Feb is the latest complete
#: customer -> order days; windows of 30 days end on 2 Mar: previous = January, recent = February
ORDERS = {
    "DROP3": ["01-05", "01-06", "01-07", "01-08", "01-09", "02-20", "02-21"],  # 5 -> 2
    "DROP4": ["01-05", "01-06", "01-07", "01-08", "01-09", "02-20"],  # 5 -> 1
    "STOPPED": ["01-10", "01-11", "01-12", "01-13"],  # 4 -> 0, no activity since
    "STOPPED3": ["01-10", "01-11", "01-12"],  # 3 -> 0
    "STEADY": ["01-15", "01-25", "02-05", "02-25"],  # 2 -> 2
}


def _insert(wh: Warehouse, orders: dict[str, list[str]]) -> None:
    rows = []
    for cust, days in orders.items():
        for i, d in enumerate(days):
            ts = pd.Timestamp(f"2026-{d} 10:00", tz="UTC")
            rows.append((f"{cust}-{i}", 1, cust, ts, "P1", 1, 300.0, "CNY", False))
    df = pd.DataFrame(
        rows,
        columns=[
            *("order_id", "line_no", "customer_id", "ts", "product_id"),
            *("quantity", "unit_price", "currency", "is_cancellation"),
        ],
    )
    wh.con.register("_o", df)
    wh.con.execute("INSERT INTO orders BY NAME SELECT * FROM _o")
    wh.con.unregister("_o")
    for cust in orders:  # each customer an account that consents to analytics (RFM tiers)
        wh.con.execute(
            "INSERT INTO accounts (account_id, source) SELECT ?, 'ecommerce' "
            "WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE account_id = ?)",
            [cust, cust],
        )
        record_consent(wh, cust, "analytics", "any", True, datetime(2025, 1, 1, tzinfo=UTC))


@pytest.fixture
def churn_wh() -> Iterator[Warehouse]:
    with Warehouse(":memory:") as wh:
        _insert(wh, ORDERS)
        # a cancelled order does not count as a purchase
        wh.con.execute(
            "INSERT INTO orders (order_id, line_no, customer_id, ts, product_id, quantity, "
            "unit_price, currency, is_cancellation) VALUES "
            "('CDROP4-5', 1, 'DROP4', TIMESTAMPTZ '2026-02-22 10:00:00+00', 'P1', -1, 300, "
            "'CNY', true)"
        )
        yield wh


def test_threshold_is_more_than_three() -> None:
    assert DROP_THRESHOLD == 3
    assert not churn_warning(5, 2) and churn_warning(5, 1)
    assert not churn_warning(3, 0) and churn_warning(4, 0)


def test_windows_at_the_boundary(churn_wh: Warehouse) -> None:
    df = purchase_windows(churn_wh)
    last = df[df["period_start"] == pd.Timestamp("2026-02-23")].set_index("customer_id")
    got = last[["orders_previous", "orders_recent", "frequency_drop"]].T.to_dict("list")
    assert got == {
        "DROP3": [5, 2, 3],
        "DROP4": [5, 1, 4],
        "STOPPED": [4, 0, 4],
        "STOPPED3": [3, 0, 3],
        "STEADY": [2, 2, 0],
    }
    # every week from the first order's week on has a row, active or not
    weeks = df.groupby("customer_id")["period_start"].agg(["min", "count"])
    assert weeks.loc["STOPPED", "count"] == 8  # 5 Jan .. 23 Feb
    assert weeks.loc["STEADY", "min"] == pd.Timestamp("2026-01-12")


def test_build_writes_the_feature_table(churn_wh: Warehouse) -> None:
    rep = build_churn_features(churn_wh)
    assert rep.customers == 5 and rep.warnings_latest == 2
    cols = [r[0] for r in churn_wh.con.execute("DESCRIBE features_churn").fetchall()]
    assert cols[:3] == ["customer_id", "period_start", "period"]
    again = build_churn_features(churn_wh)  # idempotent
    n = churn_wh.con.execute("SELECT count(*) FROM features_churn").fetchone()
    assert n is not None and n[0] == again.rows == rep.rows


def test_bad_arguments_and_no_orders() -> None:
    from autopersona.tags.rules import build_rule_tags

    with Warehouse(":memory:") as wh:
        with pytest.raises(ValueError, match="unknown period"):
            purchase_windows(wh, period="year")
        with pytest.raises(ValueError, match="window_days"):
            purchase_windows(wh, window_days=0)
        assert purchase_windows(wh).empty
        assert build_churn_features(wh).rows == 0  # an empty table, typed like a full one
        types = dict(
            wh.sql(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'features_churn'"
            )
        )
        assert types["period_start"] == "TIMESTAMP" and types["customer_id"] == "VARCHAR"
        assert build_rule_tags(wh, tags=["cm_rfm_tier"]).empty


@settings(max_examples=25, deadline=None)
@given(
    prev=st.lists(st.integers(1, 29), max_size=8),
    recent=st.lists(st.integers(1, 29), max_size=8),
)
def test_counts_match_a_direct_count(prev: list[int], recent: list[int]) -> None:
    """Orders on day offsets inside each window are counted exactly (one order a day at most)."""
    end = pd.Timestamp("2026-03-02", tz="UTC")
    days = sorted({end - pd.Timedelta(days=30 + d) for d in set(prev)}) + sorted(
        {end - pd.Timedelta(days=d) for d in set(recent)}
    )
    with Warehouse(":memory:") as wh:
        _insert(wh, {"C": [t.strftime("%m-%d") for t in days]})
        wh.con.execute(
            "INSERT INTO commerce_events (event_id, customer_id, ts, event_type) VALUES "
            "('E', 'X', TIMESTAMPTZ '2026-02-28 10:00:00+00', 'view')"
        )
        df = purchase_windows(wh)
    row = df[df["period_start"] == pd.Timestamp("2026-02-23")]
    if not days:
        assert row.empty
        return
    assert row[["orders_previous", "orders_recent"]].values.tolist() == [
        [len(set(prev)), len(set(recent))]
    ]


def test_rfm_tier_warns_above_a_drop_of_three(churn_wh: Warehouse) -> None:
    """cm_rfm_tier reads frequency_drop: drop 4 warns, drop 3 does not (recent buyers only)."""
    from autopersona.features.build import build_features
    from autopersona.tags.rules import build_rule_tags

    build_features(churn_wh, only=["commerce"])
    build_churn_features(churn_wh)
    tags = build_rule_tags(churn_wh, tags=["cm_rfm_tier"], as_of=AS_OF)
    tier = tags.set_index("entity")["value"].to_dict()
    assert tier["DROP4"] == "churn_warning" and tier["STOPPED"] == "churn_warning"
    assert tier["DROP3"] != "churn_warning" and tier["STOPPED3"] != "churn_warning"
    assert tier["STEADY"] != "churn_warning"
    reasons = tags.set_index("entity").loc["DROP4", "reasons"]
    assert '"frequency_drop": 4' in reasons
