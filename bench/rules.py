"""Association rules on Groceries: autopersona vs mlxtend ``fpgrowth`` + ``association_rules``.

For each minimum support (default 0.01 and 0.005; confidence 0.5) both miners get the same
9,835 baskets. The bench checks that they find the same frequent itemsets with the same
supports and the same rules with the same confidence and lift, then reports the time per
run (best of ``--repeat``; reading the file is not timed) and the ratio mlxtend /
autopersona (above 1: autopersona is faster). mlxtend needs a one-hot frame, whose
encoding (``TransactionEncoder``) is timed apart and shown in its own column; autopersona
takes the baskets as lists, so its time includes its own encoding.

Groceries (R package arules, GPL-3) is read from ``../shared/data/groceries``. Usage::

    python bench/rules.py [--support 0.01 0.005] [--confidence 0.5] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GROCERIES = ROOT.parent / "shared" / "data" / "groceries" / "groceries.csv"


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=GROCERIES)
    ap.add_argument("--support", type=float, nargs="+", default=[0.01, 0.005])
    ap.add_argument("--confidence", type=float, default=0.5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.data.is_file():
        print(f"Groceries not found at {args.data}; nothing to measure", file=sys.stderr)
        return 0

    import pandas as pd

    from autopersona.models.rules import association_rules, frequent_itemsets, read_baskets

    try:
        from mlxtend.frequent_patterns import association_rules as mx_rules
        from mlxtend.frequent_patterns import fpgrowth
        from mlxtend.preprocessing import TransactionEncoder
    except ImportError:
        mx_rules = fpgrowth = TransactionEncoder = None
        print("mlxtend not installed: timing autopersona only", file=sys.stderr)

    baskets = read_baskets(args.data)
    t_encode = None
    onehot = None
    if TransactionEncoder is not None:

        def encode() -> Any:
            te = TransactionEncoder()
            return pd.DataFrame(te.fit(baskets).transform(baskets), columns=te.columns_)

        t_encode, onehot = _best(encode, args.repeat)

    results = []
    for s in args.support:

        def ours(s: float = s) -> tuple[Any, Any]:
            fi = frequent_itemsets(baskets, s)
            return fi, association_rules(fi, args.confidence)

        t_ours, (fi, rules) = _best(ours, args.repeat)
        t_ours_items, _ = _best(lambda s=s: frequent_itemsets(baskets, s), args.repeat)
        row: dict[str, Any] = {
            "min_support": s,
            "itemsets": len(fi),
            "by_size": fi["length"].value_counts().sort_index().tolist(),
            "rules": len(rules),
            "autopersona_s": t_ours,
            "autopersona_itemsets_s": t_ours_items,
        }
        if fpgrowth is not None:

            def theirs(s: float = s) -> tuple[Any, Any]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    f = fpgrowth(onehot, min_support=s, use_colnames=True)
                    return f, mx_rules(
                        f, len(baskets), metric="confidence", min_threshold=args.confidence
                    )

            t_theirs, (mf, mr) = _best(theirs, args.repeat)
            t_theirs_items, _ = _best(
                lambda s=s: fpgrowth(onehot, min_support=s, use_colnames=True), args.repeat
            )
            a = dict(zip(fi["itemsets"], fi["support"], strict=True))
            m = dict(zip(mf["itemsets"], mf["support"], strict=True))
            same_sets = a.keys() == m.keys()
            ra = {
                (x, y): (c, lift)
                for x, y, c, lift in zip(
                    rules["antecedents"], rules["consequents"],
                    rules["confidence"], rules["lift"], strict=True,
                )
            }  # fmt: skip
            rm = {
                (x, y): (c, lift)
                for x, y, c, lift in zip(
                    mr["antecedents"], mr["consequents"], mr["confidence"], mr["lift"], strict=True
                )
            }
            row.update(
                {
                    "mlxtend_itemsets": len(mf),
                    "mlxtend_rules": len(mr),
                    "same_itemsets": same_sets,
                    "support_max_diff": max(abs(a[k] - m[k]) for k in a) if same_sets else None,
                    "same_rules": ra.keys() == rm.keys(),
                    "rule_metric_max_diff": max(
                        max(abs(ra[k][0] - rm[k][0]), abs(ra[k][1] - rm[k][1])) for k in ra
                    )
                    if ra and ra.keys() == rm.keys()
                    else None,
                    "mlxtend_s": t_theirs,
                    "mlxtend_itemsets_s": t_theirs_items,
                    "mlxtend_encode_s": t_encode,
                    "speedup": t_theirs / t_ours,
                    "speedup_itemsets": t_theirs_items / t_ours_items,
                    "speedup_with_encoding": (t_theirs + (t_encode or 0.0)) / t_ours,
                }
            )
        results.append(row)

    if args.json:
        print(json.dumps({"baskets": len(baskets), "results": results}, indent=2))
        return 0
    print(f"Groceries: {len(baskets):,} baskets, min_confidence {args.confidence}")
    for r in results:
        print(
            f"\nmin_support {r['min_support']}: {r['itemsets']} itemsets {r['by_size']}, "
            f"{r['rules']} rules"
        )
        if "mlxtend_s" in r:
            print(
                f"  mlxtend: {r['mlxtend_itemsets']} itemsets, {r['mlxtend_rules']} rules; "
                f"same itemsets {r['same_itemsets']} (support diff {r['support_max_diff']:.1e}), "
                f"same rules {r['same_rules']} (metric diff {r['rule_metric_max_diff']:.1e})"
            )
            print(f"  {'seconds':<26}{'autopersona':>12}{'mlxtend':>10}{'speedup':>9}")
            print(
                f"  {'itemsets':<26}{r['autopersona_itemsets_s']:>12.4f}"
                f"{r['mlxtend_itemsets_s']:>10.4f}{r['speedup_itemsets']:>8.1f}x"
            )
            print(
                f"  {'itemsets + rules':<26}{r['autopersona_s']:>12.4f}"
                f"{r['mlxtend_s']:>10.4f}{r['speedup']:>8.1f}x"
            )
            print(
                f"  {'  + mlxtend one-hot encode':<26}{'':>12}"
                f"{r['mlxtend_s'] + r['mlxtend_encode_s']:>10.4f}"
                f"{r['speedup_with_encoding']:>8.1f}x"
            )
        else:
            print(f"  autopersona {r['autopersona_s']:.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
