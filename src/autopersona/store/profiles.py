r"""The profile store: tag assignments with their history, on DuckDB or PostgreSQL.

One interface, two backends: :class:`DuckDBProfileStore` (the warehouse file, the default)
and :class:`PostgresProfileStore` (``postgresql://…``).  Both keep two tables in one schema:

``tag_assignments`` — one row per version of an entity's tag value::

    entity_type, entity, tag_id, value, score, reasons (JSON), as_of, valid_from, valid_to,
    confirmed_at, catalogue_version, model_version, computed_at

``tag_runs`` — one row per tag refresh: ``tag_id, as_of, tag_digest, catalogue_version,
assignments, computed_at`` (what :func:`refresh` uses to find the tags that are due).

As-of semantics
---------------
A version is valid on ``[valid_from, valid_to)``; ``valid_to`` is null for the current one.
Writing an assignment at time ``t`` whose value or score differs from the current version
closes that version at ``t`` and opens a new one from ``t`` (``valid_from = as_of = t``); an
unchanged value and score only moves ``confirmed_at`` to ``t``.  So ``profile_show(e, d)``
returns exactly the versions that were current at ``d`` — value, score and reasons as they
were computed — and ``profile_show(e)`` the current ones.  An entity that gets no value in a
refresh keeps its current version.  Writes must not go back in time: an assignment older than
the current version's ``valid_from`` is refused.

Examples
--------
>>> import pandas as pd
>>> from datetime import datetime, UTC
>>> ps = DuckDBProfileStore(":memory:")
>>> def a(value, day):
...     return pd.DataFrame([{"entity_type": "vin", "entity": "V1", "tag_id": "l2_usage_intensity",
...         "value": value, "score": None, "reasons": "{}", "as_of": datetime(2026, 1, day, tzinfo=UTC),
...         "catalogue_version": "c1", "model_version": None}])
>>> ps.write(a("low", 5)).opened, ps.write(a("low", 12)).confirmed, ps.write(a("high", 19)).closed
(1, 1, 1)
>>> ps.profile_show("V1", as_of=datetime(2026, 1, 13, tzinfo=UTC))["value"].tolist()
['low']
>>> ps.profile_show("V1")["value"].tolist()
['high']
>>> ps.close()
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd

from autopersona.store.sqlbase import (
    SchemaStore,
    closed_on_error,
    connect_postgres,
    pg_turns,
    transaction,
)

if TYPE_CHECKING:
    from autopersona.store.warehouse import Warehouse
    from autopersona.tags.spec import Catalogue

__all__ = [
    "DuckDBProfileStore",
    "PostgresProfileStore",
    "ProfileStore",
    "RefreshReport",
    "WriteReport",
    "due_tags",
    "open_store",
    "parse_as_of",
    "refresh",
]

_COLS = [
    "entity_type",
    "entity",
    "tag_id",
    "value",
    "score",
    "reasons",
    "as_of",
    "valid_from",
    "valid_to",
    "confirmed_at",
    "catalogue_version",
    "model_version",
    "computed_at",
]


def parse_as_of(text: str) -> datetime:
    """Parse an ISO date or time; a date means the end of that day (UTC), naive means UTC.

    >>> parse_as_of("2026-01-31")
    datetime.datetime(2026, 2, 1, 0, 0, tzinfo=datetime.timezone.utc)
    >>> parse_as_of("2026-01-31T08:00:00+08:00").isoformat()
    '2026-01-31T00:00:00+00:00'
    """
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(days=1)
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date or time") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def _utc(t: Any) -> datetime:
    if isinstance(t, pd.Timestamp):
        t = t.to_pydatetime()
    if not isinstance(t, datetime):
        raise TypeError(f"expected a datetime, got {type(t).__name__}")
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def _none(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _same_score(a: Any, b: Any) -> bool:
    a, b = _none(a), _none(b)
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))


@dataclass
class WriteReport:
    """What a write did: versions opened (new or changed), closed, and confirmed unchanged."""

    opened: int = 0
    closed: int = 0
    confirmed: int = 0


@dataclass
class RefreshReport:
    """Tags refreshed and skipped, assignments written, values changed, and ``notes``.

    ``notes`` gives, per tag that got no assignment, why (too few entities to cluster, too
    few labels to train a model, …).
    """

    as_of: datetime
    refreshed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    assignments: int = 0
    changed: int = 0
    notes: dict[str, str] = field(default_factory=dict)


class ProfileStore(SchemaStore):
    """Shared logic of both backends; subclasses supply the connection and SQL details.

    Parameters
    ----------
    schema
        Schema holding the tables (created if absent).
    """

    def __init__(self, schema: str) -> None:
        super().__init__(schema)

    # ----------------------------------------------------------- backend hooks
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def _executemany(self, sql: str, rows: list[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        raise NotImplementedError

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        raise NotImplementedError
        yield  # pragma: no cover

    def _sql(self, sql: str) -> str:
        return self.sql(sql)

    def create_tables(self) -> None:
        """Create the schema, tables and indexes if absent."""
        for stmt in (
            "CREATE SCHEMA IF NOT EXISTS {s}",
            """CREATE TABLE IF NOT EXISTS {s}.tag_assignments (
                entity_type VARCHAR NOT NULL,
                entity VARCHAR NOT NULL,
                tag_id VARCHAR NOT NULL,
                value VARCHAR,
                score DOUBLE PRECISION,
                reasons {json},
                as_of TIMESTAMPTZ NOT NULL,
                valid_from TIMESTAMPTZ NOT NULL,
                valid_to TIMESTAMPTZ,
                confirmed_at TIMESTAMPTZ NOT NULL,
                catalogue_version VARCHAR,
                model_version VARCHAR,
                computed_at TIMESTAMPTZ NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS {s}.tag_runs (
                tag_id VARCHAR NOT NULL,
                as_of TIMESTAMPTZ NOT NULL,
                tag_digest VARCHAR NOT NULL,
                catalogue_version VARCHAR,
                assignments BIGINT NOT NULL,
                computed_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS tag_assignments_entity "
            "ON {s}.tag_assignments (entity, tag_id)",
        ):
            self._execute(self._sql(stmt))

    # ----------------------------------------------------------- writes
    def write(self, assignments: pd.DataFrame, as_of: datetime | None = None) -> WriteReport:
        """Store assignments (the columns of :func:`autopersona.tags.rules.build_rule_tags`).

        ``as_of`` overrides the frame's ``as_of`` column.

        Raises
        ------
        ValueError
            If an assignment is older than the current version of the same entity and tag.
        """
        rep = WriteReport()
        if assignments.empty:
            return rep
        now = datetime.now(UTC)
        df = assignments.copy()
        if as_of is not None:
            df["as_of"] = _utc(as_of)
        dup = df.duplicated(["entity_type", "entity", "tag_id"])
        if dup.any():
            raise ValueError(f"{int(dup.sum())} duplicate (entity, tag) assignments in one write")
        tags = sorted(df["tag_id"].unique())
        marks = ", ".join("?" for _ in tags)
        current = self._query(
            self._sql(
                "SELECT entity_type, entity, tag_id, value, score, valid_from "
                f"FROM {{s}}.tag_assignments WHERE valid_to IS NULL AND tag_id IN ({marks})"
            ),
            tags,
        )
        cur = {
            (r.entity_type, r.entity, r.tag_id): (r.value, r.score, _utc(r.valid_from))
            for r in current.itertuples()
        }
        inserts: list[Sequence[Any]] = []
        closes: list[Sequence[Any]] = []
        confirms: list[Sequence[Any]] = []
        for r in df.itertuples():
            key = (r.entity_type, r.entity, r.tag_id)
            t = _utc(r.as_of)
            score = _none(r.score)
            row = [
                r.entity_type,
                r.entity,
                r.tag_id,
                _none(r.value),
                None if score is None else float(score),
                _none(r.reasons),
                t,
                t,
                None,
                t,
                _none(r.catalogue_version),
                _none(r.model_version),
                now,
            ]
            if key in cur:
                value, old_score, since = cur[key]
                if t < since:
                    raise ValueError(
                        f"{r.entity}/{r.tag_id}: assignment as of {t.isoformat()} is older than "
                        f"the current version (valid from {since.isoformat()})"
                    )
                if value == _none(r.value) and _same_score(old_score, score):
                    confirms.append([t, *key])
                    rep.confirmed += 1
                    continue
                closes.append([t, *key])
                rep.closed += 1
            inserts.append(row)
            rep.opened += 1
        with self._transaction():
            self._apply(closes, confirms, inserts)
        return rep

    def _apply(
        self,
        closes: list[Sequence[Any]],
        confirms: list[Sequence[Any]],
        inserts: list[Sequence[Any]],
    ) -> None:
        """Apply a write inside its transaction, row by row (backends may do it in bulk).

        ``closes`` and ``confirms`` rows are ``(t, entity_type, entity, tag_id)``; ``inserts``
        rows follow the table's columns.
        """
        if closes:
            # a version opened at t and replaced at t has zero length: remove it
            self._executemany(
                self._sql(
                    "DELETE FROM {s}.tag_assignments WHERE valid_to IS NULL AND valid_from = ? "
                    "AND entity_type = ? AND entity = ? AND tag_id = ?"
                ),
                closes,
            )
            self._executemany(
                self._sql(
                    "UPDATE {s}.tag_assignments SET valid_to = ? WHERE valid_to IS NULL "
                    "AND entity_type = ? AND entity = ? AND tag_id = ?"
                ),
                closes,
            )
        if confirms:
            self._executemany(
                self._sql(
                    "UPDATE {s}.tag_assignments SET confirmed_at = ? WHERE valid_to IS NULL "
                    "AND entity_type = ? AND entity = ? AND tag_id = ?"
                ),
                confirms,
            )
        if inserts:
            cols = ", ".join(_COLS)
            vals = ", ".join("CAST(? AS {json})" if c == "reasons" else "?" for c in _COLS)
            self._executemany(
                self._sql(f"INSERT INTO {{s}}.tag_assignments ({cols}) VALUES ({vals})"),
                inserts,
            )

    def close_except(self, tag_id: str, keep: set[str], as_of: datetime) -> int:
        """Close the current values of ``tag_id`` held by entities outside ``keep``.

        They stay valid until ``as_of`` (history is kept): e.g. people who withdrew the
        consent the tag's purpose needs.  Returns how many were closed.
        """
        cur = self._query(
            self._sql(
                "SELECT entity_type, entity FROM {s}.tag_assignments "
                "WHERE valid_to IS NULL AND tag_id = ?"
            ),
            [tag_id],
        )
        when = _utc(as_of)
        closes: list[Sequence[Any]] = [
            [when, r.entity_type, r.entity, tag_id]
            for r in cur.itertuples()
            if str(r.entity) not in keep
        ]
        if closes:
            with self._transaction():
                self._apply(closes, [], [])
        return len(closes)

    def record_run(
        self, tag_id: str, as_of: datetime, digest: str, catalogue_version: str, assignments: int
    ) -> None:
        """Note that ``tag_id`` was refreshed as of ``as_of``."""
        self._execute(
            self._sql("INSERT INTO {s}.tag_runs VALUES (?, ?, ?, ?, ?, ?)"),
            [tag_id, _utc(as_of), digest, catalogue_version, assignments, datetime.now(UTC)],
        )

    # ----------------------------------------------------------- reads
    def last_runs(self) -> dict[str, tuple[datetime, str]]:
        """Latest refresh per tag: ``{tag_id: (as_of, tag_digest)}``."""
        df = self._query(
            self._sql("SELECT tag_id, as_of, tag_digest, computed_at FROM {s}.tag_runs")
        )
        out: dict[str, tuple[datetime, str]] = {}
        for r in df.sort_values(["as_of", "computed_at"]).itertuples():
            out[str(r.tag_id)] = (_utc(r.as_of), str(r.tag_digest))
        return out

    def _frame(self, df: pd.DataFrame) -> pd.DataFrame:
        if "reasons" in df:
            df["reasons"] = [
                v if v is None or isinstance(v, str) else json.dumps(v, sort_keys=True)
                for v in df["reasons"]
            ]
        for c in ("as_of", "valid_from", "valid_to", "confirmed_at", "computed_at"):
            if c in df:
                df[c] = pd.to_datetime(df[c], utc=True)
        if "score" in df:
            df["score"] = pd.to_numeric(df["score"]).astype("float64")
        return df.reset_index(drop=True)

    def profile_show(self, entity: str, as_of: datetime | None = None) -> pd.DataFrame:
        """The entity's tags as of ``as_of`` (default: the current versions), by tag id."""
        cols = ", ".join(_COLS)
        if as_of is None:
            df = self._query(
                self._sql(
                    f"SELECT {cols} FROM {{s}}.tag_assignments "
                    "WHERE entity = ? AND valid_to IS NULL ORDER BY tag_id"
                ),
                [entity],
            )
        else:
            t = _utc(as_of)
            df = self._query(
                self._sql(
                    f"SELECT {cols} FROM {{s}}.tag_assignments WHERE entity = ? "
                    "AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?) ORDER BY tag_id"
                ),
                [entity, t, t],
            )
        return self._frame(df)

    def history(self, entity: str, tag_id: str | None = None) -> pd.DataFrame:
        """Every version of the entity's tags, oldest first."""
        cols = ", ".join(_COLS)
        sql = f"SELECT {cols} FROM {{s}}.tag_assignments WHERE entity = ?"
        params: list[Any] = [entity]
        if tag_id is not None:
            sql += " AND tag_id = ?"
            params.append(tag_id)
        return self._frame(self._query(self._sql(sql + " ORDER BY tag_id, valid_from"), params))

    def count(self) -> int:
        """Rows in ``tag_assignments`` (all versions)."""
        df = self._query(self._sql("SELECT count(*) AS n FROM {s}.tag_assignments"))
        return int(df["n"].iloc[0])


class DuckDBProfileStore(ProfileStore):
    """Profile store in a DuckDB database (by default the warehouse's own connection).

    Parameters
    ----------
    target
        A DuckDB connection (not closed by the store), a file path or ``":memory:"``.
    schema
        Schema of the tables (default ``main``).
    """

    def __init__(self, target: Any = ":memory:", schema: str = "main") -> None:
        import duckdb

        super().__init__(schema)
        if isinstance(target, duckdb.DuckDBPyConnection):
            self.con = target
            self._owned = False
        else:
            self.con = duckdb.connect(str(target))
            self._owned = True
        self.con.execute("SET TimeZone = 'UTC'")
        self.create_tables()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.con.execute(sql, list(params))

    def _executemany(self, sql: str, rows: list[Sequence[Any]]) -> None:
        self.con.executemany(sql, [list(r) for r in rows])

    def _query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        cur = self.con.execute(sql, list(params))
        names = [d[0] for d in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=names)

    def _apply(
        self,
        closes: list[Sequence[Any]],
        confirms: list[Sequence[Any]],
        inserts: list[Sequence[Any]],
    ) -> None:
        """Bulk version: each step is one statement joined to a registered frame."""
        key = ["t", "entity_type", "entity", "tag_id"]
        match = (
            "a.valid_to IS NULL AND a.entity_type = k.entity_type AND a.entity = k.entity "
            "AND a.tag_id = k.tag_id"
        )
        t = "{s}.tag_assignments"
        if closes:
            self.con.register("_ap_keys", pd.DataFrame(closes, columns=key))
            try:
                self.con.execute(
                    self._sql(
                        f"DELETE FROM {t} AS a USING _ap_keys AS k "
                        f"WHERE {match} AND a.valid_from = k.t"
                    )
                )
                self.con.execute(
                    self._sql(
                        f"UPDATE {t} AS a SET valid_to = k.t FROM _ap_keys AS k WHERE {match}"
                    )
                )
            finally:
                self.con.unregister("_ap_keys")
        if confirms:
            self.con.register("_ap_keys", pd.DataFrame(confirms, columns=key))
            try:
                self.con.execute(
                    self._sql(
                        f"UPDATE {t} AS a SET confirmed_at = k.t FROM _ap_keys AS k WHERE {match}"
                    )
                )
            finally:
                self.con.unregister("_ap_keys")
        if inserts:
            df = pd.DataFrame(inserts, columns=_COLS)
            types = {
                "score": "DOUBLE",
                "reasons": "JSON",
                "as_of": "TIMESTAMPTZ",
                "valid_from": "TIMESTAMPTZ",
                "valid_to": "TIMESTAMPTZ",
                "confirmed_at": "TIMESTAMPTZ",
                "computed_at": "TIMESTAMPTZ",
            }
            sel = ", ".join(f"CAST({c} AS {types.get(c, 'VARCHAR')})" for c in _COLS)
            self.con.register("_ap_rows", df)
            try:
                self.con.execute(
                    self._sql(f"INSERT INTO {t} ({', '.join(_COLS)}) SELECT {sel} FROM _ap_rows")
                )
            finally:
                self.con.unregister("_ap_rows")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with transaction(self.con):
            yield

    def close(self) -> None:
        """Close the connection if the store opened it."""
        if self._owned:
            self.con.close()


class PostgresProfileStore(ProfileStore):
    """Profile store in PostgreSQL (psycopg 3).

    Parameters
    ----------
    url
        ``postgresql://user@host:port/db``; a ``schema=`` query parameter picks the schema.
    schema
        Schema of the tables (default: the URL's ``schema`` or ``public``).
    """

    json_type = "JSONB"
    placeholder = "%s"

    def __init__(self, url: str, schema: str | None = None) -> None:

        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = schema or query.pop("schema", None) or "public"
        query.pop("schema", None)
        super().__init__(schema)
        self.url = urlunsplit(parts._replace(query=urlencode(query)))
        self.con = connect_postgres(self.url)
        with closed_on_error(self.con):
            self.create_tables()

    def create_tables(self) -> None:
        """:meth:`ProfileStore.create_tables`, one process at a time (:func:`pg_turns`).

        API workers and batch jobs may open a fresh schema together.
        """
        with pg_turns(self.con, f"autopersona.profiles.{self.schema}"):
            super().create_tables()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.con.execute(sql, list(params))

    def _executemany(self, sql: str, rows: list[Sequence[Any]]) -> None:
        with self.con.cursor() as cur:
            cur.executemany(sql, rows)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self.con.cursor() as cur:
            cur.execute(sql, list(params))
            names = [d.name for d in cur.description or []]
            return pd.DataFrame(cur.fetchall(), columns=names)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self.con.transaction():
            yield

    def drop_schema(self) -> None:
        """Drop the store's schema and everything in it (tests, teardown)."""
        self._execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def close(self) -> None:
        """Close the connection."""
        self.con.close()


def open_store(
    url: str | None = None, *, warehouse: Warehouse | None = None, schema: str | None = None
) -> ProfileStore:
    """Open the profile store named by ``url``.

    ``None`` means the warehouse (``warehouse``'s connection if given, else the configured
    warehouse file); ``postgresql://…`` (or ``postgres://…``) means PostgreSQL; anything else
    is a DuckDB file path.

    >>> with open_store(":memory:") as ps:
    ...     type(ps).__name__, ps.count()
    ('DuckDBProfileStore', 0)
    """
    if url and url.split(":", 1)[0] in ("postgresql", "postgres"):
        return PostgresProfileStore(url, schema=schema)
    if url:
        return DuckDBProfileStore(url if url == ":memory:" else Path(url), schema=schema or "main")
    if warehouse is not None:
        return DuckDBProfileStore(warehouse.con, schema=schema or "main")
    from autopersona.settings import get_settings

    return DuckDBProfileStore(Path(get_settings().warehouse), schema=schema or "main")


def due_tags(
    catalogue: Catalogue, store: ProfileStore, as_of: datetime, tags: list[str] | None = None
) -> list[str]:
    """Buildable tags due at ``as_of``: never refreshed, redefined, or past their cadence.

    Static tags are due once (and again when their declaration changes); weekly, monthly and
    quarterly ones after 7, 30 and 91 days.

    Examples
    --------
    >>> from autopersona.tags.spec import load_catalogue
    >>> cat = load_catalogue()
    >>> with DuckDBProfileStore(":memory:") as ps:
    ...     ps.record_run("l1_vehicle_tier", datetime(2026, 1, 1, tzinfo=UTC),
    ...                   cat.tags["l1_vehicle_tier"].digest(), cat.version, 30)
    ...     "l1_vehicle_tier" in due_tags(cat, ps, datetime(2027, 1, 1, tzinfo=UTC))
    False
    """
    from autopersona.tags.build import BUILDABLE
    from autopersona.tags.spec import CADENCE_DAYS

    runs = store.last_runs()
    out = []
    for tid in tags or sorted(catalogue.tags):
        spec = catalogue.tags[tid]
        if spec.method not in BUILDABLE:
            continue
        last = runs.get(tid)
        if last is None or last[1] != spec.digest():
            out.append(tid)
            continue
        days = CADENCE_DAYS[spec.cadence]
        if days is not None and _utc(as_of) - last[0] >= timedelta(days=days):
            out.append(tid)
    return out


def refresh(
    wh: Warehouse,
    store: ProfileStore,
    catalogue: Catalogue | None = None,
    *,
    as_of: datetime | None = None,
    due_only: bool = True,
    period: str = "week",
) -> RefreshReport:
    """Recompute the tags (only the due ones unless ``due_only=False``) and store them.

    Every method is built (:func:`autopersona.tags.build.build_tags`): rule, score, cluster
    and model tags in dependency order; a model tag trains when its ``retrain`` cadence is
    due and otherwise scores with its stored model.

    Parameters
    ----------
    wh
        Warehouse with features and master data.
    store
        Profile store to write to.
    catalogue
        Tag catalogue (default: built-in).
    as_of
        Point in time of the refresh (default: now).
    due_only
        Only tags due on their cadence (see :func:`due_tags`).
    period
        Feature period read by the rules.

    Examples
    --------
    >>> from autopersona.store.warehouse import Warehouse
    >>> from autopersona.privacy.consent import record_consent
    >>> with Warehouse(":memory:") as wh:
    ...     _ = wh.con.execute("INSERT INTO vehicles (vin, msrp_cny, energy_type) "
    ...                        "VALUES ('V1', 520000, 'BEV')")
    ...     _ = wh.con.execute("INSERT INTO accounts (account_id, source, vin) "
    ...                        "VALUES ('A1', 'owner', 'V1')")
    ...     record_consent(wh, "A1", "analytics", "any", True, datetime(2025, 1, 1, tzinfo=UTC))
    ...     ps = open_store(warehouse=wh)
    ...     rep = refresh(wh, ps, as_of=datetime(2026, 1, 1, tzinfo=UTC))
    ...     again = refresh(wh, ps, as_of=datetime(2026, 1, 2, tzinfo=UTC))
    ...     tiers = ps.profile_show("V1").set_index("tag_id")["value"]
    >>> rep.assignments, again.refreshed, tiers["l1_vehicle_tier"]
    (2, [], 'luxury')
    """
    from autopersona.tags.build import BUILDABLE, build_tags
    from autopersona.tags.spec import load_catalogue

    cat = catalogue or load_catalogue()
    when = _utc(as_of) if as_of is not None else datetime.now(UTC)
    buildable = sorted(t for t, s in cat.tags.items() if s.method in BUILDABLE)
    todo = due_tags(cat, store, when) if due_only else buildable
    rep = RefreshReport(as_of=when, refreshed=todo, skipped=[t for t in buildable if t not in todo])
    if todo:
        df = build_tags(wh, cat, as_of=when, tags=todo, period=period, notes=rep.notes)
        w = store.write(df, when)
        rep.assignments = len(df)
        rep.changed = w.opened
        counts = df["tag_id"].value_counts().to_dict()
        for t in todo:
            store.record_run(t, when, cat.tags[t].digest(), cat.version, int(counts.get(t, 0)))
    # every refresh, due tags or not (a static tag is never due again): a withdrawn consent
    # ends the values its purpose produced
    from autopersona.privacy.consent import consented

    allowed: dict[tuple[str, str], set[str]] = {}
    for t in buildable:
        spec = cat.tags[t]
        if spec.purpose is None:
            continue
        kind: Literal["vin", "account"] = "vin" if spec.entity == "vin" else "account"
        if (spec.purpose, kind) not in allowed:
            allowed[(spec.purpose, kind)] = consented(wh, spec.purpose, "any", when, kind)
        n = store.close_except(t, allowed[(spec.purpose, kind)], when)
        if n:
            rep.notes[t] = f"{t}: {n} value(s) closed: no {spec.purpose} consent"
    return rep
