r"""Key drivers of purchase: a shallow decision tree, its top splits and readable rules.

Paper 001/003 read the key purchase drivers off a decision tree.  :func:`key_drivers` fits a
scikit-learn :class:`~sklearn.tree.DecisionTreeClassifier` (depth ``max_depth``, balanced
leaves of at least ``min_leaf`` rows) on a stratified training part of the rows and reports:

* held-out accuracy (next to the majority-class baseline) and ROC AUC on the test part;
* per feature the tree's impurity importance and the permutation importance on the test
  part (drop of AUC when the feature is shuffled, mean and std over repeats) — the second
  checks the first, which favours features with many split points;
* the top splits by weighted impurity decrease (feature, threshold, depth, rows);
* the rules of the leaves whose purchase rate is above the overall rate, as the path from
  the root with one range per feature (``add_cart > 0.5 and views <= 12.5``), with rows,
  purchase rate and lift.

Missing feature values are allowed (the tree sends them down the better side); a missing
or non-binary target, or a non-numeric feature, is an error naming the column.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"carts": rng.integers(0, 4, 2000), "noise": rng.normal(size=2000)})
>>> df["bought"] = (df["carts"] >= 2) & (rng.random(2000) < 0.9)
>>> rep = key_drivers(df, "bought", ["carts", "noise"], max_depth=1)
>>> rep.importances[0]["feature"], rep.auc > 0.9
('carts', True)
>>> rep.rules[0]["rule"]
'carts > 1.5'
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DriverReport", "key_drivers"]


@dataclass
class DriverReport:
    """Result of :func:`key_drivers` (``as_dict`` gives JSON-ready data)."""

    target: str
    positive: str
    features: list[str]
    rows: int
    train_rows: int
    test_rows: int
    positive_rate: float
    max_depth: int
    accuracy: float
    baseline_accuracy: float
    auc: float
    importances: list[dict[str, Any]] = field(default_factory=list)
    splits: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data (floats rounded to 6 significant digits, NaN as null)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float):
                return None if not np.isfinite(v) else float(f"{v:.6g}")
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        out: dict[str, Any] = clean(asdict(self))
        return out


def _binary_target(y: pd.Series, name: str) -> tuple[np.ndarray[Any, Any], str]:
    if y.isna().any():
        row = int(np.flatnonzero(y.isna().to_numpy())[0])
        raise ValueError(f"target column {name!r}: missing value in row {row + 1}")
    if y.dtype == bool:
        return y.to_numpy(dtype=int), "True"
    values = sorted(pd.unique(y).tolist(), key=str)
    if len(values) != 2:
        raise ValueError(
            f"target column {name!r} must have two values (purchase or not); "
            f"found {len(values)}: {values[:5]}"
        )
    pos = 1 if set(values) == {0, 1} else values[1]
    return (y == pos).to_numpy(dtype=int), str(pos)


def _numeric(df: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    out = {}
    for f in features:
        col = df[f]
        if col.dtype == bool:
            out[f] = col.astype("float64")
            continue
        num = pd.to_numeric(col, errors="coerce")
        bad = num.isna() & col.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"feature column {f!r} is not numeric (row {row + 1}: {col.iloc[row]!r})"
            )
        out[f] = num.astype("float64")
    return pd.DataFrame(out, index=df.index)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def key_drivers(
    df: pd.DataFrame,
    target: str,
    features: list[str],
    *,
    max_depth: int = 3,
    min_leaf: int | None = None,
    test_size: float = 0.3,
    seed: int = 0,
    n_repeats: int = 10,
    top: int = 10,
) -> DriverReport:
    """Fit the driver tree and report its quality, importances, top splits and rules.

    Parameters
    ----------
    df
        One row per customer (or customer and period).
    target
        Binary column: purchase (1/True or the larger of two values) or not.
    features
        Numeric (or boolean) columns the tree may split on.
    max_depth
        Depth of the tree (readable rules: 2-4).
    min_leaf
        Rows per leaf at least (default: 1 % of the training rows, at least 5).
    test_size
        Share of rows held out (stratified) for accuracy, AUC and permutation importance.
    seed
        Random seed of the split, the tree and the permutations.
    n_repeats
        Permutations per feature.
    top
        Splits and rules reported at most.

    Raises
    ------
    ValueError
        Unknown column, a non-binary or missing target, a non-numeric feature, too few rows.
    """
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    t0 = time.perf_counter()
    missing = [c for c in [target, *features] if c not in df.columns]
    if missing:
        raise ValueError(f"column(s) not found: {', '.join(missing)}")
    if not features:
        raise ValueError("no feature columns given")
    if target in features:
        raise ValueError(f"the target {target!r} cannot also be a feature")
    y, pos = _binary_target(df[target], target)
    x = _numeric(df, features)
    counts = np.bincount(y, minlength=2)
    if counts.min() < 4:
        raise ValueError(
            f"target column {target!r}: need at least 4 rows of each class, got {counts.tolist()}"
        )
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=seed
    )
    leaf = min_leaf if min_leaf is not None else max(5, len(y_tr) // 100)
    tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=leaf, random_state=seed)
    tree.fit(x_tr, y_tr)
    p = tree.predict_proba(x_te)[:, 1]
    auc = float(roc_auc_score(y_te, p)) if len(set(y_te.tolist())) == 2 else float("nan")
    perm = permutation_importance(
        tree, x_te, y_te, scoring="roc_auc", n_repeats=n_repeats, random_state=seed
    )
    imps: list[dict[str, Any]] = [
        {
            "feature": f,
            "importance": float(tree.feature_importances_[i]),
            "permutation_importance": float(perm.importances_mean[i]),
            "permutation_std": float(perm.importances_std[i]),
        }
        for i, f in enumerate(features)
    ]
    imps.sort(key=lambda d: (-float(d["importance"]), -float(d["permutation_importance"])))
    base_rate = float(y_tr.mean())
    rep = DriverReport(
        target=target,
        positive=pos,
        features=list(features),
        rows=len(y),
        train_rows=len(y_tr),
        test_rows=len(y_te),
        positive_rate=float(y.mean()),
        max_depth=max_depth,
        accuracy=float(accuracy_score(y_te, (p >= 0.5).astype(int))),
        baseline_accuracy=float(max(y_te.mean(), 1 - y_te.mean())),
        auc=auc,
        importances=imps,
        splits=_splits(tree, features)[:top],
        rules=_rules(tree, features, base_rate)[:top],
    )
    rep.seconds = time.perf_counter() - t0
    return rep


def _splits(tree: Any, features: list[str]) -> list[dict[str, Any]]:
    t = tree.tree_
    n = float(t.weighted_n_node_samples[0])
    depth = {0: 0}
    out: list[dict[str, Any]] = []
    for node in range(t.node_count):
        left, right = int(t.children_left[node]), int(t.children_right[node])
        if left == -1:
            continue
        depth[left] = depth[right] = depth[node] + 1
        nt, nl, nr = (float(t.weighted_n_node_samples[k]) for k in (node, left, right))
        gain = (nt * t.impurity[node] - nl * t.impurity[left] - nr * t.impurity[right]) / n
        out.append(
            {
                "feature": features[int(t.feature[node])],
                "threshold": float(t.threshold[node]),
                "depth": depth[node],
                "rows": int(t.n_node_samples[node]),
                "impurity_decrease": float(gain),
            }
        )
    out.sort(key=lambda d: (-float(d["impurity_decrease"]), int(d["depth"])))
    return out


def _rules(tree: Any, features: list[str], base_rate: float) -> list[dict[str, Any]]:
    """Leaves with a purchase rate above ``base_rate``, as readable paths."""
    t = tree.tree_
    out: list[dict[str, Any]] = []

    def walk(node: int, bounds: dict[str, list[float]]) -> None:
        left, right = int(t.children_left[node]), int(t.children_right[node])
        if left == -1:
            value = t.value[node][0]
            rate = float(value[1] / value.sum()) if value.sum() else 0.0
            if rate > base_rate:
                parts = []
                for f in features:  # features in the caller's order
                    if f not in bounds:
                        continue
                    lo, hi = bounds[f]
                    if np.isfinite(lo) and np.isfinite(hi):
                        parts.append(f"{_fmt(lo)} < {f} <= {_fmt(hi)}")
                    elif np.isfinite(lo):
                        parts.append(f"{f} > {_fmt(lo)}")
                    else:
                        parts.append(f"{f} <= {_fmt(hi)}")
                out.append(
                    {
                        "rule": " and ".join(parts) or "(all rows)",
                        "rows": int(t.n_node_samples[node]),
                        "purchase_rate": rate,
                        "lift": rate / base_rate if base_rate else float("nan"),
                    }
                )
            return
        f = features[int(t.feature[node])]
        thr = float(t.threshold[node])
        lo, hi = bounds.get(f, [-np.inf, np.inf])
        walk(left, {**bounds, f: [lo, min(hi, thr)]})
        walk(right, {**bounds, f: [max(lo, thr), hi]})

    walk(0, {})
    out.sort(key=lambda d: (-float(d["purchase_rate"]), -int(d["rows"])))
    return out
