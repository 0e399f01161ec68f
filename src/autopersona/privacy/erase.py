r"""Retention limits and erasure on request, over every table of every backend.

Retention
---------
Each contract declares ``retention_days``; :func:`enforce_retention` deletes the rows whose
time column is older than that (system logs have their own limits, :data:`SYSTEM_RETENTION`).
A table without a time column (master data such as ``vehicles`` and ``accounts``) ages by
the *last activity* of each row (:func:`last_activity`): the latest time of any time-stamped
row naming its key (a vehicle's trips, signals, services…; an account's orders, events,
consents…, where ``customer_id`` names an account too), or its own dates
(``registration_date``, ``created_at``) when later; a row with neither ages from the latest
ingest run that loaded its table (rows cannot be told apart there, so this keeps them
longer, never shorter).  A vehicle or account untouched for its retention period goes, and with the last account
holding an identifier, that identifier's comparison keys (``identifier_keys``).

Erasure
-------
:func:`erase_person` removes one person — every identifier linked to them — from all tables
it can find, without a list of tables: other stages' tables (decision log, outbox, evaluation
logs, feature tables) are covered as long as they name people by one of the identifier
columns (:data:`IDENTIFIER_COLUMNS`: ``vin``, ``person_id``, ``customer_id``, ``account_id``,
``email``, ``phone``, ``entity``… or a name ending in ``_vin``, ``_person_id`` …; list columns
such as ``persons.vins`` too).  Log-like tables (names starting with ``_`` or containing
``log``, ``outbox``, ``decision``, ``message``, ``queue``, ``event``, ``dead_letter``) and JSON
columns are also searched as text for the identifiers, and so are free-text columns anywhere
(``payload``, ``address``, ``raw``, ``text``…), so a raw record in the quarantine or an outbox
message to the person's address goes as well.

1. **Resolve** the request (a person id, an account id, a VIN, an e-mail or a phone) to
   every linked identifier: identity links (all accounts of the person), the accounts'
   VINs, e-mails and phones, transitively through shared exact keys.  A VIN also linked to
   another person (a shared car) is kept, and reported as kept.
2. **Delete** in every backend given (the DuckDB warehouse, and e.g. the PostgreSQL profile
   store), one transaction per backend.
3. **Verify** with the same predicates as counting queries: all must be zero.
4. **Audit**: a row in ``erasure_audit`` of each backend — a SHA-256 of the request id (not
   the person), the time, counts per table, whether verification passed.  No identifier.
5. **Suppress**: keyed hashes of the identifiers go to ``erasure_suppression`` so that
   future ingests and training sets can drop a re-delivered record of the person
   (:func:`suppressed`).

Tables that hold no personal data by design are left alone (:data:`EXEMPT_TABLES`: the
audit itself, the DP budget ledger, the re-identification audit).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autopersona.privacy.pseudo import Vault
    from autopersona.store.warehouse import Warehouse

__all__ = [
    "AUDIT_TABLE",
    "EXEMPT_TABLES",
    "IDENTIFIER_COLUMNS",
    "KEY_ALIASES",
    "SUPPRESSION_TABLE",
    "SYSTEM_RETENTION",
    "Backend",
    "DuckDBBackend",
    "ErasureReport",
    "PostgresBackend",
    "enforce_retention",
    "erase_person",
    "last_activity",
    "resolve_person",
    "suppressed",
]

AUDIT_TABLE = "erasure_audit"
SUPPRESSION_TABLE = "erasure_suppression"
IDENTIFIER_COLUMNS = frozenset(
    {
        "vin",
        "vins",
        "person_id",
        "into_person_id",
        "customer_id",
        "account_id",
        "user_id",
        "email",
        "phone",
        "entity",
        "recipient",
    }
)
_ID_SUFFIXES = ("_vin", "_person_id", "_account_id", "_customer_id", "_email", "_phone")
_LOG_RE = re.compile(r"^_|log|outbox|decision|message|queue|dead_letter|event")
#: Free-text columns searched in any table (a payload may name the person).
_FREE_TEXT = frozenset({"payload", "address", "raw", "body", "message", "text", "reasons"})
EXEMPT_TABLES = frozenset(
    {AUDIT_TABLE, SUPPRESSION_TABLE, "privacy_budget_ledger", "privacy_budgets"}
    | {"reidentification_audit", "tag_runs"}
)
#: Retention of system logs: table → (time column, days).
SYSTEM_RETENTION: dict[str, tuple[str, int]] = {
    "_quarantine": ("quarantined_at", 180),
    "_repairs": ("repaired_at", 180),
    "_ingest_runs": ("started_at", 730),
}


def _is_identifier(column: str) -> bool:
    c = column.lower()
    return c in IDENTIFIER_COLUMNS or c.endswith(_ID_SUFFIXES)


# ============================================================================ backends
class Backend:
    """A database to erase from: lists its tables, runs statements, counts."""

    name = "backend"
    ph = "?"

    def columns(self) -> list[tuple[str, str, str]]:
        """``(table, column, kind)`` of base tables; kind is ``text``, ``list``, ``json``, ``other``."""
        raise NotImplementedError

    def qualified(self, table: str) -> str:
        """Quoted (schema-qualified) table name."""
        return f'"{table}"'

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a statement."""
        raise NotImplementedError

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """First value of a query."""
        raise NotImplementedError

    def begin(self) -> None:
        """Start a transaction."""
        self.execute("BEGIN")

    def commit(self) -> None:
        """Commit."""
        self.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back."""
        self.execute("ROLLBACK")

    def in_list(self, column: str, kind: str, n: int) -> str:
        """Predicate: the column holds one of ``n`` values (parameters)."""
        marks = ", ".join(self.ph for _ in range(n))
        return f'CAST("{column}" AS VARCHAR) IN ({marks})'

    def list_any(self, column: str) -> str:
        """Predicate: the list column shares an element with one list parameter."""
        raise NotImplementedError

    def contains_any(self, column: str, n: int) -> str:
        """Predicate: the column's text contains one of ``n`` values."""
        raise NotImplementedError

    def create_audit(self) -> None:
        """Create the audit and suppression tables if absent."""
        t = self.qualified(AUDIT_TABLE)
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (request_sha256 VARCHAR NOT NULL, "
            "erased_at TIMESTAMPTZ NOT NULL, backend VARCHAR NOT NULL, rows_deleted BIGINT NOT NULL, "
            "per_table VARCHAR NOT NULL, verified BOOLEAN NOT NULL)"
        )
        s = self.qualified(SUPPRESSION_TABLE)
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {s} (digest VARCHAR NOT NULL, added_at TIMESTAMPTZ NOT NULL)"
        )


class DuckDBBackend(Backend):
    """The DuckDB warehouse (main schema)."""

    name = "duckdb"

    def __init__(self, con: Any) -> None:
        self.con = con

    def columns(self) -> list[tuple[str, str, str]]:
        """See :meth:`Backend.columns`."""
        rows = self.con.execute(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = 'main' AND t.table_type = 'BASE TABLE' "
            "ORDER BY c.table_name, c.ordinal_position"
        ).fetchall()
        out = []
        for t, c, dt in rows:
            d = str(dt).upper()
            kind = (
                "list"
                if d.endswith("[]")
                else "json"
                if d == "JSON"
                else "text"
                if d == "VARCHAR"
                else "other"
            )
            out.append((str(t), str(c), kind))
        return out

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """See :meth:`Backend.execute`."""
        self.con.execute(sql, list(params))

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """See :meth:`Backend.scalar`."""
        rows = self.con.execute(sql, list(params)).fetchall()
        return rows[0][0] if rows else None

    def list_any(self, column: str) -> str:
        """See :meth:`Backend.list_any`."""
        return f'list_has_any(CAST("{column}" AS VARCHAR[]), CAST(? AS VARCHAR[]))'

    def contains_any(self, column: str, n: int) -> str:
        """See :meth:`Backend.contains_any`."""
        ors = " OR ".join(f'contains(CAST("{column}" AS VARCHAR), ?)' for _ in range(n))
        return f"({ors})"


class PostgresBackend(Backend):
    """A PostgreSQL schema (e.g. the profile store's), through psycopg."""

    name = "postgresql"
    ph = "%s"

    def __init__(self, con: Any, schema: str = "public") -> None:
        self.con = con
        self.schema = schema

    def qualified(self, table: str) -> str:
        """See :meth:`Backend.qualified`."""
        return f'"{self.schema}"."{table}"'

    def columns(self) -> list[tuple[str, str, str]]:
        """See :meth:`Backend.columns`."""
        with self.con.cursor() as cur:
            cur.execute(
                "SELECT c.table_name, c.column_name, c.data_type, c.udt_name "
                "FROM information_schema.columns c JOIN information_schema.tables t "
                "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
                "WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE' "
                "ORDER BY c.table_name, c.ordinal_position",
                [self.schema],
            )
            rows = cur.fetchall()
        out = []
        for t, c, dt, udt in rows:
            d = str(dt).lower()
            kind = (
                "list"
                if d == "array" and str(udt) in ("_text", "_varchar")
                else "json"
                if d in ("json", "jsonb")
                else "text"
                if d in ("text", "character varying", "character")
                else "other"
            )
            out.append((str(t), str(c), kind))
        return out

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """See :meth:`Backend.execute`."""
        with self.con.cursor() as cur:
            cur.execute(sql, list(params))

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """See :meth:`Backend.scalar`."""
        with self.con.cursor() as cur:
            cur.execute(sql, list(params))
            row = cur.fetchone()
        return row[0] if row else None

    def in_list(self, column: str, kind: str, n: int) -> str:
        """See :meth:`Backend.in_list`."""
        marks = ", ".join("%s" for _ in range(n))
        return f'CAST("{column}" AS TEXT) IN ({marks})'

    def list_any(self, column: str) -> str:
        """See :meth:`Backend.list_any`."""
        return f'CAST("{column}" AS TEXT[]) && CAST(%s AS TEXT[])'

    def contains_any(self, column: str, n: int) -> str:
        """See :meth:`Backend.contains_any`."""
        ors = " OR ".join(f'strpos(CAST("{column}" AS TEXT), %s) > 0' for _ in range(n))
        return f"({ors})"

    def begin(self) -> None:
        """See :meth:`Backend.begin` (psycopg autocommit connections need an explicit BEGIN)."""
        self.execute("BEGIN")


# ============================================================================ resolve
@dataclass
class PersonIdentifiers:
    """Everything that names one person, and the VINs kept because others share them."""

    values: set[str] = field(default_factory=set)
    person_ids: set[str] = field(default_factory=set)
    account_ids: set[str] = field(default_factory=set)
    vins: set[str] = field(default_factory=set)
    shared_vins_kept: set[str] = field(default_factory=set)


def _has(wh: Warehouse, table: str) -> bool:
    n = wh.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table])
    return bool(n[0][0])


def _forms(values: Iterable[str]) -> set[str]:
    """Values plus their normalised phone/e-mail forms (as identity linkage writes them)."""
    from autopersona.identity.normalise import normalise_email, normalise_phone

    out: set[str] = set()
    for v in values:
        if not isinstance(v, str) or not v:
            continue
        out.add(v)
        if "@" in v:
            e = normalise_email(v)
            if e:
                out.add(e)
        elif sum(ch.isdigit() for ch in v) >= 7 and not v.isalnum():
            p = normalise_phone(v)
            if p:
                out.add(p)
    return out


def resolve_person(wh: Warehouse, request: str) -> PersonIdentifiers:
    """Every identifier linked to ``request`` (person id, account id, VIN, e-mail or phone)."""
    ids = PersonIdentifiers()
    seeds = _forms([request])
    links = _has(wh, "identity_links")
    acc = wh.frame("SELECT account_id, vin, email, phone FROM accounts")
    for col in ("email", "phone"):
        acc[col] = acc[col].astype(object).where(acc[col].notna(), None)
        acc[f"{col}_n"] = [next(iter(_forms([v]) - {v}), v) if v else None for v in acc[col]]
    link = wh.frame("SELECT account_id, person_id FROM identity_links") if links else None
    for _ in range(4):  # closure over shared keys and links
        before = len(seeds)
        hit = acc[
            acc["account_id"].isin(seeds)
            | acc["vin"].isin(seeds)
            | acc["email"].isin(seeds)
            | acc["phone"].isin(seeds)
            | acc["email_n"].isin(seeds)
            | acc["phone_n"].isin(seeds)
        ]
        if link is not None:
            pids = set(
                link.loc[
                    link["account_id"].isin(seeds) | link["person_id"].isin(seeds), "person_id"
                ]
            )
            ids.person_ids |= pids
            more = set(link.loc[link["person_id"].isin(pids), "account_id"])
            hit = acc[acc["account_id"].isin(set(hit["account_id"]) | more)]
            seeds |= pids | more
        for col in ("account_id", "vin", "email", "phone", "email_n", "phone_n"):
            seeds |= {str(v) for v in hit[col].dropna()}
        ids.account_ids |= set(hit["account_id"])
        ids.vins |= {str(v) for v in hit["vin"].dropna()}
        if len(seeds) == before:
            break
    if link is not None and ids.vins:
        others = acc[~acc["account_id"].isin(ids.account_ids) & acc["vin"].isin(ids.vins)]
        ids.shared_vins_kept = {str(v) for v in others["vin"].dropna()}
    if _has(wh, "persons") and ids.person_ids:
        marks = ", ".join("?" for _ in ids.person_ids)
        for (vins,) in wh.sql(
            f"SELECT vins FROM persons WHERE person_id IN ({marks})", sorted(ids.person_ids)
        ):
            ids.vins |= {str(v) for v in vins or []}
    ids.values = (seeds | ids.vins) - ids.shared_vins_kept
    ids.vins -= ids.shared_vins_kept
    if request not in ids.shared_vins_kept:
        ids.values.add(request)
    return ids


# ============================================================================ erase
@dataclass
class ErasureReport:
    """What an erasure did, per backend and table (no personal data)."""

    request_sha256: str
    deleted: dict[str, dict[str, int]] = field(default_factory=dict)
    verified: dict[str, bool] = field(default_factory=dict)
    shared_vins_kept: int = 0
    identifiers: int = 0
    vault_mappings: int = 0

    @property
    def total(self) -> int:
        """Rows deleted over every backend."""
        return sum(sum(t.values()) for t in self.deleted.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {**asdict(self), "total": self.total}


def _predicates(backend: Backend, values: Sequence[str]) -> list[tuple[str, str, list[Any]]]:
    """``(table, where, params)`` for every place the values may be."""
    by_table: dict[str, list[tuple[str, str]]] = {}
    for t, c, kind in backend.columns():
        if t in EXEMPT_TABLES:
            continue
        by_table.setdefault(t, []).append((c, kind))
    long_values = [v for v in values if len(v) >= 6]
    out = []
    for t, cols in sorted(by_table.items()):
        parts: list[str] = []
        params: list[Any] = []
        for c, kind in cols:
            if _is_identifier(c) and kind == "list":
                parts.append(backend.list_any(c))
                params.append(list(values))
            elif _is_identifier(c) and kind in ("text", "json"):
                parts.append(backend.in_list(c, kind, len(values)))
                params += list(values)
            elif long_values and (
                kind == "json" or (kind == "text" and (_LOG_RE.search(t) or c in _FREE_TEXT))
            ):
                parts.append(backend.contains_any(c, len(long_values)))
                params += long_values
        if parts:
            out.append((t, " OR ".join(parts), params))
    return out


def _request_hash(request_id: str) -> str:
    return hashlib.sha256(b"autopersona/erasure|" + request_id.encode()).hexdigest()


def _suppression_key() -> bytes:
    from autopersona.settings import get_settings

    return get_settings().pseudonym_key.get_secret_value().encode()


def _digest(value: str, key: bytes) -> str:
    return hmac.new(key, b"erased|" + value.encode(), hashlib.sha256).hexdigest()


def erase_person(
    wh: Warehouse,
    request: str,
    request_id: str,
    *,
    extra: Sequence[Backend] = (),
    vault: Vault | None = None,
    now: datetime | None = None,
) -> ErasureReport:
    """Erase the person behind ``request`` from the warehouse and every ``extra`` backend.

    ``request_id`` (a ticket number) is stored only as a SHA-256.  Raises ``RuntimeError``
    when the verification query still finds rows (the audit row then says so too).
    """
    if not request.strip() or not request_id.strip():
        raise ValueError("erasure needs a person and a request id")
    ids = resolve_person(wh, request)
    values = sorted(ids.values)
    now = now or datetime.now(UTC)
    rep = ErasureReport(
        _request_hash(request_id),
        shared_vins_kept=len(ids.shared_vins_kept),
        identifiers=len(values),
    )
    key = _suppression_key()
    for backend in [DuckDBBackend(wh.con), *extra]:
        backend.create_audit()
        label = (
            backend.name
            if backend.name not in rep.deleted
            else f"{backend.name}#{len(rep.deleted)}"
        )
        counts: dict[str, int] = {}
        preds = _predicates(backend, values)
        backend.begin()
        try:
            for t, where, params in preds:
                n = int(
                    backend.scalar(
                        f"SELECT count(*) FROM {backend.qualified(t)} WHERE {where}", params
                    )
                )
                if n:
                    backend.execute(f"DELETE FROM {backend.qualified(t)} WHERE {where}", params)
                    counts[t] = n
            left = sum(
                int(
                    backend.scalar(
                        f"SELECT count(*) FROM {backend.qualified(t)} WHERE {where}", params
                    )
                )
                for t, where, params in preds
            )
            ok = left == 0
            backend.execute(
                f"INSERT INTO {backend.qualified(AUDIT_TABLE)} VALUES "
                f"({', '.join(backend.ph for _ in range(6))})",
                [
                    rep.request_sha256,
                    now,
                    backend.name,
                    sum(counts.values()),
                    json.dumps(counts, sort_keys=True),
                    ok,
                ],
            )
            sup = backend.qualified(SUPPRESSION_TABLE)
            for v in values:
                backend.execute(
                    f"INSERT INTO {sup} VALUES ({backend.ph}, {backend.ph})", [_digest(v, key), now]
                )
        except BaseException:
            backend.rollback()
            raise
        backend.commit()
        rep.deleted[label] = counts
        rep.verified[label] = ok
    if vault is not None:
        rep.vault_mappings = vault.forget(values)
    if not all(rep.verified.values()):
        raise RuntimeError(f"erasure not verified: rows remain ({rep.verified})")
    return rep


def suppressed(wh: Warehouse, values: Iterable[str]) -> set[str]:
    """Which of ``values`` belong to erased people (for future ingests and training sets)."""
    if not _has(wh, SUPPRESSION_TABLE):
        return set()
    key = _suppression_key()
    vals = {str(v) for v in values if v is not None}
    digests = {_digest(v, key): v for v in vals}
    if not digests:
        return set()
    marks = ", ".join("?" for _ in digests)
    rows = wh.sql(
        f"SELECT digest FROM {SUPPRESSION_TABLE} WHERE digest IN ({marks})", list(digests)
    )
    return {digests[r[0]] for r in rows}


# ============================================================================ retention
#: Names under which other tables refer to a key column (an account is a commerce customer).
KEY_ALIASES: dict[str, tuple[str, ...]] = {"account_id": ("account_id", "customer_id")}


def last_activity(wh: Warehouse, table: str) -> str | None:
    """SQL giving ``key, last_activity`` per row of ``table``, a table without a time column.

    The latest of: every time-stamped contract table's time over its rows naming the key
    (:data:`KEY_ALIASES`), the row's own date and timestamp columns, and — only when both
    are missing — the latest ingest run that loaded ``table``.  ``None`` when the table has
    no single-column key.

    >>> from autopersona.store.warehouse import Warehouse
    >>> with Warehouse(":memory:") as wh:
    ...     _ = wh.con.execute("INSERT INTO vehicles (vin, registration_date) VALUES "
    ...                        "('V1', DATE '2020-05-01'), ('V2', DATE '2020-05-01')")
    ...     _ = wh.con.execute("INSERT INTO service_records (service_id, vin, ts) VALUES "
    ...                        "('S1', 'V1', TIMESTAMPTZ '2024-03-01 10:00:00+00')")
    ...     rows = wh.sql(last_activity(wh, "vehicles") + " ORDER BY 1")
    >>> [(k, t.date().isoformat()) for k, t in rows]
    [('V1', '2024-03-01'), ('V2', '2020-05-01')]
    """
    c = wh.contracts[table]
    if len(c.primary_key) != 1:
        return None
    key = c.primary_key[0]
    names = KEY_ALIASES.get(key, (key,))
    present = {r[0] for r in wh.sql("SELECT table_name FROM information_schema.tables")}
    related = [
        f'SELECT "{col}" AS k, "{o.time_column}" AS t FROM "{o.table}"'
        for o in wh.contracts.values()
        if o.time_column and o.table != table and o.table in present
        for col in names
        if col in o.column_names
    ]
    own = [
        f'CAST(r."{col.name}" AS TIMESTAMPTZ)'
        for col in c.columns
        if col.type in ("date", "timestamp") and col.name != key
    ]
    act = (
        f"(SELECT k, max(t) AS t FROM ({' UNION ALL '.join(related)}) GROUP BY k)"
        if related
        else "(SELECT NULL AS k, CAST(NULL AS TIMESTAMPTZ) AS t WHERE false)"
    )
    ingested = (
        f"(SELECT max(started_at) FROM _ingest_runs WHERE target_table = '{table}' AND loaded > 0)"
        if "_ingest_runs" in present
        else "CAST(NULL AS TIMESTAMPTZ)"
    )
    latest = f"greatest(a.t, {', '.join(own)})" if own else "a.t"
    return (
        f'SELECT r."{key}" AS k, coalesce({latest}, {ingested}) AS last_activity '
        f'FROM "{table}" r LEFT JOIN {act} a ON a.k = r."{key}"'
    )


def enforce_retention(
    wh: Warehouse, now: datetime | None = None, *, dry_run: bool = False
) -> dict[str, int | str]:
    """Delete rows older than their table's retention; returns rows (to be) deleted per table.

    A table without a time column ages by each row's last activity (:func:`last_activity`);
    one whose rows cannot be dated at all (no single-column key) is reported as
    ``"no time column"`` and kept.
    """
    now = now or datetime.now(UTC)
    out: dict[str, int | str] = {}
    targets: list[tuple[str, str | None, int]] = [
        (c.table, c.time_column, c.retention_days)
        for c in wh.contracts.values()
        if c.retention_days is not None
    ]
    targets += [(t, col, days) for t, (col, days) in SYSTEM_RETENTION.items()]
    for table, col, days in targets:
        if col is None:
            activity = last_activity(wh, table)
            if activity is None:
                out[table] = "no time column"
                continue
            key = wh.contracts[table].primary_key[0]
            expired = f"SELECT k FROM ({activity}) WHERE last_activity < ?"
            cutoff = now - timedelta(days=days)
            n = int(wh.sql(f"SELECT count(*) FROM ({expired})", [cutoff])[0][0])
            if n and not dry_run:
                wh.con.execute(f'DELETE FROM "{table}" WHERE "{key}" IN ({expired})', [cutoff])
            out[table] = n
            continue
        cutoff = now - timedelta(days=days)
        n = int(wh.sql(f'SELECT count(*) FROM "{table}" WHERE "{col}" < ?', [cutoff])[0][0])
        if n and not dry_run:
            wh.con.execute(f'DELETE FROM "{table}" WHERE "{col}" < ?', [cutoff])
        out[table] = n
    out.update(_orphan_keys(wh, dry_run=dry_run))
    return out


def _orphan_keys(wh: Warehouse, *, dry_run: bool) -> dict[str, int]:
    """Comparison keys of identifiers no account holds any more (they live as long as one does)."""
    from autopersona.identity.keys import KEYS_TABLE

    if not _has(wh, KEYS_TABLE) or not _has(wh, "accounts"):
        return {}
    orphans = f"""FROM {KEYS_TABLE} k WHERE NOT EXISTS (
        SELECT 1 FROM accounts a
        WHERE a.vin = k.vin OR a.phone = k.phone OR a.email = k.email)"""
    n = int(wh.sql(f"SELECT count(*) {orphans}")[0][0])
    if n and not dry_run:
        wh.con.execute(f"DELETE {orphans}")
    return {KEYS_TABLE: n}
