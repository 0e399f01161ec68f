r"""Feedback in: channel events (webhook or MQTT) joined to their decisions and ingested.

Channels report what happened to a message — ``sent``, ``delivered``, ``exposed``,
``clicked``, ``voice_reply``, ``converted``, ``redeemed``, ``referral`` (with ``value`` and
``dwell_s``) — as one JSON object per event.  :class:`FeedbackIntake` turns a batch of such
payloads into ``marketing_feedback`` rows:

1. **parse**: each payload must be UTF-8 JSON, an object, at most ``max_bytes``;
2. **join to the decision** that caused it: ``decision_id`` or ``idempotency_key`` (the key
   the outbox sent with the message) is looked up in ``strategy_decisions``; the decision
   fills what the channel left out — ``campaign_id`` (the strategy), ``person_id``, ``arm``
   and ``channel`` (``app_push`` is the ``app`` channel) — and an event naming an unknown
   decision, or another person than its decision, is refused.  An event with neither key
   (an organic purchase) passes as it is;
3. **event key**: a channel that sends no ``event_id`` gets ``{decision_id}-{event_type}``
   for the once-per-message steps (sent, delivered, exposed, clicked, voice_reply), so a
   retried report is a duplicate, not a second event;
4. **ingest** through :func:`autopersona.ingest.engine.ingest_file`, the very code path of
   ``autopersona ingest`` and ``POST /v1/events``: contract types, allowed values, ranges,
   duplicates (same ``event_id`` and values: counted, not loaded twice), key conflicts and
   quarantine with the reason.

Nothing is lost: a payload refused at step 1 or 2 goes to the quarantine table
(``_quarantine``) with its reason and raw text, like a row refused by the contract; every
payload of a batch ends up loaded, duplicate or quarantined
(:attr:`IntakeReport.received` ``= loaded + duplicates + quarantined``).

:class:`FeedbackListener` feeds the intake from MQTT: protocol 5, QoS 1, a persistent
session (``clean_start=False`` with a session expiry) on ``{prefix}/feedback/+`` (the last
level names the channel, used when the payload has none); acknowledgements are manual and
sent only after the batch is in the warehouse, so a listener killed at any point leaves
unacknowledged messages that the broker delivers again, and the event key makes the
redelivery a counted duplicate.

With pseudonymisation on (the default), identifiers in accepted events become pseudonyms in
ingestion, and the raw text of a refused payload is quarantined with its VIN, phone and
e-mail fields (or patterns) pseudonymised.

Examples
--------
>>> from autopersona.store.warehouse import Warehouse
>>> with Warehouse(":memory:") as wh:
...     intake = FeedbackIntake(wh)
...     ok = b'{"event_id": "e1", "person_id": "P1", "ts": "2026-03-02T10:00:00Z", '
...     ok += b'"campaign_id": "c1", "channel": "app", "event_type": "clicked", "dwell_s": 12}'
...     rep = intake.ingest([Inbound(ok, "mqtt:x"), Inbound(b"not json", "mqtt:x"),
...                          Inbound(ok, "mqtt:x")])
...     n = wh.sql("SELECT count(*) FROM marketing_feedback")[0][0]
>>> rep.received, rep.loaded, rep.duplicates, rep.quarantined, n
(3, 1, 1, 1, 1)
>>> rep.reasons
{'invalid JSON': 1}
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from autopersona.delivery.mqtt import MqttConsumer

if TYPE_CHECKING:
    from autopersona.delivery.config import MqttBroker
    from autopersona.store.warehouse import Warehouse

__all__ = [
    "FEEDBACK_TABLE",
    "ONCE_PER_MESSAGE",
    "FeedbackDeferred",
    "FeedbackIntake",
    "FeedbackListener",
    "Inbound",
    "IntakeReport",
    "ListenerStats",
    "feedback_topic",
]

log = logging.getLogger(__name__)

FEEDBACK_TABLE = "marketing_feedback"
#: Steps a message goes through at most once: their event key can be derived.
ONCE_PER_MESSAGE = ("sent", "delivered", "exposed", "clicked", "voice_reply")
#: Decision channels named differently in the feedback contract.
CHANNEL_ALIASES = {"app_push": "app"}
_RAW_KEEP = 2000  # characters of a refused payload kept in the quarantine


def feedback_topic(prefix: str, channel: str = "+") -> str:
    """Topic of channel feedback: ``{prefix}/feedback/{channel}``.

    >>> feedback_topic("autopersona/v1"), feedback_topic("p", "head_unit")
    ('autopersona/v1/feedback/+', 'p/feedback/head_unit')
    """
    return f"{prefix}/feedback/{channel}"


@dataclass(frozen=True)
class Inbound:
    """One feedback payload and where it came from (``mqtt:{topic}``, ``webhook``…)."""

    payload: bytes | str | dict[str, Any]
    source: str = "webhook"
    channel: str | None = None  # channel named by the transport (e.g. the topic)


@dataclass
class IntakeReport:
    """What one batch did: ``received = loaded + duplicates + quarantined + others``.

    ``others`` counts the payloads another partition owns (a partitioned intake only).
    """

    run_id: str
    received: int = 0
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    others: int = 0
    joined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return dict(self.__dict__)


def _text(payload: bytes | str | dict[str, Any]) -> str:
    if isinstance(payload, dict):
        return json.dumps(payload, default=str, ensure_ascii=False)
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="replace")
    return payload


class FeedbackDeferred(Exception):
    """Raised by a ``catch_up`` hook: the decisions of this batch cannot be known now.

    Said when the process stops before the warehouse could catch up (``autopersona run``
    stopped before its engine recovered the journal that may hold them).  The listener
    neither ingests nor acknowledges the batch, and takes no more messages: the broker
    delivers them again to the next session, instead of their being quarantined as naming
    unknown decisions.
    """


class _Refused(ValueError):
    def __init__(self, reason: str, field_name: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field_name


#: why a payload whose text no UTF-8 can hold is quarantined
_SURROGATE = "invalid text: a lone UTF-16 surrogate (no UTF-8 character)"


def _storable(obj: dict[str, Any]) -> dict[str, Any]:
    r"""``obj``, refused if a string in it holds a lone UTF-16 surrogate.

    A ``\ud800`` escape is valid JSON, but no UTF-8 text can hold it: the batch's file
    could not be written.
    """
    try:
        json.dumps(obj, default=str, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused(_SURROGATE) from None
    return obj


def _parse(payload: bytes | str | dict[str, Any], max_bytes: int) -> dict[str, Any]:
    if isinstance(payload, dict):
        return _storable(dict(payload))
    if isinstance(payload, str):
        try:
            raw = payload.encode("utf-8")
        except UnicodeEncodeError:
            raise _Refused(_SURROGATE) from None
    else:
        raw = payload
    if not raw.strip():
        raise _Refused("empty payload")
    if len(raw) > max_bytes:
        raise _Refused(f"oversized: {len(raw)} bytes > limit {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(f"non-UTF-8 bytes at byte {exc.start}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Refused(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise _Refused(f"expected a JSON object, found {type(obj).__name__}")
    return _storable(obj) if "\\u" in text else obj  # surrogates come only from escapes


class FeedbackIntake:
    """Join feedback payloads to their decisions and ingest them (see the module doc).

    Parameters
    ----------
    wh
        Warehouse holding ``marketing_feedback`` and the decision log.
    max_bytes
        Largest payload accepted.
    catch_up
        Called when a batch names decisions the log does not hold (yet), before they are
        looked up once more: ``autopersona run`` passes the live engine's ``flush``, since
        its journal writes decisions to the warehouse a moment after their messages go out.
        It may raise :class:`FeedbackDeferred`, which :meth:`ingest` lets through.
    partition
        ``(k, n)``: the intake of live worker ``k`` of ``n`` (``autopersona run
        --partition``), whose warehouse holds only its own persons' decisions; every
        worker's listener receives every payload, and each takes those it owns, so that a
        payload is loaded or quarantined by exactly one worker: by its ``person_id``
        (:func:`~autopersona.strategy.decision.partition_of`, as the live engine
        partitions persons), else its ``decision_id`` (a partitioned worker draws its
        decision ids in its own partition), else — ``idempotency_key`` only — by whichever
        worker holds the decision (an unknown one is quarantined by the owner of the key's
        hash), else by the hash of the payload.  The others are counted, not written.
    """

    def __init__(
        self,
        wh: Warehouse,
        *,
        max_bytes: int = 65536,
        catch_up: Callable[[], None] | None = None,
        partition: tuple[int, int] | None = None,
    ) -> None:
        if partition is not None and not 0 <= partition[0] < partition[1]:
            raise ValueError(f"partition {partition[0]}/{partition[1]}: need 0 <= k < n")
        self.wh = wh
        self.max_bytes = max_bytes
        self.catch_up = catch_up
        self.partition = partition
        self.columns = [c.name for c in wh.contracts[FEEDBACK_TABLE].columns]

    # ------------------------------------------------------------------ decisions
    def _decisions(self, ids: set[str], keys: set[str]) -> dict[str, dict[str, Any]]:
        """Decisions by decision id and by idempotency key (the latest row of a key)."""
        from autopersona.strategy.decision import DECISIONS_TABLE

        if not ids and not keys:
            return {}
        exists = self.wh.sql(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
            [DECISIONS_TABLE],
        )
        if not exists[0][0]:
            return {}
        out: dict[str, dict[str, Any]] = {}
        cols = ("decision_id", "idempotency_key", "person_id", "strategy_id", "arm", "channel")
        for col, values in (("decision_id", ids), ("idempotency_key", keys)):
            if not values:
                continue
            marks = ", ".join("?" for _ in values)
            rows = self.wh.sql(
                f"SELECT {', '.join(cols)} FROM {DECISIONS_TABLE} WHERE {col} IN ({marks}) "
                "ORDER BY created_at, decision_id",
                sorted(values),
            )
            for r in rows:
                d = dict(zip(cols, r, strict=True))
                out[f"{col}:{d[col]}"] = d
        return out

    def _join(self, ev: dict[str, Any], decisions: dict[str, dict[str, Any]]) -> bool:
        """Fill ``ev`` from its decision (True when it has one); raise _Refused."""
        did, key = ev.get("decision_id"), ev.get("idempotency_key")
        if did in (None, "") and key in (None, ""):
            return False
        d = None
        if did not in (None, ""):
            d = decisions.get(f"decision_id:{did}")
            if d is None:
                raise _Refused(f"unknown decision: decision_id {did!r}", "decision_id")
        if key not in (None, "") and d is not None:
            # several decisions may share a key (same strategy, person and trigger): the
            # one named by id must carry it, not be the key's latest
            if str(d["idempotency_key"]) != str(key):
                raise _Refused(
                    f"decision mismatch: idempotency_key {key!r} is not the key "
                    f"{d['idempotency_key']!r} of decision {did!r}",
                    "idempotency_key",
                )
        elif key not in (None, ""):
            by_key = decisions.get(f"idempotency_key:{key}")
            if by_key is None:
                where = ""
                if self.partition is not None and d is None:
                    k, n = self.partition
                    where = (
                        f" (here, worker {k} of {n}; another worker may hold it: a payload "
                        "with only an idempotency key cannot be routed, send its person_id "
                        "or decision_id too)"
                    )
                raise _Refused(
                    f"unknown decision: idempotency_key {key!r}{where}", "idempotency_key"
                )
            d = by_key
        assert d is not None
        person = ev.get("person_id")
        if person not in (None, "") and str(person) != str(d["person_id"]):
            raise _Refused(
                f"decision mismatch: person_id {person!r} is not the person "
                f"{d['person_id']!r} of decision {d['decision_id']!r}",
                "person_id",
            )
        ev["decision_id"] = d["decision_id"]
        ev["person_id"] = d["person_id"]
        if ev.get("campaign_id") in (None, ""):
            ev["campaign_id"] = d["strategy_id"]
        if ev.get("arm") in (None, ""):
            ev["arm"] = d["arm"]
        if ev.get("channel") in (None, "") and d["channel"]:
            ev["channel"] = CHANNEL_ALIASES.get(str(d["channel"]), d["channel"])
        return True

    # ------------------------------------------------------------------ partitions
    def _owner(self, item: Inbound, ev: dict[str, Any] | None) -> int | None:
        """The partition owning a payload; None when only its decision can tell."""
        from autopersona.strategy.decision import partition_of

        assert self.partition is not None
        n = self.partition[1]
        if ev is not None:
            for col in ("person_id", "decision_id"):
                if ev.get(col) not in (None, ""):
                    return partition_of(str(ev[col]), n)
            if ev.get("idempotency_key") not in (None, ""):
                return None
        raw = _text(item.payload).encode("utf-8", errors="replace")
        return partition_of("payload:" + hashlib.sha256(raw).hexdigest(), n)

    def _mine(
        self,
        parsed: list[tuple[Inbound, dict[str, Any] | None, _Refused | None]],
        decisions: dict[str, dict[str, Any]],
    ) -> list[tuple[Inbound, dict[str, Any] | None, _Refused | None]]:
        """The payloads of this partition (all of them without partitions)."""
        if self.partition is None:
            return parsed
        from autopersona.strategy.decision import partition_of

        k, n = self.partition
        out = []
        for item, ev, err in parsed:
            owner = self._owner(item, ev)
            if owner is None:  # a key alone: whoever holds the decision, else the key's hash
                assert ev is not None
                key = str(ev["idempotency_key"])
                held = f"idempotency_key:{key}" in decisions
                owner = k if held else partition_of(key, n)
            if owner == k:
                out.append((item, ev, err))
        return out

    # ------------------------------------------------------------------ batch
    def ingest(self, batch: Sequence[Inbound]) -> IntakeReport:
        """Parse, join and ingest ``batch``; every payload is loaded, duplicate or quarantined."""
        from autopersona.ingest.engine import ingest_file

        rep = IntakeReport(run_id="fb-" + uuid.uuid4().hex[:12], received=len(batch))
        parsed: list[tuple[Inbound, dict[str, Any] | None, _Refused | None]] = []
        for item in batch:
            try:
                parsed.append((item, _parse(item.payload, self.max_bytes), None))
            except _Refused as exc:
                parsed.append((item, None, exc))
        if self.partition is not None:  # the payloads only a decision lookup can place
            alone = {
                str(e["idempotency_key"])
                for i, e, _ in parsed
                if e is not None and self._owner(i, e) is None
            }
            known = self._decisions(set(), alone)
            if len(known) < len(alone) and self.catch_up is not None:
                self.catch_up()
                known = self._decisions(set(), alone)
            mine = self._mine(parsed, known)
            rep.others = len(parsed) - len(mine)
            parsed = mine
        ids = {str(e["decision_id"]) for _, e, _ in parsed if e and e.get("decision_id")}
        keys = {str(e["idempotency_key"]) for _, e, _ in parsed if e and e.get("idempotency_key")}
        decisions = self._decisions(ids, keys)
        missing = any(f"decision_id:{i}" not in decisions for i in ids) or any(
            f"idempotency_key:{k}" not in decisions for k in keys
        )
        if missing and self.catch_up is not None:
            self.catch_up()
            decisions = self._decisions(ids, keys)
        refused: list[tuple[Inbound, _Refused]] = []
        rows: list[tuple[Inbound, dict[str, Any]]] = []
        for item, ev, err in parsed:
            if ev is None:
                assert err is not None
                refused.append((item, err))
                continue
            if ev.get("channel") in (None, "") and item.channel:
                ev["channel"] = CHANNEL_ALIASES.get(item.channel, item.channel)
            elif isinstance(ev.get("channel"), str):
                ev["channel"] = CHANNEL_ALIASES.get(ev["channel"], ev["channel"])
            try:
                rep.joined += self._join(ev, decisions)
            except _Refused as exc:
                refused.append((item, exc))
                continue
            derive = ev.get("event_id") in (None, "") and ev.get("decision_id")
            if derive and ev.get("event_type") in ONCE_PER_MESSAGE:
                ev["event_id"] = f"{ev['decision_id']}-{ev['event_type']}"
            rows.append((item, {c: ev.get(c) for c in self.columns}))
        if rows:
            with tempfile.TemporaryDirectory(prefix="autopersona-feedback-") as tmp:
                path = Path(tmp) / f"{FEEDBACK_TABLE}.jsonl"
                with path.open("w", encoding="utf-8") as fh:
                    for _, r in rows:
                        fh.write(json.dumps(r, default=str, ensure_ascii=False) + "\n")
                fr = ingest_file(self.wh, path, table=FEEDBACK_TABLE, run_id=rep.run_id)
                self._label_sources(rep.run_id, str(path), [i.source for i, _ in rows])
            t = next(x for x in fr.targets if x.table == FEEDBACK_TABLE)
            rep.loaded, rep.duplicates, rep.quarantined = t.loaded, t.duplicates, t.quarantined
            rep.reasons.update(t.reasons)
        if refused:
            self._quarantine(rep.run_id, refused)
            rep.quarantined += len(refused)
            kinds = Counter(e.reason.split(":")[0].split("(")[0].strip() for _, e in refused)
            for k, n in kinds.items():
                rep.reasons[k] = rep.reasons.get(k, 0) + n
        return rep

    def _label_sources(self, run_id: str, path: str, sources: list[str]) -> None:
        """Quarantine rows of the run name the payload's source instead of the temp file."""
        from autopersona.store.warehouse import QUARANTINE_TABLE

        by_row = sorted({(i + 1, s) for i, s in enumerate(sources)})
        if not by_row:
            return
        self.wh.con.executemany(
            f"UPDATE {QUARANTINE_TABLE} SET source_file = ? "
            "WHERE run_id = ? AND source_file = ? AND row_number = ?",
            [[s, run_id, path, n] for n, s in by_row],
        )

    def _quarantine(self, run_id: str, refused: list[tuple[Inbound, _Refused]]) -> None:
        from autopersona.privacy.pseudo import live_pseudonyms
        from autopersona.store.warehouse import QUARANTINE_TABLE

        ps = live_pseudonyms()  # refused raw text keeps no clear VIN, phone or e-mail
        now = datetime.now(UTC)
        rows = []
        for item, err in refused:
            raw = _text(item.payload)
            if ps is not None:
                raw = ps.raw(raw.encode("utf-8", errors="replace")).decode("utf-8")
            else:  # a lone surrogate (refused payload) cannot be stored as it is
                raw = raw.encode("utf-8", errors="replace").decode("utf-8")
            sha = hashlib.sha256(raw.encode("utf-8", errors="replace")).hexdigest()
            rows.append(
                [
                    run_id,
                    item.source,
                    sha,
                    FEEDBACK_TABLE,
                    None,
                    err.field,
                    err.reason,
                    raw[:_RAW_KEEP],
                    now,
                ]
            )
        self.wh.con.executemany(
            f"INSERT INTO {QUARANTINE_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )


# ---------------------------------------------------------------------------- MQTT
@dataclass
class ListenerStats:
    """Counters of a running listener."""

    received: int = 0
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    joined: int = 0
    deferred: int = 0  # left unacknowledged for the next session (FeedbackDeferred)
    others: int = 0  # owned by another partition (acknowledged, not written)
    batches: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict."""
        return {k: v for k, v in self.__dict__.items() if k != "errors"}


@dataclass(frozen=True)
class _Msg:
    mid: int
    qos: int
    topic: str
    payload: bytes


class FeedbackListener(MqttConsumer[ListenerStats]):
    """Consume channel feedback from MQTT into ``marketing_feedback`` (see the module doc).

    Parameters
    ----------
    wh
        Warehouse (the intake writes there; use one listener per warehouse file).
    broker
        Host, port, topic prefix, keepalive and session expiry
        (:class:`autopersona.delivery.config.MqttBroker`).
    client_id
        MQTT client id; keep it stable so the broker resumes the session (and its queue).
    batch_max, batch_wait_s
        Most payloads per ingestion, and how long to wait for more once one has arrived.
    max_bytes, catch_up, partition
        Of the intake (:class:`FeedbackIntake`).
    """

    def __init__(
        self,
        wh: Warehouse,
        broker: MqttBroker,
        *,
        client_id: str = "autopersona-feedback",
        batch_max: int = 500,
        batch_wait_s: float = 0.05,
        max_bytes: int = 65536,
        catch_up: Callable[[], None] | None = None,
        partition: tuple[int, int] | None = None,
    ) -> None:
        self.wh = wh
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.intake = FeedbackIntake(
            wh, max_bytes=max_bytes, catch_up=catch_up, partition=partition
        )
        self.stats = ListenerStats()
        self._inbox: queue.Queue[_Msg] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._init_consumer(client_id, broker, feedback_topic(broker.topic_prefix))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not self._accepting.is_set():
            return  # not acknowledged: delivered again when the session resumes
        self.stats.received += 1
        self._inbox.put(_Msg(msg.mid, msg.qos, msg.topic, bytes(msg.payload)))

    def process(self, batch: Sequence[_Msg]) -> IntakeReport:
        """Ingest one batch of MQTT messages (the channel comes from the topic's last level)."""
        items = [
            Inbound(m.payload, f"mqtt:{m.topic}", m.topic.rsplit("/", 1)[-1] or None) for m in batch
        ]
        rep = self.intake.ingest(items)
        s = self.stats
        s.loaded += rep.loaded
        s.duplicates += rep.duplicates
        s.quarantined += rep.quarantined
        s.others += rep.others
        s.joined += rep.joined
        s.batches += 1
        return rep

    def _processor(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    first = self._inbox.get(timeout=0.1)
                except queue.Empty:
                    continue
                batch = [first]
                deadline = time.monotonic() + self.batch_wait_s
                while len(batch) < self.batch_max:
                    try:
                        batch.append(self._inbox.get(timeout=max(0.0, deadline - time.monotonic())))
                    except queue.Empty:
                        break
                try:
                    self.process(batch)
                except FeedbackDeferred as exc:
                    self._accepting.clear()
                    held = len(batch) + self._inbox.qsize()
                    self.stats.deferred += held
                    log.info("%d feedback messages left to the next session: %s", held, exc)
                    return
                for m in batch:  # only now: the batch is in the warehouse
                    self.client.ack(m.mid, m.qos)
        except Exception as exc:  # pragma: no cover - reported, then the listener stops
            log.exception("feedback processor failed")
            self.stats.errors.append(f"processor: {type(exc).__name__}: {exc}")
            self._stop.set()

    def _start_workers(self) -> None:
        self._thread = threading.Thread(
            target=self._processor, name=f"{self.client_id}-processor", daemon=True
        )
        self._thread.start()

    def _stop_workers(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
