r"""The live engine: vehicle events from MQTT in, decisions and messages out.

Flow of one MQTT batch with the journal (the default for a file warehouse with its own
outbox; see :mod:`autopersona.delivery.journal` and :mod:`autopersona.delivery.hotpath`)::

    broker --QoS 1--> on_message --> inbox --> processor thread (a batch = what is waiting):
        validate (JSON, size, fields; refused -> a dead-letter row with the reason)
        skip events already processed (in memory: this run's, and at start the worker's
          recent ones from live_events, after the journal was applied)
        StrategyEngine.on_events(batch, log=False)   (its guards keep their state in memory)
        StrategyEngine.release_held(...)              (events with payload.speed_mps)
        append ONE journal record: live_events rows, decisions, outbox rows, dead letters
        hand the outbox messages and the batch's acknowledgements to the dispatcher
    dispatcher thread: fdatasync the journal once for every hand-off waiting (group
        commit), then PUBACK their MQTT messages (only now: nothing is lost in a crash),
        then send at once; head-unit PUBACKs are not waited for, their results arrive on
        the client's thread; every ``poll_s`` claim due rows (retries, expired leases)
    send results and re-identification audits: journal records too (not synced apart)
    applier thread: every ``apply_wait_s``, sync the journal, then one warehouse
        transaction for all records since the last one (DuckDB parses their JSON) and the
        journal position reached (``live_journal``); the audits go to the vault with its
        own position; fully applied journal segments are deleted
    start: apply what the journal holds past each position, then take events

Without a journal (``journal=False``, or a PostgreSQL outbox) the processor writes the same
rows in one transaction per batch and acknowledges after the commit; a recorder thread
writes the send results.

MQTT: protocol 5, QoS 1, a persistent session (``clean_start=False`` + session expiry), and
the shared subscription ``$share/{group}/{prefix}/vehicles/+/events`` so that several workers
with different client ids split the events (or, with ``partition=(k, n)``, every worker
reads every event and keeps those of the persons it owns: see :class:`LiveEngine`).
paho's automatic acknowledgement is off (``manual_ack=True``): a message is acknowledged only after its decisions and outbox rows are
committed, so a worker killed at any point leaves unacknowledged messages that the broker
delivers again when the session resumes; ``live_events`` makes that redelivery harmless.
Keep worker ids stable: the broker keeps handing a share of the events to a persistent
session whose worker is down (they wait in its queue until it comes back or the session
expires), so a worker retired for good should be given a short ``session_expiry_s``.
Broker restarts: paho reconnects with backoff (1 s … 30 s), the session resumes and the
backlog flows in.  SIGTERM/SIGINT: stop taking messages, finish the batch in flight (events
received but not yet in a batch stay unacknowledged and come back with the session), send
what that batch enqueued, disconnect.

Without a journal, with the outbox in the warehouse, decisions, outbox rows and
``live_events`` commit in one DuckDB transaction.  With a PostgreSQL outbox the outbox transaction commits
first, then the warehouse one; a crash between the two leaves outbox rows without their
decision log, and the redelivered event recreates the decisions with the same idempotency
keys, whose outbox rows already exist (enqueue is idempotent).

Pseudonymisation (on unless ``AUTOPERSONA_PSEUDONYMISE=0``): events arrive with clear VINs;
:func:`parse_event` replaces the payload's VIN by its keyed-HMAC pseudonym (the one
ingestion gave the vehicle; computed once per VIN, LRU-cached) right after validation, and
the ledger, dead letters and every lookup see only the pseudonymous VIN and topic.  The
dispatcher re-identifies head-unit topics, phones and e-mails through the audited vault at
send time (:class:`autopersona.privacy.pseudo.AddressResolver`; with the journal, each
use is audited by a journal record written before the address is used, and mappings are
cached for ``cache_s``, so an erasure reaches a running engine within a minute).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import duckdb
import orjson
import paho.mqtt.client as mqtt

from autopersona.delivery._arrow import INT, STR, TS, columns_table
from autopersona.delivery.channels import Channel, build_channels
from autopersona.delivery.config import ChannelsConfig
from autopersona.delivery.dispatch import (
    Contacts,
    DecisionLike,
    Dispatcher,
    WarehouseContacts,
    messages_for,
)
from autopersona.delivery.hotpath import (
    AUDIT,
    BATCH,
    RESULTS,
    BatchRecord,
    LedgerRow,
    WarehouseApplier,
    dead_row,
    encode_results,
    replay_audits,
)
from autopersona.delivery.journal import Journal, JournalError
from autopersona.delivery.mqtt import MqttConsumer
from autopersona.delivery.mqtt import vin_from_topic as _vin_from_topic
from autopersona.delivery.outbox import (
    DuckDBOutbox,
    Outbox,
    OutboxMessage,
    SendResult,
    open_outbox,
)
from autopersona.store.sqlbase import transaction
from autopersona.strategy.decision import DECISION_COLUMNS, Decision, partition_of

if TYPE_CHECKING:
    from autopersona.privacy.pseudo import AddressResolver, AuditRow, VinPseudonyms

__all__ = [
    "LIVE_EVENTS_TABLE",
    "EngineLike",
    "EventRejected",
    "LiveEngine",
    "LiveStats",
    "parse_event",
    "partition_of",
]

log = logging.getLogger(__name__)

LIVE_EVENTS_TABLE = "live_events"
_REQUIRED = ("event_id", "vin", "type")


class EventRejected(ValueError):
    """An inbound event that cannot be processed; the message says why."""


class EngineLike(Protocol):
    """What the live engine needs of :class:`autopersona.strategy.StrategyEngine`."""

    def on_event(self, event: dict[str, Any]) -> Sequence[DecisionLike]:
        """Decide (and log) for one event."""
        ...

    def release_held(self, vin: str, speed_mps: float, now: datetime) -> Sequence[DecisionLike]:
        """Release or expire messages held while the vehicle moved."""
        ...


def parse_event(
    topic: str | None,
    payload: bytes,
    max_bytes: int = 65536,
    pseudonyms: VinPseudonyms | None = None,
) -> dict[str, Any]:
    """Validate one MQTT event payload and return it as a dict.

    The payload must be at most ``max_bytes``, UTF-8 JSON, an object with non-empty string
    ``event_id``, ``vin`` and ``type`` (and ``payload`` an object when present), and its VIN
    must be the topic's.  With ``pseudonyms`` the returned VIN is the vehicle's pseudonym
    (and a refusal names pseudonyms only).

    >>> parse_event("p/vehicles/V1/events", b'{"event_id": "e1", "vin": "V1", "type": "x"}')
    {'event_id': 'e1', 'vin': 'V1', 'type': 'x'}
    >>> parse_event("p/vehicles/V1/events", b'{"vin": "V1"')
    Traceback (most recent call last):
    ...
    autopersona.delivery.live.EventRejected: malformed JSON: Expecting ',' delimiter (line 1 column 13)
    """
    if len(payload) > max_bytes:
        raise EventRejected(f"oversized: {len(payload)} bytes > limit {max_bytes}")
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        # The standard library says precisely what is wrong (and accepts what it accepts).
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventRejected(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
        try:
            event = json.loads(text)
        except json.JSONDecodeError as exc:
            why = f"malformed JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
            raise EventRejected(why) from None
    if not isinstance(event, dict):
        raise EventRejected(f"not a JSON object but {type(event).__name__}")
    for name in _REQUIRED:
        v = event.get(name)
        if not isinstance(v, str) or not v.strip():
            raise EventRejected(f"field {name!r}: missing or not a non-empty string")
    if (
        "payload" in event
        and event["payload"] is not None
        and not isinstance(event["payload"], dict)
    ):
        raise EventRejected("field 'payload': not an object")
    if topic is not None:
        tv = _vin_from_topic(topic)
        if tv is not None and tv != event["vin"]:
            if pseudonyms is not None:
                ev, tv = pseudonyms(event["vin"]), pseudonyms(tv)
                raise EventRejected(f"vin {ev!r} does not match topic vehicle {tv!r}")
            raise EventRejected(f"vin {event['vin']!r} does not match topic vehicle {tv!r}")
    if pseudonyms is not None:
        event["vin"] = pseudonyms(event["vin"])
    return event


@dataclass
class LiveStats:
    """Counters of a running engine (read them from any thread).

    ``errors`` are fatal (the engine stopped); ``dispatch_errors`` counts dispatch rounds
    that failed and were retried.
    """

    received: int = 0
    processed: int = 0
    duplicates: int = 0
    rejected: int = 0
    decisions: int = 0
    enqueued: int = 0
    batches: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    reconnects: int = 0
    process_s: float = 0.0
    dispatch_s: float = 0.0
    record_s: float = 0.0
    dispatch_errors: int = 0
    others: int = 0  # events of persons another partition owns (acknowledged, not processed)
    thread_cpu_s: dict[str, float] = field(default_factory=dict)
    last_dispatch_error: str | None = None
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict."""
        return {k: v for k, v in self.__dict__.items() if k != "errors"}


@dataclass(frozen=True)
class _Inbound:
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at: datetime


class LiveEngine(MqttConsumer[LiveStats]):
    """Consume vehicle events from MQTT, decide, record, send (see the module docstring).

    Parameters
    ----------
    wh
        Warehouse (its connection carries the decision log, ``live_events`` and, by default,
        the outbox).
    engine
        Strategy engine working on ``wh``.
    config
        Broker, channels and retry policy.
    outbox
        Outbox (default: the warehouse's).
    worker_id
        MQTT client id and lease owner (default: ``config.mqtt.client_id``); keep it stable
        across restarts so the broker resumes this worker's session.
    batch_max, batch_wait_s
        Most events per batch, and how long to wait for more once one has arrived (default:
        not at all with the journal, 2 ms without).
    poll_s
        How often the dispatcher looks for due retries.
    record_wait_s
        How long the recorder gathers send results before writing them (one transaction for
        all; the messages are already out, so this delays only the bookkeeping).
    channels
        Channel adapters (default: built from ``config``).
    contacts
        Phone / e-mail lookup (default: the warehouse's accounts).
    pseudonyms
        VIN pseudonyms of arriving events (default: from settings when pseudonymisation
        is on, :func:`autopersona.privacy.pseudo.live_pseudonyms`).
    resolver
        Re-identification of addresses at send time (default: the audited vault of the
        settings when pseudonymisation is on).
    batch_log
        Log the decisions of a whole MQTT batch with one ``engine.log`` call (the engine's
        ``on_event(event, log=False)``) instead of one write per event.  Faster on DuckDB,
        but the engine's guards (caps, arbitration) then see only earlier batches'
        decisions, so two events of one person in the same batch may both pass a cap; off by
        default.
    journal
        The hot path's write-ahead log (:mod:`autopersona.delivery.journal`): each batch's
        ledger rows, decisions, outbox rows and refused events are one journal record,
        synced before the MQTT acknowledgement; a background thread applies the records to
        the warehouse in one transaction every ``apply_wait_s`` (``flush()`` waits for it).
        ``None`` (default): on for a file warehouse with its own outbox, in
        ``<warehouse>.journal/<worker id>``; ``False``: one warehouse transaction per batch
        (the only way with a PostgreSQL outbox); a path: the journal folder.
    journal_sync
        ``fdatasync`` each batch record (default).  Off, a record survives a killed process
        but not a power cut.
    apply_wait_s
        How long the applier gathers records before writing them to the warehouse.
    switch_interval_s
        The interpreter's thread switch interval while the engine runs (restored on stop;
        ``None``: left alone).  Short, so the thread holding the next batch or send does not
        wait 5 ms for the GIL behind a busy one.
    partition
        ``(k, n)``: this worker is partition ``k`` of ``n`` and processes only the events
        of the persons it owns (:func:`partition_of` of the person the engine's
        ``person_of(vin)`` names, or of the VIN when it names none; a refused event by its
        topic).  It subscribes to every event without a shared subscription and
        acknowledges the others' at once (counted in ``stats.others``).  Each person's
        events then meet one worker's caps, de-duplication and held messages, which a
        shared subscription, splitting events at random, cannot promise.  An engine with
        ``take_partition(k, n)`` is told, so that its daily totals (global, per strategy)
        are its share of the caps.  ``None`` (the
        default): the shared subscription of ``config.mqtt``.
    """

    def __init__(
        self,
        wh: Any,
        engine: EngineLike,
        config: ChannelsConfig,
        *,
        outbox: Outbox | None = None,
        worker_id: str | None = None,
        batch_max: int = 500,
        batch_wait_s: float | None = None,
        poll_s: float = 0.5,
        record_wait_s: float = 0.05,
        channels: dict[str, Channel] | None = None,
        contacts: Contacts | None = None,
        batch_log: bool = False,
        pseudonyms: VinPseudonyms | None = None,
        resolver: AddressResolver | None = None,
        journal: bool | str | Path | None = None,
        journal_sync: bool = True,
        apply_wait_s: float = 0.2,
        switch_interval_s: float | None = 0.001,
        partition: tuple[int, int] | None = None,
    ) -> None:
        from autopersona.privacy.pseudo import AddressResolver, Vault, live_pseudonyms
        from autopersona.settings import get_settings

        settings = get_settings()
        self.resolver = resolver
        vault = None
        if settings.pseudonymise and (pseudonyms is None or resolver is None):
            # one vault: a VIN first seen live is mapped before its message is sent
            vault = resolver.vault if resolver is not None else Vault(settings.vault)
        self.pseudonyms = pseudonyms if pseudonyms is not None else live_pseudonyms(settings, vault)
        if resolver is None and vault is not None:
            actor = f"live:{worker_id or config.mqtt.client_id}"
            self.resolver = AddressResolver.from_settings(settings, actor=actor, vault=vault)
        if batch_log and not callable(getattr(engine, "log", None)):
            raise TypeError("batch_log needs an engine with log(decisions) and on_event(log=)")
        self.batch_log = batch_log
        self.wh = wh
        self.engine = engine
        if partition is not None:
            k, n = partition
            if not 0 <= k < n:
                raise ValueError(f"partition {k}/{n}: need 0 <= k < n")
            # every worker sees every event and keeps its own persons'
            config = config.model_copy(
                update={"mqtt": config.mqtt.model_copy(update={"share_group": None})}
            )
            take = getattr(engine, "take_partition", None)
            if callable(take):  # daily totals: each worker its share of the caps
                take(k, n)
        self.partition = partition
        self.config = config
        self.worker_id = worker_id or config.mqtt.client_id
        self.outbox = outbox or open_outbox(
            warehouse=wh, policy=config.retry, lease_s=config.lease_s
        )
        self.batch_max = batch_max
        self.record_wait_s = record_wait_s
        self.recent_max = 200_000
        self._recent: set[str] = set()
        self._recent_order: deque[str] = deque()
        # filled in once it is known whether there is a journal
        self.batch_wait_s = 0.0 if batch_wait_s is None else batch_wait_s
        self.poll_s = poll_s
        self.contacts = contacts or WarehouseContacts(wh.con)
        self.channels = (
            channels
            if channels is not None
            else build_channels(config, client_id=f"{self.worker_id}-out")
        )
        self.stats = LiveStats()
        # on_message appends (deque.append is atomic) and sets the flag; the processor
        # clears it and drains everything queued: no lock per message on either side.
        self._inbox: deque[_Inbound] = deque()
        self._arrived = threading.Event()
        # (messages to send, MQTT acknowledgements to send first once the journal is synced)
        self._handoff: queue.Queue[tuple[list[OutboxMessage], list[tuple[int, int]]]] = (
            queue.Queue()
        )
        self._results: queue.Queue[list[tuple[OutboxMessage, SendResult]]] = queue.Queue()
        self._dispatcher_done = threading.Event()
        self._processor_done = threading.Event()
        self._threads: list[threading.Thread] = []
        #: Set once :meth:`start` has applied what the journal held of previous runs and
        #: started the workers: from then on the warehouse holds every decision of earlier
        #: runs, and :meth:`flush` waits for this run's.
        self.ready = threading.Event()
        self._shared_tx = isinstance(self.outbox, DuckDBOutbox) and self.outbox.con is wh.con
        self.apply_wait_s = apply_wait_s
        self.switch_interval_s = switch_interval_s
        self._old_switch: float | None = None
        self.journal: Journal | None = None
        self._jlock = threading.Lock()
        self._applier_q: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._sent_keys: set[str] = set()
        self._sent_order: deque[str] = deque()
        self._create_tables()
        folder = self._journal_folder(journal)
        if folder is not None:
            if not callable(getattr(engine, "log", None)):
                raise TypeError("a journal needs an engine with on_event(log=False)")
            self.batch_log = True  # decisions are taken unlogged; the applier writes them
            self.journal = Journal(folder, sync=journal_sync)
            if self.resolver is not None:
                self.resolver.audit_sink = self._audit
        if batch_wait_s is None and self.journal is None:
            # a transaction per batch: linger a little so that batches (and commits) are
            # fewer; with the journal the group commit gathers batches by itself
            self.batch_wait_s = 0.002
        self._init_consumer(self.worker_id, config.mqtt, config.mqtt.events_topic)

    # ------------------------------------------------------------------ setup
    def _journal_folder(self, journal: bool | str | Path | None) -> Path | None:
        """Where the journal lives (None: no journal, one transaction per batch).

        By default a file warehouse with its own outbox gets one next to it
        (``<warehouse>.journal/<worker>``); an in-memory warehouse or another outbox does not.
        """
        if journal is False:
            return None
        if isinstance(journal, str | Path):
            return Path(journal)
        path = str(getattr(self.wh, "path", ":memory:"))
        if not self._shared_tx or path == ":memory:":
            if journal is True:
                raise ValueError("a journal needs a file warehouse with its own outbox")
            return None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.worker_id)
        return Path(path + ".journal") / safe

    def _create_tables(self) -> None:
        self.wh.con.execute(
            f"""CREATE TABLE IF NOT EXISTS {LIVE_EVENTS_TABLE} (
                event_id VARCHAR PRIMARY KEY,
                vin VARCHAR NOT NULL,
                type VARCHAR NOT NULL,
                topic VARCHAR,
                decisions INTEGER NOT NULL,
                worker VARCHAR NOT NULL,
                received_at TIMESTAMPTZ NOT NULL,
                processed_at TIMESTAMPTZ NOT NULL
            )"""
        )

    # ------------------------------------------------------------------ MQTT callbacks
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_raw_message(msg.topic, msg.mid, msg.qos, bytes(msg.payload))

    def _on_raw_message(self, topic: str, mid: int, qos: int, payload: bytes) -> None:
        if not self._accepting.is_set():
            return  # not acknowledged: the broker delivers it again to the next session
        self.stats.received += 1
        self._inbox.append(_Inbound(mid, qos, topic, payload, datetime.now(UTC)))
        self._arrived.set()

    # ------------------------------------------------------------------ processing
    def _tx(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        if self._shared_tx:
            stack.enter_context(self.outbox.transaction())
        else:
            # Exit order is last-in first-out: the outbox commits before the warehouse.
            stack.enter_context(transaction(self.wh.con))
            stack.enter_context(self.outbox.transaction())
        return stack

    def _seen(self, event_ids: list[str], *, look_up: bool) -> set[str]:
        """Events already processed.

        Those of this run (in memory) and, with ``look_up``, those in ``live_events`` (one
        query with the ids as a list parameter).
        """
        seen = {e for e in event_ids if e in self._recent}
        if not look_up or not event_ids:
            return seen
        rows = self.wh.con.execute(
            f"SELECT event_id FROM {LIVE_EVENTS_TABLE} "
            "WHERE event_id IN (SELECT unnest(?::VARCHAR[]))",
            [event_ids],
        ).fetchall()
        return seen | {str(r[0]) for r in rows}

    def _remember(self, event_ids: list[str]) -> None:
        recent, order = self._recent, self._recent_order
        for e in event_ids:
            if e not in recent:
                recent.add(e)
                order.append(e)
        while len(order) > self.recent_max:
            recent.discard(order.popleft())

    def _insert_ledger(self, rows: list[list[Any]]) -> None:
        cols = {"event_id": STR, "vin": STR, "type": STR, "topic": STR, "decisions": INT,
                "worker": STR, "received_at": TS, "processed_at": TS}  # fmt: skip
        _ap_live_ledger = columns_table(list(zip(*rows, strict=True)), cols)
        # DuckDB reads the Arrow table through the variable's name (a replacement scan;
        # registering a view costs more than the insert)
        self.wh.con.execute(f"INSERT INTO {LIVE_EVENTS_TABLE} SELECT * FROM _ap_live_ledger")

    def _decide_all(self, events: list[dict[str, Any]]) -> list[list[DecisionLike]]:
        """Each event's decisions, in order.

        An engine with ``on_events`` (the strategy engine) evaluates each run of events in
        one call (consents, caps and profiles read once per run, decisions logged in one
        statement; the outcome is that of one ``on_event`` after the other).  A run ends
        after an event with ``payload.speed_mps``, whose held messages are released before
        the next event is evaluated, as with one event at a time.
        """
        many = getattr(self.engine, "on_events", None)
        if not callable(many):
            return [self._decide(e) for e in events]
        eng: Any = self.engine
        kw = {"log": False} if self.batch_log else {}
        out: list[list[DecisionLike]] = []
        run: list[dict[str, Any]] = []

        def flush() -> None:
            if run:
                for res in many(run, **kw):
                    if isinstance(res, Exception):
                        raise res  # as on_event would: the batch is redone event by event
                    out.append(list(res))
                run.clear()

        for event in events:
            run.append(event)
            speed = (event.get("payload") or {}).get("speed_mps")
            if isinstance(speed, int | float) and not isinstance(speed, bool):
                flush()
                vin, now = str(event["vin"]), self._event_time(event)
                out[-1].extend(eng.release_held(vin, float(speed), now, **kw))
        flush()
        return out

    def _decide(self, event: dict[str, Any]) -> list[DecisionLike]:
        if self.batch_log:
            return self._decide_unlogged(event)
        out = list(self.engine.on_event(event))
        speed = (event.get("payload") or {}).get("speed_mps")
        if isinstance(speed, int | float) and not isinstance(speed, bool):
            now = self._event_time(event)
            out.extend(self.engine.release_held(str(event["vin"]), float(speed), now))
        return out

    def _decide_unlogged(self, event: dict[str, Any]) -> list[DecisionLike]:
        eng: Any = self.engine
        out = list(eng.on_event(event, log=False))
        speed = (event.get("payload") or {}).get("speed_mps")
        if isinstance(speed, int | float) and not isinstance(speed, bool):
            now = self._event_time(event)
            out.extend(eng.release_held(str(event["vin"]), float(speed), now, log=False))
        return out

    @staticmethod
    def _event_time(event: dict[str, Any]) -> datetime:
        ts = event.get("ts")
        if isinstance(ts, str):
            with contextlib.suppress(ValueError):
                t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
                return t if t.tzinfo else t.replace(tzinfo=UTC)
        return datetime.now(UTC)

    def _apply(
        self,
        items: list[tuple[_Inbound, dict[str, Any] | None, str | None]],
        *,
        look_up: bool = True,
    ) -> list[OutboxMessage]:
        """One transaction over ``items`` (inbound, parsed event or None, refusal reason).

        Without ``look_up`` the ledger is not queried first: events are taken as new unless
        this run processed them, and an event that is in ``live_events`` all the same (a
        redelivery after a restart) makes the ledger insert fail on its primary key, which
        rolls the whole transaction back (see :meth:`process`).
        """
        now = datetime.now(UTC)
        with self._tx():
            seen = self._seen(
                [str(e["event_id"]) for _, e, _ in items if e is not None], look_up=look_up
            )
            decisions: list[DecisionLike] = []
            ledger: list[list[Any]] = []
            done: set[str] = set()
            fresh: list[tuple[_Inbound, dict[str, Any]]] = []
            rejected = duplicates = 0
            for inbound, event, reason in items:
                if event is None:
                    rejected += 1
                    ps = self.pseudonyms
                    self.outbox.dead_letter_event(
                        inbound.topic if ps is None else ps.topic(inbound.topic),
                        reason or "refused",
                        inbound.payload if ps is None else ps.raw(inbound.payload),
                        received_at=inbound.received_at,
                    )
                    continue
                eid = str(event["event_id"])
                if eid in seen or eid in done:
                    duplicates += 1
                    continue
                done.add(eid)
                fresh.append((inbound, event))
            got_all = self._decide_all([e for _, e in fresh])
            for (inbound, event), got in zip(fresh, got_all, strict=True):
                decisions.extend(got)
                ledger.append(
                    [
                        str(event["event_id"]),
                        event["vin"],
                        event["type"],
                        inbound.topic
                        if self.pseudonyms is None
                        else self.pseudonyms.topic(inbound.topic),
                        len(got),
                        self.worker_id,
                        inbound.received_at,
                        now,
                    ]
                )
            if ledger:
                self._insert_ledger(ledger)
            if self.batch_log and decisions:
                self.engine.log(decisions)  # type: ignore[attr-defined]
            messages = messages_for(decisions, self.config, self.contacts)
            new = set(
                self.outbox.enqueue(
                    messages, now=now, claim_for=self.worker_id, assume_new=not look_up
                )
            )
        self._remember([r[0] for r in ledger])
        self.stats.rejected += rejected
        self.stats.duplicates += duplicates
        self.stats.decisions += len(decisions)
        self.stats.enqueued += len(new)
        self.stats.processed += len(ledger)
        return [m for m in messages if m.idempotency_key in new]

    # ------------------------------------------------------------------ journaled path
    def _audit(self, rows: list[AuditRow]) -> None:
        """Re-identification audit rows: written to the journal before the value is used."""
        assert self.journal is not None
        body = orjson.dumps(rows)
        with self._jlock:  # journal order == applier queue order
            pos = self.journal.append(AUDIT, body)
            self._applier_q.put(("A", pos, rows))

    def _write_record(self, rec: BatchRecord) -> None:
        """Append the batch record and hand it to the applier.

        Not yet durable: the dispatcher syncs the journal (once for every batch waiting)
        before it acknowledges the batch's MQTT messages and sends its outbox messages, and
        the applier syncs before it writes to the warehouse.
        """
        assert self.journal is not None
        body = rec.encode()
        with self._jlock:
            pos = self.journal.append(BATCH, body)
            self._applier_q.put(("E", pos, body))

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until the warehouse (and the vault's audit) holds everything done so far.

        With a journal the warehouse trails the engine by up to ``apply_wait_s``; without
        one (or when the engine is not running) this returns at once.
        """
        if self.journal is None or not any(t.is_alive() for t in self._threads):
            return
        done = threading.Event()
        self._applier_q.put(("F", done))
        if not done.wait(timeout):
            raise RuntimeError("the journal applier did not catch up")

    def _decide_guarded(
        self, fresh: list[tuple[_Inbound, dict[str, Any]]]
    ) -> list[tuple[_Inbound, dict[str, Any], list[DecisionLike] | str]]:
        """Each event's decisions, or the engine error that makes it a dead letter.

        When the batch fails, each event is decided again on its own (a lone event too: it
        is dead-lettered, not raised, which would stop the engine on every redelivery).
        """
        try:
            got_all = self._decide_all([e for _, e in fresh])
            return [(b, e, g) for (b, e), g in zip(fresh, got_all, strict=True)]
        except Exception:
            pass
        out: list[tuple[_Inbound, dict[str, Any], list[DecisionLike] | str]] = []
        self.flush()  # the engine reloads its state from a complete warehouse
        self._rolled_back()
        for b, e in fresh:
            try:
                out.append((b, e, self._decide_all([e])[0]))
            except Exception as exc:
                self.flush()
                self._rolled_back()
                out.append((b, e, f"engine error: {type(exc).__name__}: {exc}"))
        return out

    def _process_journaled(
        self, items: list[tuple[_Inbound, dict[str, Any] | None, str | None]]
    ) -> list[OutboxMessage]:
        now = datetime.now(UTC)
        rec = BatchRecord(now=now, worker=self.worker_id)
        ps = self.pseudonyms
        fresh: list[tuple[_Inbound, dict[str, Any]]] = []
        done: set[str] = set()
        duplicates = 0

        def refuse(inbound: _Inbound, reason: str) -> None:
            rec.dead.append(
                dead_row(
                    inbound.topic if ps is None else ps.topic(inbound.topic),
                    reason,
                    inbound.payload if ps is None else ps.raw(inbound.payload),
                    inbound.received_at,
                )
            )

        for inbound, event, reason in items:
            if event is None:
                refuse(inbound, reason or "refused")
                continue
            eid = str(event["event_id"])
            if eid in self._recent or eid in done:
                duplicates += 1
                continue
            done.add(eid)
            fresh.append((inbound, event))
        decisions: list[DecisionLike] = []
        for inbound, event, got in self._decide_guarded(fresh) if fresh else []:
            if isinstance(got, str):
                refuse(inbound, got)
                continue
            decisions.extend(got)
            topic = inbound.topic if ps is None else ps.topic(inbound.topic)
            rec.ledger.append(
                LedgerRow(str(event["event_id"]), str(event["vin"]), str(event["type"]), topic,
                          len(got), inbound.received_at)
            )  # fmt: skip
        rec.decisions = [
            d
            if isinstance(d, Decision)
            else Decision(**{c: getattr(d, c) for c in DECISION_COLUMNS})
            for d in decisions
        ]
        messages = [
            m
            for m in messages_for(decisions, self.config, self.contacts)
            if m.idempotency_key not in self._sent_keys
        ]
        rec.messages = messages
        self._write_record(rec)
        self._remember([r.event_id for r in rec.ledger])
        for m in messages:
            self._sent_keys.add(m.idempotency_key)
            self._sent_order.append(m.idempotency_key)
        while len(self._sent_order) > self.recent_max:
            self._sent_keys.discard(self._sent_order.popleft())
        self.stats.rejected += len(rec.dead)
        self.stats.duplicates += duplicates
        self.stats.decisions += len(decisions)
        self.stats.enqueued += len(messages)
        self.stats.processed += len(rec.ledger)
        return messages

    def _applier(self) -> None:
        """Write journaled records and send results to the warehouse (and audits to the vault).

        Gathers what arrives during ``apply_wait_s`` into one transaction; the journal is
        synced first, so the warehouse never holds a record the journal could lose.
        """
        assert self.journal is not None
        journal = self.journal
        outbox = self.outbox.clone()
        assert isinstance(outbox, DuckDBOutbox)
        applier = WarehouseApplier(outbox, self.worker_id, LIVE_EVENTS_TABLE)
        disp = Dispatcher(outbox, self.channels, owner=self.worker_id)
        vault = self.resolver.vault if self.resolver is not None else None
        q = self._applier_q
        try:
            while True:
                try:
                    first = q.get(timeout=0.05)
                except queue.Empty:
                    if self._dispatcher_done.is_set() and q.empty():
                        return
                    continue
                items = [first]
                deadline = time.monotonic() + self.apply_wait_s
                while first[0] != "F" and len(items) < 20_000:
                    left = deadline - time.monotonic()
                    try:
                        if left > 0 and not self._stop.is_set():
                            items.append(q.get(timeout=left))
                        else:
                            items.append(q.get_nowait())
                    except queue.Empty:
                        break
                    if items[-1][0] == "F":
                        break
                t0 = time.perf_counter()
                try:
                    self._apply_items(items, journal, applier, disp, vault)
                except Exception as exc:  # pragma: no cover - reported, then the engine stops
                    log.exception("applying the journal failed")
                    self.stats.errors.append(f"applier: {type(exc).__name__}: {exc}")
                    self._stop.set()
                    return
                finally:
                    for it in items:
                        if it[0] == "F":
                            it[1].set()
                self.stats.record_s += time.perf_counter() - t0
        finally:
            self.stats.thread_cpu_s["applier"] = time.thread_time()
            outbox.close()

    def _apply_items(
        self,
        items: list[tuple[Any, ...]],
        journal: Journal,
        applier: WarehouseApplier,
        disp: Dispatcher,
        vault: Any,
    ) -> None:
        records = [it[2] for it in items if it[0] == "E"]
        audits = [row for it in items if it[0] == "A" for row in it[2]]
        done = [r for it in items if it[0] == "R" for r in it[2]]
        positions = [it[1] for it in items if it[0] in ("E", "A", "R")]
        pos = max(positions) if positions else None
        journal.sync()
        if vault is not None and (audits or pos is not None):
            with self.resolver._lock:  # type: ignore[union-attr]
                vault.append_audit(audits, source=self.worker_id, position=pos)
        applier.apply(records, pos, done)
        if done:
            rep = disp.report([(m, r) for m, r, _ in done])
            self.stats.sent += rep.sent
            self.stats.retried += rep.retried
            self.stats.dead += rep.dead
        if pos is not None:  # both stores hold everything up to pos now
            journal.release(pos)

    def _recover_journal(self) -> None:
        """Apply what the journal holds past each store's position; prime the duplicate filter."""
        assert self.journal is not None
        outbox = self.outbox.clone()
        assert isinstance(outbox, DuckDBOutbox)
        try:
            applier = WarehouseApplier(outbox, self.worker_id, LIVE_EVENTS_TABLE)
            applied = applier.applied()
            if self.resolver is not None:
                applied = max(applied, self.resolver.vault.journal_position(self.worker_id))
            self.journal.continue_from(applied)
            n = applier.replay(self.journal)
            if self.resolver is not None:
                replay_audits(self.journal, self.resolver.vault, self.worker_id)
            if n:
                log.info("applied %d journal records of a previous run of %s", n, self.worker_id)
            recent = outbox.con.execute(
                f"SELECT event_id FROM {LIVE_EVENTS_TABLE} WHERE worker = ? "
                "ORDER BY processed_at DESC LIMIT ?",
                [self.worker_id, self.recent_max],
            ).fetchall()
            self._remember([str(r[0]) for r in reversed(recent)])
        finally:
            outbox.close()
        self._rolled_back()  # the engine reads its state from the complete warehouse

    def process(self, batch: Sequence[_Inbound]) -> list[OutboxMessage]:
        """Validate, decide and record one batch in one transaction; returns new messages.

        The batch is first written optimistically (no ledger query; plain inserts).  When
        that transaction fails on a primary key (an event or message that is already
        recorded), it is rolled back and redone with the ledger looked up and the outbox
        insert skipping known keys.  When a transaction fails otherwise (an engine error on
        one event), the batch is redone one event per transaction and an event that still
        fails is dead-lettered with the error.
        """
        items: list[tuple[_Inbound, dict[str, Any] | None, str | None]] = []
        for b in batch:
            try:
                ev = parse_event(b.topic, b.payload, self.config.event_max_bytes, self.pseudonyms)
                items.append((b, ev, None))
            except EventRejected as exc:
                items.append((b, None, str(exc)))
        if self.partition is not None:
            mine = [it for it in items if self._owns(it[0], it[1])]
            self.stats.others += len(items) - len(mine)
            items = mine
            if not items:
                return []
        if self.journal is not None:
            return self._process_journaled(items)
        try:
            try:
                return self._apply(items, look_up=False)
            except duckdb.IntegrityError:
                self._rolled_back()
                return self._apply(items)
        except Exception as exc:
            self._rolled_back()
            if len(items) == 1:
                inbound, _, _ = items[0]
                why = f"engine error: {type(exc).__name__}: {exc}"
                self._apply([(inbound, None, why)])
                return []
        out: list[OutboxMessage] = []
        for one in items:
            out.extend(self.process([one[0]]))
        return out

    def _owns(self, inbound: _Inbound, event: dict[str, Any] | None) -> bool:
        """Whether this worker's partition owns the event (always, without partitions)."""
        if self.partition is None:
            return True
        k, n = self.partition
        if event is None:  # refused: whoever owns its topic dead-letters it
            return partition_of(inbound.topic, n) == k
        vin = str(event["vin"])
        person_of = getattr(self.engine, "person_of", None)
        person = person_of(vin) if callable(person_of) else None
        return partition_of(str(person) if person else vin, n) == k

    def _next_batch(self) -> list[_Inbound]:
        """Up to ``batch_max`` queued events (waiting 0.1 s for the first one).

        The batch is whatever arrived while the previous one was processed, so it grows with
        the load by itself; when fewer than ``batch_max`` are waiting, it lingers
        ``batch_wait_s`` once for more.
        """
        inbox = self._inbox
        if not inbox:
            if not self._arrived.wait(0.1):
                return []
            self._arrived.clear()
            if self.batch_wait_s > 0 and len(inbox) < self.batch_max:
                time.sleep(self.batch_wait_s)
        else:
            self._arrived.clear()
        n = min(len(inbox), self.batch_max)
        return [inbox.popleft() for _ in range(n)]

    def _rolled_back(self) -> None:
        """Tell the engine that decisions it made for a rolled-back batch were not kept."""
        invalidate = getattr(self.engine, "invalidate", None)
        if callable(invalidate):
            invalidate()

    def _processor(self) -> None:
        try:
            while True:
                if self._stop.is_set():
                    # Messages still queued here are not acknowledged: the broker delivers
                    # them again when this worker's session resumes.
                    return
                batch = self._next_batch()
                if not batch:
                    continue
                t0 = time.perf_counter()
                new = self.process(batch)
                acks = [(b.mid, b.qos) for b in batch]
                if self.journal is None:  # committed: acknowledge now
                    self.client.ack_many(acks)
                    acks = []
                self.stats.process_s += time.perf_counter() - t0
                self.stats.batches += 1
                if new or acks:
                    self._handoff.put((new, acks))
        except Exception as exc:  # pragma: no cover - reported, then the engine stops
            log.exception("processor failed")
            self.stats.errors.append(f"processor: {type(exc).__name__}: {exc}")
            self._stop.set()
        finally:
            self.stats.thread_cpu_s["processor"] = time.thread_time()
            self._processor_done.set()

    def _dispatcher(self) -> None:
        """Send handed-off rows at once and poll for due ones; results go to the recorder.

        A failing round (database hiccup, adapter bug) is logged and counted; its rows stay
        leased and are claimed again when the lease runs out, so the loop goes on.
        """
        outbox = self.outbox.clone()
        disp = Dispatcher(outbox, self.channels, owner=self.worker_id, resolver=self.resolver)
        next_poll = 0.0
        # With a journal the results go to the applier whenever they come in, so the
        # head unit's PUBACKs are not waited for here: the next hand-off goes out at once.
        use_async = self.journal is not None
        q = self._applier_q

        journal = self.journal

        def deliver(done: list[tuple[OutboxMessage, SendResult]]) -> None:
            # journaled (not synced: the next group commit or apply does that), so that a
            # restart after a crash does not send again what was confirmed sent
            if not done or journal is None:
                return
            at = datetime.now(UTC)
            body = encode_results(done, at)
            with self._jlock:
                pos = journal.append(RESULTS, body)
                q.put(("R", pos, [(m, r, at) for m, r in done]))

        expirers = [
            f for ch in self.channels.values() if callable(f := getattr(ch, "expire_async", None))
        ]
        try:
            while True:
                for expire in expirers:
                    expire()
                msgs: list[OutboxMessage] | None
                try:
                    msgs, acks = self._handoff.get(timeout=min(self.poll_s, 0.05))
                    # Merge every hand-off waiting: one sync and one send round for all.
                    while len(msgs) < 5000:
                        try:
                            more, more_acks = self._handoff.get_nowait()
                        except queue.Empty:
                            break
                        msgs, acks = msgs + more, acks + more_acks
                except queue.Empty:
                    msgs, acks = None, []
                if acks:
                    # Group commit: one fdatasync makes every batch handed over durable;
                    # only then are their events acknowledged and their messages sent.
                    assert self.journal is not None
                    self.journal.sync()
                    self.client.ack_many(acks)
                    if not msgs:
                        continue
                if msgs is None and self._processor_done.is_set() and self._handoff.empty():
                    self._wait_async_sends()
                    return
                if msgs is None and time.monotonic() < next_poll:
                    continue
                t0 = time.perf_counter()
                try:
                    if msgs is None:
                        msgs = outbox.claim(self.worker_id, limit=500)
                        next_poll = time.monotonic() + self.poll_s
                    if use_async:
                        disp.send_async(msgs, deliver)
                        done = []
                    else:
                        done = disp.send(msgs)
                except Exception as exc:
                    log.exception("dispatch round failed; its messages are retried later")
                    self.stats.dispatch_errors += 1
                    self.stats.last_dispatch_error = f"{type(exc).__name__}: {exc}"
                    time.sleep(min(1.0, self.poll_s))
                    continue
                self.stats.dispatch_s += time.perf_counter() - t0
                if done and self.journal is not None:
                    deliver(done)
                elif done:
                    self._results.put(done)
        except Exception as exc:  # outside a send round (the journal's sync, acks): fatal
            log.exception("dispatcher failed")
            self.stats.errors.append(f"dispatcher: {type(exc).__name__}: {exc}")
            self._stop.set()
        finally:
            self.stats.thread_cpu_s["dispatcher"] = time.thread_time()
            self._dispatcher_done.set()
            if outbox is not self.outbox:
                outbox.close()

    def _wait_async_sends(self) -> None:
        """Before the dispatcher ends: let asynchronous sends get their results (or time out)."""
        channels = [ch for ch in self.channels.values() if hasattr(ch, "async_pending")]
        while any(getattr(ch, "async_pending", 0) for ch in channels):
            for ch in channels:
                ch.expire_async()  # type: ignore[attr-defined]
            time.sleep(0.01)

    def _recorder(self) -> None:
        """Record send results in the outbox, merging every round that is waiting.

        Off the sending path: the next round goes out while this one is written down.
        Until a row is recorded it stays leased, so a crash in between means the message is
        sent again with the same idempotency key after the lease (at least once, as before).
        """
        outbox = self.outbox.clone()
        disp = Dispatcher(outbox, self.channels, owner=self.worker_id)
        try:
            while True:
                try:
                    done = self._results.get(timeout=0.05)
                except queue.Empty:
                    if self._dispatcher_done.is_set() and self._results.empty():
                        return
                    continue
                # Gather rounds for record_wait_s: each transaction costs the same for 30
                # rows as for 1000, and nobody waits for it (the messages are out).
                deadline = time.monotonic() + self.record_wait_s
                while True:
                    left = deadline - time.monotonic()
                    try:
                        if left > 0 and not self._dispatcher_done.is_set():
                            more = self._results.get(timeout=left)
                        else:
                            more = self._results.get_nowait()
                    except queue.Empty:
                        break
                    done = done + more
                t0 = time.perf_counter()
                try:
                    rep = disp.record(done)
                except Exception as exc:
                    log.exception("recording sends failed; the messages are sent again later")
                    self.stats.dispatch_errors += 1
                    self.stats.last_dispatch_error = f"{type(exc).__name__}: {exc}"
                    continue
                self.stats.record_s += time.perf_counter() - t0
                self.stats.sent += rep.sent
                self.stats.retried += rep.retried
                self.stats.dead += rep.dead
        finally:
            self.stats.thread_cpu_s["recorder"] = time.thread_time()
            if outbox is not self.outbox:
                outbox.close()

    # ------------------------------------------------------------------ lifecycle
    def _start_workers(self) -> None:
        """Release the leases of a previous run, then start processor, dispatcher, recorder."""
        if self.journal is not None:
            self._recover_journal()
        released = self.outbox.recover(self.worker_id)
        if released:
            log.info("released %d leases of a previous run of %s", released, self.worker_id)
        # Everything set up so far (modules, catalogues, models) lives as long as the
        # process: out of the collector's sight, its full collections no longer walk it
        # while thousands of short-lived objects a second come and go.
        gc.freeze()
        if self.switch_interval_s is not None:
            # A thread that wants the GIL back (to take the next MQTT batch, to send) waits
            # for the holder's switch interval: 5 ms by default, far more than a batch takes.
            self._old_switch = sys.getswitchinterval()
            sys.setswitchinterval(self.switch_interval_s)
        for target, name in (
            (self._processor, "processor"),
            (self._dispatcher, "dispatcher"),
            (self._recorder, "recorder") if self.journal is None else (self._applier, "applier"),
        ):
            t = threading.Thread(target=target, name=f"{self.worker_id}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.ready.set()

    def _stop_workers(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, finish the batch in flight, flush sends, disconnect."""
        super().stop(timeout)
        for ch in self.channels.values():
            ch.close()
        if self.journal is not None:
            try:
                self.journal.close()
            except (OSError, JournalError) as exc:  # reported; the rest is closed all the same
                log.error("closing the journal failed: %s", exc)
                self.stats.errors.append(f"journal: {type(exc).__name__}: {exc}")
        if self._old_switch is not None:
            sys.setswitchinterval(self._old_switch)
            self._old_switch = None
        if self.resolver is not None:
            self.resolver.close()
