"""The decision record and its log table ``strategy_decisions``.

A :class:`Decision` is what the strategy engine decided for one person, one strategy and
one trigger: send on a channel, or suppress / hold / expire with the guard responsible.
Every decision is appended to the warehouse table ``strategy_decisions`` (one column per
field; ``offer`` as JSON), including the suppressed ones.  The log is append-only: a held
message that is later released or expires gets a new row with the same
``idempotency_key``.

Examples
--------
>>> key = idempotency_key("adas_trial_end", "PER-1", "2026-03-01")
>>> len(key), key == idempotency_key("adas_trial_end", "PER-1", "2026-03-01")
(64, True)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import pandas as pd

__all__ = [
    "DECISIONS_TABLE",
    "DECISION_COLUMNS",
    "GUARDS",
    "STATUSES",
    "TRIGGERS",
    "Decision",
    "create_decision_table",
    "decisions_frame",
    "idempotency_key",
    "new_decision_id",
    "partition_of",
    "read_decisions",
    "write_decisions",
]

DECISIONS_TABLE = "strategy_decisions"
#: Decision statuses.
STATUSES = ("send", "suppressed", "held", "expired")
#: Trigger kinds (a calendar trigger relative to a date column is a ``schedule``).
TRIGGERS = ("schedule", "metric", "event")
#: Guards that may suppress or hold a decision.
GUARDS = (
    "consent",
    "quiet_hours",
    "cap_person_day",
    "cap_channel_day",
    "cap_strategy",
    "cap_global",
    "driving_safety",
    "duplicate",
    "arbitration",
    "holdout",
    "fatigue",
)


def idempotency_key(strategy_id: str, person_id: str, trigger_key: str) -> str:
    """SHA-256 (hex) of ``(strategy_id, person_id, trigger_key)``: same trigger, same key."""
    blob = "\x1f".join((strategy_id, person_id, trigger_key)).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class Decision:
    """One decision of the strategy engine (see the module docstring).

    Attributes
    ----------
    decision_id
        uuid4 hex, unique per logged row.
    idempotency_key
        :func:`idempotency_key` of (strategy_id, person_id, trigger_key).
    person_id
        Person from identity linkage, or the VIN / customer id when no person is known.
    vin
        Vehicle the decision concerns (None for customer-only strategies).
    strategy_id, trigger, trigger_key
        Strategy, trigger kind (``schedule`` | ``metric`` | ``event``) and the trigger's key
        (a date for schedules and metric periods, the event id for live events).
    channel
        Chosen channel after consent and fallbacks; None when suppressed without one.
    status
        ``send`` | ``suppressed`` | ``held`` | ``expired``.
    guard
        Guard that suppressed or held it (None for sends).
    reason
        Human-readable explanation.
    arm
        Experiment arm: ``treatment`` | ``control`` | ``baseline``.
    priority, expected_value
        Used by arbitration (higher first).
    title, body, offer
        Rendered content and the offer.
    created_at
        Decision time (UTC): the event time for live events, the as-of time for batches.
    not_after
        Expiry of a held message.
    """

    decision_id: str
    idempotency_key: str
    person_id: str
    vin: str | None
    strategy_id: str
    trigger: str
    trigger_key: str
    channel: str | None
    status: str
    guard: str | None
    reason: str
    arm: str
    priority: int
    expected_value: float
    title: str
    body: str
    offer: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    not_after: datetime | None = None

    def row(self) -> dict[str, Any]:
        """The decision as a flat dict for the log table (``offer`` as JSON text)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["offer"] = json.dumps(self.offer, sort_keys=True, default=str)
        return d


DECISION_COLUMNS: list[str] = [f.name for f in fields(Decision)]

_DDL = f"""CREATE TABLE IF NOT EXISTS {DECISIONS_TABLE} (
    decision_id VARCHAR NOT NULL,
    idempotency_key VARCHAR NOT NULL,
    person_id VARCHAR NOT NULL,
    vin VARCHAR,
    strategy_id VARCHAR NOT NULL,
    "trigger" VARCHAR NOT NULL,
    trigger_key VARCHAR NOT NULL,
    channel VARCHAR,
    status VARCHAR NOT NULL,
    guard VARCHAR,
    reason VARCHAR NOT NULL,
    arm VARCHAR NOT NULL,
    priority INTEGER NOT NULL,
    expected_value DOUBLE NOT NULL,
    title VARCHAR NOT NULL,
    body VARCHAR NOT NULL,
    offer JSON,
    created_at TIMESTAMPTZ NOT NULL,
    not_after TIMESTAMPTZ
)"""


_COLS = ", ".join(f'"{c}"' for c in DECISION_COLUMNS)


def _arrow_schema() -> Any:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    types = {
        "priority": pa.int32(),
        "expected_value": pa.float64(),
        "created_at": ts,
        "not_after": ts,
    }
    return pa.schema([(c, types.get(c, pa.string())) for c in DECISION_COLUMNS])


_ARROW = _arrow_schema()


def partition_of(key: str, partitions: int) -> int:
    """The partition (``0 … partitions - 1``) that owns ``key``: the same in every process.

    A BLAKE2b hash, not Python's ``hash()`` (salted per process), so that live workers
    agree on who owns a person, and on who made a decision, without talking to each other.

    >>> partition_of("P-0001", 1)
    0
    >>> [partition_of(k, 2) for k in ("P-0001", "P-0002", "P-0003")]
    [0, 0, 1]
    """
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def new_decision_id(share: tuple[int, int] | None = None) -> str:
    """A random decision id: a version-4 UUID as 32 hex digits (cheaper than ``uuid4().hex``).

    With ``share=(k, n)`` (live worker ``k`` of ``n`` partitions) the id is drawn until
    :func:`partition_of` names partition ``k`` (``n`` draws on average), so that feedback
    naming only the decision finds the worker that holds it.

    >>> d = new_decision_id()
    >>> len(d), d[12], d[16] in "89ab", d != new_decision_id()
    (32, '4', True, True)
    >>> partition_of(new_decision_id((2, 3)), 3)
    2
    """
    while True:
        b = bytearray(os.urandom(16))
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        d = b.hex()
        if share is None or partition_of(d, share[1]) == share[0]:
            return d


def create_decision_table(con: Any) -> None:
    """Create ``strategy_decisions`` on a DuckDB connection if absent.

    No secondary indexes: the log is append-heavy, the live engine keeps its recent state in
    memory and batch reads scan it.
    """
    con.execute(_DDL)


def decisions_frame(decisions: list[Decision]) -> pd.DataFrame:
    """Decisions as a frame with the log's columns."""
    if not decisions:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in DECISION_COLUMNS})
    return pd.DataFrame([d.row() for d in decisions], columns=DECISION_COLUMNS)


def write_decisions(con: Any, decisions: list[Decision], *, create: bool = True) -> int:
    """Append ``decisions`` to the log through ``con`` (a DuckDB connection); returns rows.

    Runs in the caller's transaction when one is open on ``con``, so a delivery outbox can
    write its rows atomically with the decisions.  ``create=False`` skips creating the table
    (the engine creates it once).
    """
    if not decisions:
        return 0
    if create:
        create_decision_table(con)
    if len(decisions) <= 4:
        rows = [_row_values(d) for d in decisions]
        one = "(" + ", ".join("?" for _ in DECISION_COLUMNS) + ")"
        con.execute(
            f"INSERT INTO {DECISIONS_TABLE} ({_COLS}) VALUES {', '.join(one for _ in rows)}",
            [v for r in rows for v in r],
        )
        return len(rows)
    import pyarrow as pa

    # Column by column: far cheaper than a dict per row (Table.from_pylist).
    cols = list(zip(*(_row_values(d) for d in decisions), strict=True))
    _ap_decisions_in = pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(cols, _ARROW, strict=True)], schema=_ARROW
    )
    # DuckDB reads the Arrow table through the variable's name (a replacement scan;
    # registering a view costs more than the insert of a live batch)
    con.execute(f"INSERT INTO {DECISIONS_TABLE} ({_COLS}) SELECT {_COLS} FROM _ap_decisions_in")
    return len(decisions)


def _row_values(d: Decision) -> tuple[Any, ...]:
    return (
        d.decision_id,
        d.idempotency_key,
        d.person_id,
        d.vin,
        d.strategy_id,
        d.trigger,
        d.trigger_key,
        d.channel,
        d.status,
        d.guard,
        d.reason,
        d.arm,
        int(d.priority),
        float(d.expected_value),
        d.title,
        d.body,
        json.dumps(d.offer, sort_keys=True, default=str),
        d.created_at,
        d.not_after,
    )


def _utc(v: Any) -> datetime | None:
    if v is None or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    t = pd.Timestamp(v)
    if t.tzinfo is None:
        t = t.tz_localize(UTC)
    out: datetime = t.tz_convert(UTC).to_pydatetime()
    return out


def read_decisions(con: Any, where: str = "", params: list[Any] | None = None) -> list[Decision]:
    """Read decisions back from the log (``where`` is an SQL condition over its columns)."""
    create_decision_table(con)
    cols = ", ".join(f'"{c}"' for c in DECISION_COLUMNS)
    sql = f"SELECT {cols} FROM {DECISIONS_TABLE}"
    if where:
        sql += f" WHERE {where}"
    cur = con.execute(sql + " ORDER BY created_at, decision_id", params or [])
    out: list[Decision] = []
    for r in cur.fetchall():
        d = dict(zip(DECISION_COLUMNS, r, strict=True))
        offer = d["offer"]
        d["offer"] = json.loads(offer) if isinstance(offer, str) else (offer or {})
        d["created_at"] = _utc(d["created_at"])
        d["not_after"] = _utc(d["not_after"])
        out.append(Decision(**d))
    return out
