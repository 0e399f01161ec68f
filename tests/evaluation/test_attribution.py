from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopersona.evaluation.attribution import (
    absorption_probability,
    attribute,
    attribution_figure,
    last_touch,
    markov_removal,
    paths,
    position_based,
    removal_effects,
    shapley,
    transition_counts,
)


def touches_from(journeys):
    """[(channels, converted[, value])] -> a touch table with daily times, shuffled rows."""
    rows = []
    for j, spec in enumerate(journeys):
        chans, conv = spec[0], spec[1]
        value = spec[2] if len(spec) > 2 else float(conv)
        for k, c in enumerate(chans):
            rows.append(
                (f"p{j}", c, pd.Timestamp("2024-01-01") + pd.Timedelta(days=k), conv, value)
            )
    df = pd.DataFrame(rows, columns=["person", "channel", "time", "converted", "value"])
    return df.sample(frac=1.0, random_state=0)  # order must come from the times


def P(journeys, **kw):
    return paths(touches_from(journeys), "person", "channel", "time", "converted", "value", **kw)


EXAMPLE = [(["email", "app"], 1), (["email", "push"], 0), (["push"], 1)]


def test_paths_order_by_time_and_aggregate():
    p = P([*EXAMPLE, (["push"], 1), (["push"], 0)])
    rows = {r.path: r for r in p.itertuples()}
    assert set(rows) == {("email", "app"), ("email", "push"), ("push",)}
    assert (rows[("push",)].journeys, rows[("push",)].conversions, rows[("push",)].nulls) == (
        3,
        2,
        1,
    )
    assert rows[("email", "push")].conversions == 0


def test_hand_checked_markov_example():
    p = P(EXAMPLE)
    # start -> email 2/3, push 1/3; email -> app 1/2, push 1/2; app -> conv; push -> conv 1/2
    base = 2 / 3 * (0.5 + 0.5 * 0.5) + 1 / 3 * 0.5
    counts = transition_counts(p)
    assert absorption_probability(counts) == pytest.approx(base)
    assert absorption_probability(counts, removed="email") == pytest.approx(1 / 6)
    eff = removal_effects(p)
    assert eff.to_dict() == pytest.approx({"app": 0.5, "email": 0.75, "push": 0.5})
    credit = markov_removal(p)
    assert credit.to_dict() == pytest.approx({"app": 2 / 3.5, "email": 3 / 3.5, "push": 2 / 3.5})


def test_rules_by_hand():
    p = P([(["a", "b", "c", "a"], 1), (["b"], 1), (["c", "b"], 1), (["a", "c"], 0)])
    assert last_touch(p).to_dict() == {"a": 1.0, "b": 2.0, "c": 0.0}
    # 4 touches: 0.4 / 0.1 / 0.1 / 0.4 (a twice); one touch: 1; two touches: 0.5 / 0.5
    assert position_based(p).to_dict() == pytest.approx({"a": 0.8, "b": 0.1 + 1 + 0.5, "c": 0.6})
    table = attribute(p)
    assert table["first_touch"].to_dict() == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert table["linear"].to_dict() == pytest.approx({"a": 0.5, "b": 1.75, "c": 0.75})


def test_single_channel_gets_everything():
    p = P([(["email"], 1), (["email", "email"], 1), (["email"], 0)])
    table = attribute(p)
    assert table.index.tolist() == ["email"]
    assert (table.loc["email"] == 2.0).all()


def test_value_attribution_and_collapse():
    p = P([(["a", "a", "b"], 1, 30.0), (["b"], 1, 10.0), (["a"], 0, 99.0)], collapse_repeats=True)
    assert ("a", "b") in set(p["path"])
    table = attribute(p, by_value=True)
    assert np.allclose(table.sum(axis=0), 40.0)  # a non-converting journey's value is not counted
    assert table.loc["b", "last_touch"] == 40.0


# --------------------------------------------------------------------------- brute force
def brute_absorption(journeys, removed=None, steps=3000):
    """Absorption probability by iterating the chain's distribution (no linear solve)."""
    counts = defaultdict(lambda: defaultdict(float))
    for chans, conv in journeys:
        seq = ["S", *chans, "CONV" if conv else "NULL"]
        for a, b in itertools.pairwise(seq):
            counts[a][b] += 1
    if removed is not None:
        for a in list(counts):
            if removed in counts[a]:
                counts[a]["NULL"] += counts[a].pop(removed)
    dist = {"S": 1.0}
    absorbed = 0.0
    for _ in range(steps):
        nxt = defaultdict(float)
        for s, mass in dist.items():
            total = sum(counts[s].values())
            for t, n in counts[s].items():
                if t == "CONV":
                    absorbed += mass * n / total
                elif t != "NULL":
                    nxt[t] += mass * n / total
        dist = nxt
        if sum(dist.values()) < 1e-15:
            break
    return absorbed


journeys_st = st.lists(
    st.tuples(st.lists(st.sampled_from("abcd"), min_size=1, max_size=5), st.integers(0, 1)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=30, deadline=None)
@given(journeys=journeys_st)
def test_markov_matches_brute_force(journeys):
    p = P(journeys)
    counts = transition_counts(p)
    assert absorption_probability(counts) == pytest.approx(brute_absorption(journeys), abs=1e-9)
    channels = sorted({c for chans, _ in journeys for c in chans})
    base = brute_absorption(journeys)
    eff = removal_effects(p)
    for c in channels:
        expected = 0.0 if base == 0 else 1 - brute_absorption(journeys, removed=c) / base
        assert eff[c] == pytest.approx(expected, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(journeys=journeys_st)
def test_every_method_credits_the_conversions(journeys):
    p = P(journeys)
    conversions = sum(conv for _, conv in journeys)
    table = attribute(p)
    assert np.allclose(table.sum(axis=0), conversions)
    assert (table.to_numpy() >= -1e-12).all()
    eff = removal_effects(p)
    assert ((eff >= -1e-12) & (eff <= 1 + 1e-12)).all()


def test_bad_inputs():
    t = touches_from(EXAMPLE)
    with pytest.raises(ValueError, match="no column 'when'"):
        paths(t, "person", "channel", "when", "converted")
    t.loc[t.index[0], "converted"] = 2
    with pytest.raises(ValueError, match="converted: row 0 is 2, not 0 or 1"):
        paths(t, "person", "channel", "time", "converted")
    t = touches_from(EXAMPLE)
    t.loc[t.index[1], "channel"] = "(null)"
    with pytest.raises(ValueError, match=r"channel: row 1 uses the reserved name \(null\)"):
        paths(t, "person", "channel", "time", "converted")
    with pytest.raises(ValueError, match="unknown method"):
        attribute(P(EXAMPLE), methods=["banzhaf"])
    with pytest.raises(ValueError, match="sum to at most 1"):
        position_based(P(EXAMPLE), first=0.7, last=0.7)


def test_attribution_figure():
    fig = attribution_figure(attribute(P(EXAMPLE)))
    ax = fig.axes[0]
    assert len(ax.patches) == 3 * 6
    assert [t.get_text() for t in ax.get_xticklabels()] == ["app", "email", "push"]


def brute_shapley(journeys):
    """Average marginal contribution over every ordering of the channels."""
    channels = sorted({c for chans, _ in journeys for c in chans})

    def v(coalition):
        return sum(conv for chans, conv in journeys if set(chans) <= coalition)

    phi = dict.fromkeys(channels, 0.0)
    orders = list(itertools.permutations(channels))
    for order in orders:
        members = set()
        for c in order:
            before = v(members)
            members.add(c)
            phi[c] += v(members) - before
    return {c: x / len(orders) for c, x in phi.items()}


@settings(max_examples=25, deadline=None)
@given(journeys=journeys_st)
def test_shapley_matches_permutation_brute_force(journeys):
    assert shapley(P(journeys)).to_dict() == pytest.approx(brute_shapley(journeys))


def test_shapley_by_hand():
    p = P([(["a", "b", "a"], 1), (["b", "c"], 1), (["c"], 0)])
    assert shapley(p).to_dict() == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.5})
