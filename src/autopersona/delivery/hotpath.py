r"""The live engine's journaled hot path: batch records and their application to the warehouse.

With a journal (:mod:`autopersona.delivery.journal`), the live engine writes the outcome of
each MQTT batch as one :class:`BatchRecord` — event-ledger rows, decisions, outbox rows
(leased to the worker), refused events — syncs it, acknowledges the MQTT messages and
sends.  :class:`WarehouseApplier` later writes many records to the warehouse in one DuckDB
transaction (DuckDB parses the records' JSON itself: no Python object per row), with
the send results of the same period, and stores the journal position it
reached in ``live_journal`` in that same transaction; on start it applies whatever the
journal holds past that position.  Each record is therefore applied exactly once.

Re-identification audit rows of the dispatcher travel the same way (an ``A`` record each,
written before the clear address is used) and are applied to the vault's own audit table,
with the vault's own applied position (``vault_journal`` in the vault).

>>> from datetime import UTC, datetime
>>> from autopersona.strategy.decision import Decision
>>> t = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
>>> d = Decision("d1", "k1", "P1", "V1", "s", "event", "e1", "head_unit", "send", None, "r",
...              "treatment", 1, 1.0, "T", "B", {"code": "X"}, t, None)
>>> rec = BatchRecord(now=t, worker="w1", ledger=[LedgerRow("e1", "V1", "x", "a/V1/events", 1, t)],
...                   decisions=[d])
>>> back = BatchRecord.decode(rec.encode())
>>> back.decisions == [d], back.ledger == rec.ledger
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from autopersona.delivery._arrow import INT, STR, TS, rows_table
from autopersona.delivery._json import json_default
from autopersona.delivery.outbox import OutboxMessage, dead_letter_fields
from autopersona.strategy.decision import DECISION_COLUMNS, DECISIONS_TABLE, Decision

if TYPE_CHECKING:
    from autopersona.delivery.journal import Journal
    from autopersona.delivery.outbox import DuckDBOutbox, SendResult

__all__ = [
    "AUDIT",
    "BATCH",
    "JOURNAL_TABLE",
    "RESULTS",
    "BatchRecord",
    "DeadRow",
    "LedgerRow",
    "WarehouseApplier",
    "dead_row",
    "decode_results",
    "encode_results",
    "replay_audits",
]

#: record kinds: a batch's rows, re-identification audits, send results
BATCH = b"E"
AUDIT = b"A"
RESULTS = b"R"
JOURNAL_TABLE = "live_journal"

_ENCODE = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


@dataclass(frozen=True)
class LedgerRow:
    """One processed event (a ``live_events`` row without worker and processing time)."""

    event_id: str
    vin: str
    type: str
    topic: str | None
    decisions: int
    received_at: datetime


@dataclass(frozen=True)
class DeadRow:
    """One refused event (an ``event_dead_letters`` row)."""

    id: str
    topic: str | None
    reason: str
    payload_bytes: int
    payload: str
    received_at: datetime


def dead_row(topic: str | None, reason: str, payload: bytes, received_at: datetime) -> DeadRow:
    """A refused event's row (:func:`autopersona.delivery.outbox.dead_letter_fields`)."""
    return DeadRow(*dead_letter_fields(topic, reason, payload, received_at))


@dataclass
class BatchRecord:
    """What one MQTT batch changed: the unit written to the journal and applied later.

    Outbox rows are written leased to ``worker`` from ``now``.
    """

    now: datetime
    worker: str
    ledger: list[LedgerRow] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    messages: list[OutboxMessage] = field(default_factory=list)
    dead: list[DeadRow] = field(default_factory=list)

    def encode(self) -> bytes:
        """The record as JSON (orjson writes the dataclasses itself; keys sorted)."""
        return orjson.dumps(self, default=json_default, option=_ENCODE)

    @classmethod
    def decode(cls, raw: bytes) -> BatchRecord:
        """The record written by :meth:`encode`.

        For tests and tools: the applier lets DuckDB read the JSON.
        """
        b = orjson.loads(raw)

        def t(v: str | None) -> datetime | None:
            return None if v is None else datetime.fromisoformat(v)

        decisions = []
        for row in b["decisions"]:
            row["created_at"], row["not_after"] = t(row["created_at"]), t(row["not_after"])
            decisions.append(Decision(**row))
        messages = []
        for row in b["messages"]:
            row["not_after"] = t(row["not_after"])
            messages.append(OutboxMessage(**row))
        return cls(
            now=datetime.fromisoformat(b["now"]),
            worker=b["worker"],
            ledger=[LedgerRow(**{**r, "received_at": t(r["received_at"])}) for r in b["ledger"]],
            decisions=decisions,
            messages=messages,
            dead=[DeadRow(**{**r, "received_at": t(r["received_at"])}) for r in b["dead"]],
        )


def encode_results(done: Sequence[tuple[OutboxMessage, SendResult]], at: datetime) -> bytes:
    """Send results as a journal record (what :meth:`Outbox.complete` needs of each)."""
    rows = [
        [m.idempotency_key, m.channel, m.attempts, m.max_attempts, r.ok, r.retryable, r.error,
         r.expired]
        for m, r in done
    ]  # fmt: skip
    return orjson.dumps({"at": at, "results": rows})


def decode_results(raw: bytes) -> list[tuple[OutboxMessage, SendResult, datetime]]:
    """The results of :func:`encode_results`, each with the time it was recorded.

    >>> from autopersona.delivery.outbox import SendResult
    >>> m = OutboxMessage("k1", "d1", "head_unit", "a/V1/hu", {}, attempts=2)
    >>> t = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    >>> [(x.idempotency_key, x.attempts, r, at == t) for x, r, at in
    ...  decode_results(encode_results([(m, SendResult.retry("timeout"))], t))]
    [('k1', 2, SendResult(ok=False, retryable=True, error='timeout', expired=False), True)]
    """
    from autopersona.delivery.outbox import SendResult

    b = orjson.loads(raw)
    at = datetime.fromisoformat(b["at"])
    return [
        (
            OutboxMessage(key, "", channel, "", {}, attempts=attempts, max_attempts=limit),
            SendResult(ok=ok, retryable=retryable, error=error, expired=expired),
            at,
        )
        for key, channel, attempts, limit, ok, retryable, error, expired in b["results"]
    ]


def _structure() -> str:
    ts, s = "TIMESTAMPTZ", "VARCHAR"
    dec = {c: s for c in DECISION_COLUMNS}
    dec.update(priority="INTEGER", expected_value="DOUBLE", offer="JSON", created_at=ts,
               not_after=ts)  # fmt: skip
    shape = {
        "now": ts,
        "worker": s,
        "ledger": [{"event_id": s, "vin": s, "type": s, "topic": s, "decisions": "INTEGER",
                    "received_at": ts}],
        "decisions": [dec],
        "messages": [{"idempotency_key": s, "decision_id": s, "channel": s, "address": s,
                      "payload": "JSON", "not_after": ts, "max_attempts": "INTEGER"}],
        "dead": [{"id": s, "topic": s, "reason": s, "payload_bytes": "INTEGER", "payload": s,
                  "received_at": ts}],
    }  # fmt: skip
    return orjson.dumps(shape).decode()


_OUTCOME_ARROW = {"idempotency_key": STR, "status": STR, "attempts": INT,
                  "next_attempt_at": TS, "last_error": STR, "updated_at": TS, "sent_at": TS}  # fmt: skip

#: how DuckDB reads a batch record (``json_transform_strict``: a value of the wrong type fails)
RECORD_STRUCTURE = _structure()


class WarehouseApplier:
    """Writes batch records and send results to the warehouse, exactly once per record.

    Parameters
    ----------
    outbox
        A DuckDB outbox on its own cursor of the warehouse (the applier's thread uses only
        it): ``live_events``, ``strategy_decisions``, the outbox tables and ``live_journal``
        are written through its connection.
    worker
        Whose journal this is (the row of ``live_journal``).
    """

    def __init__(self, outbox: DuckDBOutbox, worker: str, live_table: str = "live_events") -> None:
        self.outbox = outbox
        self.con = outbox.con
        self.worker = worker
        self.live_table = live_table
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {JOURNAL_TABLE} (worker VARCHAR PRIMARY KEY, "
            "position BIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL)"
        )

    def applied(self) -> int:
        """The journal position applied so far (0: nothing)."""
        rows = self.con.execute(
            f"SELECT position FROM {JOURNAL_TABLE} WHERE worker = ?", [self.worker]
        ).fetchall()
        return int(rows[0][0]) if rows else 0

    def apply(
        self,
        records: Sequence[bytes],
        position: int | None,
        results: Sequence[tuple[OutboxMessage, SendResult, datetime]] = (),
    ) -> None:
        """One transaction: the records' rows, then the send results, then ``position``.

        ``records`` are encoded :class:`BatchRecord` bodies; ``results`` each say when the
        attempt ended.
        """
        if not records and not results and position is None:
            return
        ob = self.outbox
        rows: list[dict[str, Any]] = []
        log: list[dict[str, Any]] = []
        if results:
            rows, log = ob.outcomes(
                [(m, r) for m, r, _ in results], times=[t for _, _, t in results]
            )
        with ob.transaction():
            # rows whose first result is in this round are written in their final state
            # (no update of a row just inserted)
            fresh = self._insert(records, rows) if records else set()
            used: set[str] = set()
            later = []
            for row in rows:  # the first outcome of a fresh key went in with its row
                key = row["idempotency_key"]
                if key in fresh and key not in used:
                    used.add(key)
                else:
                    later.append(row)
            if later:
                ob._update_rows(later)
            if log:
                ob._insert_attempts(log)
            if position is not None:
                self.con.execute(
                    f"INSERT INTO {JOURNAL_TABLE} VALUES (?, ?, ?) ON CONFLICT (worker) DO "
                    "UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
                    [self.worker, int(position), datetime.now(UTC)],
                )

    def _insert(self, records: Sequence[bytes], outcomes: Sequence[dict[str, Any]]) -> set[str]:
        """Insert the records' rows; returns the outbox keys written with an outcome."""
        con = self.con
        s = self.outbox.schema
        _ap_journal_bodies = pa.table(
            {"body": pa.array([r.decode("utf-8") for r in records], pa.string())}
        )
        first: dict[str, dict[str, Any]] = {}
        for row in outcomes:
            first.setdefault(row["idempotency_key"], row)
        _ap_journal_res = rows_table(list(first.values()), _OUTCOME_ARROW)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _ap_journal_rec AS SELECT "
            f"json_transform_strict(body, '{RECORD_STRUCTURE}') AS r FROM _ap_journal_bodies"
        )
        con.execute(
            f"INSERT INTO {self.live_table} SELECT l.event_id, l.vin, l.type, l.topic, "
            "l.decisions, r.worker, l.received_at, r.now "
            "FROM (SELECT r, unnest(r.ledger) AS l FROM _ap_journal_rec) ON CONFLICT DO NOTHING"
        )
        cols = ", ".join(f'"{c}"' for c in DECISION_COLUMNS)
        con.execute(
            f"INSERT INTO {DECISIONS_TABLE} ({cols}) SELECT "
            + ", ".join(f'd."{c}"' for c in DECISION_COLUMNS)
            + " FROM (SELECT unnest(r.decisions) AS d FROM _ap_journal_rec)"
        )
        written = con.execute(
            f"INSERT INTO {s}.outbox (idempotency_key, decision_id, channel, address, payload, "
            "status, attempts, max_attempts, next_attempt_at, lease_owner, lease_until, "
            "last_error, not_after, created_at, updated_at, sent_at) "
            "SELECT m.idempotency_key, m.decision_id, m.channel, m.address, m.payload, "
            "coalesce(o.status, 'sending'), coalesce(o.attempts, 0), "
            "coalesce(m.max_attempts, ?), coalesce(o.next_attempt_at, r.now), "
            "CASE WHEN o.status IS NULL THEN r.worker END, "
            "CASE WHEN o.status IS NULL THEN r.now + to_microseconds(?) END, o.last_error, "
            "m.not_after, r.now, coalesce(o.updated_at, r.now), o.sent_at "
            "FROM (SELECT r, unnest(r.messages) AS m FROM _ap_journal_rec) "
            "LEFT JOIN _ap_journal_res o ON o.idempotency_key = m.idempotency_key "
            "QUALIFY row_number() OVER (PARTITION BY m.idempotency_key ORDER BY r.now) = 1 "
            "ON CONFLICT DO NOTHING RETURNING idempotency_key, status",
            [self.outbox.policy.max_attempts, int(self.outbox.lease_s * 1e6)],
        ).fetchall()
        con.execute(
            f"INSERT INTO {s}.event_dead_letters SELECT x.id, x.topic, x.reason, "
            "x.payload_bytes, x.payload, x.received_at "
            "FROM (SELECT unnest(r.dead) AS x FROM _ap_journal_rec) ON CONFLICT DO NOTHING"
        )
        con.execute("DROP TABLE _ap_journal_rec")
        return {str(k) for k, status in written if status != "sending"}

    def replay(self, journal: Journal, *, chunk: int = 500) -> int:
        """Apply every batch and result record past the applied position; returns how many."""
        start = self.applied()
        todo: list[bytes] = []
        results: list[tuple[OutboxMessage, SendResult, datetime]] = []
        n = 0
        last = start
        for pos, kind, body in journal.records(start):
            last = pos
            if kind == BATCH:
                todo.append(body)
            elif kind == RESULTS:
                results.extend(decode_results(body))
            else:
                continue
            n += 1
            if len(todo) + len(results) >= chunk:
                self.apply(todo, pos, results)
                todo, results = [], []
        if todo or results or last != start:
            self.apply(todo, last, results)
        return n


def replay_audits(journal: Journal, vault: Any, source: str) -> int:
    """Append to ``vault`` the audit records past its position for ``source``; returns rows.

    The rows and the new position are written in one vault transaction
    (:meth:`autopersona.privacy.pseudo.Vault.append_audit`), so each lands once.
    """
    start = vault.journal_position(source)
    rows: list[Any] = []
    last = start
    for pos, kind, body in journal.records(start):
        last = pos
        if kind == AUDIT:
            rows.extend((datetime.fromisoformat(r[0]), *r[1:]) for r in orjson.loads(body))
    if last != start:
        vault.append_audit(rows, source=source, position=last)
    return len(rows)
