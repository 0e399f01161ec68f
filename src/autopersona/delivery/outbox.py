r"""The transactional outbox: messages to send, written in the same transaction as the decision.

A decision to send is not sent by the code that makes it.  It is written as an outbox row in
the same database transaction as the decision log, and a dispatcher sends rows from the
outbox afterwards.  A crash between decision and send therefore loses nothing (the row is
durable once the decision is) and duplicates nothing at the decision level: the row's
primary key is the decision's idempotency key, and enqueueing a key that is already there
does nothing.

Sending is at-least-once: a worker that dies after a send but before marking the row ``sent``
leaves the row leased; once the lease runs out another claim sends it again with the same
idempotency key.  Every channel carries that key (MQTT user property and payload field, HTTP
``Idempotency-Key`` header, e-mail ``Message-ID``), and receivers drop keys they have seen, so
at-least-once sending plus the key gives effectively-once delivery.

Tables (DuckDB warehouse by default, PostgreSQL when configured)::

    outbox(idempotency_key PK, decision_id, channel, address, payload JSON, status,
           attempts, max_attempts, next_attempt_at, lease_owner, lease_until, last_error,
           not_after, created_at, updated_at, sent_at)
    event_dead_letters(id PK, topic, reason, payload_bytes, payload, received_at)
    delivery_attempts(idempotency_key, attempt, channel, outcome, error, attempted_at)

``status`` moves ``pending`` → ``sending`` (claimed under a lease) → ``sent``; a retryable
failure goes back to ``pending`` with ``next_attempt_at`` pushed out by the retry policy
(exponential backoff with seeded jitter); a permanent failure, an expired message or the last
allowed attempt goes to ``dead`` with ``last_error`` saying why.  ``failed`` marks a row a
retryable failure left for the next attempt (it is claimable like ``pending``).
``event_dead_letters`` keeps inbound vehicle events the live engine refused (malformed,
oversized, missing fields) with the reason; ``delivery_attempts`` is the delivery log, one
row per attempt (``sent``, ``retry``, ``dead`` or ``expired``, with the error).

Examples
--------
>>> from datetime import UTC, datetime
>>> ob = open_outbox(":memory:")
>>> now = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
>>> m = OutboxMessage("k1", "d1", "email", "ann@example.org", {"title": "Hi"})
>>> ob.enqueue([m], now=now), ob.enqueue([m], now=now)
(['k1'], [])
>>> [c.idempotency_key for c in ob.claim("w1", now=now)]
['k1']
>>> ob.complete([(m, SendResult.retry("timeout"))], now=now)
>>> ob.counts()
{'failed': 1}
>>> ob.claim("w1", now=now)  # not due yet: backoff
[]
>>> ob.close()
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd

from autopersona.delivery._arrow import INT, STR, TS, columns_table, rows_table
from autopersona.delivery._json import dumps
from autopersona.delivery.config import RetryPolicy
from autopersona.store.sqlbase import SchemaStore, closed_on_error, connect_postgres, pg_turns

if TYPE_CHECKING:
    from autopersona.store.warehouse import Warehouse

__all__ = [
    "STATUSES",
    "DuckDBOutbox",
    "Outbox",
    "OutboxMessage",
    "PostgresOutbox",
    "SendResult",
    "dead_letter_fields",
    "open_outbox",
]

STATUSES = ("pending", "sending", "sent", "failed", "dead")
_COLS = [
    "idempotency_key",
    "decision_id",
    "channel",
    "address",
    "payload",
    "status",
    "attempts",
    "max_attempts",
    "next_attempt_at",
    "lease_owner",
    "lease_until",
    "last_error",
    "not_after",
    "created_at",
    "updated_at",
    "sent_at",
]


_ARROW = {
    c: (
        INT
        if c in ("attempts", "max_attempts")
        else TS
        if c.endswith("_at") or c in ("lease_until", "not_after")
        else STR
    )
    for c in _COLS
}


_ATTEMPT_ARROW = {
    "idempotency_key": STR,
    "attempt": INT,
    "channel": STR,
    "outcome": STR,
    "error": STR,
    "attempted_at": TS,
}
_OUTCOME = {"sent": "sent", "failed": "retry", "dead": "dead"}


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(t: Any) -> datetime | None:
    if t is None or t is pd.NaT:
        return None
    if isinstance(t, pd.Timestamp):
        t = t.to_pydatetime()
    if not isinstance(t, datetime):
        raise TypeError(f"expected a datetime, got {type(t).__name__}")
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class OutboxMessage:
    """One message to deliver: the decision's idempotency key, channel, address and payload."""

    idempotency_key: str
    decision_id: str
    channel: str
    address: str
    payload: dict[str, Any]
    not_after: datetime | None = None
    attempts: int = 0
    status: str = "pending"
    max_attempts: int | None = None


@dataclass(frozen=True)
class SendResult:
    """What one send attempt did: ``ok``, or an error that is retryable or permanent."""

    ok: bool
    retryable: bool = False
    error: str | None = None
    expired: bool = field(default=False)

    @classmethod
    def sent(cls) -> SendResult:
        """The receiver accepted the message."""
        return cls(ok=True)

    @classmethod
    def retry(cls, error: str) -> SendResult:
        """A transient failure (timeout, 5xx, broker down): try again later."""
        return cls(ok=False, retryable=True, error=error)

    @classmethod
    def fail(cls, error: str) -> SendResult:
        """A permanent failure (4xx, bad address): dead-letter now."""
        return cls(ok=False, retryable=False, error=error)

    @classmethod
    def too_late(cls, not_after: datetime) -> SendResult:
        """The message expired before it could be sent."""
        return cls(ok=False, error=f"expired: not sent by {not_after.isoformat()}", expired=True)


def dead_letter_fields(
    topic: str | None, reason: str, payload: bytes, received_at: datetime
) -> tuple[str, str | None, str, int, str, datetime]:
    """An ``event_dead_letters`` row for a refused inbound event.

    A new id, the topic, the reason, the payload's size and its first 4 KiB (decoded
    leniently), the arrival time.

    >>> dead_letter_fields("t", "bad", b"{", datetime(2026, 1, 1, tzinfo=UTC))[2:5]
    ('bad', 1, '{')
    """
    text = payload[:4096].decode("utf-8", errors="replace")
    return (uuid.uuid4().hex, topic, reason, len(payload), text, received_at)


class Outbox(SchemaStore):
    """Shared logic of both backends; subclasses supply connection and SQL details.

    Parameters
    ----------
    schema
        Schema of the tables.
    policy
        Retry policy (attempts, backoff, jitter seed).
    """

    lease_s: float = 30.0

    def __init__(self, schema: str, policy: RetryPolicy | None = None) -> None:
        super().__init__(schema)
        self.policy = policy or RetryPolicy()

    # ----------------------------------------------------------- backend hooks
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _insert_rows(self, rows: list[dict[str, Any]], assume_new: bool = False) -> list[str]:
        raise NotImplementedError

    def _update_rows(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _insert_attempts(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all."""
        raise NotImplementedError
        yield  # pragma: no cover

    def clone(self) -> Outbox:
        """The same outbox on a connection of its own (for another thread)."""
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return self.sql(sql)

    def create_tables(self) -> None:
        """Create the schema and tables if absent."""
        for stmt in (
            "CREATE SCHEMA IF NOT EXISTS {s}",
            """CREATE TABLE IF NOT EXISTS {s}.outbox (
                idempotency_key VARCHAR PRIMARY KEY,
                decision_id VARCHAR NOT NULL,
                channel VARCHAR NOT NULL,
                address VARCHAR NOT NULL,
                payload {json} NOT NULL,
                status VARCHAR NOT NULL,
                attempts INTEGER NOT NULL,
                max_attempts INTEGER NOT NULL,
                next_attempt_at TIMESTAMPTZ NOT NULL,
                lease_owner VARCHAR,
                lease_until TIMESTAMPTZ,
                last_error VARCHAR,
                not_after TIMESTAMPTZ,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                sent_at TIMESTAMPTZ
            )""",
            """CREATE TABLE IF NOT EXISTS {s}.event_dead_letters (
                id VARCHAR PRIMARY KEY,
                topic VARCHAR,
                reason VARCHAR NOT NULL,
                payload_bytes INTEGER NOT NULL,
                payload VARCHAR,
                received_at TIMESTAMPTZ NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS {s}.delivery_attempts (
                idempotency_key VARCHAR NOT NULL,
                attempt INTEGER NOT NULL,
                channel VARCHAR NOT NULL,
                outcome VARCHAR NOT NULL,
                error VARCHAR,
                attempted_at TIMESTAMPTZ NOT NULL
            )""",
        ):
            self._execute(self._sql(stmt))

    # ----------------------------------------------------------- writes
    def enqueue(
        self,
        messages: Sequence[OutboxMessage],
        *,
        now: datetime | None = None,
        claim_for: str | None = None,
        assume_new: bool = False,
    ) -> list[str]:
        """Add messages; a key already in the outbox is left alone.  Returns the new keys.

        With ``claim_for`` the new rows are written already leased to that worker (status
        ``sending``), so it can send them right after the commit without a second round
        trip; if it dies first, the lease runs out and any worker picks them up.

        ``assume_new`` is for a caller that knows the keys are new unless something went
        wrong and redoes its transaction when it did: a DuckDB outbox then writes with a
        plain insert, which is cheaper and fails (``duckdb.ConstraintException``) on a key
        already there instead of skipping it.  PostgreSQL ignores it.
        """
        if not messages:
            return []
        now = _utc(now) or _now()
        lease = now + timedelta(seconds=self.lease_s) if claim_for else None
        rows = []
        seen: set[str] = set()
        for m in messages:
            if m.idempotency_key in seen:
                continue
            seen.add(m.idempotency_key)
            rows.append(
                {
                    "idempotency_key": m.idempotency_key,
                    "decision_id": m.decision_id,
                    "channel": m.channel,
                    "address": m.address,
                    "payload": dumps(m.payload),
                    "status": "sending" if claim_for else "pending",
                    "attempts": 0,
                    "max_attempts": m.max_attempts or self.policy.max_attempts,
                    "next_attempt_at": now,
                    "lease_owner": claim_for,
                    "lease_until": lease,
                    "last_error": None,
                    "not_after": _utc(m.not_after),
                    "created_at": now,
                    "updated_at": now,
                    "sent_at": None,
                }
            )
        return self._insert_rows(rows, assume_new)

    def claim(
        self, owner: str, *, limit: int = 500, now: datetime | None = None
    ) -> list[OutboxMessage]:
        """Lease up to ``limit`` due messages to ``owner``.

        Due are pending or failed ones whose time has come, and ``sending`` ones whose lease
        ran out (their worker died).
        """
        now = _utc(now) or _now()
        until = now + timedelta(seconds=self.lease_s)
        rows = self._execute(
            self._sql(self._claim_sql()), [owner, until, now, now, now, int(limit)]
        )
        out = [self._message(r) for r in rows]
        out.sort(key=lambda m: m.idempotency_key)
        return out

    def _claim_sql(self) -> str:
        return """UPDATE {s}.outbox SET status = 'sending', lease_owner = ?, lease_until = ?,
                updated_at = ?
            WHERE idempotency_key IN (
                SELECT idempotency_key FROM {s}.outbox
                WHERE (status IN ('pending', 'failed') AND next_attempt_at <= ?)
                   OR (status = 'sending' AND lease_until <= ?)
                ORDER BY next_attempt_at LIMIT ?)
            RETURNING idempotency_key, decision_id, channel, address, payload, not_after,
                attempts, status, max_attempts"""

    def _message(self, r: Sequence[Any]) -> OutboxMessage:
        payload = r[4] if isinstance(r[4], dict) else json.loads(r[4])
        return OutboxMessage(
            idempotency_key=str(r[0]),
            decision_id=str(r[1]),
            channel=str(r[2]),
            address=str(r[3]),
            payload=payload,
            not_after=_utc(r[5]),
            attempts=int(r[6]),
            status=str(r[7]),
            max_attempts=int(r[8]),
        )

    def complete(
        self,
        results: Sequence[tuple[OutboxMessage, SendResult]],
        *,
        now: datetime | None = None,
        times: Sequence[datetime] | None = None,
    ) -> None:
        """Record send attempts: ``sent``; back to the queue after a backoff; or ``dead``.

        ``times`` (one per result) say when each attempt ended; otherwise all at ``now``.
        """
        if not results:
            return
        rows, log = self.outcomes(results, now=now, times=times)
        with self.transaction():
            self._update_rows(rows)
            self._insert_attempts(log)

    def outcomes(
        self,
        results: Sequence[tuple[OutboxMessage, SendResult]],
        *,
        now: datetime | None = None,
        times: Sequence[datetime] | None = None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """What :meth:`complete` writes: the outbox row changes and the attempt log rows."""
        default = _utc(now) or _now()
        rows = []
        log: list[dict[str, Any]] = []
        for i, (m, r) in enumerate(results):
            now = default if times is None else times[i]
            attempts = m.attempts + 1
            limit = m.max_attempts or self.policy.max_attempts
            row: dict[str, Any] = {
                "idempotency_key": m.idempotency_key,
                "attempts": attempts,
                "updated_at": now,
                "sent_at": None,
                "next_attempt_at": now,
                "last_error": r.error,
            }
            if r.ok:
                row["status"] = "sent"
                row["sent_at"] = now
            elif r.expired or not r.retryable:
                row["status"] = "dead"
                row["attempts"] = attempts if not r.expired else m.attempts
            elif attempts >= limit:
                row["status"] = "dead"
                row["last_error"] = f"gave up after {attempts} attempts; last error: {r.error}"
            else:
                row["status"] = "failed"
                delay = self.policy.delay(m.idempotency_key, attempts)
                row["next_attempt_at"] = now + timedelta(seconds=delay)
            rows.append(row)
            log.append(
                {
                    "idempotency_key": m.idempotency_key,
                    "attempt": attempts,
                    "channel": m.channel,
                    "outcome": "expired" if r.expired else _OUTCOME[row["status"]],
                    "error": r.error,
                    "attempted_at": now,
                }
            )
        return rows, log

    def recover(self, owner: str, *, now: datetime | None = None) -> int:
        """Release every lease held by ``owner`` (a restarted worker reclaims its own rows)."""
        now = _utc(now) or _now()
        rows = self._execute(
            self._sql(
                """UPDATE {s}.outbox SET status = 'pending', lease_owner = NULL,
                    lease_until = NULL, updated_at = ?
                WHERE status = 'sending' AND lease_owner = ? RETURNING idempotency_key"""
            ),
            [now, owner],
        )
        return len(rows)

    def requeue_dead(
        self, keys: Sequence[str] | None = None, *, now: datetime | None = None
    ) -> int:
        """Give dead messages (all, or the given keys) a fresh set of attempts."""
        now = _utc(now) or _now()
        sql = """UPDATE {s}.outbox SET status = 'pending', attempts = 0, next_attempt_at = ?,
                updated_at = ?, lease_owner = NULL, lease_until = NULL
            WHERE status = 'dead'"""
        params: list[Any] = [now, now]
        if keys is not None:
            if not keys:
                return 0
            sql += f" AND idempotency_key IN ({', '.join('?' for _ in keys)})"
            params += list(keys)
        return len(self._execute(self._sql(sql + " RETURNING idempotency_key"), params))

    def dead_letter_event(
        self, topic: str | None, reason: str, payload: bytes, *, received_at: datetime | None = None
    ) -> str:
        """Keep a refused inbound event (first 4 KiB, decoded leniently) with the reason."""
        row = dead_letter_fields(topic, reason, payload, _utc(received_at) or _now())
        self._execute(
            self._sql("INSERT INTO {s}.event_dead_letters VALUES (?, ?, ?, ?, ?, ?)"),
            [self._storable_text(v) if isinstance(v, str) else v for v in row],
        )
        return row[0]

    def _storable_text(self, text: str) -> str:
        """``text`` as the backend can store it (DuckDB: as it is)."""
        return text

    # ----------------------------------------------------------- reads
    def counts(self) -> dict[str, int]:
        """Messages per status (statuses with none are left out)."""
        rows = self._execute(
            self._sql("SELECT status, count(*) FROM {s}.outbox GROUP BY status ORDER BY status")
        )
        return {str(s): int(n) for s, n in rows}

    def rows(self, status: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """Outbox rows (newest first), optionally of one status."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        where = "WHERE status = ?" if status else ""
        params: list[Any] = [status] if status else []
        rows = self._execute(
            self._sql(
                f"SELECT {', '.join(_COLS)} FROM {{s}}.outbox {where} "
                "ORDER BY updated_at DESC, idempotency_key LIMIT ?"
            ),
            [*params, int(limit)],
        )
        out = []
        for r in rows:
            d = dict(zip(_COLS, r, strict=True))
            if not isinstance(d["payload"], dict):
                d["payload"] = json.loads(d["payload"])
            out.append(d)
        return out

    def attempts(self, key: str) -> list[dict[str, Any]]:
        """The delivery log of one message: every attempt with its outcome and error."""
        cols = ["attempt", "channel", "outcome", "error", "attempted_at"]
        rows = self._execute(
            self._sql(
                f"SELECT {', '.join(cols)} FROM {{s}}.delivery_attempts "
                "WHERE idempotency_key = ? ORDER BY attempt, attempted_at"
            ),
            [key],
        )
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def event_dead_letters(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Refused inbound events, newest first."""
        cols = ["id", "topic", "reason", "payload_bytes", "payload", "received_at"]
        rows = self._execute(
            self._sql(
                f"SELECT {', '.join(cols)} FROM {{s}}.event_dead_letters "
                "ORDER BY received_at DESC, id LIMIT ?"
            ),
            [int(limit)],
        )
        return [dict(zip(cols, r, strict=True)) for r in rows]


class DuckDBOutbox(Outbox):
    """Outbox in a DuckDB database.

    By default the warehouse's own connection, so that the decision log and the outbox
    commit in one transaction.

    Parameters
    ----------
    target
        A DuckDB connection (not closed by the outbox), a file path or ``":memory:"``.
    schema
        Schema of the tables (default ``main``).
    policy
        Retry policy.
    lease_s
        Seconds a claim lasts before another worker may take the message over.
    """

    def __init__(
        self,
        target: Any = ":memory:",
        schema: str = "main",
        policy: RetryPolicy | None = None,
        *,
        lease_s: float = 30.0,
    ) -> None:
        import duckdb

        super().__init__(schema, policy)
        self.lease_s = lease_s
        self._depth = 0
        if isinstance(target, duckdb.DuckDBPyConnection):
            self.con = target
            self._owned = False
        else:
            self.con = duckdb.connect(str(target))
            self._owned = True
        self.con.execute("SET TimeZone = 'UTC'")
        self.create_tables()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.con.execute(sql, list(params))
        return cur.fetchall() if cur.description else []

    def enqueue(
        self,
        messages: Sequence[OutboxMessage],
        *,
        now: datetime | None = None,
        claim_for: str | None = None,
        assume_new: bool = False,
    ) -> list[str]:
        """:meth:`Outbox.enqueue`, with the rows handed to DuckDB column by column.

        Only the six columns that differ between messages travel as an Arrow table; the
        others (status, lease, times…) are the same for every row and are parameters.
        """
        if not messages:
            return []
        now = _utc(now) or _now()
        lease = now + timedelta(seconds=self.lease_s) if claim_for else None
        keys: list[str] = []
        seen: set[str] = set()
        ids: list[str] = []
        channels: list[str] = []
        addresses: list[str] = []
        payloads: list[str] = []
        limits: list[int] = []
        expiries: list[datetime | None] = []
        default_limit = self.policy.max_attempts
        for m in messages:
            key = m.idempotency_key
            if key in seen:
                continue
            seen.add(key)
            keys.append(key)
            ids.append(m.decision_id)
            channels.append(m.channel)
            addresses.append(m.address)
            payloads.append(dumps(m.payload))
            limits.append(m.max_attempts or default_limit)
            expiries.append(None if m.not_after is None else _utc(m.not_after))
        table = columns_table(
            [keys, ids, channels, addresses, payloads, limits, expiries],
            {"idempotency_key": STR, "decision_id": STR, "channel": STR, "address": STR,
             "payload": STR, "max_attempts": INT, "not_after": TS},
        )  # fmt: skip
        # DuckDB reads the Arrow table through the local variable's name (a replacement
        # scan): registering and unregistering a view costs more than the insert itself.
        _ap_outbox_new = table
        insert = (
            f"INSERT INTO {{s}}.outbox ({', '.join(_COLS)}) "
            "SELECT idempotency_key, decision_id, channel, address, CAST(payload AS JSON), "
            "?, 0, max_attempts, ?::TIMESTAMPTZ, ?, ?::TIMESTAMPTZ, NULL, not_after, "
            "?::TIMESTAMPTZ, ?::TIMESTAMPTZ, NULL FROM _ap_outbox_new"
        )
        params = ["sending" if claim_for else "pending", now, claim_for, lease, now, now]
        if assume_new:
            self.con.execute(self._sql(insert), params)
            return keys
        got = self.con.execute(
            self._sql(f"{insert} ON CONFLICT DO NOTHING RETURNING idempotency_key"), params
        ).fetchall()
        new = {str(r[0]) for r in got}
        return [k for k in keys if k in new]

    def _insert_rows(self, rows: list[dict[str, Any]], assume_new: bool = False) -> list[str]:
        table = rows_table(rows, _ARROW)
        sel = ", ".join(f"CAST({c} AS JSON)" if c == "payload" else c for c in _COLS)
        name = f"_ob_rows_{uuid.uuid4().hex[:8]}"
        insert = f"INSERT INTO {{s}}.outbox ({', '.join(_COLS)}) SELECT {sel} FROM {name}"
        self.con.register(name, table)
        try:
            if assume_new:
                self.con.execute(self._sql(insert))
                return [r["idempotency_key"] for r in rows]
            got = self.con.execute(
                self._sql(f"{insert} ON CONFLICT DO NOTHING RETURNING idempotency_key")
            ).fetchall()
        finally:
            self.con.unregister(name)
        new = {str(r[0]) for r in got}
        return [r["idempotency_key"] for r in rows if r["idempotency_key"] in new]

    def _update_rows(self, rows: list[dict[str, Any]]) -> None:
        cols = ["idempotency_key", "status", "attempts", "next_attempt_at", "last_error"]
        _ap_outbox_upd = rows_table(rows, {c: _ARROW[c] for c in [*cols, "updated_at", "sent_at"]})
        self.con.execute(  # the Arrow table by its variable's name (replacement scan)
            self._sql(
                """UPDATE {s}.outbox AS o SET status = u.status, attempts = u.attempts,
                    next_attempt_at = u.next_attempt_at, last_error = u.last_error,
                    updated_at = u.updated_at, sent_at = u.sent_at,
                    lease_owner = NULL, lease_until = NULL
                FROM _ap_outbox_upd AS u
                WHERE o.idempotency_key = u.idempotency_key AND o.status = 'sending'"""
            )
        )

    def _insert_attempts(self, rows: list[dict[str, Any]]) -> None:
        _ap_outbox_att = rows_table(rows, _ATTEMPT_ARROW)
        self.con.execute(
            self._sql("INSERT INTO {s}.delivery_attempts SELECT * FROM _ap_outbox_att")
        )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One DuckDB transaction on the outbox's connection (shared with the warehouse).

        Nested use joins the open transaction.
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.con.execute("BEGIN TRANSACTION")
        self._depth = 1
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")
        finally:
            self._depth = 0

    def clone(self) -> DuckDBOutbox:
        """The same database through a new cursor (DuckDB's way to use it from another thread)."""
        return DuckDBOutbox(self.con.cursor(), self.schema, self.policy, lease_s=self.lease_s)

    def close(self) -> None:
        """Close the connection if the outbox opened it."""
        if self._owned:
            self.con.close()


class PostgresOutbox(Outbox):
    """Outbox in PostgreSQL (psycopg 3).

    Claims use ``FOR UPDATE SKIP LOCKED`` so that several dispatchers take disjoint batches
    without waiting on each other.

    Parameters
    ----------
    url
        ``postgresql://user@host:port/db``; a ``schema=`` query parameter picks the schema.
    schema
        Schema of the tables (default: the URL's ``schema`` or ``public``).
    policy
        Retry policy.
    lease_s
        Seconds a claim lasts before another worker may take the message over.
    """

    json_type = "JSONB"
    placeholder = "%s"

    def __init__(
        self,
        url: str,
        schema: str | None = None,
        policy: RetryPolicy | None = None,
        *,
        lease_s: float = 30.0,
    ) -> None:

        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = schema or query.pop("schema", None) or "public"
        query.pop("schema", None)
        super().__init__(schema, policy)
        self.lease_s = lease_s
        self.url = urlunsplit(parts._replace(query=urlencode(query)))
        self.con = connect_postgres(self.url)
        with closed_on_error(self.con):
            self.create_tables()

    def create_tables(self) -> None:
        """:meth:`Outbox.create_tables`, one worker at a time (:func:`pg_turns`)."""
        with pg_turns(self.con, f"autopersona.outbox.{self.schema}"):
            super().create_tables()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.con.cursor() as cur:
            cur.execute(sql, list(params))
            return list(cur.fetchall()) if cur.description else []

    def _storable_text(self, text: str) -> str:
        """PostgreSQL text holds no NUL character (a malformed event may): U+FFFD instead."""
        return text.replace("\x00", "\ufffd")

    def _claim_sql(self) -> str:
        return (
            super()
            ._claim_sql()
            .replace(
                "ORDER BY next_attempt_at LIMIT ?)",
                "ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)",
            )
        )

    def _insert_rows(self, rows: list[dict[str, Any]], assume_new: bool = False) -> list[str]:
        sql = self._sql(
            f"INSERT INTO {{s}}.outbox ({', '.join(_COLS)}) "
            f"VALUES ({', '.join('?' for _ in _COLS)}) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key"
        )
        new: set[str] = set()
        with self.con.cursor() as cur:
            cur.executemany(sql, [[r[c] for c in _COLS] for r in rows], returning=True)
            while True:
                new.update(str(x[0]) for x in cur.fetchall())
                if not cur.nextset():
                    break
        return [r["idempotency_key"] for r in rows if r["idempotency_key"] in new]

    def _update_rows(self, rows: list[dict[str, Any]]) -> None:
        sql = self._sql(
            """UPDATE {s}.outbox SET status = ?, attempts = ?, next_attempt_at = ?,
                last_error = ?, updated_at = ?, sent_at = ?, lease_owner = NULL,
                lease_until = NULL
            WHERE idempotency_key = ? AND status = 'sending'"""
        )
        params = [
            [
                r["status"],
                r["attempts"],
                r["next_attempt_at"],
                r["last_error"],
                r["updated_at"],
                r["sent_at"],
                r["idempotency_key"],
            ]
            for r in rows
        ]
        with self.con.cursor() as cur:
            cur.executemany(sql, params)

    def _insert_attempts(self, rows: list[dict[str, Any]]) -> None:
        sql = self._sql("INSERT INTO {s}.delivery_attempts VALUES (?, ?, ?, ?, ?, ?)")
        with self.con.cursor() as cur:
            cur.executemany(sql, [[r[c] for c in _ATTEMPT_ARROW] for r in rows])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One PostgreSQL transaction."""
        with self.con.transaction():
            yield

    def clone(self) -> PostgresOutbox:
        """The same outbox on a new connection."""
        url = self.url
        parts = urlsplit(url)
        q = dict(parse_qsl(parts.query))
        q["schema"] = self.schema
        return PostgresOutbox(
            urlunsplit(parts._replace(query=urlencode(q))), policy=self.policy, lease_s=self.lease_s
        )

    def drop_schema(self) -> None:
        """Drop the outbox's schema and everything in it (tests, teardown)."""
        self._execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def close(self) -> None:
        """Close the connection."""
        self.con.close()


def open_outbox(
    url: str | None = None,
    *,
    warehouse: Warehouse | None = None,
    schema: str | None = None,
    policy: RetryPolicy | None = None,
    lease_s: float = 30.0,
) -> Outbox:
    """Open the outbox named by ``url``.

    ``None`` means the warehouse (``warehouse``'s connection if given, else the configured
    warehouse file) — the embedded default, where decisions and outbox share a transaction;
    ``postgresql://…`` means PostgreSQL; anything else is a DuckDB file path.

    >>> with open_outbox(":memory:") as ob:
    ...     type(ob).__name__, ob.counts()
    ('DuckDBOutbox', {})
    """
    if url and url.split(":", 1)[0] in ("postgresql", "postgres"):
        return PostgresOutbox(url, schema=schema, policy=policy, lease_s=lease_s)
    if url:
        target: Any = url if url == ":memory:" else Path(url)
        return DuckDBOutbox(target, schema=schema or "main", policy=policy, lease_s=lease_s)
    if warehouse is not None:
        return DuckDBOutbox(warehouse.con, schema=schema or "main", policy=policy, lease_s=lease_s)
    from autopersona.settings import get_settings

    path = Path(get_settings().warehouse)
    return DuckDBOutbox(path, schema=schema or "main", policy=policy, lease_s=lease_s)
