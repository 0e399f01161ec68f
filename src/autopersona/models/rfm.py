"""RFM: recency, frequency and monetary value per customer, quantile scores, named tiers.

The usual cleaning of an order-line table (:func:`clean_transactions`) drops lines without
a customer, cancellation invoices (numbers starting with ``"C"``) and lines whose quantity
or price is not positive. :func:`rfm_table` then gives, at a snapshot date,

* **R**: whole days from the customer's last purchase to the snapshot,
* **F**: distinct invoices,
* **M**: revenue, the sum of quantity × price.

:func:`rfm_scores` turns each into a 1-5 score by quantile (5 best: most recent, most
frequent, highest spend) and :func:`assign_tiers` names each customer's tier from the
rules in :data:`TIERS`, which are data: an ordered list of score ranges, first match wins.
Each tier also maps to the value tier of design §4 (paper 001): ``high_value``,
``potential`` or ``churn_warning`` (and ``lost``).

Examples
--------
>>> import pandas as pd
>>> lines = pd.DataFrame({
...     "InvoiceNo": ["1", "1", "2", "C3", "4"], "CustomerID": [7, 7, 7, 7, 8],
...     "InvoiceDate": pd.to_datetime(["2011-01-01", "2011-01-01", "2011-03-01",
...                                    "2011-03-02", "2011-02-01"]),
...     "Quantity": [2, 1, 5, -1, 3], "UnitPrice": [1.5, 4.0, 2.0, 2.0, 10.0]})
>>> clean, report = clean_transactions(lines, customer="CustomerID", invoice="InvoiceNo",
...                                    quantity="Quantity", price="UnitPrice")
>>> report["cancellations"], report["rows_out"]
(1, 4)
>>> rfm_table(clean, customer="CustomerID", date="InvoiceDate", invoice="InvoiceNo",
...           quantity="Quantity", price="UnitPrice", snapshot="2011-03-03")
            recency  frequency  monetary
CustomerID
7                 2          2      17.0
8                30          1      30.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

__all__ = [
    "TIERS",
    "Tier",
    "assign_tiers",
    "clean_transactions",
    "rfm_scores",
    "rfm_table",
    "segment_summary",
    "tiers_as_records",
]


@dataclass(frozen=True)
class Tier:
    """One named tier: inclusive score ranges on R, F and M (1-5) and its value tier.

    Examples
    --------
    >>> Tier("champions", r=(5, 5), f=(4, 5), value="high_value").matches(5, 4, 1)
    True
    """

    name: str
    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)
    value: str = "potential"
    description: str = ""

    def matches(self, r: int, f: int, m: int) -> bool:
        """Whether scores ``(r, f, m)`` fall in this tier's ranges."""
        return (
            self.r[0] <= r <= self.r[1]
            and self.f[0] <= f <= self.f[1]
            and self.m[0] <= m <= self.m[1]
        )


#: Tier rules on the R × F score grid (the common 11-segment RFM map), first match wins.
#: Every (R, F) pair of 1-5 falls in exactly one tier; M is left free.
TIERS: tuple[Tier, ...] = (
    Tier("champions", r=(5, 5), f=(4, 5), value="high_value",
         description="bought recently, buy often and spend the most"),
    Tier("loyal", r=(3, 4), f=(4, 5), value="high_value",
         description="buy often; respond to promotions"),
    Tier("potential", r=(4, 5), f=(2, 3), value="potential",
         description="recent customers with average frequency"),
    Tier("new", r=(5, 5), f=(1, 1), value="potential",
         description="bought most recently, but only once"),
    Tier("promising", r=(4, 4), f=(1, 1), value="potential",
         description="recent shoppers who have not bought much"),
    Tier("need_attention", r=(3, 3), f=(3, 3), value="potential",
         description="above-average recency and frequency, slipping"),
    Tier("about_to_sleep", r=(3, 3), f=(1, 2), value="churn_warning",
         description="below-average recency and frequency"),
    Tier("at_risk", r=(1, 2), f=(3, 4), value="churn_warning",
         description="bought often, but long ago"),
    Tier("cannot_lose", r=(1, 2), f=(5, 5), value="churn_warning",
         description="were among the most frequent, have not come back"),
    Tier("hibernating", r=(2, 2), f=(1, 2), value="churn_warning",
         description="last purchase long ago, few orders"),
    Tier("lost", r=(1, 1), f=(1, 2), value="lost",
         description="lowest recency and frequency"),
)  # fmt: skip


def clean_transactions(
    df: pd.DataFrame,
    *,
    customer: str,
    invoice: str | None = None,
    quantity: str | None = None,
    price: str | None = None,
    drop_missing_customer: bool = True,
    drop_cancellations: bool = True,
    positive_quantity: bool = True,
    positive_price: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply the usual RFM cleaning; returns the kept rows and a count per reason.

    A row is counted under the first reason that drops it, in the order: missing customer,
    cancellation (``invoice`` starts with ``"C"``), quantity <= 0, price <= 0. Options whose
    column is not given are skipped.

    Returns
    -------
    tuple[pandas.DataFrame, dict[str, int]]
        A copy of the kept rows, and ``rows_in``, ``missing_customer``, ``cancellations``,
        ``non_positive_quantity``, ``non_positive_price``, ``rows_out``.

    Examples
    --------
    >>> df = pd.DataFrame({"c": [1, None, 2], "q": [1, 1, 0]})
    >>> clean_transactions(df, customer="c", quantity="q")[1]["rows_out"]
    1
    """
    keep = np.ones(len(df), dtype=bool)
    report = {"rows_in": len(df)}

    def drop(name: str, bad: np.ndarray) -> None:
        nonlocal keep
        report[name] = int((keep & bad).sum())
        keep &= ~bad

    drop("missing_customer", df[customer].isna().to_numpy() if drop_missing_customer else ~keep)
    if drop_cancellations and invoice is not None:
        drop(
            "cancellations",
            df[invoice]
            .astype("string")
            .str.strip()
            .str.upper()
            .str.startswith("C")
            .fillna(False)
            .to_numpy(dtype=bool),
        )
    else:
        report["cancellations"] = 0
    for name, col, on in (
        ("non_positive_quantity", quantity, positive_quantity),
        ("non_positive_price", price, positive_price),
    ):
        if on and col is not None:
            drop(name, ~(df[col].to_numpy(dtype="float64") > 0))
        else:
            report[name] = 0
    report["rows_out"] = int(keep.sum())
    return df.loc[keep].copy(), report


def rfm_table(
    df: pd.DataFrame,
    *,
    customer: str,
    date: str,
    invoice: str,
    quantity: str | None = None,
    price: str | None = None,
    amount: str | None = None,
    snapshot: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Recency (days), frequency (distinct invoices) and monetary value per customer.

    Parameters
    ----------
    df
        Cleaned order lines (see :func:`clean_transactions`); ``date`` must be datetime64.
    customer, date, invoice
        Column names.
    quantity, price, amount
        Revenue is ``amount`` when given, else ``quantity * price``.
    snapshot
        Reference date; default the day after the last purchase (midnight). Recency is
        the whole number of days from the last purchase to it (floor).

    Returns
    -------
    pandas.DataFrame
        Indexed by customer (sorted): ``recency`` (int), ``frequency`` (int), ``monetary``.
        ``attrs["snapshot"]`` holds the snapshot used.

    Examples
    --------
    >>> df = pd.DataFrame({"c": ["x", "x"], "d": pd.to_datetime(["2024-01-01 18:00", "2024-01-05 00:00"]),
    ...                    "i": ["a", "b"], "v": [3.0, 4.0]})
    >>> t = rfm_table(df, customer="c", date="d", invoice="i", amount="v")
    >>> t.attrs["snapshot"], t.loc["x"].tolist()
    (Timestamp('2024-01-06 00:00:00'), [1.0, 2.0, 7.0])
    """
    if amount is None and (quantity is None or price is None):
        raise ValueError("give amount, or both quantity and price")
    if not pd.api.types.is_datetime64_any_dtype(df[date].dtype):
        raise TypeError(f"column {date!r} must be datetime64, got {df[date].dtype}")
    if df.empty:
        raise ValueError("no transactions")
    value = (
        df[amount].to_numpy(dtype="float64")
        if amount is not None
        else df[quantity].to_numpy(dtype="float64") * df[price].to_numpy(dtype="float64")
    )
    snap = (
        df[date].max().floor("D") + pd.Timedelta(days=1)
        if snapshot is None
        else pd.Timestamp(snapshot)
    )
    frame = pd.DataFrame({"c": df[customer].to_numpy(), "d": df[date].to_numpy(),
                          "i": df[invoice].to_numpy(), "v": value})  # fmt: skip
    g = frame.groupby("c", sort=True)
    out = pd.DataFrame(
        {
            "recency": (snap - g["d"].max()).dt.days.astype("int64"),
            "frequency": g["i"].nunique().astype("int64"),
            "monetary": g["v"].sum().astype("float64"),
        }
    )
    out.index.name = customer
    out.attrs["snapshot"] = snap
    return out


def _quantile_score(values: pd.Series, *, higher_is_better: bool, bins: int) -> pd.Series:
    worse = (values if higher_is_better else -values).rank(method="min").to_numpy() - 1.0
    score = np.clip(1 + np.floor(bins * worse / len(values)), 1, bins).astype("int64")
    return pd.Series(score, index=values.index, name=values.name)


def rfm_scores(rfm: pd.DataFrame, *, bins: int = 5) -> pd.DataFrame:
    """Add quantile scores ``r_score``, ``f_score``, ``m_score`` (1..bins, higher is better).

    A customer's score is ``1 + floor(bins × share of customers strictly worse)``: with
    distinct values these are plain quantile bins; equal values always get the same
    score, the one of the bin where their run starts (so with many ties, e.g. F = 1 for a
    third of customers, a score's share departs from 1/bins). Lower recency is better.

    Examples
    --------
    >>> t = pd.DataFrame({"recency": [1, 10, 100, 300, 5], "frequency": [9, 3, 1, 1, 5],
    ...                   "monetary": [900.0, 50.0, 10.0, 20.0, 300.0]})
    >>> rfm_scores(t)[["r_score", "f_score", "m_score"]].values.tolist()
    [[5, 5, 5], [3, 3, 3], [2, 1, 1], [1, 1, 2], [4, 4, 4]]
    """
    if bins < 2:
        raise ValueError("bins must be >= 2")
    out = rfm.copy()
    out["r_score"] = _quantile_score(rfm["recency"], higher_is_better=False, bins=bins)
    out["f_score"] = _quantile_score(rfm["frequency"], higher_is_better=True, bins=bins)
    out["m_score"] = _quantile_score(rfm["monetary"], higher_is_better=True, bins=bins)
    out["rfm_score"] = (
        out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str)
    )
    return out


def assign_tiers(scored: pd.DataFrame, tiers: tuple[Tier, ...] = TIERS) -> pd.DataFrame:
    """Add ``tier`` and ``value_tier`` from the first matching rule (``"unassigned"`` if none).

    Examples
    --------
    >>> s = pd.DataFrame({"r_score": [5, 1, 3], "f_score": [5, 1, 3], "m_score": [1, 1, 1]})
    >>> assign_tiers(s)[["tier", "value_tier"]].values.tolist()
    [['champions', 'high_value'], ['lost', 'lost'], ['need_attention', 'potential']]
    """
    r = scored["r_score"].to_numpy()
    f = scored["f_score"].to_numpy()
    m = scored["m_score"].to_numpy()
    tier = np.full(len(scored), "unassigned", dtype=object)
    value = np.full(len(scored), "unassigned", dtype=object)
    todo = np.ones(len(scored), dtype=bool)
    for t in tiers:
        hit = (
            todo
            & (r >= t.r[0]) & (r <= t.r[1])
            & (f >= t.f[0]) & (f <= t.f[1])
            & (m >= t.m[0]) & (m <= t.m[1])
        )  # fmt: skip
        tier[hit] = t.name
        value[hit] = t.value
        todo &= ~hit
    out = scored.copy()
    out["tier"] = tier
    out["value_tier"] = value
    return out


def segment_summary(tiered: pd.DataFrame, tiers: tuple[Tier, ...] = TIERS) -> pd.DataFrame:
    """Customers, share and mean R/F/M per tier, in the order of the tier rules.

    Examples
    --------
    >>> s = pd.DataFrame({"tier": ["lost", "lost", "new"], "recency": [300, 200, 1],
    ...                   "frequency": [1, 1, 1], "monetary": [5.0, 7.0, 9.0]})
    >>> segment_summary(s).loc["lost", ["customers", "share", "recency"]].round(3).tolist()
    [2.0, 0.667, 250.0]
    """
    g = tiered.groupby("tier")
    out = pd.DataFrame(
        {
            "customers": g.size(),
            "share": g.size() / len(tiered),
            "recency": g["recency"].mean(),
            "frequency": g["frequency"].mean(),
            "monetary": g["monetary"].mean(),
        }
    )
    order = [t.name for t in tiers if t.name in out.index] + [
        n for n in out.index if n not in {t.name for t in tiers}
    ]
    return out.loc[order]


def tiers_as_records(tiers: tuple[Tier, ...] = TIERS) -> list[dict[str, object]]:
    """The tier rules as plain dicts (for JSON output).

    Examples
    --------
    >>> tiers_as_records()[0]["name"]
    'champions'
    """
    return [asdict(t) for t in tiers]
