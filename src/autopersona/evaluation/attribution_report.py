"""Report provider: channel attribution of the conversions in ``marketing_feedback``.

A journey is a person's messages across all campaigns, in time order: every ``sent`` event
on a real channel is a touch. A person who converted (any ``converted`` event) converts the
journey, whose touches are those up to the first conversion; conversions with no earlier
touch are organic and are counted, not attributed. The report shows each channel's share of
the credit under every method of :mod:`autopersona.evaluation.attribution`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from autopersona.evaluation.report import Report
    from autopersona.store.warehouse import Warehouse

__all__ = ["add_figures", "touches_from_feedback"]


def touches_from_feedback(wh: Warehouse) -> tuple[pd.DataFrame, int]:
    """Touches (person, channel, ts, converted) and the number of organic conversions.

    Parameters
    ----------
    wh
        Warehouse with ``marketing_feedback``.

    Returns
    -------
    tuple
        The touch table (only touches up to a converter's first conversion) and the count
        of converting persons without any earlier touch.
    """
    touches = wh.frame(
        """SELECT person_id, channel, ts FROM marketing_feedback
           WHERE event_type = 'sent' AND channel IS NOT NULL AND channel <> 'none'
           ORDER BY person_id, ts, channel"""
    )
    conv = wh.frame(
        """SELECT person_id, min(ts) AS conv_ts FROM marketing_feedback
           WHERE event_type = 'converted' GROUP BY person_id"""
    )
    t = touches.merge(conv, on="person_id", how="left")
    t = t[t["conv_ts"].isna() | (t["ts"] <= t["conv_ts"])].copy()
    t["converted"] = t["conv_ts"].notna().astype(int)
    organic = int((~conv["person_id"].isin(t["person_id"])).sum())
    return t[["person_id", "channel", "ts", "converted"]].reset_index(drop=True), organic


def add_figures(report: Report, wh: Warehouse) -> None:
    """Add the attribution bar chart and credit table (section ``Attribution``).

    Parameters
    ----------
    report
        The report being built.
    wh
        The warehouse.
    """
    from autopersona.evaluation.attribution import attribute, attribution_figure, paths

    touches, organic = touches_from_feedback(wh)
    if touches.empty or touches["converted"].sum() == 0:
        report.add_text(
            "Attribution",
            "No conversion follows a message on a channel yet"
            + (f" ({organic:,} organic conversions)." if organic else "."),
        )
        return
    p = paths(touches, "person_id", "channel", "ts", "converted")
    table = attribute(p)
    conversions = int(p["conversions"].sum())
    report.add_figure(
        "Attribution",
        attribution_figure(table, title="Share of conversions credited per channel"),
        f"{conversions:,} converting journeys of {int(p['journeys'].sum()):,} "
        f"({len(p):,} distinct channel paths); {organic:,} organic conversions not attributed.",
    )
    shares = (table / table.sum(axis=0)).reset_index()
    report.add_table("Attribution", shares, "Share of credit per channel and method.")
