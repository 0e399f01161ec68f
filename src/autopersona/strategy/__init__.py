"""Strategies: the scenario–strategy matrix as data, triggers, guards and arbitration.

Interface used by delivery (kept stable)
----------------------------------------
:class:`Decision` (frozen dataclass, :mod:`autopersona.strategy.decision`)::

    decision_id, idempotency_key, person_id, vin, strategy_id, trigger, trigger_key,
    channel, status, guard, reason, arm, priority, expected_value, title, body, offer,
    created_at, not_after

``status`` is ``send`` | ``suppressed`` | ``held`` | ``expired``; ``guard`` names the guard
that suppressed or held it (``consent``, ``quiet_hours``, ``cap_person_day``,
``cap_channel_day``, ``cap_strategy``, ``cap_global``, ``driving_safety``, ``duplicate``,
``arbitration``, ``holdout``, ``fatigue``); ``arm`` is ``treatment`` | ``control`` |
``baseline``.  ``idempotency_key`` = sha256 of (strategy_id, person_id, trigger_key): the
same trigger for the same person always gives the same key, so an outbox keyed on it never
sends twice.

:class:`StrategyEngine` (:mod:`autopersona.strategy.engine`)::

    StrategyEngine(wh, catalogue=None, *, profiles=None, clock=None)
    .on_event(event, *, con=None, log=True) -> list[Decision]
    .on_events(events, *, con=None, log=True) -> list[list[Decision] | EventError]
    .run_batch(as_of, *, con=None, log=True) -> list[Decision]
    .release_held(vin, speed_mps, now, *, con=None, log=True) -> list[Decision]
    .log(decisions, con=None) -> int
    .plan(as_of) -> list[dict]          # audience sizes, nothing decided
    .invalidate() -> None               # drop cached profile / directory / live ledger

``on_event`` takes one live vehicle event ``{"vin", "type", "ts", "payload", "event_id"?}``
(``ts`` ISO text or datetime; ``payload`` a dict; ``payload["speed_mps"]`` updates the
vehicle's driving state) and raises :class:`EventError` (a ``ValueError``) for a malformed
event.  Every method appends all its decisions (sends, suppressions, holds, expiries) to the
warehouse table ``strategy_decisions`` through ``con`` (default: the warehouse connection),
inside the caller's transaction if one is open on ``con`` — so an outbox can write its rows
in the same DuckDB transaction.  ``log=False`` returns the decisions without writing them
(the caller then calls :meth:`StrategyEngine.log`).  The engine never sends anything.

Live events are cheapest in micro-batches (:meth:`StrategyEngine.on_events`: one consent
read and one log write per batch, per-event results in order).  The live engine keeps the
recent sends in memory (for caps, arbitration and duplicates) and reads consents fresh for
every batch; after rolling back a transaction that held logged decisions, call
:meth:`StrategyEngine.invalidate`.  A profile snapshot is reused for ``profile_ttl_s``
seconds (default 60).
"""

from autopersona.strategy.decision import (
    DECISION_COLUMNS,
    DECISIONS_TABLE,
    Decision,
    idempotency_key,
    read_decisions,
)
from autopersona.strategy.engine import EventError, StrategyEngine
from autopersona.strategy.spec import StrategyCatalogue, load_channels, load_strategies

__all__ = [
    "DECISIONS_TABLE",
    "DECISION_COLUMNS",
    "Decision",
    "EventError",
    "StrategyCatalogue",
    "StrategyEngine",
    "idempotency_key",
    "load_channels",
    "load_strategies",
    "read_decisions",
]
