"""One-row evaluation agrees with the column-wise evaluation of the tag language."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopersona.strategy.scalar import evaluate_one
from autopersona.tags.expr import ExprError, parse

EXPRESSIONS = [
    "route_km > remaining_range_km",
    "a >= 1.2 * prev(a) and prev(a) > 0",
    "coalesce(a, 0) + coalesce(b, 0) >= 3",
    "not (a < b) or isnull(c)",
    "min(a, b) / max(a, b, 1) <= 0.5",
    "abs(a - b) % 3 > 1 and c in ['x', 'y']",
    "c not in ['x'] and flag == True",
    "coalesce(flag, a > 1)",
    "1 < a <= b",
    "-a + b * 2 != 0 or flag",
]
nums = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.integers(-50, 50))
rows = st.fixed_dictionaries(
    {
        "a": nums,
        "b": nums,
        "prev(a)": nums,
        "route_km": nums,
        "remaining_range_km": nums,
        "c": st.one_of(st.none(), st.sampled_from(["x", "y", "z"])),
        "flag": st.one_of(st.none(), st.booleans()),
    }
)


def _same(x: object, y: object) -> bool:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return y is None
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
    return bool(x == y)


@settings(max_examples=150, deadline=None)
@given(row=rows, src=st.sampled_from(EXPRESSIONS))
def test_one_row_matches_the_column_evaluation(row: dict[str, object], src: str) -> None:
    e = parse(src)
    frame = pd.DataFrame({k: pd.Series([v], dtype=object) for k, v in row.items()})
    col = e.evaluate(frame).iloc[0]
    assert _same(col, evaluate_one(e, row)), (src, row, col)


def test_type_errors_and_unknown_names() -> None:
    with pytest.raises(ExprError, match="unknown name 'nope'"):
        evaluate_one(parse("nope > 1"), {})
    with pytest.raises(ExprError, match="cannot compare a number with a string"):
        evaluate_one(parse("a > 'x'"), {"a": 1})
    with pytest.raises(ExprError, match="and/or/not need conditions"):
        evaluate_one(parse("a and True"), {"a": 2})
