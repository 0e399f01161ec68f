r"""Consent per person, purpose and channel, with its history (the ``consents`` table).

Each row of ``consents`` is one decision of one account: a purpose (``marketing``, ``ubi``,
``analytics``, ``partner_sharing``), a channel (``head_unit``, ``app``, ``sms``, ``email``, or
``any`` for all of them), granted or withdrawn, at a time.  Nothing is overwritten: the table
*is* the history, and the state at any time is read from it.

Rules
-----
* A person's accounts come from identity linkage (``identity_links``); without linkage each
  account is a person of its own.  A decision on any of the person's accounts counts.
* Consent for purpose *P* on channel *c* at time *t* is the **latest** decision at or before
  *t* for *P* on *c* or on ``any``.  With no decision there is no consent (opt-in).
* Asking for a purpose without a channel (``channel="any"``) means "consented on at least
  one channel" — what a feature or tag build for that purpose needs; sending on a channel
  needs consent on that channel.
* A vehicle (VIN) is consented for a purpose when *every* person linked to it is (a shared
  car is used only when all its people agree).

Builds honour it through :func:`filter_consented`, which keeps only the rows of consented
people (or VINs, or accounts) — audiences and tag assignments alike — so a withdrawal takes
a person out at the next run.  The feature build applies it per feature domain and period
(:mod:`autopersona.features.consent`: each domain declares the purposes its features serve;
fleet-fitted models see consenting people only), and federated training admits only people
consenting to ``partner_sharing`` at every party (:mod:`autopersona.privacy.federated`).

Examples
--------
>>> from datetime import UTC, datetime
>>> from autopersona.store.warehouse import Warehouse
>>> with Warehouse(":memory:") as wh:
...     record_consent(wh, "APP-1", "marketing", "sms", True, datetime(2026, 1, 1, tzinfo=UTC))
...     record_consent(wh, "APP-1", "marketing", "any", False, datetime(2026, 2, 1, tzinfo=UTC))
...     jan = current_consent(wh, "APP-1", "marketing", "sms", at=datetime(2026, 1, 15, tzinfo=UTC))
...     now = current_consent(wh, "APP-1", "marketing", "sms")
>>> jan, now
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

if TYPE_CHECKING:
    from autopersona.store.warehouse import Warehouse

__all__ = [
    "CHANNELS",
    "PURPOSES",
    "consent_state",
    "consented",
    "consented_at",
    "current_consent",
    "filter_consented",
    "history",
    "person_accounts",
    "record_consent",
]

PURPOSES = ("marketing", "ubi", "analytics", "partner_sharing")
CHANNELS = ("head_unit", "app", "sms", "email")
Entity = Literal["person", "account", "vin"]


def _check(purpose: str, channel: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}; expected one of {list(PURPOSES)}")
    if channel != "any" and channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; expected any or one of {list(CHANNELS)}")


def _has_table(wh: Warehouse, name: str) -> bool:
    return bool(
        wh.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name])[0][0]
    )


def person_accounts(wh: Warehouse) -> pd.DataFrame:
    """``account_id, person_id, vin`` for every account (a person per account if unlinked)."""
    if _has_table(wh, "identity_links"):
        return wh.frame(
            "SELECT a.account_id, coalesce(l.person_id, a.account_id) AS person_id, a.vin "
            "FROM accounts a LEFT JOIN identity_links l USING (account_id) "
            "UNION SELECT l.account_id, l.person_id, NULL FROM identity_links l "
            "WHERE l.account_id NOT IN (SELECT account_id FROM accounts)"
        )
    return wh.frame("SELECT account_id, account_id AS person_id, vin FROM accounts")


def _decisions(
    wh: Warehouse, at: datetime | None, accounts: pd.DataFrame | None = None
) -> pd.DataFrame:
    at = at or datetime.now(UTC)
    df = wh.frame(
        "SELECT account_id, purpose, channel, granted, ts FROM consents WHERE ts <= ?", [at]
    )
    acc = person_accounts(wh) if accounts is None else accounts
    acc = acc[["account_id", "person_id"]].drop_duplicates("account_id")
    df = df.merge(acc, on="account_id", how="left")
    df["person_id"] = df["person_id"].fillna(df["account_id"])
    return df


def consent_state(wh: Warehouse, at: datetime | None = None) -> pd.DataFrame:
    """Effective consent at ``at`` (default now): ``person_id, purpose, channel, granted, ts``.

    One row per person, purpose and concrete channel that has any decision (``ts`` is the
    deciding row's time).
    """
    return _state(_decisions(wh, at))


def _spread(d: pd.DataFrame) -> pd.DataFrame:
    """A decision on ``any`` is a decision on each concrete channel."""
    spread = [d[d["channel"] != "any"]]
    anyc = d[d["channel"] == "any"]
    for ch in CHANNELS:
        spread.append(anyc.assign(channel=ch))
    return pd.concat(spread, ignore_index=True)


def _state(d: pd.DataFrame) -> pd.DataFrame:
    cols = ["person_id", "purpose", "channel", "granted", "ts"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    allc = _spread(d)
    # latest decision wins; on a tie a withdrawal wins
    allc = allc.sort_values(["ts", "granted"], ascending=[True, False], kind="stable")
    last = allc.groupby(["person_id", "purpose", "channel"], as_index=False).last()
    return last[cols].reset_index(drop=True)


def consented(
    wh: Warehouse,
    purpose: str,
    channel: str = "any",
    at: datetime | None = None,
    entity: Entity = "person",
) -> set[str]:
    """People (or their accounts, or VINs) consented for ``purpose`` on ``channel`` at ``at``."""
    _check(purpose, channel)
    return _entities(consent_state(wh, at), purpose, channel, entity, lambda: person_accounts(wh))


def consented_at(
    wh: Warehouse,
    purposes: list[str],
    times: list[datetime],
    entity: Entity = "person",
) -> dict[tuple[str, datetime], set[str]]:
    """:func:`consented` (on any channel) for each of ``purposes`` at each of ``times``.

    Reads the history and the identity tables once, for builds that need consent at many
    times (one per period).
    """
    for p in purposes:
        _check(p, "any")
    out: dict[tuple[str, datetime], set[str]] = {}
    if not times:
        return out
    acc = person_accounts(wh)
    d = _decisions(wh, max(times), acc)
    d = d[d["purpose"].isin(purposes)]
    when = sorted(set(times))
    granted: dict[tuple[str, datetime], set[str]] = {(p, t): set() for p in purposes for t in when}
    if len(d):
        # each (person, purpose, channel)'s latest decision at or before each time, at once
        allc = _spread(d).assign(t=lambda f: pd.to_datetime(f["ts"], utc=True))
        allc = allc.sort_values(["t", "granted"], ascending=[True, False], kind="stable")
        keys = allc[["person_id", "purpose", "channel"]].drop_duplicates()
        grid = keys.merge(pd.DataFrame({"t": [pd.Timestamp(t) for t in when]}), how="cross")
        got = pd.merge_asof(
            grid.sort_values("t", kind="stable"),
            allc[["person_id", "purpose", "channel", "granted", "t"]],
            on="t",
            by=["person_id", "purpose", "channel"],
            direction="backward",
        )
        yes = got[got["granted"].fillna(False).astype(bool)]
        stamp = {pd.Timestamp(t): t for t in when}
        for (purpose, at), g in yes.groupby(["purpose", "t"]):
            when_at = stamp[pd.Timestamp(str(at))]
            granted[(str(purpose), when_at)] = set(g["person_id"].astype(str))
    memo: dict[frozenset[str], set[str]] = {}
    for (p, t), people in granted.items():
        key = frozenset(people)
        if key not in memo:  # consecutive periods mostly share their consenters
            memo[key] = _to_entity(people, entity, acc)
        out[(p, t)] = memo[key]
    return out


def _entities(
    st: pd.DataFrame,
    purpose: str,
    channel: str,
    entity: Entity,
    accounts: Callable[[], pd.DataFrame],
) -> set[str]:
    st = st[st["purpose"] == purpose]
    if channel != "any":
        st = st[st["channel"] == channel]
    people = set(st.loc[st["granted"].astype(bool), "person_id"].astype(str))
    if entity == "person":
        return people
    return _to_entity(people, entity, accounts())


def _to_entity(people: set[str], entity: Entity, acc: pd.DataFrame) -> set[str]:
    """The accounts of ``people``, or the VINs all of whose people are in ``people``."""
    if entity == "person":
        return people
    if entity == "account":
        return set(acc.loc[acc["person_id"].isin(people), "account_id"].astype(str))
    if entity == "vin":
        linked = acc.dropna(subset=["vin"])
        ok = linked.assign(ok=linked["person_id"].isin(people)).groupby("vin")["ok"].all()
        return set(ok[ok].index.astype(str))
    raise ValueError(f"unknown entity {entity!r}; expected person, account or vin")


def current_consent(
    wh: Warehouse,
    person: str,
    purpose: str,
    channel: str = "any",
    at: datetime | None = None,
) -> bool:
    """Whether ``person`` (a person id, or an account id) consents at ``at`` (default now)."""
    _check(purpose, channel)
    acc = person_accounts(wh)
    hit = acc.loc[acc["account_id"] == person, "person_id"]
    pid = str(hit.iloc[0]) if len(hit) else person
    return pid in consented(wh, purpose, channel, at)


def filter_consented(
    df: pd.DataFrame,
    wh: Warehouse,
    purpose: str,
    *,
    column: str = "entity",
    entity: Entity = "vin",
    channel: str = "any",
    at: datetime | None = None,
) -> pd.DataFrame:
    """Rows of ``df`` whose ``column`` (a person, account or VIN) is consented for ``purpose``.

    Use it on whatever a purpose reads or produces: the feature rows or tag assignments an
    analytics build uses, an audience before a marketing send (with its ``channel``).
    """
    if column not in df.columns:
        raise KeyError(f"no column {column!r} to filter on (columns: {list(df.columns)})")
    ok = consented(wh, purpose, channel, at, entity)
    return df[df[column].astype(str).isin(ok)].reset_index(drop=True)


def record_consent(
    wh: Warehouse,
    account_id: str,
    purpose: str,
    channel: str,
    granted: bool,
    ts: datetime | None = None,
    source: str = "api",
) -> None:
    """Append a decision (a grant or a withdrawal) to the history."""
    _check(purpose, channel)
    wh.con.execute(
        "INSERT INTO consents (account_id, purpose, channel, granted, ts, source) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [account_id, purpose, channel, bool(granted), ts or datetime.now(UTC), source],
    )


def history(wh: Warehouse, person: str, purpose: str | None = None) -> pd.DataFrame:
    """Every decision of ``person``'s accounts (oldest first)."""
    acc = person_accounts(wh)
    ids = set(acc.loc[(acc["person_id"] == person) | (acc["account_id"] == person), "account_id"])
    ids.add(person)
    marks = ", ".join("?" for _ in ids)
    params: list[Any] = sorted(ids)
    sql = f"SELECT * FROM consents WHERE account_id IN ({marks})"
    if purpose is not None:
        sql += " AND purpose = ?"
        params.append(purpose)
    return wh.frame(sql + " ORDER BY ts, account_id", params)
