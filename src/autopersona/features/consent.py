r"""Consent in the feature build: who gets features, and whose data fits the fleet's models.

Every feature domain declares the consent purposes its features serve
(:mod:`autopersona.features.dictionary`; a feature may narrow its domain's).  The build
(:func:`autopersona.features.build.build_features`, ``features_churn``, ``features_sentiment``)
applies these rules, reading the consent registry (:mod:`autopersona.privacy.consent`):

* **When.** Consent counts *as of the period* — at the period's end, or now for a period not
  over yet — and *now*, when the build runs: data of a period without consent is never
  processed, and a withdrawal takes effect at the next build, for every period it
  recomputes (rows already stored for earlier periods stay; erasure removes them).
* **Rows.** An entity (a VIN: every person linked to it; a customer id: its account's
  person) gets a row for a period only if it consents to at least one of the domain's
  purposes (:func:`keep_consented`).
* **Values.** A feature's value is kept only if the entity consents to one of that
  feature's purposes; otherwise it is null.
* **Fleet models.** A model fitted across entities (the trip purpose HMM of the mobility
  domain) is fitted only on the data of entities consenting to the purposes of the features
  it produces, for every period of the build and now (:func:`consenting`), so a
  non-consenting person's data shapes no one's features.

Examples
--------
>>> from autopersona.store.warehouse import Warehouse
>>> from autopersona.privacy.consent import record_consent
>>> with Warehouse(":memory:") as wh:
...     _ = wh.con.execute("INSERT INTO accounts (account_id, source, vin) "
...                        "VALUES ('A1', 'owner', 'V1'), ('A2', 'owner', 'V2')")
...     record_consent(wh, "A1", "ubi", "any", True, datetime(2026, 1, 1, tzinfo=UTC))
...     df = pd.DataFrame({"vin": ["V1", "V2"], "period_start": [pd.Timestamp("2026-01-05")] * 2,
...                        "samples": [10, 20]})
...     kept = keep_consented(wh, df, "driving", "week")
>>> kept["vin"].tolist()
['V1']
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import pandas as pd

from autopersona.features.dictionary import all_domains, feature_dictionary

if TYPE_CHECKING:
    from autopersona.store.warehouse import Warehouse

__all__ = [
    "consent_times",
    "consenting",
    "feature_purposes",
    "keep_consented",
    "period_end",
]


def period_end(start: date | datetime, period: str) -> datetime:
    """End (UTC, exclusive) of the period starting at ``start``.

    >>> period_end(date(2026, 1, 5), "week")
    datetime.datetime(2026, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
    >>> period_end(date(2026, 12, 1), "month")
    datetime.datetime(2027, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    day = start.date() if isinstance(start, datetime) else start
    if period == "day":
        end = day + timedelta(days=1)
    elif period == "week":
        end = day + timedelta(days=7)
    elif period == "month":
        end = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    else:
        raise ValueError(f"unknown period {period!r}: use day, week or month")
    return datetime(end.year, end.month, end.day, tzinfo=UTC)


def consent_times(
    starts: Iterable[date | datetime], period: str, now: datetime | None = None
) -> dict[date, datetime]:
    """For each period start, the time its consent is read at: the period's end, or ``now``.

    >>> t = consent_times([date(2026, 1, 5)], "week", now=datetime(2026, 1, 8, tzinfo=UTC))
    >>> t[date(2026, 1, 5)].day
    8
    """
    now = now or datetime.now(UTC)
    out: dict[date, datetime] = {}
    for s in starts:
        day = s.date() if isinstance(s, datetime) else s
        out[day] = min(period_end(day, period), now)
    return out


def _kind(entity: str) -> Literal["vin", "account"]:
    return "vin" if entity == "vin" else "account"


def consenting(
    wh: Warehouse,
    purposes: Iterable[str],
    times: Iterable[datetime],
    entity: str = "vin",
) -> set[str]:
    """Entities consenting to at least one of ``purposes`` at *each* of ``times``.

    ``entity`` is ``vin`` (every person linked to the VIN must consent) or ``customer_id``
    (the account's person).
    """
    from autopersona.privacy.consent import consented_at

    ps, ts = list(purposes), list(times)
    sets = consented_at(wh, ps, ts, _kind(entity))
    out: set[str] | None = None
    for at in ts:
        ok: set[str] = set()
        for p in ps:
            ok |= sets[(p, at)]
        out = ok if out is None else out & ok
    return out or set()


def feature_purposes(domain: str) -> dict[str, tuple[str, ...]]:
    """Each feature of ``domain`` with the purposes it serves."""
    out: dict[str, tuple[str, ...]] = {
        n: tuple(f.purposes) for n, f in feature_dictionary().items() if f.domain == domain
    }
    out.update({f.name: tuple(f.purposes) for f in all_domains()[domain].features})
    return out


def keep_consented(
    wh: Warehouse,
    df: pd.DataFrame,
    domain: str,
    period: str,
    *,
    now: datetime | None = None,
) -> pd.DataFrame:
    """The rows of a feature table whose entity consents as of their period (and now).

    A row stays when its entity consents to one of ``domain``'s purposes at its period's
    consent time (:func:`consent_times`) and at ``now``; in a kept row, a feature serving
    none of the purposes consented to is set to null.

    Parameters
    ----------
    wh
        The warehouse holding ``consents``, ``accounts`` and ``identity_links``.
    df
        A ``features_<domain>`` frame: the entity column, ``period_start`` and features.
    domain
        Its domain (the dictionary gives entity and purposes).
    period
        ``day``, ``week`` or ``month``.
    now
        The build's time (default: now).
    """
    d = all_domains()[domain]
    key = d.entity
    if len(df) == 0:
        return df
    now = now or datetime.now(UTC)
    starts = pd.to_datetime(df["period_start"]).dt.date
    times = consent_times(set(starts), period, now)
    per_feature = feature_purposes(domain)
    # purposes each (entity, period) consents to, at the period's time and now
    from autopersona.privacy.consent import consented_at

    sets = consented_at(wh, list(d.purposes), [now, *times.values()], _kind(key))
    keep = pd.Series(False, index=df.index)
    allowed: dict[str, pd.Series] = {p: pd.Series(False, index=df.index) for p in d.purposes}
    ent = df[key].astype(str)
    for day, at in times.items():
        rows = starts == day
        for p in d.purposes:
            ok = sets[(p, at)] & sets[(p, now)]
            hit = rows & ent.isin(ok)
            allowed[p] |= hit
            keep |= hit
    out = df[keep].copy()
    for col, purposes in per_feature.items():
        if col not in out.columns or set(purposes) >= set(d.purposes):
            continue
        served = pd.Series(False, index=out.index)
        for q in purposes:
            if q in allowed:
                served |= allowed[q][keep]
        if not served.all():
            out[col] = out[col].astype(object).where(served, None)
    return out.reset_index(drop=True)
