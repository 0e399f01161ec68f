r"""Frequent itemsets and association rules (market-basket analysis, paper 001 §2.4).

Itemsets are mined level by level with a vectorised, bitset form of Eclat (Zaki 2000):
every frequent item keeps the set of baskets holding it as a row of 64-bit words; the
candidates of size :math:`k+1` are the pairs of frequent :math:`k`-itemsets sharing their
first :math:`k-1` items, and a candidate's support is the popcount of the AND of the two
bitsets, computed for whole blocks of candidates at once with numpy. The result is exactly
the set of itemsets an FP-Growth or Apriori miner returns; it is faster than both on
basket data of this shape (thousands to millions of baskets, hundreds to thousands of
items), and its memory is bounded by processing candidates in blocks.

Rules :math:`X \Rightarrow Y` come from every frequent itemset :math:`X \cup Y` and every
non-empty proper subset :math:`X`, with

* support :math:`s(X \cup Y)`, confidence :math:`c = s(X \cup Y) / s(X)`,
* lift :math:`c / s(Y)`, leverage :math:`s(X \cup Y) - s(X) s(Y)`,
* conviction :math:`(1 - s(Y)) / (1 - c)` (infinite when :math:`c = 1`).

Thresholds are inclusive and compared on integer counts (an itemset is frequent when its
count is at least ``min_support * n`` less 1e-9; a rule passes when its confidence is at
least ``min_confidence`` less 1e-12), so ties such as a confidence of exactly 0.5 pass.

References
----------
Agrawal, R., Imieliński, T., & Swami, A. (1993). Mining association rules between sets of
items in large databases. *SIGMOD*, 207-216.

Zaki, M. J. (2000). Scalable algorithms for association mining. *IEEE TKDE*, 12(3), 372-390.

Examples
--------
>>> baskets = [["milk", "bread"], ["milk", "diapers", "beer"], ["milk", "bread", "diapers"],
...            ["bread", "diapers", "beer"], ["milk", "bread", "diapers", "beer"]]
>>> fi = frequent_itemsets(baskets, min_support=0.6)
>>> [(sorted(s), round(v, 2)) for s, v in zip(fi["itemsets"], fi["support"])]
[(['bread'], 0.8), (['diapers'], 0.8), (['milk'], 0.8), (['beer'], 0.6), (['beer', 'diapers'], 0.6), (['bread', 'diapers'], 0.6), (['bread', 'milk'], 0.6), (['diapers', 'milk'], 0.6)]
>>> r = association_rules(fi, min_confidence=0.75)
>>> top = r.iloc[0]
>>> sorted(top.antecedents), sorted(top.consequents), float(top.confidence), float(top.lift)
(['beer'], ['diapers'], 1.0, 1.25)
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "association_rules",
    "baskets_from_table",
    "frequent_itemsets",
    "itemsets_table",
    "read_baskets",
    "rules_table",
]

IntArray = npt.NDArray[np.int64]
WordArray = npt.NDArray[np.uint64]
#: Words (8 bytes each) of candidate bitsets handled in one numpy block (32 MB).
BLOCK_WORDS = 1 << 22
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount_rows(words: WordArray) -> IntArray:
    """Set bits per row of a 2-d uint64 array."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.asarray(np.bitwise_count(words).sum(axis=1), dtype=np.int64)
    as_bytes = np.ascontiguousarray(words).view(np.uint8)  # pragma: no cover - numpy 1.x
    return np.asarray(_POP8[as_bytes].sum(axis=1), dtype=np.int64)  # pragma: no cover


# --------------------------------------------------------------------------- input
def read_baskets(path: str | Path, *, delimiter: str = ",") -> list[list[str]]:
    r"""Read a basket file: one basket per line, items separated by ``delimiter``.

    Surrounding spaces are stripped, empty fields and duplicate items dropped, quoted
    fields (``"a, b"``) honoured. Blank lines are empty baskets (they count in ``n``).

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "b.csv"
    >>> _ = p.write_text("milk, bread\nbeer,beer\n")
    >>> read_baskets(p)
    [['milk', 'bread'], ['beer']]
    """
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            list(dict.fromkeys(f.strip() for f in row if f.strip()))
            for row in csv.reader(fh, delimiter=delimiter)
        ]


def baskets_from_table(df: pd.DataFrame, basket: str, item: str) -> list[list[str]]:
    """Group a long transaction table (one row per basket line) into baskets.

    Examples
    --------
    >>> df = pd.DataFrame({"invoice": [1, 1, 2, 2, 2], "sku": ["a", "b", "a", "a", "c"]})
    >>> baskets_from_table(df, "invoice", "sku")
    [['a', 'b'], ['a', 'c']]
    """
    for c in (basket, item):
        if c not in df.columns:
            raise KeyError(f"column {c!r} not in the table")
    d = df[[basket, item]].dropna().drop_duplicates()
    return [list(map(str, g)) for _, g in d.groupby(basket, sort=True)[item]]


def _encode(baskets: Iterable[Iterable[object]]) -> tuple[IntArray, IntArray, list[object], int]:
    """Basket and item ids of every distinct (basket, item) pair, the item names, n."""
    lens: list[int] = []
    flat: list[object] = []
    for b in baskets:
        before = len(flat)
        flat.extend(b)
        lens.append(len(flat) - before)
    n = len(lens)
    codes, names = pd.factorize(pd.Series(flat, dtype="object"), sort=True)
    tid = np.repeat(np.arange(n, dtype=np.int64), lens)
    item = codes.astype(np.int64)
    if len(item):
        key = np.unique(tid * max(len(names), 1) + item)
        tid, item = key // max(len(names), 1), key % max(len(names), 1)
    return tid, item, list(names), n


def _bitsets(tid: IntArray, item: IntArray, n_items: int, n: int) -> WordArray:
    """One row of ``ceil(n/64)`` words per item; bit ``t`` set when basket ``t`` holds it."""
    n_words = max(1, (n + 63) // 64)
    out = np.zeros((n_items, n_words), dtype=np.uint64)
    if len(tid) == 0:
        return out
    word = tid >> 6
    bit = np.left_shift(np.uint64(1), (tid & 63).astype(np.uint64))
    order = np.lexsort((word, item))
    item, word, bit = item[order], word[order], bit[order]
    cell = item * n_words + word
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    out.ravel()[cell[starts]] = np.bitwise_or.reduceat(bit, starts)
    return out


def _join_pairs(sets: IntArray) -> tuple[IntArray, IntArray]:
    """All pairs (i < j) of lexicographically sorted k-itemsets with equal first k-1 items."""
    n, k = sets.shape
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    if k == 1:
        new_group = np.r_[True, np.zeros(n - 1, dtype=bool)]
    else:
        new_group = np.r_[True, np.any(sets[1:, :-1] != sets[:-1, :-1], axis=1)]
    group = np.cumsum(new_group) - 1
    ends = np.r_[np.flatnonzero(new_group)[1:], n]
    end_of = ends[group]
    counts = end_of - np.arange(n) - 1
    left = np.repeat(np.arange(n, dtype=np.int64), counts)
    offset = np.arange(len(left)) - np.repeat(np.cumsum(counts) - counts, counts)
    return left, left + 1 + offset


# --------------------------------------------------------------------------- itemsets
def frequent_itemsets(
    baskets: Iterable[Iterable[object]],
    min_support: float,
    *,
    max_len: int | None = None,
) -> pd.DataFrame:
    """All itemsets whose support (share of baskets holding them) is at least ``min_support``.

    Parameters
    ----------
    baskets
        Iterable of baskets, each an iterable of hashable items (duplicates ignored).
    min_support
        In (0, 1].
    max_len
        Largest itemset size to mine (default: no limit).

    Returns
    -------
    pandas.DataFrame
        Columns ``itemsets`` (frozenset), ``support``, ``count``, ``length``; ordered by
        length, then support (descending), then items. ``attrs["n_baskets"]`` holds the
        number of baskets, which :func:`association_rules` needs.

    Examples
    --------
    >>> fi = frequent_itemsets([["a", "b"], ["a"], ["a", "b", "c"]], min_support=0.5)
    >>> fi[["count", "length"]].values.tolist()
    [[3, 1], [2, 1], [2, 2]]
    >>> fi.attrs["n_baskets"]
    3
    """
    if not 0.0 < min_support <= 1.0:
        raise ValueError(f"min_support must be in (0, 1], got {min_support}")
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    tid, item, names, n = _encode(baskets)
    if n == 0:
        raise ValueError("no baskets")
    min_count = max(1, int(np.ceil(min_support * n - 1e-9)))
    counts = np.bincount(item, minlength=len(names)).astype(np.int64)
    keep = np.flatnonzero(counts >= min_count)
    # Items in ascending support: smaller bitsets early, fewer candidates per prefix.
    keep = keep[np.lexsort((keep, counts[keep]))]
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    mask = remap[item] >= 0
    bits = _bitsets(tid[mask], remap[item[mask]], len(keep), n)

    levels_sets: list[IntArray] = [np.arange(len(keep), dtype=np.int64)[:, None]]
    levels_counts: list[IntArray] = [counts[keep]]
    n_words = bits.shape[1]
    block = max(1, BLOCK_WORDS // n_words)
    while max_len is None or levels_sets[-1].shape[1] < max_len:
        sets = levels_sets[-1]
        left, right = _join_pairs(sets)
        if len(left) == 0:
            break
        new_sets: list[IntArray] = []
        new_counts: list[IntArray] = []
        new_bits: list[WordArray] = []
        for s in range(0, len(left), block):
            lb, rb = left[s : s + block], right[s : s + block]
            inter = bits[lb] & bits[rb]
            c = _popcount_rows(inter)
            ok = c >= min_count
            if ok.any():
                new_sets.append(np.column_stack([sets[lb[ok]], sets[rb[ok], -1]]))
                new_counts.append(c[ok])
                new_bits.append(inter[ok])
        if not new_sets:
            break
        levels_sets.append(np.concatenate(new_sets))
        levels_counts.append(np.concatenate(new_counts))
        bits = np.concatenate(new_bits)

    # Output order: by size, then count (descending), then items (codes are in name order).
    rows: list[frozenset[object]] = []
    cnt: list[IntArray] = []
    length: list[IntArray] = []
    for sets, c in zip(levels_sets, levels_counts, strict=True):
        codes = np.sort(keep[sets], axis=1)
        order = np.lexsort((*(codes[:, j] for j in range(codes.shape[1] - 1, -1, -1)), -c))
        rows.extend(frozenset(map(names.__getitem__, r)) for r in codes[order].tolist())
        cnt.append(c[order])
        length.append(np.full(len(c), sets.shape[1], dtype=np.int64))
    all_counts = np.concatenate(cnt)
    out = pd.DataFrame(
        {
            "itemsets": pd.Series(rows, dtype="object"),
            "support": all_counts / n,
            "count": all_counts,
            "length": np.concatenate(length),
        }
    )
    out.attrs["n_baskets"] = n
    out.attrs["min_support"] = min_support
    return out


# --------------------------------------------------------------------------- rules
RULE_COLUMNS = [
    "antecedents",
    "consequents",
    "antecedent_support",
    "consequent_support",
    "support",
    "confidence",
    "lift",
    "leverage",
    "conviction",
    "count",
]


def association_rules(
    itemsets: pd.DataFrame,
    min_confidence: float = 0.5,
    *,
    min_lift: float | None = None,
    n_baskets: int | None = None,
) -> pd.DataFrame:
    """Association rules with their support, confidence, lift, leverage and conviction.

    Parameters
    ----------
    itemsets
        Output of :func:`frequent_itemsets` (every subset of a frequent itemset must be in
        it, which holds for any complete miner's output).
    min_confidence
        Keep rules with confidence at least this, in [0, 1].
    min_lift
        Optionally keep only rules with lift at least this.
    n_baskets
        Number of baskets; default ``itemsets.attrs["n_baskets"]``.

    Returns
    -------
    pandas.DataFrame
        Columns ``antecedents``, ``consequents`` (frozensets), ``antecedent_support``,
        ``consequent_support``, ``support``, ``confidence``, ``lift``, ``leverage``,
        ``conviction``, ``count``; ordered by lift, then confidence (both descending),
        ties in the order of ``itemsets``.

    Examples
    --------
    >>> fi = frequent_itemsets([["a", "b"], ["a"], ["a", "b", "c"], ["b"]], min_support=0.5)
    >>> r = association_rules(fi, min_confidence=0.6)
    >>> r[["antecedents", "consequents", "confidence"]].values.tolist()
    [[frozenset({'a'}), frozenset({'b'}), 0.666...], [frozenset({'b'}), frozenset({'a'}), 0.666...]]
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    n = int(n_baskets if n_baskets is not None else itemsets.attrs.get("n_baskets", 0))
    if n <= 0:
        raise ValueError("n_baskets unknown: pass it or use frequent_itemsets' output")
    sets = list(itemsets["itemsets"])
    counts = itemsets["count"].to_numpy(dtype=np.int64)
    # Items -> ids, itemsets -> sorted id tuples; one lookup table per size.
    universe: list[object] = sorted({i for s in sets for i in s}, key=str)
    ids = {v: k for k, v in enumerate(universe)}
    by_len: dict[int, tuple[IntArray, IntArray]] = {}
    tuples = [sorted(ids[i] for i in s) for s in sets]
    lengths = np.array([len(t) for t in tuples], dtype=np.int64)
    for k in np.unique(lengths):
        idx = np.flatnonzero(lengths == k)
        arr = np.array([tuples[i] for i in idx], dtype=np.int64).reshape(len(idx), int(k))
        by_len[int(k)] = (arr, counts[idx])
    lookup = {k: _SortedRows(arr, c) for k, (arr, c) in by_len.items()}

    ante: list[IntArray] = []
    cons: list[IntArray] = []
    n_ab: list[IntArray] = []
    n_a: list[IntArray] = []
    n_c: list[IntArray] = []
    for k, (arr, c_all) in by_len.items():
        if k < 2:
            continue
        for mask in range(1, (1 << k) - 1):
            a_pos = [i for i in range(k) if mask >> i & 1]
            c_pos = [i for i in range(k) if not mask >> i & 1]
            if len(a_pos) not in lookup or len(c_pos) not in lookup:
                raise ValueError(_NOT_CLOSED)
            c_a = lookup[len(a_pos)].count(arr[:, a_pos])
            ok = c_all >= min_confidence * c_a - 1e-12 * c_a
            if not ok.any():
                continue
            ante.append(arr[ok][:, a_pos])
            cons.append(arr[ok][:, c_pos])
            n_ab.append(c_all[ok])
            n_a.append(c_a[ok])
            n_c.append(lookup[len(c_pos)].count(arr[ok][:, c_pos]))
    if not n_ab:
        return _empty_rules()
    count = np.concatenate(n_ab)
    s_ab = count / n
    s_a = np.concatenate(n_a) / n
    s_c = np.concatenate(n_c) / n
    conf = count / np.concatenate(n_a)
    with np.errstate(divide="ignore"):
        conviction = np.where(conf < 1.0, (1.0 - s_c) / np.maximum(1.0 - conf, 1e-300), np.inf)

    def named(parts: list[IntArray]) -> list[frozenset[object]]:
        return [frozenset(map(universe.__getitem__, r)) for p in parts for r in p.tolist()]

    out = pd.DataFrame(
        {
            "antecedents": named(ante),
            "consequents": named(cons),
            "antecedent_support": s_a,
            "consequent_support": s_c,
            "support": s_ab,
            "confidence": conf,
            "lift": conf / s_c,
            "leverage": s_ab - s_a * s_c,
            "conviction": conviction,
            "count": count,
        }
    )
    if min_lift is not None:
        out = out.loc[out["lift"].to_numpy() >= min_lift]
    # stable sort: ties keep the (deterministic) order of generation
    order = np.lexsort((-out["confidence"].to_numpy(), -out["lift"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


_NOT_CLOSED = "itemsets is not downward closed: a subset of an itemset is missing"


def _empty_rules() -> pd.DataFrame:
    dtypes = dict.fromkeys(RULE_COLUMNS, "float64") | {
        "antecedents": "object",
        "consequents": "object",
        "count": "int64",
    }
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


class _SortedRows:
    """Counts of k-itemsets looked up by their rows of item ids (vectorised)."""

    def __init__(self, rows: IntArray, counts: IntArray) -> None:
        self.k = rows.shape[1]
        keys = self._keys(rows)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.counts = counts[order]

    def _keys(self, rows: IntArray) -> npt.NDArray[np.void]:
        r = np.ascontiguousarray(rows.astype(">i8"))  # big-endian: bytewise order = numeric
        return r.view(np.dtype((np.void, 8 * self.k))).ravel()

    def count(self, rows: IntArray) -> IntArray:
        """Counts of ``rows`` (each must be present)."""
        q = self._keys(rows)
        pos = np.searchsorted(self.keys, q)
        if np.any(pos >= len(self.keys)) or np.any(
            self.keys[np.minimum(pos, len(self.keys) - 1)] != q
        ):
            raise ValueError(_NOT_CLOSED)
        return self.counts[pos]


def rules_table(rules: pd.DataFrame, *, sep: str = ", ") -> pd.DataFrame:
    """Rules with antecedents and consequents written as sorted, joined text (for output).

    Examples
    --------
    >>> r = pd.DataFrame({"antecedents": [frozenset({"b", "a"})], "consequents": [frozenset({"c"})]})
    >>> rules_table(r).values.tolist()
    [['a, b', 'c']]
    """
    out = rules.copy()
    for c in ("antecedents", "consequents"):
        out[c] = out[c].map(lambda s: sep.join(sorted(map(str, s))))
    return out


def itemsets_table(itemsets: pd.DataFrame, *, sep: str = ", ") -> pd.DataFrame:
    """Itemsets written as sorted, joined text (for output).

    Examples
    --------
    >>> itemsets_table(pd.DataFrame({"itemsets": [frozenset({"b", "a"})]})).values.tolist()
    [['a, b']]
    """
    out = itemsets.copy()
    out["itemsets"] = out["itemsets"].map(lambda s: sep.join(sorted(map(str, s))))
    return out
