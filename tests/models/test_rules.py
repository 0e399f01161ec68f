"""Frequent itemsets and rules: Groceries golden values, brute-force and metric properties."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopersona.models import rules as rules_mod
from autopersona.models.rules import (
    association_rules,
    baskets_from_table,
    frequent_itemsets,
    itemsets_table,
    read_baskets,
    rules_table,
)


def _groceries(shared_data: Path) -> list[list[str]]:
    path = shared_data / "groceries" / "groceries.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return read_baskets(path)


# --------------------------------------------------------------------------- golden
class TestGroceries:
    def test_basket_file(self, shared_data: Path) -> None:
        b = _groceries(shared_data)
        assert len(b) == 9835
        assert sum(map(len, b)) == 43367
        assert len({i for x in b for i in x}) == 169

    def test_readme_reference_values(self, shared_data: Path) -> None:
        b = _groceries(shared_data)
        fi = frequent_itemsets(b, min_support=0.01)
        assert len(fi) == 333
        assert fi["length"].value_counts().sort_index().tolist() == [88, 213, 32]
        top = fi.loc[fi["length"] == 1].head(5)
        assert [next(iter(s)) for s in top["itemsets"]] == [
            "whole milk", "other vegetables", "rolls/buns", "soda", "yogurt",
        ]  # fmt: skip
        assert top["count"].tolist() == [2513, 1903, 1809, 1715, 1372]
        assert round(float(fi.loc[0, "support"]), 6) == 0.255516

        r = association_rules(fi, min_confidence=0.5)
        assert len(r) == 15
        assert (r["confidence"] == 0.5).sum() == 1  # the tie at the threshold is kept
        hit = r.loc[
            (r["antecedents"] == frozenset({"citrus fruit", "root vegetables"}))
            & (r["consequents"] == frozenset({"other vegetables"}))
        ]
        assert len(hit) == 1
        row = hit.iloc[0]
        assert round(row["support"], 6) == 0.010371
        assert round(row["confidence"], 6) == 0.586207
        assert round(row["lift"], 6) == 3.029608

    def test_same_itemsets_as_mlxtend(self, shared_data: Path) -> None:
        pytest.importorskip("mlxtend")
        from mlxtend.frequent_patterns import fpgrowth
        from mlxtend.preprocessing import TransactionEncoder

        b = _groceries(shared_data)
        te = TransactionEncoder()
        onehot = pd.DataFrame(te.fit(b).transform(b), columns=te.columns_)
        ref = fpgrowth(onehot, min_support=0.005, use_colnames=True)
        ours = frequent_itemsets(b, min_support=0.005)
        assert len(ours) == len(ref) == 1001
        a = dict(zip(ours["itemsets"], ours["support"], strict=True))
        m = dict(zip(ref["itemsets"], ref["support"], strict=True))
        assert a.keys() == m.keys()
        assert max(abs(a[k] - m[k]) for k in a) < 1e-12


# --------------------------------------------------------------------------- properties
baskets_st = st.lists(
    st.lists(st.sampled_from("abcdefg"), max_size=6, unique=True), min_size=1, max_size=40
)


def _brute_force(baskets: list[list[str]], min_count: int) -> dict[frozenset[str], int]:
    sets = [frozenset(b) for b in baskets]
    universe = sorted({i for b in sets for i in b})
    out: dict[frozenset[str], int] = {}
    for k in range(1, len(universe) + 1):
        for combo in itertools.combinations(universe, k):
            c = sum(1 for b in sets if b.issuperset(combo))
            if c >= min_count:
                out[frozenset(combo)] = c
    return out


class TestProperties:
    @settings(max_examples=60, deadline=None)
    @given(baskets=baskets_st, min_support=st.sampled_from([0.05, 0.1, 0.2, 0.25, 0.5]))
    def test_equals_brute_force(self, baskets: list[list[str]], min_support: float) -> None:
        fi = frequent_itemsets(baskets, min_support)
        n = len(baskets)
        expected = _brute_force(baskets, max(1, int(np.ceil(min_support * n - 1e-9))))
        got = dict(zip(fi["itemsets"], fi["count"], strict=True))
        assert got == expected
        assert np.allclose(fi["support"], fi["count"] / n)
        assert (fi["length"] == fi["itemsets"].map(len)).all()

    @settings(max_examples=60, deadline=None)
    @given(baskets=baskets_st, min_conf=st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.0]))
    def test_rule_metric_identities(self, baskets: list[list[str]], min_conf: float) -> None:
        fi = frequent_itemsets(baskets, 0.1)
        support = dict(zip(fi["itemsets"], fi["support"], strict=True))
        # support is monotone: every subset of a frequent itemset is frequent, and no rarer
        for s, v in support.items():
            for k in range(1, len(s)):
                for sub in itertools.combinations(sorted(s), k):
                    assert support[frozenset(sub)] >= v
        r = association_rules(fi, min_confidence=min_conf)
        for row in r.itertuples(index=False):
            a, c = row.antecedents, row.consequents
            assert a and c and not (a & c)
            assert row.support == pytest.approx(support[a | c])
            assert row.antecedent_support == pytest.approx(support[a])
            assert row.consequent_support == pytest.approx(support[c])
            assert row.confidence == pytest.approx(row.support / row.antecedent_support)
            assert row.confidence >= min_conf - 1e-12
            assert row.lift == pytest.approx(row.confidence / row.consequent_support)
            assert row.leverage == pytest.approx(
                row.support - row.antecedent_support * row.consequent_support
            )
            if row.confidence < 1:
                assert row.conviction == pytest.approx(
                    (1 - row.consequent_support) / (1 - row.confidence)
                )
            else:
                assert row.conviction == np.inf
        # every qualifying (antecedent, consequent) split appears exactly once
        expected = sum(
            1
            for s, v in support.items()
            if len(s) > 1
            for k in range(1, len(s))
            for ante in itertools.combinations(sorted(s), k)
            if v / support[frozenset(ante)] >= min_conf - 1e-12
        )
        assert len(r) == expected

    @settings(max_examples=20, deadline=None)
    @given(baskets=baskets_st)
    def test_block_size_does_not_change_the_result(self, baskets: list[list[str]]) -> None:
        big = frequent_itemsets(baskets, 0.1)
        old = rules_mod.BLOCK_WORDS
        rules_mod.BLOCK_WORDS = 1  # one candidate per block
        try:
            small = frequent_itemsets(baskets, 0.1)
        finally:
            rules_mod.BLOCK_WORDS = old
        pd.testing.assert_frame_equal(small, big)


# --------------------------------------------------------------------------- edges
class TestEdges:
    def test_empty_baskets_count_in_n(self) -> None:
        fi = frequent_itemsets([["a"], [], ["a", "b"], []], 0.5)
        assert fi.attrs["n_baskets"] == 4
        assert dict(zip(fi["itemsets"], fi["support"], strict=True)) == {frozenset({"a"}): 0.5}

    def test_many_baskets_span_several_words(self) -> None:
        rng = np.random.default_rng(0)
        baskets = [[i for i in "abcde" if rng.random() < 0.4] for _ in range(1000)]
        fi = frequent_itemsets(baskets, 0.05)
        expected = _brute_force(baskets, 50)
        assert dict(zip(fi["itemsets"], fi["count"], strict=True)) == expected

    def test_max_len_and_thresholds(self) -> None:
        b = [["a", "b", "c"]] * 3
        assert frequent_itemsets(b, 1.0)["length"].tolist() == [1, 1, 1, 2, 2, 2, 3]
        assert frequent_itemsets(b, 1.0, max_len=2)["length"].max() == 2
        with pytest.raises(ValueError, match="min_support"):
            frequent_itemsets(b, 0.0)
        with pytest.raises(ValueError, match="max_len"):
            frequent_itemsets(b, 0.5, max_len=0)
        with pytest.raises(ValueError, match="no baskets"):
            frequent_itemsets([], 0.5)

    def test_no_rules_gives_typed_empty_frame(self) -> None:
        fi = frequent_itemsets([["a"], ["b"]], 0.5)
        r = association_rules(fi, 0.5)
        assert r.empty
        assert list(r.columns) == rules_mod.RULE_COLUMNS

    def test_rules_need_n_and_closed_itemsets(self) -> None:
        fi = frequent_itemsets([["a", "b"], ["a"]], 0.5)
        bare = pd.DataFrame({"itemsets": fi["itemsets"], "count": fi["count"]})
        with pytest.raises(ValueError, match="n_baskets"):
            association_rules(bare)
        assert len(association_rules(bare, n_baskets=2)) == 2
        broken = bare.loc[bare["itemsets"].map(len) == 2]
        with pytest.raises(ValueError, match="downward closed"):
            association_rules(broken, n_baskets=2)
        with pytest.raises(ValueError, match="min_confidence"):
            association_rules(fi, 1.5)

    def test_min_lift_and_tables(self) -> None:
        b = [["a", "b"], ["a", "b"], ["a"], ["c"]]
        r = association_rules(frequent_itemsets(b, 0.25), 0.0, min_lift=1.2)
        assert (r["lift"] >= 1.2).all() and len(r) == 2
        t = rules_table(r)
        assert set(t["antecedents"]) == {"a", "b"}
        assert itemsets_table(frequent_itemsets(b, 0.5))["itemsets"].tolist() == ["a", "b", "a, b"]

    def test_read_baskets_and_table(self, tmp_path: Path) -> None:
        p = tmp_path / "b.csv"
        p.write_text('milk, bread ,milk\n"a, b",c\n\n', encoding="utf-8")
        assert read_baskets(p) == [["milk", "bread"], ["a, b", "c"], []]
        df = pd.DataFrame({"inv": [2, 1, 1, 2, None], "sku": ["x", "y", "x", "x", "z"]})
        assert baskets_from_table(df, "inv", "sku") == [["y", "x"], ["x"]]
        with pytest.raises(KeyError, match="'item'"):
            baskets_from_table(df, "inv", "item")

    def test_non_string_items(self) -> None:
        fi = frequent_itemsets([[1, 2], [1, 2], [2, 3]], 0.6)
        assert set(fi["itemsets"]) == {frozenset({1}), frozenset({2}), frozenset({1, 2})}
