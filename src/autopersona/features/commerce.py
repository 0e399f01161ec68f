"""E-commerce features per customer and period (design brief §3, paper 001), written in Ibis.

Per (customer_id, period): RFM, active hours, browse depth, cart-cancel rate, repurchase
interval, category and brand preferences, reviews and service chats.  Period features are
hash aggregates over ``commerce_events``, ``orders`` and ``reviews``; recency and the
repurchase interval look at the customer's whole order history up to the period end (a join
on ``order period <= period``; the mean gap between consecutive orders telescopes to
``(last - first) / (n - 1)``, so no ordering is needed).  Local hours come from a histogram
of events per UTC hour converted with the customer's time zone (``accounts.timezone``; the
most common account time zone where it is unknown).  Top category and brand are picked in
pandas from small per-item aggregates, ties to the smaller name.

A customer gets a row for a period when they have events, order lines or reviews in it.  The
dictionary ``dictionary/commerce.yaml`` defines each column.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from pydantic import BaseModel, ConfigDict

from autopersona.features.driving import _period, _since_filter
from autopersona.features.engines import Engine
from autopersona.features.frames import ratio as _ratio
from autopersona.features.frames import run, text_columns, top_share
from autopersona.features.service import period_end

__all__ = ["HOUR_BUCKETS", "SOURCES", "CommerceParams", "commerce_features", "local_hours"]

SOURCES = ["commerce_events", "orders", "reviews", "accounts"]
#: history each source needs before ``since`` (None: all of it): recency, repurchase
#: interval and orders to date read every earlier order
LOOKBACK: dict[str, timedelta | None] = {"orders": None}
KEY = ["customer_id", "period_start"]
DAY_S = 86400.0
#: Local-hour buckets of the active-hours shares: name -> [start, end) hours.
HOUR_BUCKETS = {"night": (0, 6), "morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24)}


class CommerceParams(BaseModel):
    """Parameters of the commerce stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_timezone: str | None = None


def local_hours(hours: pd.DataFrame, tz: pd.DataFrame, default: str) -> pd.DataFrame:
    """Active-hour shares and the modal local hour per (customer_id, period_start).

    Parameters
    ----------
    hours
        Columns customer_id, period_start, hour (UTC, hour-truncated) and n (events).
    tz
        Columns customer_id, timezone.
    default
        Time zone of customers without one.

    Examples
    --------
    >>> h = pd.DataFrame({"customer_id": ["a", "a"], "period_start": ["w", "w"],
    ...     "hour": pd.to_datetime(["2026-01-05 01:00", "2026-01-05 12:00"], utc=True),
    ...     "n": [3, 1]})
    >>> r = local_hours(h, pd.DataFrame({"customer_id": ["a"], "timezone": ["Asia/Shanghai"]}),
    ...                 "UTC")
    >>> r[["modal_hour", "active_morning_share", "active_evening_share"]].to_dict("records")
    [{'modal_hour': 9, 'active_morning_share': 0.75, 'active_evening_share': 0.25}]
    """
    cols = ["customer_id", "period_start", "modal_hour"] + [
        f"active_{b}_share" for b in HOUR_BUCKETS
    ]
    if hours.empty:
        empty = hours[["customer_id", "period_start"]].copy()
        empty["modal_hour"] = pd.Series([], dtype="int64")
        for b in HOUR_BUCKETS:
            empty[f"active_{b}_share"] = pd.Series([], dtype="float64")
        return empty
    h = hours.merge(tz, on="customer_id", how="left")
    h["timezone"] = h["timezone"].fillna(default)
    local = pd.Series(0, index=h.index, dtype="int64")
    for zone, idx in h.groupby("timezone").groups.items():
        local.loc[idx] = h.loc[idx, "hour"].dt.tz_convert(str(zone)).dt.hour.to_numpy()
    h["local"] = local
    key = ["customer_id", "period_start"]
    per_hour: pd.DataFrame = h.groupby([*key, "local"])[["n"]].sum().reset_index()
    per_hour = per_hour.sort_values([*key, "n", "local"], ascending=[True, True, False, True])
    out = per_hour.drop_duplicates(key, keep="first")[[*key, "local"]]
    out = out.rename(columns={"local": "modal_hour"})
    total = per_hour.groupby(key)["n"].sum().rename("total")
    for name, (lo, hi) in HOUR_BUCKETS.items():
        sel = per_hour[(per_hour["local"] >= lo) & (per_hour["local"] < hi)]
        part = sel.groupby(key)["n"].sum().reindex(total.index, fill_value=0)
        share = (part / total).rename(f"active_{name}_share").reset_index()
        out = out.merge(share, on=key, how="left")
    result: pd.DataFrame = out[cols].reset_index(drop=True)
    return result


def commerce_features(
    eng: Engine,
    *,
    period: str = "week",
    since: datetime | None = None,
    params: CommerceParams | None = None,
) -> pd.DataFrame:
    """Commerce features per (customer_id, period_start) for periods from ``since`` on.

    Parameters
    ----------
    eng
        Engine holding ``commerce_events``, ``orders``, ``reviews`` and ``accounts``.
    period
        ``day``, ``week`` (ISO weeks, Monday 00:00 UTC) or ``month``.
    since
        Start of the first period to compute (order history before it is still read).
    params
        Time zone for customers without one (default: the most common account time zone,
        else UTC).

    Returns
    -------
    pandas.DataFrame
        One row per customer and period with the columns of ``dictionary/commerce.yaml``.
    """
    import ibis
    from ibis import _

    p = params or CommerceParams()
    ev = _since_filter(eng.table("commerce_events"), "ts", since)
    ev = ev.filter(ev.customer_id.notnull())
    ev = ev.mutate(period_start=_period(ev.ts, period))
    o_all = eng.table("orders")
    o_all = o_all.filter(o_all.customer_id.notnull())
    o_all = o_all.mutate(period_start=_period(o_all.ts, period))
    # cancellation and return lines (negative quantities) are not kept sales
    cancel = ibis.coalesce(o_all.is_cancellation, False) | (o_all.quantity < 0)
    o_all = o_all.mutate(cancel=cancel, value=o_all.quantity * o_all.unit_price)
    od = _since_filter(o_all, "ts", since)
    rv = _since_filter(eng.table("reviews"), "ts", since)
    rv = rv.mutate(period_start=_period(rv.ts, period))

    keys = ibis.union(ev.select(*KEY), od.select(*KEY), rv.select(*KEY), distinct=True)
    et = ev.event_type
    events = ev.group_by(KEY).aggregate(
        events=_.count(),
        session_events=ev.count(where=ev.session_id.notnull()),
        sessions=ev.session_id.nunique(),
        views=ev.count(where=et == "view"),
        searches=ev.count(where=et == "search"),
        add_cart=ev.count(where=et == "add_cart"),
        remove_cart=ev.count(where=et == "remove_cart"),
        favourites=ev.count(where=et == "favourite"),
    )
    hours = ev.mutate(hour=ev.ts.truncate("h")).group_by([*KEY, "hour"]).aggregate(n=_.count())
    cats = ev.filter(ev.category.notnull()).group_by([*KEY, "category"]).aggregate(n=_.count())
    brands = ev.filter(ev.brand.notnull()).group_by([*KEY, "brand"]).aggregate(n=_.count())
    orders = od.group_by(KEY).aggregate(
        frequency=od.order_id.nunique(where=~od.cancel),
        monetary=od.value.sum(where=~od.cancel),
        monetary_net=od.value.sum(),
        cancelled_orders=od.order_id.nunique(where=od.cancel),
    )
    reviews = rv.group_by(KEY).aggregate(
        reviews=rv.count(where=rv.kind == "review"),
        rating_mean=rv.rating.mean(where=rv.kind == "review"),
        chats=rv.count(where=rv.kind == "chat"),
    )
    # order history up to each period's end: one row per kept order
    placed = (
        o_all.filter(~o_all.cancel)
        .group_by(["customer_id", "order_id"])
        .aggregate(sec=_.ts.min().epoch_seconds(), o_period=_.period_start.min())
    )
    k = keys.select(k_cust="customer_id", k_period="period_start")
    j = k.join(placed, (k.k_cust == placed.customer_id) & (placed.o_period <= k.k_period))
    todate = j.group_by(customer_id=j.k_cust, period_start=j.k_period).aggregate(
        orders_to_date=j.count(), first_sec=j.sec.min(), last_sec=j.sec.max()
    )

    out = run(eng, keys)
    for part in (events, orders, reviews, todate):
        out = out.merge(run(eng, part), on=KEY, how="left")
    out = out.merge(
        top_share(run(eng, cats), KEY, "category", "n", "top_category"), on=KEY, how="left"
    )
    out = out.merge(top_share(run(eng, brands), KEY, "brand", "n", "top_brand"), on=KEY, how="left")
    acc = eng.table("accounts")
    tz = run(
        eng,
        acc.filter(acc.timezone.notnull()).select(customer_id="account_id", timezone="timezone"),
    )
    default = p.default_timezone or _modal(tz["timezone"])
    out = out.merge(local_hours(run(eng, hours), tz, default), on=KEY, how="left")
    return text_columns(_finish(out, period).sort_values(KEY, kind="stable").reset_index(drop=True))


def _modal(zones: pd.Series) -> str:
    if zones.empty:
        return "UTC"
    counts = zones.value_counts()
    best = counts[counts == counts.max()].index
    return str(sorted(best)[0])


def _finish(df: pd.DataFrame, period: str) -> pd.DataFrame:
    out = df.copy()
    counts = [
        "events",
        "session_events",
        "sessions",
        "views",
        "searches",
        "add_cart",
        "remove_cart",
        "favourites",
        "frequency",
        "cancelled_orders",
        "reviews",
        "chats",
        "orders_to_date",
    ]
    for col in counts:
        out[col] = out[col].fillna(0).astype("int64")
    for col in ("monetary", "monetary_net"):
        out[col] = out[col].astype("float64").fillna(0.0)
    out["avg_order_value"] = _ratio(out["monetary"], out["frequency"])
    end = period_end(pd.to_datetime(out["period_start"]), period)
    end_s = (end - pd.Timestamp("1970-01-01")).dt.total_seconds()
    last = out["last_sec"].astype("float64")
    out["recency_days"] = (end_s - last) / DAY_S
    n = out["orders_to_date"]
    span = (last - out["first_sec"].astype("float64")) / DAY_S
    out["repurchase_interval_days"] = span / (n - 1).where(n >= 2)
    out["browse_depth"] = _ratio(out["session_events"], out["sessions"])
    out["cart_cancel_rate"] = _ratio(out["remove_cart"], out["add_cart"])
    out["rating_mean"] = out["rating_mean"].astype("float64")
    out["modal_hour"] = out["modal_hour"].astype("Int64")
    cols = [
        "customer_id",
        "period_start",
        "recency_days",
        "frequency",
        "monetary",
        "monetary_net",
        "avg_order_value",
        "cancelled_orders",
        "orders_to_date",
        "repurchase_interval_days",
        "events",
        "sessions",
        "browse_depth",
        "views",
        "searches",
        "favourites",
        "add_cart",
        "remove_cart",
        "cart_cancel_rate",
        "modal_hour",
        *(f"active_{b}_share" for b in HOUR_BUCKETS),
        "top_category",
        "top_category_share",
        "top_brand",
        "top_brand_share",
        "reviews",
        "rating_mean",
        "chats",
    ]
    return out[cols]
