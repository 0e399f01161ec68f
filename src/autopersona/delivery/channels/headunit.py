"""Head unit: publish the message to the vehicle's MQTT topic (QoS 1 by default).

The payload is the message as JSON; the idempotency key travels both in the payload and as
an MQTT 5 user property, and ``not_after`` becomes the message expiry interval, so a car that
comes online too late does not show a stale offer.  A send counts as done when the broker
acknowledges it (PUBACK); a broker that is down or slow makes the attempt retryable.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from autopersona.delivery._json import dumps_bytes
from autopersona.delivery.channels.base import IDEMPOTENCY_FIELD, Channel, message_body
from autopersona.delivery.config import MqttBroker, MqttSpec
from autopersona.delivery.mqtt import ConnectionWatch, make_client, publish_properties
from autopersona.delivery.outbox import OutboxMessage, SendResult

__all__ = ["HeadUnitChannel", "headunit_topic"]


def headunit_topic(spec: MqttSpec, broker: MqttBroker, vin: str) -> str:
    """The head-unit topic of ``vin``.

    >>> headunit_topic(MqttSpec(kind="mqtt"), MqttBroker(), "V1")
    'autopersona/v1/vehicles/V1/headunit'
    """
    return _topic(spec.topic, broker.topic_prefix, vin)


@functools.lru_cache(maxsize=65536)
def _topic(template: str, prefix: str, vin: str) -> str:
    return template.format(prefix=prefix, vin=vin)


class HeadUnitChannel(Channel):
    """Publish to ``{prefix}/vehicles/{vin}/headunit`` through its own MQTT connection.

    Parameters
    ----------
    spec
        Topic template, QoS and acknowledgement timeout.
    broker
        Broker address and topic prefix.
    client_id
        MQTT client id of the publisher (default: the broker's ``client_id`` + ``-out``).
    """

    name = "head_unit"
    clear_address = True

    def __init__(self, spec: MqttSpec, broker: MqttBroker, client_id: str | None = None) -> None:
        self.spec = spec
        self.broker = broker
        self.watch = ConnectionWatch()
        self.client = make_client(client_id or f"{broker.client_id}-out")
        self.client.on_connect = self.watch.on_connect
        self.client.on_disconnect = self.watch.on_disconnect
        self.client.reconnect_delay_set(1, 30)
        self._started = False

    def _ensure(self, wait_s: float) -> bool:
        if not self._started:
            self._started = True
            with contextlib.suppress(OSError):
                self.client.connect_async(
                    self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s
                )
            self.client.loop_start()
        return self.watch.connected.wait(wait_s)

    def send(self, message: OutboxMessage) -> SendResult:
        """Publish one message and wait for the broker's acknowledgement."""
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[OutboxMessage]) -> list[SendResult]:
        """Publish every message, then wait for all acknowledgements."""
        if not messages:
            return []
        if not self._ensure(min(5.0, self.spec.timeout_s)):
            err = SendResult.retry(
                f"head_unit: broker {self.broker.host}:{self.broker.port} not connected"
                f" ({self.watch.reason or 'connecting'})"
            )
            return [err] * len(messages)
        now = datetime.now(UTC)
        if self.spec.qos == 1:
            return self._send_qos1(messages, now)
        infos: list[mqtt.MQTTMessageInfo | SendResult] = []
        for m in messages:
            expiry = None
            if m.not_after is not None:
                expiry = int((m.not_after - now).total_seconds())
                if expiry <= 0:
                    infos.append(SendResult.too_late(m.not_after))
                    continue
            props = publish_properties(
                content_type="application/json",
                user_properties=[(IDEMPOTENCY_FIELD, m.idempotency_key)],
                message_expiry_s=expiry,
            )
            body = dumps_bytes(message_body(m))
            infos.append(self.client.publish(m.address, body, qos=self.spec.qos, properties=props))
        deadline = time.monotonic() + self.spec.timeout_s
        out: list[SendResult] = []
        for info in infos:
            if isinstance(info, SendResult):
                out.append(info)
                continue
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                self.client.refused.pop(info.mid, None)
                out.append(SendResult.retry(f"head_unit: {exc}"))
                continue
            refused = self.client.refused.pop(info.mid, None)
            if refused is not None:
                why = ReasonCode(PacketTypes.PUBACK, identifier=refused)
                out.append(SendResult.retry(f"head_unit: the broker refused it ({why})"))
            elif info.is_published():
                out.append(SendResult.sent())
            else:
                out.append(SendResult.retry(f"head_unit: no PUBACK in {self.spec.timeout_s:g}s"))
        return out

    def send_batch_async(
        self, messages: Sequence[OutboxMessage], done: Callable[[list[SendResult]], None]
    ) -> None:
        """:meth:`send_batch` without waiting for the PUBACKs (QoS 1).

        ``done(results)`` is called once every message has its result: right away for those
        that fail before sending, otherwise from the client's network thread when the last
        PUBACK arrives, or from :meth:`expire_async` once ``timeout_s`` has passed.  Falls
        back to :meth:`send_batch` (and calls ``done`` before returning) when the broker's
        window is full, the client is not connected, or QoS is not 1.
        """
        if not messages:
            done([])
            return
        if self.spec.qos != 1 or not self._ensure(min(5.0, self.spec.timeout_s)):
            done(self.send_batch(messages))
            return
        out, todo = self._prepare(messages, datetime.now(UTC))
        if not todo:
            done([r for r in out if r is not None])
            return
        timeout = self.spec.timeout_s

        def finished(codes: list[int | None]) -> None:
            done(self._results(out, codes, timeout))

        if not self.client.publish_batch_async(todo, timeout, finished):
            done(self._results(out, self.client.publish_batch(todo, timeout), timeout))

    def expire_async(self) -> int:
        """Give up on asynchronous sends past their timeout (they are retried)."""
        return self.client.expire_async() if self._started else 0

    @property
    def async_pending(self) -> int:
        """Asynchronous sends still waiting for their PUBACKs."""
        return self.client.async_pending

    def _prepare(
        self, messages: Sequence[OutboxMessage], now: datetime
    ) -> tuple[list[SendResult | None], list[tuple[str, bytes, bytes]]]:
        """Each message's early result (None: to send) and the packets to send."""
        out: list[SendResult | None] = []
        todo: list[tuple[str, bytes, bytes]] = []
        for m in messages:
            expiry = None
            if m.not_after is not None:
                expiry = int((m.not_after - now).total_seconds())
                if expiry <= 0:
                    out.append(SendResult.too_late(m.not_after))
                    continue
            if "+" in m.address or "#" in m.address or len(m.address.encode()) > 65535:
                out.append(SendResult.fail("head_unit: invalid topic (a wildcard, or too long)"))
                continue
            props = publish_properties(
                content_type="application/json",
                user_properties=[(IDEMPOTENCY_FIELD, m.idempotency_key)],
                message_expiry_s=expiry,
            )
            todo.append((m.address, dumps_bytes(message_body(m)), props.pack()))  # type: ignore[no-untyped-call]
            out.append(None)
        return out, todo

    @staticmethod
    def _results(
        out: list[SendResult | None], codes_in: list[int | None], timeout: float
    ) -> list[SendResult]:
        codes = iter(codes_in)
        results: list[SendResult] = []
        for r in out:
            if r is not None:
                results.append(r)
                continue
            code = next(codes)
            if code is None:
                results.append(SendResult.retry(f"head_unit: no PUBACK in {timeout:g}s"))
            elif code >= 0x80:
                why = ReasonCode(PacketTypes.PUBACK, identifier=code)
                results.append(SendResult.retry(f"head_unit: the broker refused it ({why})"))
            else:
                results.append(SendResult.sent())
        return results

    def _send_qos1(self, messages: Sequence[OutboxMessage], now: datetime) -> list[SendResult]:
        """QoS 1: every message out in one write, the PUBACKs counted per batch."""
        out, todo = self._prepare(messages, now)
        codes = self.client.publish_batch(todo, self.spec.timeout_s)
        return self._results(out, codes, self.spec.timeout_s)

    def close(self) -> None:
        """Disconnect."""
        if self._started:
            self.client.disconnect()
            self.client.loop_stop()
