r"""Build rule and score tags from the latest feature rows and master data.

For every entity (a VIN or a customer) the builder reads, for each feature table a tag needs,
the latest *complete* period ending at or before ``as_of`` (and the period before it, for
``prev(...)``) — so a profile as of a date reads only data from before that date — joins the master-data columns (``vehicles`` or ``accounts``),
evaluates the tags in dependency order and returns one assignment per entity and tag:

========================  ==========================================================
column                    meaning
========================  ==========================================================
``entity_type``           ``vin`` or ``customer_id``
``entity``                the VIN or customer id
``tag_id``                the tag
``value``                 the value (text; numbers of open score tags as text too)
``score``                 1.0 for a rule case, the score for score tags
``reasons``               JSON: the case (or grade) that fired and the inputs it read
``as_of``                 the point in time the assignment describes (UTC)
``catalogue_version``     content hash of the catalogue
``model_version``         null for rules and scores
========================  ==========================================================

An entity gets no assignment for a tag when every input the tag reads is null for it, or
when no case fires and the tag has no ``else``, or when its people do not consent to the
tag's purpose at ``as_of`` (:func:`autopersona.privacy.consent.consented`; :func:`evaluate_tag`
itself works on whatever rows it is given).

Examples
--------
>>> import pandas as pd
>>> from autopersona.tags.spec import load_catalogue
>>> cat = load_catalogue()
>>> env = pd.DataFrame({"msrp_cny": [500000.0, 200000.0, 90000.0, None]},
...                    index=pd.Index(["A", "B", "C", "D"], name="entity"))
>>> out = evaluate_tag(cat, "l1_vehicle_tier", env)
>>> out["value"].tolist()
['luxury', 'mid', 'economy']
>>> import json; json.loads(out["reasons"].iloc[0])["when"]
'msrp_cny > 400000'
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from autopersona.privacy.consent import consented
from autopersona.store.warehouse import Warehouse
from autopersona.tags.spec import Catalogue, TagSpec, known_names, load_catalogue

__all__ = ["ASSIGNMENT_COLUMNS", "BUILDABLE", "build_rule_tags", "evaluate_tag", "load_inputs"]

#: Methods this module computes (cluster and model tags have their own builders).
BUILDABLE = ("rule", "score")
ASSIGNMENT_COLUMNS = [
    "entity_type",
    "entity",
    "tag_id",
    "value",
    "score",
    "reasons",
    "as_of",
    "catalogue_version",
    "model_version",
]


def _py(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, pd.Timestamp | datetime):
        return v.isoformat()
    return v


def _fmt_value(v: Any) -> str | None:
    v = _py(v)
    if v is None:
        return None
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _reads(tag: TagSpec, cat: Catalogue) -> list[str]:
    names: list[str] = []
    for e in cat.parsed.get(tag.id, {}).values():
        for n, _ in e.name_positions():
            if n not in names:
                names.append(n)
    return names


def evaluate_tag(cat: Catalogue, tag_id: str, env: pd.DataFrame) -> pd.DataFrame:
    """Evaluate one rule or score tag over ``env`` (one row per entity, index = entity).

    ``env`` holds the columns the tag reads (features, master data, other tags, and
    ``prev(x)`` columns).  Returns ``entity``, ``value``, ``score``, ``reasons`` for the
    entities that get a value.
    """
    tag = cat.tags[tag_id]
    if tag.method not in BUILDABLE:
        raise ValueError(f"{tag_id}: method {tag.method} is not built by rules")
    exprs = cat.parsed[tag_id]
    reads = _reads(tag, cat)
    n = len(env)
    present = np.zeros(n, dtype=bool)
    for name in reads:
        if name in env:
            present |= env[name].notna().to_numpy()
    values: list[str | None] = [None] * n
    scores = np.full(n, np.nan)
    reasons: list[str | None] = [None] * n

    def inputs_of(i: int, names: list[str]) -> dict[str, Any]:
        out = {}
        for nm in names:
            if nm in env:
                out[nm] = _py(env[nm].iloc[i])
            if f"prev({nm})" in env:
                out[f"prev({nm})"] = _py(env[f"prev({nm})"].iloc[i])
        return out

    if tag.rule is not None:
        done = ~present
        for k, case in enumerate(tag.rule.cases):
            loc_when = ("rule", "cases", k, "when")
            cond = exprs[loc_when].evaluate(env).fillna(False).to_numpy(dtype=bool)
            fire = cond & ~done
            if not fire.any():
                continue
            if case.value_of is not None:
                got = exprs[("rule", "cases", k, "value_of")].evaluate(env)
                vals = [_fmt_value(v) for v in got]
            else:
                vals = [case.value] * n
            names = sorted(exprs[loc_when].names())
            if case.value_of is not None:
                names = sorted(set(names) | exprs[("rule", "cases", k, "value_of")].names())
            for i in np.flatnonzero(fire).tolist():
                if vals[i] is None:
                    continue
                values[i] = vals[i]
                scores[i] = 1.0
                reasons[i] = json.dumps(
                    {"case": k + 1, "when": case.when, "inputs": inputs_of(i, names)},
                    sort_keys=True,
                )
            done |= fire
        if tag.rule.else_ is not None:
            for i in np.flatnonzero(~done).tolist():
                values[i] = tag.rule.else_
                scores[i] = 1.0
                reasons[i] = json.dumps(
                    {"case": "else", "inputs": inputs_of(i, reads)}, sort_keys=True
                )
    else:
        assert tag.score is not None
        raw = exprs[("score", "expression")].evaluate(env)
        s = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
        for i in np.flatnonzero(present & ~np.isnan(s)).tolist():
            grade: str | None = None
            rule: str = "else"
            for g in tag.score.grades:
                if s[i] >= g.min:
                    grade, rule = g.value, f">= {g.min:g}"
                    break
            if grade is None:
                grade = tag.score.else_ if tag.score.grades else _fmt_value(s[i])
                rule = "else" if tag.score.grades else "score"
            if grade is None:
                continue
            values[i] = grade
            scores[i] = float(s[i])
            reasons[i] = json.dumps(
                {
                    "score": tag.score.expression,
                    "value": float(s[i]),
                    "grade": rule,
                    "inputs": inputs_of(i, reads),
                },
                sort_keys=True,
            )
    out = pd.DataFrame(
        {
            "entity": env.index.astype(str),
            "value": values,
            "score": scores,
            "reasons": reasons,
        }
    )
    return out[out["value"].notna()].reset_index(drop=True)


_LENGTH = {"day": "1 DAY", "week": "7 DAY", "month": "1 MONTH"}


def _table_exists(wh: Warehouse, table: str) -> bool:
    n = wh.con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchall()
    return bool(n and n[0][0])


def load_inputs(
    wh: Warehouse,
    entity: str,
    names: set[str],
    prev_names: set[str],
    as_of: datetime,
    period: str = "week",
) -> pd.DataFrame:
    """One row per entity with the latest values of ``names`` as of ``as_of``.

    Feature columns come from the latest row of ``period`` whose period ended at or before
    ``as_of``; ``<domain>_age_days`` is the number of days from the end of that period to
    ``as_of`` (how stale the domain's latest features are, e.g. to age a recency);
    ``prev(x)`` columns come from the row before it; master-data columns from ``vehicles``
    (VINs) or ``accounts`` (customers: ``account_id`` = ``customer_id``).  Names a table does
    not have (yet) are null columns.

    Examples
    --------
    >>> from autopersona.store.warehouse import Warehouse
    >>> with Warehouse(":memory:") as wh:
    ...     _ = wh.con.execute("INSERT INTO vehicles (vin, msrp_cny, energy_type) "
    ...                        "VALUES ('V1', 99000, 'ICE')")
    ...     env = load_inputs(wh, "vin", {"msrp_cny", "distance_km"}, set(), datetime.now(UTC))
    >>> env.loc["V1", "msrp_cny"], env.loc["V1", "distance_km"] is None
    (np.float64(99000.0), True)
    """
    where = known_names(entity)
    key = "vin" if entity == "vin" else "customer_id"
    by_table: dict[str, list[str]] = {}
    for nm in sorted(names | prev_names):
        t = where.get(nm)
        if t is not None:
            by_table.setdefault(t, []).append(nm)
    if period not in _LENGTH:
        raise ValueError(f"unknown period {period!r}: use day, week or month")
    cutoff = as_of.astimezone(UTC).replace(tzinfo=None)
    frames: list[pd.DataFrame] = []
    ids: set[str] = set()
    for table, cols in by_table.items():
        if not _table_exists(wh, table):
            continue
        have = {r[0] for r in wh.con.execute(f'DESCRIBE "{table}"').fetchall()}
        age_name = f"{table.removeprefix('features_')}_age_days"
        want_age = age_name in cols and table.startswith("features_")
        cols = [c for c in cols if c in have]  # a column not built yet reads as null
        if not cols and not want_age:
            continue
        sel = "".join(f', "{c}"' for c in cols)
        if table in ("vehicles", "accounts"):
            k = "vin" if table == "vehicles" else "account_id"
            df = wh.con.execute(
                f'SELECT "{k}" AS entity{sel} FROM "{table}" WHERE "{k}" IS NOT NULL '
                f'QUALIFY row_number() OVER (PARTITION BY "{k}") = 1'
            ).df()
            frames.append(df.set_index("entity"))
            continue
        length = _LENGTH[period]
        df = wh.con.execute(
            f'SELECT "{key}" AS entity{sel}, '
            f"epoch(CAST(? AS TIMESTAMP) - (period_start + INTERVAL {length})) / 86400.0 "
            "AS _age, "
            f'row_number() OVER (PARTITION BY "{key}" ORDER BY period_start DESC) AS _rn '
            f'FROM "{table}" WHERE period = ? AND period_start + INTERVAL {length} <= ? '
            f'AND "{key}" IS NOT NULL QUALIFY _rn <= 2',
            [cutoff, period, cutoff],
        ).df()
        latest = df[df["_rn"] == 1].set_index("entity")
        ids |= set(latest.index)
        if want_age:
            latest = latest.rename(columns={"_age": age_name})
        frames.append(latest[[c for c in [*cols, age_name] if c in names and c in latest]])
        pcols = [c for c in cols if c in prev_names]
        if pcols:
            prev = df[df["_rn"] == 2].set_index("entity")[pcols]
            frames.append(prev.rename(columns={c: f"prev({c})" for c in pcols}))
    if entity == "vin" and _table_exists(wh, "vehicles"):
        ids |= {r[0] for r in wh.con.execute("SELECT vin FROM vehicles").fetchall()}
    if not ids:
        for f in frames:
            ids |= set(f.index)
    index = pd.Index(sorted(str(i) for i in ids), name="entity")
    env = pd.DataFrame(index=index)
    for f in frames:
        f = f[~f.index.duplicated()]
        env = env.join(f, how="left")
    for nm in names | {f"prev({p})" for p in prev_names}:
        if nm not in env:
            env[nm] = pd.Series([None] * len(env), index=env.index, dtype=object)
    return env


def build_rule_tags(
    wh: Warehouse,
    catalogue: Catalogue | None = None,
    *,
    as_of: datetime | None = None,
    tags: list[str] | None = None,
    period: str = "week",
) -> pd.DataFrame:
    """Compute rule and score tags for every entity; see the module docstring for columns.

    Parameters
    ----------
    wh
        Warehouse with the feature tables and master data.
    catalogue
        Tag catalogue (default: the built-in one).
    as_of
        Point in time (default: now, UTC).
    tags
        Tag ids to return (default: every rule and score tag).  Their rule/score dependencies
        are computed too; cluster/model dependencies not built yet read as null.
    period
        Feature period to read (``week``, ``month`` or ``day``).

    Examples
    --------
    >>> from autopersona.store.warehouse import Warehouse
    >>> with Warehouse(":memory:") as wh:
    ...     build_rule_tags(wh, tags=["l1_vehicle_tier"]).shape
    (0, 9)
    """
    cat = catalogue or load_catalogue()
    when = as_of or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    wanted = tags if tags is not None else [t for t, s in cat.tags.items() if s.method in BUILDABLE]
    for t in wanted:
        if t not in cat.tags:
            raise KeyError(f"unknown tag {t!r}")
        if cat.tags[t].method not in BUILDABLE:
            raise ValueError(f"{t}: method {cat.tags[t].method} is not built by rules")
    order = cat.order(sorted(wanted))
    results: list[pd.DataFrame] = []
    consent: dict[tuple[str, str], set[str]] = {}
    for entity in ("vin", "customer_id"):
        ids = [t for t in order if cat.tags[t].entity == entity]
        if not ids:
            continue
        names: set[str] = set()
        prevs: set[str] = set()
        for t in ids:
            for e in cat.parsed.get(t, {}).values():
                names |= {n for n in e.names() if n not in cat.tags}
                prevs |= e.prev_names()
        env = load_inputs(wh, entity, names, prevs, when, period)
        for t in ids:
            spec = cat.tags[t]
            if spec.method not in BUILDABLE:
                env[t] = pd.Series([None] * len(env), index=env.index, dtype=object)
                continue
            res = (
                evaluate_tag(cat, t, env)
                if len(env)
                else pd.DataFrame(columns=["entity", "value", "score", "reasons"])
            )
            # an input of another tag is processing for that tag's purpose too: the column
            # holds values for the consenters of every purpose reading it, the assignment only
            # for those of the tag's own
            users = [t, *(u for u in ids if u != t and t in cat.order([u]))]
            needed: set[str] = set()
            for u in users:
                purpose = cat.tags[u].purpose
                if purpose is None:
                    break
                if (purpose, entity) not in consent:
                    kind: Literal["vin", "account"] = "vin" if entity == "vin" else "account"
                    consent[(purpose, entity)] = consented(wh, purpose, "any", when, kind)
                needed |= consent[(purpose, entity)]
            else:
                res = res[res["entity"].astype(str).isin(needed)].reset_index(drop=True)
            col = pd.Series([None] * len(env), index=env.index, dtype=object)
            if len(res):
                col.loc[res["entity"].to_numpy()] = res["value"].to_numpy()
            env[t] = col
            if spec.purpose is not None and len(res):
                own = consent[(spec.purpose, entity)]
                res = res[res["entity"].astype(str).isin(own)].reset_index(drop=True)
            if t in wanted:
                res = res.assign(entity_type=entity, tag_id=t)
                results.append(res)
    if not results:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ASSIGNMENT_COLUMNS})
    out = pd.concat(results, ignore_index=True)
    out["as_of"] = pd.Timestamp(when)
    out["catalogue_version"] = cat.version
    out["model_version"] = None
    out["score"] = out["score"].astype("float64")
    return out[ASSIGNMENT_COLUMNS]
