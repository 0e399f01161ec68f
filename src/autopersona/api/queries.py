"""Queries behind the API and the dashboard: profiles, audiences, feedback funnels.

Everything here takes a :class:`~autopersona.api.data.Backend` and returns plain Python
objects; routes turn them into JSON, the dashboard into pages.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import pandas as pd

from autopersona.api.data import PROFILE_COLUMNS, Backend, as_utc, json_or_none
from autopersona.api.errors import ApiError

__all__ = [
    "FUNNEL",
    "audience_frame",
    "campaigns",
    "evaluate_audience",
    "experiment_report",
    "history",
    "linked_entities",
    "person_entities",
    "person_of",
    "profile_json",
    "profile_rows",
    "table_exists",
]

_COLS = ", ".join(PROFILE_COLUMNS)

#: Event types of ``marketing_feedback`` in each of the four layers.
FUNNEL: dict[str, tuple[str, ...]] = {
    "reach": ("sent", "delivered", "exposed"),
    "interaction": ("visited", "clicked", "voice_reply"),
    "conversion": ("converted", "redeemed"),
}


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _records(names: list[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = dict(zip(names, r, strict=True))
        d["reasons"] = json_or_none(d.get("reasons"))
        for c in ("as_of", "valid_from", "valid_to", "confirmed_at", "computed_at"):
            d[c] = as_utc(d.get(c))
        d["score"] = _clean(None if d.get("score") is None else float(d["score"]))
        out.append(d)
    return out


async def profile_rows(
    be: Backend, entities: list[str], as_of: datetime | None
) -> list[dict[str, Any]]:
    """Tag assignments of ``entities`` current at ``as_of`` (default now), by entity and tag."""
    if not entities:
        return []
    marks = ", ".join("?" for _ in entities)
    if as_of is None:
        sql = (
            f"SELECT {_COLS} FROM {{s}}.tag_assignments WHERE entity IN ({marks}) "
            "AND valid_to IS NULL ORDER BY entity, tag_id"
        )
        params: list[Any] = list(entities)
    else:
        sql = (
            f"SELECT {_COLS} FROM {{s}}.tag_assignments WHERE entity IN ({marks}) "
            "AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?) ORDER BY entity, tag_id"
        )
        params = [*entities, as_of, as_of]
    names, rows = await be.store_rows(sql, params)
    return _records(names, rows)


async def profile_json(be: Backend, entities: list[str], as_of: datetime | None) -> str:
    """The JSON array of :func:`profile_rows` (``[]`` when none), built by the database.

    On PostgreSQL ``json_agg`` renders the rows (times in ISO 8601 with offset, ``reasons`` as
    the stored JSON), so the service passes text through without converting any value; on
    DuckDB the rows are serialised here.  Current profiles (no ``as_of``) come from the
    process's cache when it holds them (:mod:`autopersona.api.cache`).
    """
    if be.store_kind != "postgresql":
        rows = await profile_rows(be, entities, as_of)
        return json.dumps(rows, default=_iso, ensure_ascii=False, separators=(",", ":"))
    if not entities:
        return "[]"
    cache = be.profile_cache() if as_of is None else None
    if cache is None:
        return await _pg_profile_json(be, entities, as_of)
    key = tuple(entities)
    text = cache.get(key)
    if text is None:
        epoch = cache.epoch
        text = await _pg_profile_json(be, entities, None)
        if be.profile_cache() is cache:  # still listening; notifications read
            cache.put(key, text, epoch)
    return text


async def _pg_profile_json(be: Backend, entities: list[str], as_of: datetime | None) -> str:
    marks = ", ".join("?" for _ in entities)
    cond = "valid_to IS NULL"
    params: list[Any] = list(entities)
    if as_of is not None:
        cond = "valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)"
        params += [as_of, as_of]
    sql = (
        "SELECT coalesce(json_agg(t ORDER BY t.entity, t.tag_id), '[]')::text FROM ("
        f"SELECT {_COLS} FROM {{s}}.tag_assignments WHERE entity IN ({marks}) AND {cond}) t"
    )
    _, out = await be.store_rows(sql, params)
    return str(out[0][0]) if out else "[]"


def _iso(v: object) -> str:
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(f"cannot serialise {type(v).__name__}")


async def history(be: Backend, entities: list[str], tag_id: str | None) -> list[dict[str, Any]]:
    """Every version of the entities' tags (one tag if given), oldest first per tag."""
    if not entities:
        return []
    marks = ", ".join("?" for _ in entities)
    sql = f"SELECT {_COLS} FROM {{s}}.tag_assignments WHERE entity IN ({marks})"
    params: list[Any] = list(entities)
    if tag_id is not None:
        sql += " AND tag_id = ?"
        params.append(tag_id)
    names, rows = await be.store_rows(sql + " ORDER BY entity, tag_id, valid_from", params)
    return _records(names, rows)


async def table_exists(be: Backend, name: str) -> bool:
    """Whether the warehouse has table ``name``."""
    return name in await be.wh_tables()


async def person_entities(be: Backend, person_id: str) -> list[str] | None:
    """VINs and account ids of a person, or None for an unknown person."""
    if not await table_exists(be, "persons"):
        raise ApiError(
            404, "not_found", "no persons yet: run identity linkage (autopersona identity link)"
        )
    _, rows = await be.wh_rows("SELECT vins FROM persons WHERE person_id = ?", [person_id])
    if not rows:
        return None
    vins = [str(v) for v in (rows[0][0] or [])]
    _, acc = await be.wh_rows(
        "SELECT account_id FROM identity_links WHERE person_id = ? ORDER BY account_id",
        [person_id],
    )
    return vins + [str(a[0]) for a in acc]


async def linked_entities(be: Backend, accounts: list[str], most: int = 200) -> set[str] | None:
    """The accounts and every VIN and account of their persons (None: more than ``most``)."""
    out = set(accounts)
    tables = await be.wh_tables()
    if not accounts or "identity_links" not in tables or "persons" not in tables:
        return out
    marks = ", ".join("?" for _ in accounts)
    _, rows = await be.wh_rows(
        f"SELECT DISTINCT person_id FROM identity_links WHERE account_id IN ({marks})", accounts
    )
    if len(rows) > most:
        return None
    for (pid,) in rows:
        out.update(await person_entities(be, str(pid)) or [])
    return out


async def person_of(be: Backend, entity: str) -> str | None:
    """The person a VIN or account belongs to, if identity linkage has run."""
    tables = await be.wh_tables()
    if "identity_links" in tables:
        _, rows = await be.wh_rows(
            "SELECT person_id FROM identity_links WHERE account_id = ?", [entity]
        )
        if rows:
            return str(rows[0][0])
    if "persons" in tables:
        _, rows = await be.wh_rows(
            "SELECT person_id FROM persons WHERE list_contains(vins, ?) ORDER BY person_id",
            [entity],
        )
        if rows:
            return str(rows[0][0])
    return None


async def audience_frame(be: Backend, entity_type: str, as_of: datetime | None) -> pd.DataFrame:
    """One row per entity of ``entity_type``, one column per tag (values at ``as_of``)."""
    if as_of is None:
        sql = (
            "SELECT entity, tag_id, value FROM {s}.tag_assignments "
            "WHERE entity_type = ? AND valid_to IS NULL"
        )
        params: list[Any] = [entity_type]
    else:
        sql = (
            "SELECT entity, tag_id, value FROM {s}.tag_assignments WHERE entity_type = ? "
            "AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)"
        )
        params = [entity_type, as_of, as_of]
    names, rows = await be.store_rows(sql, params)
    long = pd.DataFrame(rows, columns=names or ["entity", "tag_id", "value"])
    if long.empty:
        return pd.DataFrame(index=pd.Index([], name="entity", dtype=object))
    wide = long.pivot(index="entity", columns="tag_id", values="value").sort_index()
    wide.columns.name = None
    return wide


def evaluate_audience(
    frame: pd.DataFrame, expression: str, known: dict[str, list[str] | None]
) -> pd.Series:
    """Members of ``frame`` (index) for which ``expression`` is true.

    ``known`` maps the tag ids of this entity type to their allowed values (None: open, and
    then numeric when every value parses as a number).

    Raises
    ------
    ApiError
        422 ``invalid_expression`` for a syntax error or an unknown tag.
    """
    from autopersona.tags.expr import ExprError, parse

    try:
        e = parse(expression)
    except ExprError as exc:
        raise ApiError(422, "invalid_expression", str(exc), {"column": exc.pos}) from None
    for name, pos in e.name_positions():
        if name not in known:
            raise ApiError(
                422,
                "invalid_expression",
                f"at column {pos}: unknown tag {name!r} for this entity type",
                {"column": pos},
            )
    if e.prev_names():
        raise ApiError(
            422, "invalid_expression", "prev() reads features; audiences read tags", {"column": 1}
        )
    cols: dict[str, Any] = {}
    n = len(frame)
    for name in e.names():
        if name in frame.columns:
            s = frame[name]
        else:
            s = pd.Series([None] * n, index=frame.index, dtype=object)
        if known[name] is None:
            num = pd.to_numeric(s, errors="coerce")
            if num.notna().sum() == s.notna().sum():
                s = num.astype("float64")
        cols[name] = s.astype(object).where(s.notna(), None) if s.dtype == object else s
    env = pd.DataFrame(cols, index=frame.index)
    try:
        hit = e.evaluate(env, n=n)
    except ExprError as exc:
        raise ApiError(422, "invalid_expression", str(exc), {"column": exc.pos}) from None
    mask = hit.fillna(False).astype(bool)
    return pd.Series(frame.index[mask.to_numpy()], dtype=object)


async def campaigns(be: Backend) -> list[dict[str, Any]]:
    """Campaigns with feedback events: arms, persons, events."""
    if not await table_exists(be, "marketing_feedback"):
        return []
    _, rows = await be.wh_rows(
        "SELECT campaign_id, list(DISTINCT coalesce(arm, 'none') ORDER BY coalesce(arm, 'none')),"
        " count(DISTINCT person_id), count(*) FROM marketing_feedback GROUP BY 1 ORDER BY 1"
    )
    return [
        {"campaign_id": str(c), "arms": [str(a) for a in arms], "persons": int(p), "events": int(e)}
        for c, arms, p, e in rows
    ]


def _wilson(x: int, n: int) -> tuple[float | None, float | None]:
    if n == 0:
        return None, None
    from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

    lo, hi = proportion_confint(x, n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


async def experiment_report(be: Backend, campaign_id: str) -> dict[str, Any] | None:
    """Four-layer funnel per arm and the treatment-vs-control conversion difference.

    Persons per arm are those ``assigned`` (or, without assignment events, any event); a layer
    counts persons with at least one event of its types (a spoken head-unit reply is an
    interaction); value sums conversion values and counts the persons who referred someone.  The
    difference uses the Newcombe (Wilson score) interval and a two-sided z test.
    """
    if not await table_exists(be, "marketing_feedback"):
        return None
    cases = ", ".join(
        f"count(DISTINCT person_id) FILTER (WHERE event_type IN "
        f"({', '.join(repr(t) for t in types)})) AS {layer}"
        for layer, types in FUNNEL.items()
    )
    _, rows = await be.wh_rows(
        "SELECT coalesce(arm, 'none') AS arm, "
        "count(DISTINCT person_id) FILTER (WHERE event_type = 'assigned') AS assigned, "
        "count(DISTINCT person_id) AS anyone, "
        f"{cases}, coalesce(sum(value) FILTER (WHERE event_type IN ('converted', 'redeemed')), 0), "
        "count(DISTINCT person_id) FILTER (WHERE event_type = 'referral') "
        "FROM marketing_feedback WHERE campaign_id = ? GROUP BY 1 ORDER BY 1",
        [campaign_id],
    )
    if not rows:
        return None
    arms: list[dict[str, Any]] = []
    for arm, assigned, anyone, reach, inter, conv, value, referrers in rows:
        n = int(assigned) or int(anyone)
        lo, hi = _wilson(int(conv), n)
        arms.append(
            {
                "arm": str(arm),
                "assigned": n,
                "reach": int(reach),
                "interaction": int(inter),
                "conversion": int(conv),
                "value": float(value),
                "referrers": int(referrers),
                "rate": (int(conv) / n) if n else None,
                "rate_low": lo,
                "rate_high": hi,
            }
        )
    by = {a["arm"]: a for a in arms}
    treat = next((a for a in ("treatment", "variant", "b") if a in by), None)
    ctrl = next((a for a in ("control", "baseline", "holdout", "a") if a in by), None)
    out: dict[str, Any] = {
        "campaign_id": campaign_id,
        "arms": arms,
        "treatment": treat,
        "control": ctrl,
        "diff": None,
        "diff_low": None,
        "diff_high": None,
        "p_value": None,
    }
    if treat and ctrl and by[treat]["assigned"] and by[ctrl]["assigned"]:
        from statsmodels.stats.proportion import (
            confint_proportions_2indep,
            test_proportions_2indep,
        )

        x1, n1 = int(by[treat]["conversion"]), int(by[treat]["assigned"])
        x0, n0 = int(by[ctrl]["conversion"]), int(by[ctrl]["assigned"])
        lo, hi = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff")
        out["diff"] = x1 / n1 - x0 / n0
        out["diff_low"], out["diff_high"] = float(lo), float(hi)
        if 0 < x1 + x0 < n1 + n0:
            res = test_proportions_2indep(x1, n1, x0, n0, method="wald", compare="diff")
            out["p_value"] = _clean(float(res.pvalue))
    return out
