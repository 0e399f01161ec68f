r"""From decisions to outbox rows, and from outbox rows to channels.

:func:`messages_for` turns the strategy engine's ``send`` decisions into outbox messages
(address resolved per channel: the vehicle's head-unit topic, the person id for app push, the
phone or e-mail address on file for SMS and e-mail).  :class:`Dispatcher` claims due messages,
sends them through the channel adapters and records each attempt; :func:`deliver_pending` does
that until nothing is due — the entry point a batch job or the demo calls.

Examples
--------
>>> import io, contextlib
>>> from autopersona.delivery.outbox import open_outbox
>>> ob = open_outbox(":memory:")
>>> _ = ob.enqueue([OutboxMessage("k1", "d1", "email", "ann@example.org", {"title": "Hi"})])
>>> out = io.StringIO()
>>> with contextlib.redirect_stdout(out):
...     report = deliver_pending(ob, file_sink_config("-"))
>>> report.sent, '"idempotency_key": "k1"' in out.getvalue()
(1, True)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from autopersona.delivery.channels import Channel, build_channels, headunit_topic
from autopersona.delivery.config import ChannelsConfig, FileSpec, MqttSpec, load_channels_config
from autopersona.delivery.outbox import Outbox, OutboxMessage, SendResult

__all__ = [
    "AddressResolverLike",
    "Contacts",
    "DecisionLike",
    "DispatchReport",
    "Dispatcher",
    "WarehouseContacts",
    "deliver_pending",
    "file_sink_config",
    "message_for",
    "messages_for",
]


class DecisionLike(Protocol):
    """The fields of :class:`autopersona.strategy.Decision` that delivery reads."""

    @property
    def decision_id(self) -> str: ...  # noqa: D102
    @property
    def idempotency_key(self) -> str: ...  # noqa: D102
    @property
    def person_id(self) -> str: ...  # noqa: D102
    @property
    def vin(self) -> str | None: ...  # noqa: D102
    @property
    def strategy_id(self) -> str: ...  # noqa: D102
    @property
    def trigger(self) -> str: ...  # noqa: D102
    @property
    def trigger_key(self) -> str: ...  # noqa: D102
    @property
    def channel(self) -> str | None: ...  # noqa: D102
    @property
    def status(self) -> str: ...  # noqa: D102
    @property
    def arm(self) -> str: ...  # noqa: D102
    @property
    def title(self) -> str: ...  # noqa: D102
    @property
    def body(self) -> str: ...  # noqa: D102
    @property
    def offer(self) -> dict[str, Any]: ...  # noqa: D102
    @property
    def created_at(self) -> datetime: ...  # noqa: D102
    @property
    def not_after(self) -> datetime | None: ...  # noqa: D102


class AddressResolverLike(Protocol):
    """Clear address of a pseudonymous one (see :class:`~autopersona.privacy.pseudo.AddressResolver`)."""

    def resolve(self, channel: str, address: str) -> str | None:
        """The clear address, or None when it cannot be re-identified."""
        ...

    # Optional: ``resolve_many(channel, addresses) -> list[str | None]``, the same for a
    # whole send round (one audited vault transaction); the dispatcher uses it when present.


class Contacts(Protocol):
    """Where to reach a person on the address-based channels."""

    def phone(self, person_id: str) -> str | None:
        """A phone number, or None."""
        ...

    def email(self, person_id: str) -> str | None:
        """An e-mail address, or None."""
        ...


class WarehouseContacts:
    """Phone and e-mail from the warehouse.

    The person's linked accounts (``identity_links`` joined to ``accounts``), most recently
    created account first.  Missing tables mean no address (the message is then
    dead-lettered with that reason, not dropped).
    """

    def __init__(self, con: Any) -> None:
        self.con = con
        self._cache: dict[tuple[str, str], str | None] = {}

    def _lookup(self, person_id: str, column: str) -> str | None:
        key = (person_id, column)
        if key not in self._cache:
            try:
                rows = self.con.execute(
                    f"""SELECT a.{column} FROM identity_links l JOIN accounts a USING (account_id)
                        WHERE l.person_id = ? AND a.{column} IS NOT NULL AND a.{column} <> ''
                        ORDER BY a.created_at DESC NULLS LAST, a.account_id LIMIT 1""",
                    [person_id],
                ).fetchall()
                row = rows[0] if rows else None
            except Exception:  # table absent (no identity linkage yet): no address
                row = None
            self._cache[key] = str(row[0]) if row else None
        return self._cache[key]

    def phone(self, person_id: str) -> str | None:
        """Phone of a linked account."""
        return self._lookup(person_id, "phone")

    def email(self, person_id: str) -> str | None:
        """E-mail of a linked account."""
        return self._lookup(person_id, "email")


def message_for(
    d: DecisionLike, config: ChannelsConfig, contacts: Contacts | None = None
) -> OutboxMessage | None:
    """The outbox message of a ``send`` decision (None for suppressed, held, expired ones).

    An address that cannot be resolved is left empty; the dispatcher dead-letters such a
    message with the reason instead of dropping it.
    """
    if d.status != "send" or not d.channel:
        return None
    address = ""
    spec = config.channels.get(d.channel)
    if d.channel == "head_unit" or isinstance(spec, MqttSpec):
        if d.vin:
            hu = spec if isinstance(spec, MqttSpec) else MqttSpec(kind="mqtt")
            address = headunit_topic(hu, config.mqtt, d.vin)
    elif d.channel == "app_push":
        address = d.person_id
    elif d.channel == "sms" and contacts is not None:
        address = contacts.phone(d.person_id) or ""
    elif d.channel == "email" and contacts is not None:
        address = contacts.email(d.person_id) or ""
    payload = {
        "decision_id": d.decision_id,
        "person_id": d.person_id,
        "vin": d.vin,
        "strategy_id": d.strategy_id,
        "trigger": d.trigger,
        "trigger_key": d.trigger_key,
        "arm": d.arm,
        "title": d.title,
        "body": d.body,
        "offer": d.offer,
        "created_at": d.created_at.isoformat(),
        "not_after": d.not_after.isoformat() if d.not_after else None,
    }
    return OutboxMessage(
        idempotency_key=d.idempotency_key,
        decision_id=d.decision_id,
        channel=d.channel,
        address=address,
        payload=payload,
        not_after=d.not_after,
    )


def messages_for(
    decisions: Iterable[DecisionLike], config: ChannelsConfig, contacts: Contacts | None = None
) -> list[OutboxMessage]:
    """Outbox messages of every ``send`` decision, one per idempotency key.

    Decisions with the same key (same strategy, person and trigger, e.g. two events of one
    batch that trigger the same message) are one message: the first decision's.
    """
    out = []
    keys: set[str] = set()
    for d in decisions:
        m = message_for(d, config, contacts)
        if m is not None and m.idempotency_key not in keys:
            keys.add(m.idempotency_key)
            out.append(m)
    return out


@dataclass
class DispatchReport:
    """Attempts made: sent, to be retried, dead-lettered (by channel)."""

    sent: int = 0
    retried: int = 0
    dead: int = 0
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, channel: str, r: SendResult, final_dead: bool) -> None:
        """Count one attempt."""
        kind = "sent" if r.ok else ("dead" if final_dead else "retried")
        setattr(self, kind, getattr(self, kind) + 1)
        ch = self.by_channel.setdefault(channel, {"sent": 0, "retried": 0, "dead": 0})
        ch[kind] += 1

    def merge(self, other: DispatchReport) -> None:
        """Add another report's counts."""
        self.sent += other.sent
        self.retried += other.retried
        self.dead += other.dead
        for ch, counts in other.by_channel.items():
            mine = self.by_channel.setdefault(ch, {"sent": 0, "retried": 0, "dead": 0})
            for k, v in counts.items():
                mine[k] += v


class Dispatcher:
    """Claims due outbox messages, sends them per channel, records every attempt.

    Parameters
    ----------
    outbox
        The outbox (use one per thread: :meth:`Outbox.clone`).
    channels
        Adapter per channel name.
    owner
        Lease owner name of this dispatcher (unique per worker).
    clock
        Returns the current UTC time (tests pass a fixed clock).
    resolver
        Re-identification of pseudonymous addresses at send time
        (:class:`autopersona.privacy.pseudo.AddressResolver`: one audited vault read per
        message, all those of a send round in one vault transaction) for the channels that
        need a clear address (``clear_address``: head unit, SMS, e-mail).  The outbox keeps
        the pseudonymous address; only the adapter sees the clear one.  ``None``: addresses
        are sent as they are.
    """

    def __init__(
        self,
        outbox: Outbox,
        channels: dict[str, Channel],
        *,
        owner: str = "dispatcher",
        clock: Callable[[], datetime] | None = None,
        resolver: AddressResolverLike | None = None,
    ) -> None:
        self.outbox = outbox
        self.channels = channels
        self.owner = owner
        self.clock = clock or (lambda: datetime.now(UTC))
        self.resolver = resolver

    def _clear(self, m: OutboxMessage) -> OutboxMessage | None:
        """``m`` with the clear address its channel needs (None: no mapping in the vault)."""
        if self.resolver is None or not getattr(self.channels[m.channel], "clear_address", False):
            return m
        address = self.resolver.resolve(m.channel, m.address)
        if address is None:
            return None
        return m if address == m.address else replace(m, address=address)

    def dispatch(self, messages: Sequence[OutboxMessage]) -> DispatchReport:
        """Send claimed messages and record the outcome of each."""
        return self.record(self.send(messages))

    def send_async(
        self,
        messages: Sequence[OutboxMessage],
        done: Callable[[list[tuple[OutboxMessage, SendResult]]], None],
    ) -> None:
        """:meth:`send` without waiting for channels that confirm asynchronously.

        ``done`` gets the results in parts: those known at once (expired, unroutable,
        unaddressed, and every synchronous channel's) before this returns, and each
        asynchronous channel's (``send_batch_async``: the head unit at QoS 1) when they come
        in, possibly from another thread.
        """
        if not messages:
            return
        groups, early = self._route(messages)
        for name, group in groups.items():
            channel = self.channels[name]
            originals = [m for m, _ in group]
            clear = [c for _, c in group]
            if callable(getattr(channel, "send_batch_async", None)):

                def finished(
                    results: list[SendResult], originals: list[OutboxMessage] = originals
                ) -> None:
                    done(list(zip(originals, results, strict=True)))

                channel.send_batch_async(clear, finished)  # type: ignore[attr-defined]
            else:
                early.extend(zip(originals, channel.send_batch(clear), strict=True))
        if early:
            done(early)

    def send(self, messages: Sequence[OutboxMessage]) -> list[tuple[OutboxMessage, SendResult]]:
        """Send claimed messages (expired, unroutable and unaddressed ones fail at once).

        Returns each message with its result, for :meth:`record`; until then the rows stay
        leased, so a worker that dies in between has them sent again after the lease.
        """
        if not messages:
            return []
        groups, done = self._route(messages)
        for name, group in groups.items():
            results = self.channels[name].send_batch([c for _, c in group])
            done.extend(zip([m for m, _ in group], results, strict=True))
        return done

    def _route(
        self, messages: Sequence[OutboxMessage]
    ) -> tuple[
        dict[str, list[tuple[OutboxMessage, OutboxMessage]]],
        list[tuple[OutboxMessage, SendResult]],
    ]:
        """Messages per channel with their clear addresses, and those failed before sending."""
        now = self.clock()
        groups: dict[str, list[tuple[OutboxMessage, OutboxMessage]]] = defaultdict(list)
        done: list[tuple[OutboxMessage, SendResult]] = []
        many = getattr(self.resolver, "resolve_many", None)
        unresolved: dict[str, list[OutboxMessage]] = defaultdict(list)
        for m in messages:
            if m.not_after is not None and m.not_after <= now:
                done.append((m, SendResult.too_late(m.not_after)))
            elif m.channel not in self.channels:
                done.append((m, SendResult.fail(f"no channel {m.channel!r} is configured")))
            elif not m.address:
                done.append((m, SendResult.fail(f"{m.channel}: no address for this person")))
            elif callable(many) and getattr(self.channels[m.channel], "clear_address", False):
                unresolved[m.channel].append(m)  # one audited vault round per channel below
            elif (clear := self._clear(m)) is None:
                done.append((m, SendResult.fail(f"{m.channel}: no vault mapping for the address")))
            else:
                groups[m.channel].append((m, clear))
        for name, todo in unresolved.items():
            assert callable(many)
            addresses: list[str | None] = many(name, [m.address for m in todo])
            for m, address in zip(todo, addresses, strict=True):
                if address is None:
                    why = f"{name}: no vault mapping for the address"
                    done.append((m, SendResult.fail(why)))
                else:
                    groups[name].append(
                        (m, m if address == m.address else replace(m, address=address))
                    )
        return groups, done

    def record(self, done: Sequence[tuple[OutboxMessage, SendResult]]) -> DispatchReport:
        """Record send results in the outbox (one transaction) and count them."""
        if not done:
            return DispatchReport()
        self.outbox.complete(done, now=self.clock())
        return self.report(done)

    def report(self, done: Sequence[tuple[OutboxMessage, SendResult]]) -> DispatchReport:
        """Count send results (sent, retried, dead per channel) without recording them."""
        report = DispatchReport()
        for m, r in done:
            last = m.attempts + 1 >= (m.max_attempts or self.outbox.policy.max_attempts)
            report.add(m.channel, r, final_dead=(not r.ok) and (not r.retryable or last))
        return report

    def run_once(self, limit: int = 500) -> DispatchReport:
        """Claim and send one batch of due messages."""
        return self.dispatch(self.outbox.claim(self.owner, limit=limit, now=self.clock()))

    def drain(self, *, limit: int = 500, max_batches: int = 1000) -> DispatchReport:
        """Send batches until nothing is due (messages waiting for a retry stay queued)."""
        total = DispatchReport()
        for _ in range(max_batches):
            claimed = self.outbox.claim(self.owner, limit=limit, now=self.clock())
            if not claimed:
                break
            total.merge(self.dispatch(claimed))
        return total


def file_sink_config(path: str = "-", base: ChannelsConfig | None = None) -> ChannelsConfig:
    """A configuration whose every channel writes JSON lines to ``path`` (``-`` = stdout).

    >>> sorted(file_sink_config("-").channels)
    ['app_push', 'email', 'head_unit', 'sms']
    """
    base = base or load_channels_config()
    spec = FileSpec(kind="file", path=path)
    return base.model_copy(update={"channels": dict.fromkeys(base.channels, spec)})


def deliver_pending(
    target: Any,
    channels_config: ChannelsConfig | None = None,
    *,
    owner: str = "deliver-pending",
    limit: int = 500,
) -> DispatchReport:
    """Send everything due in the outbox of ``target`` and return what happened.

    ``target`` is an :class:`~autopersona.delivery.outbox.Outbox` or a
    :class:`~autopersona.store.warehouse.Warehouse` (its embedded outbox).  With
    :func:`file_sink_config` the "sending" is writing JSON lines — what the demo uses.
    With pseudonymisation on, the head-unit, SMS and e-mail adapters get clear addresses
    through the audited vault (:class:`~autopersona.privacy.pseudo.AddressResolver`).
    """
    from autopersona.delivery.outbox import open_outbox
    from autopersona.privacy.pseudo import AddressResolver

    config = channels_config or load_channels_config()
    outbox = target if isinstance(target, Outbox) else open_outbox(warehouse=target)
    outbox.policy = config.retry
    channels = build_channels(config, client_id=f"{config.mqtt.client_id}-{owner}")
    resolver = None
    if any(getattr(ch, "clear_address", False) for ch in channels.values()):
        resolver = AddressResolver.from_settings(actor=owner)
    try:
        return Dispatcher(outbox, channels, owner=owner, resolver=resolver).drain(limit=limit)
    finally:
        for ch in channels.values():
            ch.close()
        if resolver is not None:
            resolver.close()
