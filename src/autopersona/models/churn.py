r"""Paper 001's churn warning: purchase frequency down by more than 3.

For every customer with a kept order and every period from their first kept order's period
to the latest period holding any order, clickstream event or message, count the kept orders
(distinct ``order_id`` of lines that are neither cancellations nor returns) in the
``window_days`` ending at the period end (``orders_recent``) and in the ``window_days`` before
that (``orders_previous``).  ``frequency_drop = orders_previous - orders_recent``; the warning
(:func:`churn_warning`, and the catalogue's ``cm_rfm_tier``) fires when it is above 3 — a drop
of exactly 3 does not warn, a drop of 4 does.  Weeks without any activity get a row too, so a
customer who simply stops buying is seen (``features_commerce`` has rows only for active
periods).  The result is stored as ``features_churn`` (``features/dictionary/churn.yaml``),
for customers consenting to the domain's purposes as of each period and at build time
(:mod:`autopersona.features.consent`).

Examples
--------
>>> churn_warning(7, 4), churn_warning(7, 3)
(False, True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from autopersona.store.warehouse import Warehouse

__all__ = [
    "DROP_THRESHOLD",
    "FEATURE_TABLE",
    "ChurnReport",
    "build_churn_features",
    "churn_warning",
    "purchase_windows",
]

FEATURE_TABLE = "features_churn"
#: Paper 001: a warning when the purchase frequency drops by *more than* this.
DROP_THRESHOLD = 3
_STEP = {"day": "INTERVAL 1 DAY", "week": "INTERVAL 7 DAY", "month": "INTERVAL 1 MONTH"}


def churn_warning(orders_previous: int, orders_recent: int) -> bool:
    """True when the purchase frequency dropped by more than :data:`DROP_THRESHOLD`."""
    return orders_previous - orders_recent > DROP_THRESHOLD


def purchase_windows(wh: Warehouse, *, period: str = "week", window_days: int = 30) -> pd.DataFrame:
    """``customer_id, period_start, orders_recent, orders_previous, frequency_drop``.

    One row per customer with a kept order and period from the first kept order's period to
    the latest period with any commerce data; see the module docstring.

    Examples
    --------
    >>> from autopersona.store.warehouse import Warehouse
    >>> with Warehouse(":memory:") as wh:
    ...     _ = wh.con.execute(
    ...         "INSERT INTO orders (order_id, line_no, customer_id, ts, product_id, quantity, "
    ...         "unit_price, currency) SELECT 'O' || i, 1, 'C1', "
    ...         "TIMESTAMPTZ '2026-01-05 10:00:00+00' + i * INTERVAL 1 DAY, 'P', 1, 10.0, 'CNY' "
    ...         "FROM range(5) t(i)")
    ...     df = purchase_windows(wh, window_days=3)
    >>> df[["orders_recent", "orders_previous", "frequency_drop"]].values.tolist()
    [[1, 3, 2]]
    """
    if period not in _STEP:
        raise ValueError(f"unknown period {period!r}: use day, week or month")
    if window_days < 1:
        raise ValueError(f"window_days must be >= 1, got {window_days}")
    unit = {"day": "day", "week": "week", "month": "month"}[period]
    step = _STEP[period]
    sql = f"""
    WITH kept AS (
        SELECT customer_id, order_id, min(ts AT TIME ZONE 'UTC') AS ts FROM orders
        WHERE customer_id IS NOT NULL AND NOT coalesce(is_cancellation, false)
          AND quantity >= 0
        GROUP BY 1, 2),
    firsts AS (SELECT customer_id, min(ts) AS first_ts FROM kept GROUP BY 1),
    bounds AS (
        SELECT max(t) AS last_ts FROM (
            SELECT max(ts AT TIME ZONE 'UTC') AS t FROM orders
            UNION ALL SELECT max(ts AT TIME ZONE 'UTC') FROM commerce_events
            UNION ALL SELECT max(ts AT TIME ZONE 'UTC') FROM reviews)),
    grid AS (
        SELECT f.customer_id, g.p AS period_start, g.p + {step} AS period_end
        FROM firsts f, bounds b,
             LATERAL generate_series(date_trunc('{unit}', f.first_ts),
                                     date_trunc('{unit}', b.last_ts), {step}) AS g(p))
    SELECT g.customer_id, CAST(g.period_start AS DATE) AS period_start,
           count(DISTINCT k.order_id) FILTER (
               WHERE k.ts >= g.period_end - INTERVAL {int(window_days)} DAY) AS orders_recent,
           count(DISTINCT k.order_id) FILTER (
               WHERE k.ts < g.period_end - INTERVAL {int(window_days)} DAY) AS orders_previous
    FROM grid g LEFT JOIN kept k
      ON k.customer_id = g.customer_id AND k.ts < g.period_end
     AND k.ts >= g.period_end - INTERVAL {2 * int(window_days)} DAY
    GROUP BY 1, 2 ORDER BY 1, 2
    """
    df = wh.con.execute(sql).df()
    df["customer_id"] = df["customer_id"].astype("string")
    df["period_start"] = pd.to_datetime(df["period_start"]).astype("datetime64[us]")
    for c in ("orders_recent", "orders_previous"):
        df[c] = df[c].astype("int64")
    df["frequency_drop"] = (df["orders_previous"] - df["orders_recent"]).astype("int64")
    return df


@dataclass
class ChurnReport:
    """What :func:`build_churn_features` wrote."""

    rows: int
    customers: int
    warnings_latest: int
    window_days: int
    seconds: float


def build_churn_features(
    wh: Warehouse, *, period: str = "week", window_days: int = 30
) -> ChurnReport:
    """Compute :func:`purchase_windows` and (re)write ``features_churn``.

    ``warnings_latest`` counts customers whose latest row has a drop above 3.
    """
    from autopersona.features.build import _store
    from autopersona.features.consent import keep_consented

    t0 = time.perf_counter()
    df = purchase_windows(wh, period=period, window_days=window_days)
    df = keep_consented(wh, df, "churn", period)  # consenting customers only, as of each period
    _store(wh, FEATURE_TABLE, df, period, None)
    latest = df.sort_values("period_start").drop_duplicates("customer_id", keep="last")
    return ChurnReport(
        rows=len(df),
        customers=int(df["customer_id"].nunique()),
        warnings_latest=int((latest["frequency_drop"] > DROP_THRESHOLD).sum()),
        window_days=window_days,
        seconds=time.perf_counter() - t0,
    )
