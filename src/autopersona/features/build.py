"""``features build``: compute feature tables for new periods and store them in the warehouse.

Each domain writes ``features_<domain>`` with one row per entity and period.  A build is
incremental: it starts at the beginning of the latest period already stored (which may have
been partial) unless ``since`` says otherwise, reads only data from there on, and replaces
the rows of the periods it recomputes — so rerunning it is idempotent.

Consent (:mod:`autopersona.features.consent`): each domain serves the consent purposes its
dictionary file declares; a build stores rows only for entities consenting to one of them as
of the row's period and at build time (a feature serving none of the purposes an entity
consents to is null), and fits fleet-wide models (the mobility trip purpose HMM) only on
consenting vehicles' data.  A withdrawal takes effect at the next build.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from autopersona.features.cabin import SOURCES as CABIN_SOURCES
from autopersona.features.cabin import cabin_features
from autopersona.features.charging import LOOKBACK as CHARGING_LOOKBACK
from autopersona.features.charging import SOURCES as CHARGING_SOURCES
from autopersona.features.charging import charging_features
from autopersona.features.commerce import LOOKBACK as COMMERCE_LOOKBACK
from autopersona.features.commerce import SOURCES as COMMERCE_SOURCES
from autopersona.features.commerce import commerce_features
from autopersona.features.consent import keep_consented
from autopersona.features.dictionary import domains
from autopersona.features.driving import SOURCES as DRIVING_SOURCES
from autopersona.features.driving import driving_features
from autopersona.features.engines import Engine, make_engine
from autopersona.features.service import LOOKBACK as SERVICE_LOOKBACK
from autopersona.features.service import SOURCES as SERVICE_SOURCES
from autopersona.features.service import service_features
from autopersona.store.sqlbase import transaction
from autopersona.store.warehouse import Warehouse

__all__ = ["LOOKBACKS", "STEPS", "BuildReport", "build_features", "period_floor"]

Step = Callable[..., pd.DataFrame]
#: domain -> (function, tables it reads)
STEPS: dict[str, tuple[Step, list[str]]] = {
    "driving": (driving_features, DRIVING_SOURCES),
    "cabin": (cabin_features, CABIN_SOURCES),
    "service": (service_features, SERVICE_SOURCES),
    "charging": (charging_features, CHARGING_SOURCES),
    "commerce": (commerce_features, COMMERCE_SOURCES),
}
#: domain -> history each source needs before ``since`` (None: all of it; absent: none).
#: The DuckDB engine reads the warehouse as is; the Spark engine exports from these bounds,
#: so an incremental Spark build reads what the full one would for the same periods.
LOOKBACKS: dict[str, dict[str, timedelta | None]] = {
    "service": SERVICE_LOOKBACK,
    "charging": CHARGING_LOOKBACK,
    "commerce": COMMERCE_LOOKBACK,
}


@dataclass
class BuildReport:
    """What a build computed."""

    engine: str
    period: str
    since: str | None
    rows: dict[str, int] = field(default_factory=dict)
    periods: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def period_floor(d: date | datetime, period: str) -> datetime:
    """Start (UTC) of the period holding ``d``: ISO week Monday, month 1st, or the day.

    >>> period_floor(date(2026, 1, 8), "week")
    datetime.datetime(2026, 1, 5, 0, 0, tzinfo=datetime.timezone.utc)
    """
    day = d.date() if isinstance(d, datetime) else d
    if period == "week":
        day = day - timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    elif period != "day":
        raise ValueError(f"unknown period {period!r}: use day, week or month")
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _latest_period(wh: Warehouse, table: str, period: str) -> date | None:
    exists = wh.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table])[
        0
    ][0]
    if not exists:
        return None
    row = wh.sql(f'SELECT max(period_start) FROM "{table}" WHERE period = ?', [period])
    v = row[0][0] if row else None
    return v if isinstance(v, date) else None


def _store(
    wh: Warehouse, table: str, df: pd.DataFrame, period: str, start: datetime | None
) -> None:
    df = df.copy()
    df.insert(2, "period", period)
    df["computed_at"] = pd.Timestamp.now(tz="UTC")
    con = wh.con
    con.register("_ap_feat", df)
    con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" AS SELECT * FROM _ap_feat LIMIT 0')
    have = {r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()}
    for col, typ, *_ in con.execute("DESCRIBE _ap_feat").fetchall():
        if col not in have:
            con.execute(f'ALTER TABLE "{table}" ADD COLUMN "{col}" {typ}')
    try:
        with transaction(con):
            if start is None:
                con.execute(f'DELETE FROM "{table}" WHERE period = ?', [period])
            else:
                con.execute(
                    f'DELETE FROM "{table}" WHERE period = ? AND period_start >= ?',
                    [period, start.date()],
                )
            con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _ap_feat')
    finally:
        con.unregister("_ap_feat")


def _build_mobility(
    wh: Warehouse,
    report: BuildReport,
    period: str,
    since: date | datetime | None,
    engine: str,
    full: bool,
    now: datetime,
) -> None:
    """The per-vehicle mobility domain (see :mod:`autopersona.features.mobility_build`)."""
    from autopersona.features.mobility_build import MOBILITY_TABLE, build_mobility

    if period != "week":
        return  # mobility is defined per local ISO week only
    start: datetime | None
    if full:
        start = None
    elif since is not None:
        start = period_floor(since, period)
    else:
        latest = _latest_period(wh, MOBILITY_TABLE, period)
        start = period_floor(latest, period) if latest else None
    # consent per week is applied inside (to the rows and to the trips kept as state)
    df = build_mobility(wh, period=period, since=start, engine=engine, now=now)
    _store(wh, MOBILITY_TABLE, df, period, start)
    report.rows["mobility"] = len(df)
    report.periods["mobility"] = int(df["period_start"].nunique()) if len(df) else 0


def build_features(
    wh: Warehouse,
    *,
    period: str = "week",
    since: date | datetime | None = None,
    engine: str = "duckdb",
    only: list[str] | None = None,
    full: bool = False,
    step_kwargs: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> BuildReport:
    """Compute the feature domains and store them as ``features_<domain>``.

    Parameters
    ----------
    wh
        Warehouse to read from and write to.
    period
        ``day``, ``week`` or ``month``.
    since
        Recompute from the period holding this date; default: the latest stored period.
    engine
        ``duckdb`` or ``spark``.
    only
        Domains to build (default: all with a relational step).
    full
        Recompute everything, ignoring what is stored.
    step_kwargs
        Extra keyword arguments for every step (e.g. ``params``).
    now
        The build's time for consent (default: now): rows are kept for entities consenting
        as of their period and at this time.
    """
    t0 = time.perf_counter()
    now = now or datetime.now(UTC)
    names = only or [*STEPS, "mobility"]
    unknown = [n for n in names if n not in STEPS and n != "mobility"]
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown}: use {', '.join([*STEPS, 'mobility'])}")
    report = BuildReport(engine=engine, period=period, since=None)
    dicts = domains()
    for name in names:
        if name == "mobility":
            _build_mobility(wh, report, period, since, engine, full, now)
            continue
        step, sources = STEPS[name]
        table = dicts[name].table
        start: datetime | None
        if full:
            start = None
        elif since is not None:
            start = period_floor(since, period)
        else:
            latest = _latest_period(wh, table, period)
            start = period_floor(latest, period) if latest else None
        report.since = start.isoformat() if start else None
        eng: Engine = make_engine(engine, wh, sources, start, lookback=LOOKBACKS.get(name))
        try:
            df = step(eng, period=period, since=start, **(step_kwargs or {}))
        finally:
            eng.close()
        df = keep_consented(wh, df, name, period, now=now)
        _store(wh, table, df, period, start)
        report.rows[name] = len(df)
        report.periods[name] = int(df["period_start"].nunique()) if len(df) else 0
    report.seconds = time.perf_counter() - t0
    return report
