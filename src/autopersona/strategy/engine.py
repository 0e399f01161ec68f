"""The strategy engine: triggers → audience on the current profile → guards → decisions.

:class:`StrategyEngine` evaluates the strategy catalogue
(:mod:`autopersona.strategy.spec`) against the warehouse (features, master data, identity
links, consents, subscriptions) and the profile store (tags):

* :meth:`~StrategyEngine.run_batch` — schedule, calendar and metric-change triggers as of a
  time, plus the untargeted baseline arm;
* :meth:`~StrategyEngine.on_event` — one live vehicle event against the person's current
  profile;
* :meth:`~StrategyEngine.release_held` — messages held while the vehicle moved are sent once
  it is parked, or expire.

Each candidate (strategy × person × trigger) passes the guards in this order: duplicate
(idempotency key already sent, held or held out) → consent (a channel with consent for the
strategy's purpose) → experiment hold-out (control arm: logged, not sent) → ad fatigue
(too many recent messages without a response, from ``marketing_feedback``) → person cap per
local day → strategy caps → global cap → arbitration (one message per person per window;
candidates are taken by priority, then expected value) → channel choice (the first channel
that is outside its quiet hours and under its daily cap) → driving-state safety (held while
the vehicle moves).  Every decision is appended to ``strategy_decisions``.

Examples
--------
>>> from datetime import datetime, UTC
>>> from autopersona.store.warehouse import Warehouse
>>> with Warehouse(":memory:") as wh:
...     eng = StrategyEngine(wh)
...     eng.run_batch(datetime(2026, 3, 2, tzinfo=UTC))
...     eng.on_event({"vin": "V1", "type": "route_planned", "ts": "2026-03-02T08:00:00Z",
...                   "payload": {"route_km": 420, "remaining_range_km": 150}})
[]
[]
"""

from __future__ import annotations

import math
import string
import time as _time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from autopersona.strategy.decision import (
    DECISIONS_TABLE,
    Decision,
    create_decision_table,
    idempotency_key,
    new_decision_id,
    read_decisions,
    write_decisions,
)
from autopersona.strategy.guards import (
    ArbitrationGuard,
    CapGuard,
    ConsentGuard,
    ConsentRecord,
    DedupGuard,
    DrivingSafetyGuard,
    ExperimentArms,
    FatigueGuard,
    Ledger,
    LedgerEntry,
    QuietHoursGuard,
    local_date,
    zone,
)
from autopersona.strategy.scalar import evaluate_one
from autopersona.strategy.spec import (
    ChannelSpec,
    StrategyCatalogue,
    StrategySpec,
    context_names,
    load_strategies,
)

if TYPE_CHECKING:
    from autopersona.store.profiles import ProfileStore
    from autopersona.store.warehouse import Warehouse

__all__ = ["EventError", "StrategyEngine", "render", "summarise"]

_SOURCE_ORDER = {"owner": 0, "app": 1, "ecommerce": 2, "dealer_crm": 3}
#: Longest payload (JSON-ish size of the dict, characters) accepted for one event.
MAX_PAYLOAD_FIELDS = 64


#: A held decision that no later row (send, expired, suppressed) of its key has closed.
_OPEN_HOLD = (
    f"l.status = 'held' AND NOT EXISTS (SELECT 1 FROM {DECISIONS_TABLE} l2 "
    "WHERE l2.idempotency_key = l.idempotency_key AND l2.status <> 'held' "
    "AND l2.created_at >= l.created_at AND l2.decision_id <> l.decision_id)"
)


class EventError(ValueError):
    """A live event that cannot be evaluated (missing field, wrong type); names the field."""


def _utc(t: Any) -> datetime:
    if isinstance(t, pd.Timestamp):
        t = t.to_pydatetime()
    if isinstance(t, date) and not isinstance(t, datetime):
        t = datetime(t.year, t.month, t.day, tzinfo=UTC)
    if not isinstance(t, datetime):
        raise TypeError(f"expected a datetime, got {type(t).__name__}")
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def _py(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fmt(v: Any) -> str | None:
    v = _py(v)
    if v is None:
        return None
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    if isinstance(v, datetime | pd.Timestamp):
        return _utc(v).date().isoformat()
    return str(v)


def render(text: str, fields: dict[str, Any], defaults: dict[str, str] | None = None) -> str:
    """Fill ``${name}`` fields of ``text`` (``string.Template``; nothing is evaluated).

    Null fields take ``defaults[name]`` or an empty string; numbers are shortened.

    >>> render("${n} km to ${city}", {"n": 412.4, "city": None}, {"city": "the coast"})
    '412 km to the coast'
    """
    d = defaults or {}
    mapping: dict[str, str] = {}
    for ident in string.Template(text).get_identifiers():
        v = _fmt(fields.get(ident))
        mapping[ident] = v if v is not None else d.get(ident, "")
    return string.Template(text).safe_substitute(mapping)


# ----------------------------------------------------------------------------- directory
@dataclass
class _Directory:
    """Persons, accounts and time zones, read from identity links and master data."""

    vin_person: dict[str, str] = field(default_factory=dict)
    account_person: dict[str, str] = field(default_factory=dict)
    person_accounts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    vin_accounts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    account_tz: dict[str, tuple[int, str]] = field(default_factory=dict)
    vin_tz: dict[str, str] = field(default_factory=dict)
    default_tz: str = "UTC"

    def person_of(self, entity_type: str, entity: str) -> str:
        if entity_type == "vin":
            return self.vin_person.get(entity, entity)
        return self.account_person.get(entity, entity)

    def accounts(self, entity_type: str, entity: str, person_id: str) -> list[str]:
        out = set(self.person_accounts.get(person_id, ()))
        if entity_type == "vin":
            out |= set(self.vin_accounts.get(entity, ()))
        else:
            out.add(entity)
        return sorted(out)

    def timezone(self, vin: str | None, accounts: Sequence[str]) -> str:
        if vin and self.vin_tz.get(vin):
            return self.vin_tz[vin]
        best = sorted(self.account_tz[a] for a in accounts if a in self.account_tz)
        return best[0][1] if best else self.default_tz


def _table_exists(con: Any, name: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchall()
    return bool(row and row[0][0])


def _load_directory(con: Any, default_tz: str) -> _Directory:
    d = _Directory(default_tz=default_tz)
    if _table_exists(con, "persons"):
        for pid, vin in con.execute(
            "SELECT person_id, unnest(vins) FROM persons ORDER BY person_id DESC"
        ).fetchall():
            d.vin_person[str(vin)] = str(pid)  # smallest person id wins on a shared VIN
    if _table_exists(con, "identity_links"):
        for acc, pid in con.execute("SELECT account_id, person_id FROM identity_links").fetchall():
            d.account_person[str(acc)] = str(pid)
            d.person_accounts[str(pid)].append(str(acc))
    for acc, src, vin, tz in con.execute(
        "SELECT account_id, source, vin, timezone FROM accounts"
    ).fetchall():
        if vin:
            d.vin_accounts[str(vin)].append(str(acc))
        if tz:
            d.account_tz[str(acc)] = (_SOURCE_ORDER.get(str(src), 9), str(tz))
    for vin, tz in con.execute("SELECT vin, timezone FROM vehicles").fetchall():
        if tz:
            d.vin_tz[str(vin)] = str(tz)
    return d


def _load_consents(con: Any, accounts: Sequence[str] | None) -> ConsentGuard:
    sql = "SELECT account_id, purpose, channel, granted, ts FROM consents"
    params: list[Any] = []
    if accounts is not None:
        if not accounts:
            return ConsentGuard([])
        sql += f" WHERE account_id IN ({', '.join('?' for _ in accounts)})"
        params = list(accounts)
    rows = con.execute(sql, params).fetchall()
    return ConsentGuard(
        ConsentRecord(str(a), str(p), str(c), bool(g), _utc(t)) for a, p, c, g, t in rows
    )


# ----------------------------------------------------------------------------- candidates
@dataclass
class _Candidate:
    spec: StrategySpec
    entity: str
    person_id: str
    vin: str | None
    trigger_key: str
    arm: str
    fields: dict[str, Any]
    variant: int
    channels: list[str] = field(default_factory=list)


@dataclass
class _Run:
    """Guards and state of one evaluation (a batch or one event)."""

    at: datetime
    ledger: Ledger
    dedup: DedupGuard
    consent: ConsentGuard
    caps: CapGuard
    arbitration: ArbitrationGuard
    fatigue: FatigueGuard | None = None


class StrategyEngine:
    """Evaluate strategies, apply guards and log decisions (it never sends).

    Parameters
    ----------
    wh
        Warehouse (features, master data, identity, consents, subscriptions; the decision
        log ``strategy_decisions`` is created in it).
    catalogue
        Strategy catalogue (default: the built-in one).
    profiles
        Profile store with the tags (default: the warehouse's own).
    clock
        Current time (UTC); used for events without a time stamp and as the as-of time of
        the live profile.
    profile_ttl_s
        How long the live engine keeps a loaded profile snapshot before reading it again
        (consents, caps and duplicates are always read fresh for each event).
    offer_refresh_s
        How long the live engine uses a strategy's offer-arm posterior before reading the
        feedback again (:class:`autopersona.strategy.offers.LiveOfferArms`).
    """

    def __init__(
        self,
        wh: Warehouse,
        catalogue: StrategyCatalogue | None = None,
        *,
        profiles: ProfileStore | None = None,
        clock: Callable[[], datetime] | None = None,
        profile_ttl_s: float = 60.0,
        offer_refresh_s: float = 60.0,
    ) -> None:
        from autopersona.store.profiles import open_store

        self.wh = wh
        self.catalogue = catalogue or load_strategies()
        self.profiles = profiles if profiles is not None else open_store(warehouse=wh)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.profile_ttl_s = profile_ttl_s
        self.driving = DrivingSafetyGuard()
        self.arms = ExperimentArms()
        self._quiet = {
            c.id: QuietHoursGuard(c.quiet_hours.start, c.quiet_hours.end)
            for c in self.catalogue.channels.values()
            if c.quiet_hours is not None
        }
        self._live: tuple[float, dict[str, dict[str, Any]], dict[str, set[str]]] | None = None
        self._state: tuple[Ledger, DedupGuard] | None = None
        # open holds per VIN: the decision when this engine made it (the log may lag
        # behind with a journaled live engine), None when read from the log
        self._held: dict[str, dict[str, Decision | None]] | None = None
        self._fatigue_cache: tuple[float, FatigueGuard | None] | None = None
        self._dir: tuple[float, _Directory] | None = None
        from autopersona.strategy.offers import LiveOfferArms

        self.offers = LiveOfferArms(self.catalogue, refresh_s=offer_refresh_s)
        #: ``(k, n)`` when this engine serves live worker ``k`` of ``n`` partitions
        #: (:meth:`take_partition`): its daily totals are its share of the caps.
        self.partition: tuple[int, int] | None = None
        create_decision_table(wh.con)

    # ------------------------------------------------------------------ public API
    def log(self, decisions: list[Decision], con: Any = None) -> int:
        """Append ``decisions`` to ``strategy_decisions``; returns the rows written.

        Writes through ``con`` (default: the warehouse connection), inside the caller's
        transaction if one is open.
        """
        self._remember(decisions)
        return write_decisions(con if con is not None else self.wh.con, decisions, create=False)

    def invalidate(self) -> None:
        """Forget cached state: live profile snapshot, person directory, in-memory ledger.

        Call it after rolling back a transaction that held logged decisions, so the live
        engine does not count them as sent.
        """
        self._live = None
        self._dir = None
        self._state = None
        self._held = None
        self._fatigue_cache = None
        self.offers.invalidate()

    def take_partition(self, k: int, n: int) -> None:
        """Serve live worker ``k`` of ``n`` partitions, each owning whole persons.

        The live engine's ``partition`` calls it: the global and per-strategy caps per UTC
        day become this worker's share of them
        (:func:`~autopersona.strategy.guards.share_of`); the per-person caps stay whole.
        """
        if not 0 <= k < n:
            raise ValueError(f"partition {k}/{n}: need 0 <= k < n")
        self.partition = (k, n)

    def person_of(self, vin: str) -> str:
        """The person a vehicle belongs to (its identity links; the VIN itself if none).

        Read from the same person directory the decisions use (refreshed every
        ``profile_ttl_s``); the live engine partitions its workers by it.
        """
        return self._directory(self.wh.con).person_of("vin", vin)

    def run_batch(self, as_of: datetime, *, con: Any = None, log: bool = True) -> list[Decision]:
        """Evaluate schedule, calendar and metric-change triggers as of ``as_of``.

        Also expires held messages whose ``not_after`` has passed.  Returns every decision
        (and logs them unless ``log=False``).
        """
        c = con if con is not None else self.wh.con
        at = _utc(as_of)
        specs = [s for s in self.catalogue.enabled() if s.trigger.event is None]
        directory = self._directory(c, refresh=True)
        cands: list[_Candidate] = []
        for entity in ("vin", "customer_id"):
            group = [s for s in specs if s.entity == entity]
            if not group:
                continue
            env = self._env(entity, group, at, current=False)
            for s in group:
                cands.extend(self._batch_candidates(c, s, env, at, directory))
        out = self._expire_overdue(c, at)
        if cands:
            run = self._run(c, at, cands, persons=None)
            out.extend(self._decide(cands, run, directory))
        self._remember(out)
        if log:
            self.log(out, c)
        return out

    def on_event(
        self, event: dict[str, Any], *, con: Any = None, log: bool = True
    ) -> list[Decision]:
        """Evaluate one live vehicle event against the person's current profile.

        ``event`` holds ``vin``, ``type``, ``ts`` (ISO text or datetime; default: now),
        ``payload`` (dict) and optionally ``event_id`` (the trigger key; default: a hash of
        vin, type and ts).  ``payload["speed_mps"]``, when present, updates the vehicle's
        driving state.

        Raises
        ------
        EventError
            If the event or its payload is malformed for a strategy listening to its type.
        """
        res = self.on_events([event], con=con, log=log)[0]
        if isinstance(res, EventError):
            raise res
        return res

    def on_events(
        self, events: Sequence[Any], *, con: Any = None, log: bool = True
    ) -> list[list[Decision] | EventError]:
        """Evaluate a micro-batch of live events in order; one result per event.

        Each result is the event's decisions, or the :class:`EventError` that makes it
        malformed (the other events are still evaluated).  Consents are read once for the
        batch and all decisions are logged in one statement, so the per-event cost is mostly
        in memory; the outcome is the same as calling :meth:`on_event` for each in turn.
        """
        c = con if con is not None else self.wh.con
        results: list[list[Decision] | EventError] = []
        pending: list[tuple[int, datetime, list[_Candidate]]] = []
        directory: _Directory | None = None
        observed: list[tuple[int, str, float]] = []
        for ev in events:
            try:
                vin, etype, at, payload, event_id = self._parse_event(ev)
                speed = payload.get("speed_mps")
                if speed is not None and (
                    isinstance(speed, bool) or not isinstance(speed, int | float)
                ):
                    raise EventError("payload.speed_mps: expected a number")
                specs = [
                    s
                    for s in self.catalogue.enabled()
                    if s.trigger.event is not None and s.trigger.event.type == etype
                ]
                for s in specs:
                    self._check_payload(s, payload)
            except EventError as exc:
                results.append(exc)
                continue
            results.append([])
            if speed is not None:
                pending.append((len(results) - 1, at, []))
                observed.append((len(results) - 1, vin, float(speed)))
            if not specs:
                continue
            rows, audiences = self._live_env()
            base = rows.get(vin)
            if base is None:
                continue
            if directory is None:
                directory = self._directory(c)
            person = directory.person_of("vin", vin)
            cands: list[_Candidate] = []
            for s in specs:
                if vin not in audiences.get(s.id, ()):
                    continue
                trig = s.trigger.event
                assert trig is not None
                fields = dict(base)
                fields.update({k: payload.get(k) for k in trig.payload})
                if trig.condition:
                    cond = self.catalogue.parsed[s.id][("trigger", "event", "condition")]
                    if evaluate_one(cond, fields) is not True:
                        continue
                arm = self.arms.arm(s.id, s.experiment.salt, person, s.experiment.control_share)
                cands.append(
                    _Candidate(
                        s, vin, person, vin, event_id, arm, fields, self._variant_one(s, fields)
                    )
                )
            if cands:
                pending.append((len(results) - 1, at, cands))
        speeds = {i: (v, sp) for i, v, sp in observed}
        if not any(cands for _, _, cands in pending):
            for i in sorted(speeds):
                self.driving.observe(*speeds[i])
            return results
        assert directory is not None
        latest = max(at for _, at, cs in pending if cs)
        run = self._live_run(c, [x for _, _, cs in pending for x in cs], directory, latest)
        out: list[Decision] = []
        for i, at, cands in pending:
            if i in speeds:
                self.driving.observe(*speeds.pop(i))
            if not cands:
                continue
            run.at = at
            ds = self.offers.assign(c, self._decide(cands, run, directory))
            results[i] = ds
            out.extend(ds)
        self._remember(out)
        if log:
            self.log(out, c)
        return results

    def release_held(
        self, vin: str, speed_mps: float, now: datetime, *, con: Any = None, log: bool = True
    ) -> list[Decision]:
        """Release messages held for ``vin`` while it moved, now that its speed is known.

        A held message is sent when the speed is at or below its channel's limit (consent is
        checked again, quiet hours keep it held) and expires once ``not_after`` has passed.
        Returns the new ``send`` / ``expired`` / ``suppressed`` decisions.
        """
        c = con if con is not None else self.wh.con
        at = _utc(now)
        self.driving.observe(vin, speed_mps)
        self._held = self._held if self._held is not None else self._load_held(c)
        if not self._held.get(vin):
            return []  # nothing held for this vehicle: no query
        open_holds = self._held[vin]
        held = [d for d in open_holds.values() if d is not None]
        logged = {k for k, d in open_holds.items() if d is None}
        if logged:
            held += [
                d for d in self._open_holds(c, "l.vin = ?", [vin]) if d.idempotency_key in logged
            ]
        if not held:
            self._held.pop(vin, None)
            return []
        directory = self._directory(c)
        out: list[Decision] = []
        for d in held:
            ch = self.catalogue.channels.get(d.channel or "")
            if d.not_after is not None and at > d.not_after:
                out.append(self._follow(d, at, "expired", "driving_safety", "expired while held"))
                continue
            if ch is None:
                continue
            if ch.driving_safety and self.driving.moving(vin, ch.driving_safety.max_speed_mps):
                continue
            tz = directory.timezone(vin, directory.accounts("vin", vin, d.person_id))
            q = self._quiet.get(ch.id)
            if q is not None and q.is_quiet(at, tz):
                continue
            accounts = directory.accounts("vin", vin, d.person_id)
            spec = self.catalogue.strategies.get(d.strategy_id)
            purpose = spec.purpose if spec else "marketing"
            ok, why = _load_consents(c, accounts).check(accounts, purpose, ch.consent_channel, at)
            if not ok:
                out.append(self._follow(d, at, "suppressed", "consent", why))
                continue
            out.append(
                self._follow(d, at, "send", None, f"released: vehicle parked ({speed_mps:g} m/s)")
            )
        self._remember(out)  # at once, so an unlogged release is not repeated
        if log:
            self.log(out, c)
        return out

    def plan(self, as_of: datetime) -> list[dict[str, Any]]:
        """Audience of each enabled strategy on the profiles as of ``as_of``; nothing is sent.

        One row per strategy: ``audience`` (entities meeting the audience expression),
        ``persons`` (distinct persons among them), ``triggered`` (batch triggers firing at
        ``as_of``; None for live-event strategies), ``no_consent`` (persons no channel of
        the strategy may reach for its purpose) and ``by_channel`` (persons by the first
        consented channel).
        """
        c = self.wh.con
        at = _utc(as_of)
        directory = self._directory(c, refresh=True)
        consent = _load_consents(c, None)
        rows: list[dict[str, Any]] = []
        for entity in ("vin", "customer_id"):
            group = [s for s in self.catalogue.enabled() if s.entity == entity]
            if not group:
                continue
            env = self._env(entity, group, at, current=False)
            for s in group:
                member = self._audience(s, env)
                ents = [str(e) for e in env.index[member]] if len(env) else []
                persons = {e: directory.person_of(entity, e) for e in ents}
                by_channel: dict[str, int] = defaultdict(int)
                blocked = 0
                first_entity: dict[str, str] = {}
                for e, p in persons.items():
                    first_entity.setdefault(p, e)
                for p, e in sorted(first_entity.items()):
                    accounts = directory.accounts(entity, e, p)
                    first = None
                    row = {str(k): _py(v) for k, v in env.loc[e].items()}
                    for ch_id in self._channels_for(s, row):
                        ch = self.catalogue.channels[ch_id]
                        if ch.needs_vin and entity != "vin":
                            continue
                        if consent.check(accounts, s.purpose, ch.consent_channel, at)[0]:
                            first = ch_id
                            break
                    if first is None:
                        blocked += 1
                    else:
                        by_channel[first] += 1
                triggered = None
                if s.trigger.event is None:
                    cands = self._batch_candidates(c, s, env, at, directory)
                    triggered = sum(1 for x in cands if x.arm != "baseline")
                rows.append(
                    {
                        "strategy_id": s.id,
                        "entity": entity,
                        "trigger": s.trigger.kind,
                        "audience": len(ents),
                        "persons": len(set(persons.values())),
                        "triggered": triggered,
                        "no_consent": blocked,
                        "by_channel": dict(by_channel),
                    }
                )
        return rows

    # ------------------------------------------------------------------ events
    def _parse_event(self, event: Any) -> tuple[str, str, datetime, dict[str, Any], str]:
        if not isinstance(event, dict):
            raise EventError(f"an event must be an object, got {type(event).__name__}")
        vin = event.get("vin")
        if not isinstance(vin, str) or not vin.strip():
            raise EventError("vin: missing or not a string")
        etype = event.get("type")
        if not isinstance(etype, str) or not etype:
            raise EventError("type: missing or not a string")
        ts = event.get("ts")
        if ts is None:
            at = _utc(self.clock())
        elif isinstance(ts, datetime):
            at = _utc(ts)
        elif isinstance(ts, str):
            try:
                at = _utc(datetime.fromisoformat(ts.replace("Z", "+00:00")))
            except ValueError:
                raise EventError(f"ts: {ts!r} is not an ISO time") from None
        else:
            raise EventError("ts: expected ISO text or a datetime")
        payload = event.get("payload", {})
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise EventError("payload: expected an object")
        if len(payload) > MAX_PAYLOAD_FIELDS:
            raise EventError(f"payload: more than {MAX_PAYLOAD_FIELDS} fields")
        eid = event.get("event_id")
        if eid is None:
            eid = idempotency_key(vin, etype, at.isoformat())[:24]
        elif not isinstance(eid, str | int) or isinstance(eid, bool):
            raise EventError("event_id: expected a string")
        return vin, etype, at, payload, str(eid)

    @staticmethod
    def _check_payload(s: StrategySpec, payload: dict[str, Any]) -> None:
        ev = s.trigger.event
        assert ev is not None
        for k, kind in ev.payload.items():
            if k not in payload or payload[k] is None:
                raise EventError(f"payload.{k}: missing (strategy {s.id})")
            v = payload[k]
            ok = (
                (
                    kind == "num"
                    and isinstance(v, int | float)
                    and not isinstance(v, bool)
                    and math.isfinite(float(v))
                )
                or (kind == "str" and isinstance(v, str))
                or (kind == "bool" and isinstance(v, bool))
            )
            if not ok:
                raise EventError(f"payload.{k}: expected {kind}, got {type(v).__name__}")

    def _live_env(self) -> tuple[dict[str, dict[str, Any]], dict[str, set[str]]]:
        """Audience members of the live strategies with their profile values (cached)."""
        now = _time.monotonic()
        if self._live is not None and now - self._live[0] < self.profile_ttl_s:
            return self._live[1], self._live[2]
        specs = [s for s in self.catalogue.enabled() if s.trigger.event is not None]
        rows: dict[str, dict[str, Any]] = {}
        audiences: dict[str, set[str]] = {}
        if specs:
            env = self._env("vin", specs, _utc(self.clock()), current=True)
            audiences = {s.id: {str(v) for v in env.index[self._audience(s, env)]} for s in specs}
            members = sorted(set().union(*audiences.values()))
            for vin, rec in env.loc[members].to_dict("index").items():
                rows[str(vin)] = {str(k): _py(v) for k, v in rec.items()}
        self._live = (now, rows, audiences)
        return rows, audiences

    def _channels_for(self, s: StrategySpec, fields: dict[str, Any]) -> list[str]:
        """The strategy's channel order for one person: the first matching rule, else default."""
        for i, r in enumerate(s.channel_rules):
            e = self.catalogue.parsed[s.id][("channel_rules", i, "when")]
            if evaluate_one(e, fields) is True:
                return list(r.channels)
        return list(s.channels)

    def _variant_one(self, s: StrategySpec, fields: dict[str, Any]) -> int:
        for i, v in enumerate(s.content.variants):
            if v.when is None:
                return i
            e = self.catalogue.parsed[s.id][("content", "variants", i, "when")]
            if evaluate_one(e, fields) is True:
                return i
        return -1

    def _live_run(
        self, con: Any, cands: list[_Candidate], directory: _Directory, at: datetime
    ) -> _Run:
        """Guards of live events: the in-memory ledger and keys, consents read fresh."""
        if self._state is None:
            lookback = max(
                [2.0, self.catalogue.policy.arbitration_window_hours / 24 + 1]
                + [s.caps.per_person.days for s in self.catalogue.enabled() if s.caps.per_person]
            )
            since = _utc(self.clock()) - timedelta(days=lookback + 1)
            self._state = self._load_state(con, since)
            if self._held is None:  # from the same complete log, before new decisions
                self._held = self._load_held(con)
        ledger, keys = self._state
        accounts = sorted(
            {a for c in cands for a in directory.accounts(c.spec.entity, c.entity, c.person_id)}
        )
        policy = self.catalogue.policy
        return _Run(
            at=_utc(self.clock()),
            ledger=ledger,
            dedup=keys,
            consent=_load_consents(con, accounts),
            caps=CapGuard(
                ledger,
                person_day=policy.cap_person_day,
                global_day=policy.cap_global_day,
                share=self.partition,
            ),
            arbitration=ArbitrationGuard(ledger, policy.arbitration_window_hours),
            fatigue=self._live_fatigue(con, at),
        )

    def _live_fatigue(self, con: Any, at: datetime) -> FatigueGuard | None:
        """Fatigue counts as of ``at`` for the live engine, re-read every ``profile_ttl_s``."""
        now = _time.monotonic()
        if self._fatigue_cache is None or now - self._fatigue_cache[0] >= self.profile_ttl_s:
            self._fatigue_cache = (now, self._fatigue(con, at, None))
        return self._fatigue_cache[1]

    @staticmethod
    def _load_held(con: Any) -> dict[str, dict[str, Decision | None]]:
        held: dict[str, dict[str, Decision | None]] = defaultdict(dict)
        for v, k in con.execute(
            f"SELECT l.vin, l.idempotency_key FROM {DECISIONS_TABLE} l WHERE {_OPEN_HOLD}"
        ).fetchall():
            held[str(v)][str(k)] = None
        return held

    @staticmethod
    def _load_state(con: Any, since: datetime) -> tuple[Ledger, DedupGuard]:
        ledger = Ledger()
        for k, p, sid, ch, t, prio in con.execute(
            f"SELECT idempotency_key, person_id, strategy_id, channel, created_at, priority "
            f"FROM {DECISIONS_TABLE} WHERE status IN ('send', 'held') AND created_at >= ? "
            "ORDER BY created_at",
            [since],
        ).fetchall():
            ledger.add(LedgerEntry(str(k), str(p), str(sid), ch, _utc(t), int(prio)))
        keys = DedupGuard(
            str(r[0])
            for r in con.execute(
                f"SELECT DISTINCT idempotency_key FROM {DECISIONS_TABLE} WHERE created_at >= ? "
                "AND (status IN ('send', 'held', 'expired') OR guard = 'holdout')",
                [since],
            ).fetchall()
        )
        return ledger, keys

    def _remember(self, decisions: Iterable[Decision]) -> None:
        """Keep the live engine's in-memory ledger, keys and holds in step with the log."""
        decisions = list(decisions)
        if self._held is not None:
            for d in decisions:
                if d.vin is None:
                    continue
                if d.status == "held":
                    self._held[d.vin][d.idempotency_key] = d
                elif d.idempotency_key in self._held.get(d.vin, ()):
                    self._held[d.vin].pop(d.idempotency_key, None)
        if self._state is None:
            return
        ledger, keys = self._state
        for d in decisions:
            if d.status in ("send", "held"):
                ledger.add(
                    LedgerEntry(
                        d.idempotency_key,
                        d.person_id,
                        d.strategy_id,
                        d.channel,
                        d.created_at,
                        d.priority,
                    )
                )
            if d.status in ("send", "held", "expired") or d.guard == "holdout":
                keys.add(d.idempotency_key)

    # ------------------------------------------------------------------ profile data
    def _names(self, specs: Iterable[StrategySpec], entity: str) -> tuple[set[str], set[str]]:
        from autopersona.tags.spec import known_names

        known = known_names(entity)
        names: set[str] = set()
        prevs: set[str] = set()
        for s in specs:
            payload = set(s.trigger.event.payload) if s.trigger.event else set()
            for e in self.catalogue.parsed.get(s.id, {}).values():
                names |= e.names() - payload
                prevs |= e.prev_names()
            ctx = context_names(s)
            for _, text in s.templates():
                names |= {i for i in string.Template(text).get_identifiers() if i not in ctx}
            if s.trigger.metric:
                e = self.catalogue.parsed[s.id][("trigger", "metric", "condition")]
                for n in e.names():
                    t = known.get(n, "")
                    if t.startswith("features_"):
                        names.add(f"{t.removeprefix('features_')}_age_days")
        return names, prevs

    def _env(
        self, entity: str, specs: list[StrategySpec], at: datetime, *, current: bool
    ) -> pd.DataFrame:
        """One row per entity: features, master data and tags the strategies read."""
        from autopersona.tags.rules import load_inputs
        from autopersona.tags.spec import known_names

        names, prevs = self._names(specs, entity)
        known = known_names(entity)
        plain = {n for n in names if n in known}
        tag_ids = sorted(names - plain)
        env = load_inputs(self.wh, entity, plain, prevs & set(known), at)
        tags = self._tags(entity, tag_ids, None if current else at)
        if len(tags):
            idx = env.index.union(tags.index)
            env = env.reindex(idx).join(tags, how="left")
        for t in tag_ids:
            if t not in env:
                env[t] = pd.Series([None] * len(env), index=env.index, dtype=object)
        env.index = env.index.astype(str)
        env.index.name = "entity"
        return env

    def _tags(self, entity: str, tag_ids: list[str], as_of: datetime | None) -> pd.DataFrame:
        if not tag_ids:
            return pd.DataFrame()
        st = self.profiles
        marks = ", ".join("?" for _ in tag_ids)
        sql = (
            "SELECT entity, tag_id, value FROM {s}.tag_assignments "
            f"WHERE entity_type = ? AND tag_id IN ({marks}) AND "
        )
        params: list[Any] = [entity, *tag_ids]
        if as_of is None:
            sql += "valid_to IS NULL"
        else:
            sql += "valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)"
            params += [as_of, as_of]
        df = st._query(st._sql(sql), params)
        if df.empty:
            return pd.DataFrame()
        wide = df.pivot_table(index="entity", columns="tag_id", values="value", aggfunc="first")
        wide.columns.name = None
        wide.index = wide.index.astype(str)
        return wide.astype(object).where(wide.notna(), None)

    def _audience(self, s: StrategySpec, env: pd.DataFrame) -> np.ndarray[Any, Any]:
        if env.empty:
            return np.zeros(0, dtype=bool)
        res = self.catalogue.parsed[s.id][("audience",)].evaluate(env)
        out: np.ndarray[Any, Any] = res.fillna(False).to_numpy(dtype=bool)
        return out

    def _variant(self, s: StrategySpec, env: pd.DataFrame) -> np.ndarray[Any, Any]:
        """Index of the first content variant whose ``when`` holds, per row (-1: none)."""
        out = np.full(len(env), -1)
        for i, v in enumerate(s.content.variants):
            if v.when is None:
                hit = np.ones(len(env), dtype=bool)
            else:
                e = self.catalogue.parsed[s.id][("content", "variants", i, "when")]
                hit = e.evaluate(env).fillna(False).to_numpy(dtype=bool)
            out[(out < 0) & hit] = i
        return out

    # ------------------------------------------------------------------ batch triggers
    def _batch_candidates(
        self, con: Any, s: StrategySpec, env: pd.DataFrame, at: datetime, directory: _Directory
    ) -> list[_Candidate]:
        if env.empty:
            return []
        member = self._audience(s, env)
        keys: dict[str, str] = {}
        extra: dict[str, dict[str, Any]] = {}
        ents = env.index.to_numpy()
        trig = s.trigger
        if trig.schedule:
            key = _period_start(at, trig.schedule.every).isoformat()
            keys = {str(e): key for e in ents[member]}
        elif trig.calendar:
            dates = self._calendar_dates(con, s, at)
            for e in ents[member]:
                d = dates.get(str(e))
                if d is not None:
                    keys[str(e)] = d.isoformat()
                    extra[str(e)] = {
                        "trigger_date": d.isoformat(),
                        "days_to_trigger_date": (d - at.date()).days,
                    }
        elif trig.metric:
            cond = self.catalogue.parsed[s.id][("trigger", "metric", "condition")]
            fire = cond.evaluate(env).fillna(False).to_numpy(dtype=bool) & member
            ages = [c for c in env.columns if c.endswith("_age_days")]
            age = (
                env[ages].apply(pd.to_numeric, errors="coerce").max(axis=1).to_numpy(dtype=float)
                if ages
                else np.zeros(len(env))
            )
            fresh = ~np.isnan(age) & (age <= trig.metric.max_age_days)
            for e, a in zip(ents[fire & fresh], age[fire & fresh], strict=True):
                end = (at - timedelta(days=float(a))).date()
                keys[str(e)] = end.isoformat()
                extra[str(e)] = {"trigger_date": end.isoformat()}
        variants = self._variant(s, env)
        pos = {str(e): i for i, e in enumerate(ents)}
        out: list[_Candidate] = []
        for e, key in sorted(keys.items()):
            person = directory.person_of(s.entity, e)
            vin = e if s.entity == "vin" else None
            arm = self.arms.arm(s.id, s.experiment.salt, person, s.experiment.control_share)
            fields = {str(k): _py(v) for k, v in env.iloc[pos[e]].items()}
            fields.update(extra.get(e, {}))
            out.append(_Candidate(s, e, person, vin, key, arm, fields, int(variants[pos[e]])))
        share = s.experiment.baseline_share
        if share > 0 and out:
            m = round(len(out) * share)
            week = _period_start(at, "week").isoformat()
            others = [str(e) for e in ents[~member]]
            others.sort(
                key=lambda e: self.arms.uniform("baseline", s.id, s.experiment.salt, e, week)
            )
            for e in others[:m]:
                person = directory.person_of(s.entity, e)
                fields = {str(k): _py(v) for k, v in env.iloc[pos[e]].items()}
                out.append(
                    _Candidate(
                        s,
                        e,
                        person,
                        e if s.entity == "vin" else None,
                        f"baseline:{week}",
                        "baseline",
                        fields,
                        int(variants[pos[e]]),
                    )
                )
        return out

    def _calendar_dates(self, con: Any, s: StrategySpec, at: datetime) -> dict[str, date]:
        cal = s.trigger.calendar
        assert cal is not None
        key = "vin" if s.entity == "vin" else "account_id"
        where = [f'"{key}" IS NOT NULL', f'"{cal.column}" IS NOT NULL']
        params: list[Any] = []
        for k, v in sorted(cal.where.items()):
            where.append(f'"{k}" = ?')
            params.append(v)
        rows = con.execute(
            f'SELECT "{key}", "{cal.column}" FROM "{cal.table}" WHERE {" AND ".join(where)}',
            params,
        ).fetchall()
        out: dict[str, date] = {}
        for e, d in rows:
            t = _utc(d)
            if t + timedelta(days=cal.from_days) <= at <= t + timedelta(days=cal.to_days):
                day = t.date()
                if str(e) not in out or day > out[str(e)]:
                    out[str(e)] = day
        return out

    # ------------------------------------------------------------------ guards
    def _directory(self, con: Any, *, refresh: bool = False) -> _Directory:
        now = _time.monotonic()
        if not refresh and self._dir is not None and now - self._dir[0] < self.profile_ttl_s:
            return self._dir[1]
        d = _load_directory(con, self.catalogue.policy.default_timezone)
        self._dir = (now, d)
        return d

    def _run(
        self, con: Any, at: datetime, cands: list[_Candidate], persons: list[str] | None
    ) -> _Run:
        policy = self.catalogue.policy
        lookback = max(
            [2.0, policy.arbitration_window_hours / 24 + 1]
            + [c.spec.caps.per_person.days for c in cands if c.spec.caps.per_person]
        )
        since = at - timedelta(days=lookback)
        ledger = Ledger()
        sql = (
            f"SELECT idempotency_key, person_id, strategy_id, channel, created_at, priority "
            f"FROM {DECISIONS_TABLE} WHERE status IN ('send', 'held') AND created_at >= ?"
        )
        params: list[Any] = [since]
        if persons is not None:
            sql += f" AND person_id IN ({', '.join('?' for _ in persons)})"
            params += persons
        for k, p, sid, ch, t, prio in con.execute(sql + " ORDER BY created_at", params).fetchall():
            ledger.add(LedgerEntry(str(k), str(p), str(sid), ch, _utc(t), int(prio)))
        if persons is not None:  # day totals over everybody
            ledger.strategy_day.clear()
            ledger.global_day.clear()
            day0 = datetime(at.year, at.month, at.day, tzinfo=UTC)
            for sid, d, n in con.execute(
                f"SELECT strategy_id, CAST(created_at AS DATE), count(DISTINCT idempotency_key) "
                f"FROM {DECISIONS_TABLE} WHERE status IN ('send', 'held') AND created_at >= ? "
                "AND created_at < ? GROUP BY 1, 2",
                [day0, day0 + timedelta(days=1)],
            ).fetchall():
                ledger.strategy_day[(str(sid), d)] += int(n)
                ledger.global_day[d] += int(n)
        keys = sorted({idempotency_key(c.spec.id, c.person_id, c.trigger_key) for c in cands})
        seen: set[str] = set()
        if keys:
            frame = pd.DataFrame({"k": keys})
            con.register("_strategy_keys", frame)
            try:
                seen = {
                    str(r[0])
                    for r in con.execute(
                        f"SELECT DISTINCT d.idempotency_key FROM {DECISIONS_TABLE} d "
                        "JOIN _strategy_keys k ON d.idempotency_key = k.k "
                        "WHERE d.status IN ('send', 'held', 'expired') OR d.guard = 'holdout'"
                    ).fetchall()
                }
            finally:
                con.unregister("_strategy_keys")
        directory = self._dir[1] if self._dir else _Directory()
        accounts: list[str] | None = None
        if persons is not None:
            accounts = sorted(
                {a for c in cands for a in directory.accounts(c.spec.entity, c.entity, c.person_id)}
            )
        return _Run(
            at=at,
            ledger=ledger,
            dedup=DedupGuard(seen),
            consent=_load_consents(con, accounts),
            caps=CapGuard(
                ledger,
                person_day=policy.cap_person_day,
                global_day=policy.cap_global_day,
                share=self.partition,
            ),
            arbitration=ArbitrationGuard(ledger, policy.arbitration_window_hours),
            fatigue=self._fatigue(con, at, persons),
        )

    def _fatigue(self, con: Any, at: datetime, persons: list[str] | None) -> FatigueGuard | None:
        """Unanswered sends per person from ``marketing_feedback`` (None when off)."""
        f = self.catalogue.policy.fatigue
        if f is None:
            return None
        sql = (
            "SELECT person_id, count(*) FILTER (WHERE event_type = 'sent' AND ts > coalesce("
            "r, TIMESTAMPTZ '1970-01-01')) FROM (SELECT person_id, event_type, ts, max(ts) "
            "FILTER (WHERE event_type IN ('visited', 'clicked', 'voice_reply', 'converted', 'redeemed')) "
            "OVER (PARTITION BY person_id) AS r FROM marketing_feedback WHERE ts >= ? AND ts <= ?"
        )
        params: list[Any] = [at - timedelta(days=f.days), at]
        if persons is not None:
            sql += f" AND person_id IN ({', '.join('?' for _ in persons)})"
            params += persons
        rows = con.execute(sql + ") GROUP BY person_id", params).fetchall()
        return FatigueGuard(
            {str(p): int(n) for p, n in rows if n},
            max_unanswered=f.max_unanswered,
            days=f.days,
        )

    def _decide(self, cands: list[_Candidate], run: _Run, directory: _Directory) -> list[Decision]:
        channels = self.catalogue.channels
        at = run.at

        def ev(c: _Candidate, ch: str | None) -> float:
            w = channels[ch].response_weight if ch in channels else 1.0
            return round(c.spec.value_cny * c.spec.response_rate * w, 4)

        for c in cands:
            if not c.channels:
                c.channels = self._channels_for(c.spec, c.fields)
        order = sorted(
            cands,
            key=lambda c: (
                -c.spec.priority,
                -ev(c, c.channels[0]),
                c.arm == "baseline",
                c.spec.id,
                c.person_id,
                c.trigger_key,
            ),
        )
        out: list[Decision] = []
        for c in order:
            s = c.spec
            key = idempotency_key(s.id, c.person_id, c.trigger_key)
            accounts = directory.accounts(s.entity, c.entity, c.person_id)
            tz = directory.timezone(c.vin, accounts)
            fields = dict(c.fields)
            fields.update(
                person_id=c.person_id,
                vin=c.vin,
                strategy_id=s.id,
                trigger_key=c.trigger_key,
                local_date=local_date(at, tz).isoformat(),
            )
            fields.update({f"offer_{k}": v for k, v in s.offer.items()})
            variant = s.content.variants[max(c.variant, 0)]

            def make(
                status: str,
                guard: str | None,
                reason: str,
                channel: str | None,
                not_after: datetime | None = None,
                *,
                c: _Candidate = c,
                key: str = key,
                fields: dict[str, Any] = fields,
                variant: Any = variant,
            ) -> Decision:
                return Decision(
                    decision_id=new_decision_id(self.partition),
                    idempotency_key=key,
                    person_id=c.person_id,
                    vin=c.vin,
                    strategy_id=c.spec.id,
                    trigger=c.spec.trigger.decision_kind,
                    trigger_key=c.trigger_key,
                    channel=channel,
                    status=status,
                    guard=guard,
                    reason=reason,
                    arm=c.arm,
                    priority=c.spec.priority,
                    expected_value=ev(c, channel or c.channels[0]),
                    title=render(variant.title, fields, c.spec.content.defaults),
                    body=render(variant.body, fields, c.spec.content.defaults),
                    offer=dict(c.spec.offer),
                    created_at=at,
                    not_after=not_after,
                )

            if run.dedup.seen(key):
                out.append(
                    make("suppressed", "duplicate", "already decided for this trigger", None)
                )
                continue
            consented: list[ChannelSpec] = []
            refusals: list[str] = []
            for ch_id in c.channels:
                ch = channels[ch_id]
                if ch.needs_vin and not c.vin:
                    refusals.append(f"{ch_id}: no vehicle")
                    continue
                ok, why = run.consent.check(accounts, s.purpose, ch.consent_channel, at)
                if ok:
                    consented.append(ch)
                else:
                    refusals.append(f"{ch_id}: {why}")
            if not consented:
                out.append(make("suppressed", "consent", "; ".join(refusals), None))
                continue
            if c.arm == "control":
                run.dedup.add(key)
                out.append(
                    make(
                        "suppressed",
                        "holdout",
                        f"control arm ({s.experiment.control_share:.0%} held out)",
                        consented[0].id,
                    )
                )
                continue
            why_cap: tuple[str, str] | None = None
            r = run.fatigue.blocked(c.person_id) if run.fatigue is not None else None
            if r:
                out.append(make("suppressed", "fatigue", r, None))
                continue
            r = run.caps.person_day(c.person_id, tz, at)
            if r:
                why_cap = ("cap_person_day", r)
            if why_cap is None:
                pp = s.caps.per_person
                r = run.caps.strategy(
                    s.id, c.person_id, at, (pp.count, pp.days) if pp else None, s.caps.per_day
                )
                if r:
                    why_cap = ("cap_strategy", r)
            if why_cap is None:
                r = run.caps.global_cap(at)
                if r:
                    why_cap = ("cap_global", r)
            if why_cap is None:
                r = run.arbitration.blocked(c.person_id, at)
                if r:
                    why_cap = ("arbitration", r)
            if why_cap is not None:
                out.append(make("suppressed", why_cap[0], str(why_cap[1]), None))
                continue
            chosen: ChannelSpec | None = None
            fails: list[tuple[str, str]] = []
            for ch in consented:
                q = self._quiet.get(ch.id)
                if q is not None and q.is_quiet(at, tz):
                    loc = at.astimezone(zone(tz))
                    fails.append(
                        (
                            "quiet_hours",
                            f"{ch.id}: quiet hours {q.label} ({zone(tz).key} {loc:%H:%M}, "
                            f"until {q.ends(at, tz).isoformat()})",
                        )
                    )
                    continue
                r = run.caps.channel_day(c.person_id, ch.id, ch.cap_person_day, tz, at)
                if r:
                    fails.append(("cap_channel_day", f"{ch.id}: {r}"))
                    continue
                chosen = ch
                break
            if chosen is None:
                out.append(make("suppressed", fails[0][0], "; ".join(f for _, f in fails), None))
                continue
            entry = LedgerEntry(key, c.person_id, s.id, chosen.id, at, s.priority)
            run.ledger.add(entry)
            run.dedup.add(key)
            ds = chosen.driving_safety
            if ds is not None and self.driving.moving(c.vin, ds.max_speed_mps):
                speed = self.driving.speed.get(c.vin or "", 0.0)
                out.append(
                    make(
                        "held",
                        "driving_safety",
                        f"{chosen.id}: vehicle moving at {speed:g} m/s "
                        f"(> {ds.max_speed_mps:g}); held until parked",
                        chosen.id,
                        at + timedelta(hours=ds.hold_hours),
                    )
                )
                continue
            note = f"{s.name} via {chosen.id}" + (
                f" (fallback: {'; '.join(f for _, f in fails)})" if fails else ""
            )
            out.append(make("send", None, note, chosen.id))
        return out

    # ------------------------------------------------------------------ holds
    def _open_holds(self, con: Any, where: str, params: list[Any]) -> list[Decision]:
        create_decision_table(con)
        ids = [
            str(r[0])
            for r in con.execute(
                f"SELECT l.decision_id FROM {DECISIONS_TABLE} l WHERE {_OPEN_HOLD} AND {where}",
                params,
            ).fetchall()
        ]
        if not ids:
            return []
        return read_decisions(con, f"decision_id IN ({', '.join('?' for _ in ids)})", ids)

    def _expire_overdue(self, con: Any, at: datetime) -> list[Decision]:
        return [
            self._follow(d, at, "expired", "driving_safety", "expired while held")
            for d in self._open_holds(con, "l.not_after < ?", [at])
        ]

    def _follow(
        self, d: Decision, at: datetime, status: str, guard: str | None, reason: str
    ) -> Decision:
        from dataclasses import replace

        return replace(
            d,
            decision_id=new_decision_id(self.partition),
            status=status,
            guard=guard,
            reason=reason,
            created_at=at,
            not_after=d.not_after,
        )


def _period_start(at: datetime, every: str) -> date:
    d = _utc(at).date()
    if every == "week":
        return d - timedelta(days=d.weekday())
    if every == "month":
        return d.replace(day=1)
    return d


def summarise(
    decisions: Iterable[Decision], strategies: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Counts per strategy: sends, held, expired, suppressed and suppressions per guard.

    ``strategies`` are listed even without decisions (with zeros).

    >>> [r["send"] for r in summarise([], ["s1"])]
    [0]
    """
    by: dict[str, dict[str, Any]] = {}
    for sid in strategies:
        by[sid] = {
            "strategy_id": sid,
            "send": 0,
            "held": 0,
            "expired": 0,
            "suppressed": 0,
            "by_guard": defaultdict(int),
            "by_channel": defaultdict(int),
            "by_arm": defaultdict(int),
        }
    for d in decisions:
        r = by.setdefault(
            d.strategy_id,
            {
                "strategy_id": d.strategy_id,
                "send": 0,
                "held": 0,
                "expired": 0,
                "suppressed": 0,
                "by_guard": defaultdict(int),
                "by_channel": defaultdict(int),
                "by_arm": defaultdict(int),
            },
        )
        r[d.status] += 1
        if d.guard:
            r["by_guard"][d.guard] += 1
        if d.status == "send" and d.channel:
            r["by_channel"][d.channel] += 1
        r["by_arm"][d.arm] += 1
    out = []
    for sid in sorted(by):
        r = by[sid]
        for k in ("by_guard", "by_channel", "by_arm"):
            r[k] = dict(sorted(r[k].items()))
        out.append(r)
    return out
