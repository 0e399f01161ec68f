"""Small frame helpers shared by the relational feature domains."""

from __future__ import annotations

from typing import Any

import pandas as pd

from autopersona.features.engines import Engine

__all__ = ["ratio", "run", "text_columns", "top_share"]


def ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    """``num / den`` as floats, null where the denominator is not positive.

    >>> ratio(pd.Series([1, 2]), pd.Series([2, 0])).tolist()
    [0.5, nan]
    """
    d = den.astype("float64")
    return num.astype("float64") / d.where(d > 0)


def run(eng: Engine, expr: Any) -> pd.DataFrame:
    """Execute ``expr``; an empty result gets plain ``object`` columns for its strings.

    pandas cannot merge on an empty Arrow-backed string column (no chunks), so steps merge
    the frames this returns, which behave the same whether a part is empty or not.
    """
    df = eng.execute(expr)
    if df.empty:
        for col in df.columns:
            if pd.api.types.is_string_dtype(df[col]):
                df[col] = pd.Series([], dtype="object")
    return df


def text_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Turn ``object`` columns into pandas strings, stored as VARCHAR even when all null.

    DuckDB would give an empty or all-null ``object`` column the type NULL.

    Examples
    --------
    >>> text_columns(pd.DataFrame({"a": pd.Series([None], dtype="object")})).dtypes["a"]
    <StringDtype(na_value=nan)>
    """
    for col in df.columns:
        s = df[col]
        if s.dtype == object and s.dropna().map(lambda v: isinstance(v, str)).all():
            df[col] = s.astype("str")
    return df


def top_share(
    df: pd.DataFrame, key: list[str], item: str, weight: str, prefix: str
) -> pd.DataFrame:
    """The heaviest ``item`` per ``key`` and its share of the key's total ``weight``.

    Ties go to the smallest item name, so the choice is the same on every engine.

    Parameters
    ----------
    df
        One row per (key..., item) with a non-negative ``weight``.
    key
        Group columns.
    item
        Column naming the thing ranked (an app, a category, ...).
    weight
        Column to rank by.
    prefix
        Output columns are ``<prefix>`` (the item) and ``<prefix>_share``.

    Examples
    --------
    >>> d = pd.DataFrame({"k": [1, 1, 1, 2], "app": ["b", "a", "c", "x"], "w": [2.0, 2.0, 1.0, 0]})
    >>> top_share(d, ["k"], "app", "w", "top_app")
       k top_app  top_app_share
    0  1       a            0.4
    1  2       x            NaN
    """
    d = df[df[item].notna()].copy()
    if d.empty:
        out = d[key].copy()
        out[prefix] = pd.Series([], dtype="object")
        out[f"{prefix}_share"] = pd.Series([], dtype="float64")
        return out.reset_index(drop=True)
    d[weight] = d[weight].fillna(0).astype("float64")
    total = d.groupby(key)[weight].transform("sum")
    d["_share"] = d[weight] / total.where(total > 0)
    d = d.sort_values([*key, weight, item], ascending=[True] * len(key) + [False, True])
    best = d.drop_duplicates(key, keep="first")
    out = best[[*key, item, "_share"]].rename(columns={item: prefix, "_share": f"{prefix}_share"})
    return out.reset_index(drop=True)
