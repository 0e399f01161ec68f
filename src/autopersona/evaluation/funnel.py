"""Four-layer funnel metrics per strategy, channel, segment and day, in DuckDB SQL.

Events of ``marketing_feedback`` are grouped into **messages**: one per ``decision_id``
(joined to the decision log ``strategy_decisions`` when it exists, for the strategy), or —
for events without a decision (e.g. Hillstrom, organic purchases) — one per campaign and
person.  A message's day is the day (UTC) of its ``sent`` event (its first event if it
was never sent); its segment is the ``segments`` table's value for the person when one is
given, else the experiment arm.

Layers and columns (per group):

* reach — ``sent``, ``delivered``, ``exposed``; ``send_success`` = delivered / sent,
  ``exposure_rate`` = exposed / delivered;
* interaction — ``clicked``, ``visited``; ``ctr`` = clicked / exposed;
  ``voice_replies`` (sent messages answered by voice on the head unit) and
  ``voice_reply_rate`` = voice_replies / exposed; ``mean_dwell_s`` = mean over exposed sent
  messages with a recorded dwell of the message's dwell (the sum of its events' ``dwell_s``:
  time on screen plus reading after a click);
* conversion — ``converted`` (all conversions, organic included), ``cvr`` = sent messages
  that converted / sent, ``click_cvr`` = converted / clicked among sent messages,
  ``order_value`` = value / conversions, ``redeemed``, ``redemption_rate`` = redeemed /
  conversions;
* value — ``revenue``, ``revenue_per_message`` (per sent message), ``buyers`` and
  ``repurchase_rate`` (buyers with two or more conversions / buyers); ``referrals``
  (``referral`` events), ``referral_value`` (their value: the referred customers' first
  orders), ``referral_rate`` = sent messages that brought a referral / sent; ``persons``
  (distinct) and ``ltv_change`` = (revenue + referral_value) / persons, the customer value
  the group's people added in the window.

A rate whose denominator is 0 is null.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from autopersona.store.warehouse import Warehouse

__all__ = [
    "DIMENSIONS",
    "METRICS",
    "funnel_from_events",
    "funnel_from_messages",
    "funnel_metrics",
    "funnel_sql",
]

DIMENSIONS = ("strategy", "channel", "segment", "arm", "day")
METRICS = (
    "messages",
    "sent",
    "delivered",
    "exposed",
    "clicked",
    "visited",
    "voice_replies",
    "converted",
    "redeemed",
    "revenue",
    "buyers",
    "referrals",
    "referral_value",
    "persons",
    "send_success",
    "exposure_rate",
    "ctr",
    "voice_reply_rate",
    "mean_dwell_s",
    "cvr",
    "click_cvr",
    "order_value",
    "redemption_rate",
    "revenue_per_message",
    "repurchase_rate",
    "referral_rate",
    "ltv_change",
)


def _check_by(by: Sequence[str]) -> list[str]:
    out = list(by)
    bad = [b for b in out if b not in DIMENSIONS]
    if bad or not out:
        raise ValueError(f"by: choose from {', '.join(DIMENSIONS)} (got {', '.join(bad) or '-'})")
    return out


def funnel_sql(
    by: Sequence[str] = ("strategy", "channel", "segment", "day"),
    *,
    events: str = "marketing_feedback",
    decisions: str | None = None,
    segments: str | None = None,
    where: str = "TRUE",
    messages: str | None = None,
) -> str:
    """The SQL of :func:`funnel_metrics` over the named tables (for reuse and benchmarks).

    ``messages`` names a table already at message level (the columns of the ``m`` step:
    ``strategy, person_id, channel, arm, day, is_sent, is_delivered, is_exposed, is_clicked,
    is_visited, is_voice, dwell_s, conversions, redemptions, revenue, referrals,
    referral_value``); ``events`` is then not read.
    """
    dims = _check_by(by)
    strategy = "coalesce(d.strategy_id, e.campaign_id)" if decisions else "e.campaign_id"
    join = (
        f"LEFT JOIN (SELECT decision_id, any_value(strategy_id) AS strategy_id FROM {decisions} "
        "GROUP BY 1) d USING (decision_id)"
        if decisions
        else ""
    )
    seg_join = f"LEFT JOIN {segments} s ON s.person_id = m.person_id" if segments else ""
    segment = "coalesce(s.segment, m.arm)" if segments else "m.arm"
    dim_sql = {
        "strategy": "m.strategy",
        "channel": "m.channel",
        "segment": segment,
        "arm": "m.arm",
        "day": "m.day",
    }
    select_dims = ", ".join(f"{dim_sql[d]} AS {d}" for d in dims)
    dim_names = ", ".join(dims)
    g_dims = ", ".join(f"g.{d}" for d in dims)
    on = " AND ".join(f"g.{d} IS NOT DISTINCT FROM b.{d}" for d in dims)
    group = ", ".join(str(i + 1) for i in range(len(dims)))
    if messages:
        msg_ctes = f"WITH m AS (SELECT * FROM {messages}"
    else:
        msg_ctes = f"""WITH ev AS (
    SELECT coalesce(e.decision_id, e.campaign_id || '|' || e.person_id) AS msg,
           {strategy} AS strategy, e.*
    FROM {events} e {join}
    WHERE {where}
), m AS (
    SELECT msg,
           any_value(strategy) AS strategy,
           any_value(person_id) AS person_id,
           coalesce(min(channel) FILTER (WHERE channel <> 'none'), min(channel)) AS channel,
           min(arm) AS arm,
           coalesce(min(ts) FILTER (WHERE event_type = 'sent'), min(ts))::DATE AS day,
           bool_or(event_type = 'sent') AS is_sent,
           bool_or(event_type = 'delivered') AS is_delivered,
           bool_or(event_type = 'exposed') AS is_exposed,
           bool_or(event_type = 'clicked') AS is_clicked,
           bool_or(event_type = 'visited') AS is_visited,
           bool_or(event_type = 'voice_reply') AS is_voice,
           sum(dwell_s) AS dwell_s,
           count(*) FILTER (WHERE event_type = 'converted') AS conversions,
           count(*) FILTER (WHERE event_type = 'redeemed') AS redemptions,
           coalesce(sum(value) FILTER (WHERE event_type = 'converted'), 0) AS revenue,
           count(*) FILTER (WHERE event_type = 'referral') AS referrals,
           coalesce(sum(value) FILTER (WHERE event_type = 'referral'), 0) AS referral_value
    FROM ev GROUP BY msg
"""
    return f"""
{msg_ctes}
), md AS (
    SELECT {select_dims}, m.* EXCLUDE (strategy, channel, arm, day) FROM m {seg_join}
), g AS (
    SELECT {dim_names},
           count(*) AS messages,
           count(*) FILTER (WHERE is_sent) AS sent,
           count(*) FILTER (WHERE is_sent AND is_delivered) AS delivered,
           count(*) FILTER (WHERE is_sent AND is_exposed) AS exposed,
           count(*) FILTER (WHERE is_sent AND is_clicked) AS clicked,
           count(*) FILTER (WHERE is_visited) AS visited,
           count(*) FILTER (WHERE is_sent AND is_voice) AS voice_replies,
           sum(conversions)::BIGINT AS converted,
           sum(redemptions)::BIGINT AS redeemed,
           sum(revenue) AS revenue,
           sum(referrals)::BIGINT AS referrals,
           sum(referral_value) AS referral_value,
           count(DISTINCT person_id) AS persons,
           avg(dwell_s) FILTER (WHERE is_sent AND is_exposed) AS mean_dwell_s,
           count(*) FILTER (WHERE is_sent AND conversions > 0) AS sent_converted,
           count(*) FILTER (WHERE is_sent AND is_clicked AND conversions > 0) AS clicked_converted,
           count(*) FILTER (WHERE is_sent AND referrals > 0) AS sent_referred,
           coalesce(sum(revenue) FILTER (WHERE is_sent), 0) AS sent_revenue
    FROM md GROUP BY {group}
), b AS (
    SELECT {dim_names}, count(*) AS buyers, count(*) FILTER (WHERE c >= 2) AS repeaters
    FROM (SELECT {dim_names}, person_id, sum(conversions) AS c FROM md
          WHERE conversions > 0 GROUP BY ALL)
    GROUP BY {group}
)
SELECT {g_dims}, messages, sent, delivered, exposed, clicked, visited, voice_replies,
       converted, redeemed, revenue, coalesce(b.buyers, 0) AS buyers, referrals,
       referral_value, persons,
       delivered / nullif(sent, 0) AS send_success,
       exposed / nullif(delivered, 0) AS exposure_rate,
       clicked / nullif(exposed, 0) AS ctr,
       voice_replies / nullif(exposed, 0) AS voice_reply_rate,
       mean_dwell_s,
       sent_converted / nullif(sent, 0) AS cvr,
       clicked_converted / nullif(clicked, 0) AS click_cvr,
       revenue / nullif(converted, 0) AS order_value,
       redeemed / nullif(converted, 0) AS redemption_rate,
       sent_revenue / nullif(sent, 0) AS revenue_per_message,
       b.repeaters / nullif(b.buyers, 0) AS repurchase_rate,
       sent_referred / nullif(sent, 0) AS referral_rate,
       (revenue + referral_value) / nullif(persons, 0) AS ltv_change
FROM g LEFT JOIN b ON {on}
ORDER BY {g_dims}
"""


def funnel_metrics(
    wh: Warehouse,
    by: Sequence[str] = ("strategy", "channel", "segment", "day"),
    *,
    strategies: Sequence[str] | None = None,
    segments: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Funnel metrics of the warehouse's feedback, one row per group of ``by``.

    ``segments`` (``person_id``, ``segment``) labels persons, e.g. by a profile tag.
    """
    from autopersona.strategy.decision import DECISIONS_TABLE

    tables = {r[0] for r in wh.sql("SELECT table_name FROM information_schema.tables")}
    decisions = DECISIONS_TABLE if DECISIONS_TABLE in tables else None
    params: list[Any] = []
    where = "TRUE"
    if strategies is not None:
        strat = "coalesce(d.strategy_id, e.campaign_id)" if decisions else "e.campaign_id"
        where = f"{strat} IN ({', '.join('?' for _ in strategies)})"
        params = list(strategies)
    seg_name = None
    if segments is not None:
        missing = {"person_id", "segment"} - set(segments.columns)
        if missing:
            raise ValueError(f"segments: column(s) {', '.join(sorted(missing))} missing")
        seg_name = "_funnel_segments"
        wh.con.register(seg_name, segments[["person_id", "segment"]].drop_duplicates("person_id"))
    try:
        sql = funnel_sql(by, decisions=decisions, segments=seg_name, where=where)
        return wh.con.execute(sql, params).df()
    finally:
        if seg_name:
            wh.con.unregister(seg_name)


def funnel_from_events(
    events: pd.DataFrame,
    by: Sequence[str] = ("strategy", "channel", "segment", "day"),
    *,
    decisions: pd.DataFrame | None = None,
    segments: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The same metrics with pandas (a reference implementation for tests and benchmarks)."""
    dims = _check_by(by)
    e = events.copy()
    if decisions is not None:
        strat = decisions.groupby("decision_id")["strategy_id"].first()
        e["strategy"] = e["decision_id"].map(strat).fillna(e["campaign_id"])
    else:
        e["strategy"] = e["campaign_id"]
    e["msg"] = e["decision_id"].fillna(e["campaign_id"] + "|" + e["person_id"])
    t = e["event_type"]
    e["ts_sent"] = e["ts"].where(t == "sent")
    e["ch_real"] = e["channel"].where(e["channel"] != "none")
    for name in ("sent", "delivered", "exposed", "clicked", "visited"):
        e[f"is_{name}"] = t == name
    e["is_voice"] = t == "voice_reply"
    if "dwell_s" not in e.columns:
        e["dwell_s"] = np.nan
    e["conv"] = (t == "converted").astype(int)
    e["red"] = (t == "redeemed").astype(int)
    e["rev"] = e["value"].where(t == "converted").fillna(0.0)
    e["ref"] = (t == "referral").astype(int)
    e["ref_val"] = e["value"].where(t == "referral").fillna(0.0)
    g = e.groupby("msg", sort=False)
    m = pd.DataFrame(
        {
            "strategy": g["strategy"].first(),
            "person_id": g["person_id"].first(),
            "channel": g["ch_real"].min().fillna(g["channel"].min()),
            "arm": g["arm"].min(),
            "day": g["ts_sent"].min().fillna(g["ts"].min()).dt.date,
            "is_sent": g["is_sent"].any(),
            "is_delivered": g["is_delivered"].any(),
            "is_exposed": g["is_exposed"].any(),
            "is_clicked": g["is_clicked"].any(),
            "is_visited": g["is_visited"].any(),
            "is_voice": g["is_voice"].any(),
            "dwell_s": g["dwell_s"].sum(min_count=1),
            "conversions": g["conv"].sum(),
            "redemptions": g["red"].sum(),
            "revenue": g["rev"].sum(),
            "referrals": g["ref"].sum(),
            "referral_value": g["ref_val"].sum(),
        }
    )
    return funnel_from_messages(m, dims, segments=segments)


def funnel_from_messages(
    messages: pd.DataFrame,
    by: Sequence[str] = ("strategy", "channel", "segment", "day"),
    *,
    segments: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The pandas reference on a message-level frame (see :func:`funnel_sql`'s ``messages``)."""
    dims = _check_by(by)
    m = messages.copy()
    if segments is not None:
        seg = segments.drop_duplicates("person_id").set_index("person_id")["segment"]
        m["segment"] = m["person_id"].map(seg).fillna(m["arm"])
    else:
        m["segment"] = m["arm"]
    s = m["is_sent"]
    m["sent_"] = s
    m["delivered_"] = s & m["is_delivered"]
    m["exposed_"] = s & m["is_exposed"]
    m["clicked_"] = s & m["is_clicked"]
    m["voice_"] = s & m["is_voice"]
    m["dwell_"] = m["dwell_s"].where(m["exposed_"])
    m["sent_ref"] = s & (m["referrals"] > 0)
    m["sent_conv"] = s & (m["conversions"] > 0)
    m["clicked_conv"] = m["clicked_"] & (m["conversions"] > 0)
    m["sent_rev"] = m["revenue"].where(s, 0.0)
    gg = m.groupby(dims, dropna=False, sort=True)
    out = pd.DataFrame(
        {
            "messages": gg.size(),
            "sent": gg["sent_"].sum(),
            "delivered": gg["delivered_"].sum(),
            "exposed": gg["exposed_"].sum(),
            "clicked": gg["clicked_"].sum(),
            "visited": gg["is_visited"].sum(),
            "voice_replies": gg["voice_"].sum(),
            "converted": gg["conversions"].sum(),
            "redeemed": gg["redemptions"].sum(),
            "revenue": gg["revenue"].sum(),
            "referrals": gg["referrals"].sum(),
            "referral_value": gg["referral_value"].sum(),
            "persons": gg["person_id"].nunique(),
            "mean_dwell_s": gg["dwell_"].mean(),
            "sent_ref": gg["sent_ref"].sum(),
            "sent_conv": gg["sent_conv"].sum(),
            "clicked_conv": gg["clicked_conv"].sum(),
            "sent_rev": gg["sent_rev"].sum(),
        }
    )
    buyers = m[m["conversions"] > 0].groupby([*dims, "person_id"], dropna=False)["conversions"]
    per_buyer = buyers.sum().reset_index()
    per_buyer["repeat"] = per_buyer["conversions"] >= 2
    bb = per_buyer.groupby(dims, dropna=False)
    out["buyers"] = bb.size().reindex(out.index).fillna(0).astype(int)
    repeat = bb["repeat"].sum().reindex(out.index).fillna(0)

    def ratio(a: pd.Series, b: pd.Series) -> pd.Series:
        return (a / b.where(b > 0)).astype(float)

    out["send_success"] = ratio(out["delivered"], out["sent"])
    out["exposure_rate"] = ratio(out["exposed"], out["delivered"])
    out["ctr"] = ratio(out["clicked"], out["exposed"])
    out["voice_reply_rate"] = ratio(out["voice_replies"], out["exposed"])
    out["cvr"] = ratio(out["sent_conv"], out["sent"])
    out["click_cvr"] = ratio(out["clicked_conv"], out["clicked"])
    out["order_value"] = ratio(out["revenue"], out["converted"])
    out["redemption_rate"] = ratio(out["redeemed"], out["converted"])
    out["revenue_per_message"] = ratio(out["sent_rev"], out["sent"])
    out["repurchase_rate"] = ratio(repeat, out["buyers"])
    out["referral_rate"] = ratio(out["sent_ref"], out["sent"])
    out["ltv_change"] = ratio(out["revenue"] + out["referral_value"], out["persons"])
    return out[list(METRICS)].reset_index()
