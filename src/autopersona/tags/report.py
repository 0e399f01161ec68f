"""The demo's Profile stage: identity, sentiment and churn inputs, every tag, distributions.

:func:`profile_stage` links accounts into persons, builds the sentiment and churn feature
tables, refreshes every tag of the catalogue into the warehouse's profile store (as of the
end of the data) and prints the value counts of each tag, one rich table per tier group:
L1 basic, L2 behaviour, L3 interest, L4 potential, the e-commerce levels and the lifecycle.
:func:`tag_distribution` gives the counts as a frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from rich.console import Console

    from autopersona.store.profiles import ProfileStore, RefreshReport
    from autopersona.store.warehouse import Warehouse
    from autopersona.tags.spec import Catalogue

__all__ = ["GROUPS", "ProfileStageResult", "data_end", "profile_stage", "tag_distribution"]

#: Tier groups of the report: title -> tiers (lifecycle_stage is shown on its own).
GROUPS: dict[str, tuple[str, ...]] = {
    "L1 basic": ("L1",),
    "L2 behaviour": ("L2",),
    "L3 interest": ("L3",),
    "L4 potential": ("L4",),
    "E-commerce levels": ("basic", "behaviour", "interest", "value", "attitude"),
    "Lifecycle": (),
}
LIFECYCLE = "lifecycle_stage"
_OPEN_TOP = 4


@dataclass
class ProfileStageResult:
    """What the stage did, with the time of each step (seconds)."""

    as_of: datetime
    persons: int = 0
    accounts: int = 0
    assignments: int = 0
    tags_with_values: int = 0
    notes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def data_end(wh: Warehouse) -> datetime:
    """The day after the latest event of motion, orders or clickstream (UTC midnight)."""
    latest: list[Any] = []
    for table in ("motion", "orders", "commerce_events", "vehicle_signals"):
        row = wh.sql(f"SELECT max(ts) FROM {table}")
        if row and row[0][0] is not None:
            latest.append(pd.Timestamp(row[0][0]))
    if not latest:
        return datetime.now(UTC)
    t = max(latest)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    day: datetime = t.normalize().to_pydatetime()
    return day + timedelta(days=1)


def tag_distribution(store: ProfileStore, catalogue: Catalogue) -> pd.DataFrame:
    """Current value counts per tag: ``group, tag_id, value, n, share`` (share within the tag).

    Tags are in catalogue order within their group; values by descending count.
    """
    rows = []
    for tid, spec in catalogue.tags.items():
        group = next(
            (g for g, tiers in GROUPS.items() if spec.tier in tiers and tid != LIFECYCLE),
            "Lifecycle" if tid == LIFECYCLE else None,
        )
        if group is not None:
            rows.append((tid, group))
    df = _current(store)
    order = {tid: i for i, (tid, _) in enumerate(rows)}
    groups = dict(rows)
    df = df[df["tag_id"].isin(order)].copy()
    df["group"] = df["tag_id"].map(groups)
    counts = df.groupby(["group", "tag_id", "value"]).size().rename("n").reset_index()
    counts["share"] = counts["n"] / counts.groupby("tag_id")["n"].transform("sum")
    counts["_o"] = counts["tag_id"].map(order)
    counts = counts.sort_values(["_o", "n", "value"], ascending=[True, False, True])
    return counts.drop(columns="_o").reset_index(drop=True)


def _current(store: ProfileStore) -> pd.DataFrame:
    df: pd.DataFrame = store._query(
        store._sql("SELECT tag_id, value FROM {s}.tag_assignments WHERE valid_to IS NULL")
    )
    return df


def _print_tables(console: Console, dist: pd.DataFrame, catalogue: Catalogue) -> None:
    from rich.table import Table

    for group in GROUPS:
        part = dist[dist["group"] == group]
        t = Table(title=f"{group} — value counts per tag", title_justify="left")
        t.add_column("tag")
        t.add_column("method")
        t.add_column("entities", justify="right")
        t.add_column("values (count, share)")
        ids = [
            tid
            for tid, s in catalogue.tags.items()
            if (tid == LIFECYCLE) == (group == "Lifecycle")
            and (group == "Lifecycle" or s.tier in GROUPS[group])
        ]
        for tid in ids:
            sub = part[part["tag_id"] == tid]
            spec = catalogue.tags[tid]
            if sub.empty:
                t.add_row(tid, spec.method, "0", "[dim]no value yet[/]")
                continue
            shown = sub if spec.values is not None else sub.head(_OPEN_TOP)
            text = ", ".join(
                f"{v} {n:,} ({s:.0%})"
                for v, n, s in zip(shown["value"], shown["n"], shown["share"], strict=True)
            )
            if spec.values is None and len(sub) > _OPEN_TOP:
                text += f", … {len(sub)} distinct"
            t.add_row(tid, spec.method, f"{int(sub['n'].sum()):,}", text)
        console.print(t)


def profile_stage(
    console: Console, wh: Warehouse, *, features: Callable[[], object] | None = None
) -> ProfileStageResult:
    """Identity linkage, sentiment and churn features, every tag, and their distributions.

    ``features`` (e.g. the feature build) runs right after linkage: consent is per person,
    so the consent-filtered feature build must see the linked persons.  Each step's time is
    kept in ``seconds``; a step that cannot run here (sentiment without torch, too little
    data for a model) is noted, not fatal.
    """
    from autopersona.identity import link_identities
    from autopersona.models import churn, sentiment
    from autopersona.store.profiles import open_store, refresh
    from autopersona.tags.spec import load_catalogue

    res = ProfileStageResult(as_of=data_end(wh))
    t0 = time.perf_counter()
    link = link_identities(wh)
    res.seconds["identity"] = time.perf_counter() - t0
    res.persons, res.accounts = link.persons, link.accounts
    console.print(
        f"identity: {link.accounts:,} accounts -> {link.persons:,} persons "
        f"({link.exact_links:,} by exact keys, {link.probabilistic_links:,} by Splink) "
        f"in {res.seconds['identity']:.1f} s"
    )
    if features is not None:
        features()

    t0 = time.perf_counter()
    reason = sentiment.unavailable_reason()
    if reason is None:
        srep = sentiment.build_sentiment_features(wh)
        auc = srep.holdout.get("auc")
        held = f", time-split hold-out AUC {auc:.2f}" if auc is not None and auc == auc else ""
        console.print(
            f"sentiment: {srep.messages:,} reviews and chats scored with the packaged MiniLM + "
            f"logistic regression (trained on {srep.train_positive} positive / "
            f"{srep.train_negative} negative, {srep.seed_examples} seed examples){held}"
        )
    else:
        res.notes["sentiment"] = reason
        from rich.markup import escape

        console.print(f"[yellow]sentiment skipped[/]: {escape(reason)}")  # "[sentiment]" is text
    res.seconds["sentiment"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    crep = churn.build_churn_features(wh)
    res.seconds["churn"] = time.perf_counter() - t0
    console.print(
        f"churn windows: {crep.customers:,} customers, {crep.warnings_latest:,} with purchase "
        f"frequency down by more than 3 (30 days vs the 30 before)"
    )

    t0 = time.perf_counter()
    cat = load_catalogue()
    store = open_store(warehouse=wh)
    rep: RefreshReport = refresh(wh, store, cat, as_of=res.as_of, due_only=False)
    res.seconds["tags"] = time.perf_counter() - t0
    res.assignments = rep.assignments
    res.notes.update(rep.notes)
    dist = tag_distribution(store, cat)
    res.tags_with_values = int(dist["tag_id"].nunique())
    console.print(
        f"profile refresh as of {res.as_of:%Y-%m-%d}: {rep.assignments:,} assignments, "
        f"{res.tags_with_values} of {len(cat.tags)} tags with values in "
        f"{res.seconds['tags']:.1f} s"
    )
    _print_tables(console, dist, cat)
    for tid, note in sorted(rep.notes.items()):
        console.print(f"[dim]{note if note.startswith(tid) else f'{tid}: {note}'}[/]")
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in res.seconds.items())
    console.print(f"Profile stage: {sum(res.seconds.values()):.1f} s ({steps})")
    return res
