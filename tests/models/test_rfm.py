"""RFM: Online Retail reference figures, an independent recomputation, scores and tiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopersona.models.rfm import (
    TIERS,
    Tier,
    assign_tiers,
    clean_transactions,
    rfm_scores,
    rfm_table,
    segment_summary,
    tiers_as_records,
)

COLS = {
    "customer": "CustomerID",
    "invoice": "InvoiceNo",
    "quantity": "Quantity",
    "price": "UnitPrice",
}


def _rfm(
    df: pd.DataFrame, snapshot: str | None = "2011-12-10"
) -> tuple[pd.DataFrame, dict[str, int]]:
    clean, report = clean_transactions(df, **COLS)
    return rfm_table(clean, date="InvoiceDate", snapshot=snapshot, **COLS), report


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    p = Path(__file__).resolve().parents[1] / "data" / "online_retail"
    df = pd.read_csv(p / "online_retail_sample_200_customers.csv", dtype={"InvoiceNo": str})
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"])
    return df


class TestSample:
    def test_cleaning_report(self, sample: pd.DataFrame) -> None:
        _, report = _rfm(sample)
        assert report == {
            "rows_in": 14651,
            "missing_customer": 0,
            "cancellations": 289,
            "non_positive_quantity": 0,
            "non_positive_price": 0,
            "rows_out": 14362,
        }

    def test_matches_an_independent_computation(self, sample: pd.DataFrame) -> None:
        t, _ = _rfm(sample)
        d = sample.loc[
            sample["CustomerID"].notna()
            & ~sample["InvoiceNo"].str.startswith("C")
            & (sample["Quantity"] > 0)
            & (sample["UnitPrice"] > 0)
        ].assign(v=lambda x: x["Quantity"] * x["UnitPrice"])
        g = d.groupby("CustomerID")
        ref = pd.DataFrame(
            {
                "recency": (pd.Timestamp("2011-12-10") - g["InvoiceDate"].max()).dt.days,
                "frequency": g["InvoiceNo"].nunique(),
                "monetary": g["v"].sum(),
            }
        )
        pd.testing.assert_frame_equal(t, ref, check_dtype=False, check_names=False)

    def test_golden_figures(self, sample: pd.DataFrame) -> None:
        t, _ = _rfm(sample)
        assert len(t) == 200
        assert t["recency"].mean() == pytest.approx(97.74)
        assert t["frequency"].mean() == pytest.approx(3.85)
        assert t["monetary"].sum() == pytest.approx(426305.92, abs=0.005)
        assert t.loc[12383].tolist() == [184, 5, pytest.approx(1850.56)]
        assert t.loc[16446].tolist() == [0, 2, pytest.approx(168472.50)]

    def test_default_snapshot_is_day_after_last_purchase(self, sample: pd.DataFrame) -> None:
        t, _ = _rfm(sample, snapshot=None)
        assert t.attrs["snapshot"] == pd.Timestamp("2011-12-10")

    def test_every_customer_gets_a_tier(self, sample: pd.DataFrame) -> None:
        t, _ = _rfm(sample)
        tiered = assign_tiers(rfm_scores(t))
        assert (tiered["tier"] != "unassigned").all()
        seg = segment_summary(tiered)
        assert seg["customers"].sum() == 200
        assert seg["share"].sum() == pytest.approx(1.0)
        # champions buy more recently and more often than the lost
        assert seg.loc["champions", "recency"] < seg.loc["lost", "recency"]
        assert seg.loc["champions", "frequency"] > seg.loc["lost", "frequency"]


@pytest.mark.realdata
def test_online_retail_reference_figures(shared_data: Path) -> None:
    path = shared_data / "online_retail" / "online_retail.parquet"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    df = pd.read_parquet(path)
    clean, report = clean_transactions(df, **COLS)
    assert report["rows_out"] == len(clean) == 397884
    assert clean["CustomerID"].nunique() == 4338
    assert clean["InvoiceNo"].nunique() == 18532
    assert round(float((clean["Quantity"] * clean["UnitPrice"]).sum()), 2) == 8911407.90
    t = rfm_table(clean, date="InvoiceDate", snapshot="2011-12-10", **COLS)
    assert round(t["recency"].mean(), 2) == 92.06
    assert t["recency"].median() == 50
    assert round(t["frequency"].mean(), 2) == 4.27
    assert t["frequency"].median() == 2
    assert round(t["monetary"].mean(), 2) == 2054.27
    assert t.loc[12346.0].tolist() == [325, 1, pytest.approx(77183.60)]
    assert t.loc[12347.0].tolist() == [2, 7, pytest.approx(4310.00)]


# --------------------------------------------------------------------------- scores, tiers
class TestScoresAndTiers:
    def test_tier_rules_cover_the_grid_exactly_once(self) -> None:
        for r in range(1, 6):
            for f in range(1, 6):
                for m in range(1, 6):
                    hits = [t.name for t in TIERS if t.matches(r, f, m)]
                    assert len(hits) == 1, (r, f, m, hits)
        assert {t.value for t in TIERS} == {"high_value", "potential", "churn_warning", "lost"}
        assert [d["name"] for d in tiers_as_records()] == [t.name for t in TIERS]

    def test_custom_tiers_are_data(self) -> None:
        mine = (Tier("big", m=(5, 5), value="high_value"), Tier("rest"))
        s = pd.DataFrame({"r_score": [1, 2], "f_score": [1, 2], "m_score": [5, 4]})
        assert assign_tiers(s, mine)["tier"].tolist() == ["big", "rest"]
        assert assign_tiers(s, mine[:1])["tier"].tolist() == ["big", "unassigned"]

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(st.integers(0, 400), st.integers(1, 30), st.floats(0.01, 1e5)),
            min_size=1,
            max_size=60,
        )
    )
    def test_scores_are_monotone_and_tie_consistent(
        self, rows: list[tuple[int, int, float]]
    ) -> None:
        t = pd.DataFrame(rows, columns=["recency", "frequency", "monetary"])
        s = rfm_scores(t)
        for col, score, better in (
            ("recency", "r_score", -1),
            ("frequency", "f_score", 1),
            ("monetary", "m_score", 1),
        ):
            assert s[score].between(1, 5).all()
            v = t[col].to_numpy() * better
            sc = s[score].to_numpy()
            # a better value never gets a lower score; equal values get equal scores
            assert np.all((v[:, None] > v[None, :]) <= (sc[:, None] >= sc[None, :]))
            assert np.all((v[:, None] == v[None, :]) <= (sc[:, None] == sc[None, :]))
        assert (s["rfm_score"].str.len() == 3).all()

    def test_distinct_values_give_equal_quintiles(self) -> None:
        t = pd.DataFrame({"recency": np.arange(100), "frequency": np.arange(100),
                          "monetary": np.arange(100.0)})  # fmt: skip
        s = rfm_scores(t)
        assert s["f_score"].value_counts().tolist() == [20] * 5
        assert s.loc[0, "r_score"] == 5 and s.loc[0, "f_score"] == 1
        with pytest.raises(ValueError, match="bins"):
            rfm_scores(t, bins=1)


class TestCleaningAndInputs:
    def test_first_reason_wins_and_options(self) -> None:
        df = pd.DataFrame(
            {
                "c": [1, None, 2, 3, 4, 5],
                "i": ["1", "C2", "c3", "4", "5", None],
                "q": [1, -1, 1, 0, 2, 1],
                "p": [1.0, 1.0, 1.0, 1.0, 0.0, 2.0],
            }
        )
        kept, rep = clean_transactions(df, customer="c", invoice="i", quantity="q", price="p")
        assert rep == {
            "rows_in": 6,
            "missing_customer": 1,
            "cancellations": 1,
            "non_positive_quantity": 1,
            "non_positive_price": 1,
            "rows_out": 2,
        }
        assert kept["c"].tolist() == [1.0, 5.0]
        _, rep = clean_transactions(
            df, customer="c", invoice="i", quantity="q", price="p",
            drop_cancellations=False, positive_price=False, drop_missing_customer=False,
        )  # fmt: skip
        assert rep["rows_out"] == 4 and rep["missing_customer"] == 0

    def test_rfm_table_inputs(self) -> None:
        df = pd.DataFrame({"c": [1], "d": pd.to_datetime(["2024-01-01"]), "i": ["a"], "v": [2.0]})
        with pytest.raises(ValueError, match="amount"):
            rfm_table(df, customer="c", date="d", invoice="i")
        with pytest.raises(TypeError, match="datetime64"):
            rfm_table(df.assign(d="2024"), customer="c", date="d", invoice="i", amount="v")
        with pytest.raises(ValueError, match="no transactions"):
            rfm_table(df.iloc[:0], customer="c", date="d", invoice="i", amount="v")
