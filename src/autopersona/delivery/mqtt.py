"""Small helpers around paho-mqtt 2.x (MQTT 5): clients, connection waits, topic parsing.

:class:`FastClient` is paho's client with three changes for the live engine's hot path
(thousands of messages a second through one Python process):

* socket reads are buffered (paho reads every packet with three ``recv`` calls: one for the
  command byte, one per length byte, one for the rest) and one wake-up of the network loop
  handles every packet that arrived, not one packet per ``select``;
* an inbound PUBLISH without MQTT 5 properties can go straight to ``on_raw_message(topic,
  mid, qos, payload)`` without paho's message object and property parsing (a PUBLISH that
  carries properties, or any message when no raw callback is set, takes paho's own path,
  unless ``raw_drops_properties`` is set);
* PUBLISH and PUBACK packets already in the read buffer are cut out of it and handled
  directly (paho reads every packet in three steps with its state in a dict);
* runs of QoS 1 PUBLISH and PUBACK packets are written with one ``send`` (paho makes one
  call per packet), and a PUBACK does not walk every outgoing message when none is queued;
* :meth:`FastClient.publish_batch` publishes a batch of QoS 1 messages built straight into
  packets and counts their PUBACKs per batch (no paho message object, lock and condition
  per message); what gets no PUBACK is the caller's to retry;
* :meth:`FastClient.ack_many` acknowledges a whole batch with one write, and a packet
  queued from another thread wakes the network loop only if no wake-up is pending yet
  (paho writes to its wake-up socket for every packet);
* a plain PUBACK is handled without paho's property and reason-code objects, and a PUBACK
  whose reason code is an error (the broker refused the message, e.g. quota exceeded) is
  kept in :attr:`FastClient.refused` by message id — paho counts any PUBACK as delivered;
* the broker's MQTT 5 Receive Maximum (CONNACK) caps the messages in flight: paho ignores
  it, and a broker that gets more refuses the excess (Mosquitto's default is 20).

:func:`publish_properties` encodes the PUBLISH properties of one message directly (the
same bytes as paho's :class:`~paho.mqtt.properties.Properties`, which fills a table of every
property name per instance).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any, Generic, Literal, Protocol, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers
from paho.mqtt.reasoncodes import ReasonCode

__all__ = [
    "ConnectionWatch",
    "FastClient",
    "MqttConsumer",
    "connect_properties",
    "make_client",
    "publish_properties",
    "vin_from_topic",
]

_READ_SIZE = 1 << 16
_WRITE_SIZE = 1 << 16
_PACKETS_PER_WAKE = 5000
_PUBACK = struct.Struct("!BBH")
_LEN = struct.Struct("!H")
_EXPIRY = struct.Struct("!BL")
_PUBLISH = 0x30
_PUBACK_CMD = 0x40

RawMessageCallback = Callable[[str, int, int, bytes], None]
log = logging.getLogger(__name__)
_PUBACK_OK = ReasonCode(PacketTypes.PUBACK, "Success")
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]


class FastClient(mqtt.Client):
    """paho's MQTT client with buffered reads, a raw PUBLISH callback and batched acks.

    Behaves as :class:`paho.mqtt.client.Client` unless :attr:`on_raw_message` is set (see
    the module docstring).  The overridden hooks are paho 2.x internals; the delivery tests
    run every path against a real broker.

    >>> c = FastClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    >>> c.on_raw_message is None, c.ack_many([])
    (True, <MQTTErrorCode.MQTT_ERR_SUCCESS: 0>)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._rbuf_sock: Any = None
        #: ``(topic, mid, qos, payload)`` for each inbound PUBLISH without properties.
        self.on_raw_message: RawMessageCallback | None = None
        #: Hand PUBLISH packets that carry properties to :attr:`on_raw_message` too, without
        #: their properties (for a receiver that needs only topic and payload).
        self.raw_drops_properties = False
        #: Reason code (>= 0x80) of each QoS 1 publish the broker refused, by message id;
        #: whoever waits for a publish pops its entry (message ids are reused).
        self.refused: dict[int, int] = {}
        self._inflight_wanted: int | None = None
        self._wake_pending = False
        self._wake_sock: Any = None
        #: QoS 1 messages of :meth:`publish_batch` awaiting their PUBACK, by message id.
        self._batch_out: dict[int, tuple[_Batch, int]] = {}
        self._batch_lock = threading.Lock()
        #: batches of :meth:`publish_batch_async` still waiting for PUBACKs
        self._async_out: set[_Batch] = set()
        #: batches taken out of ``_async_out`` whose callback has not returned yet
        self._finishing = 0

    # ------------------------------------------------------------------ connecting
    def _create_socket_connection(self) -> socket.socket:
        """The TCP connection of paho, with Nagle's algorithm off.

        MQTT packets are small and latency-bound (a PUBACK, a head-unit message): with
        Nagle on, a small write waits for the ACK of the previous one, which the peer's
        delayed ACK holds back for up to 40 ms.
        """
        sock = super()._create_socket_connection()
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _handle_connack(self) -> MQTTErrorCode:
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            if self._inflight_wanted is None:
                self._inflight_wanted = self._max_inflight_messages
            props = Properties(PacketTypes.CONNACK)  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):  # paho reports a malformed CONNACK itself
                props.unpack(bytes(self._in_packet["packet"])[2:])  # type: ignore[no-untyped-call]
            limit = int(getattr(props, "ReceiveMaximum", 65535))
            wanted = self._inflight_wanted
            self._max_inflight_messages = min(wanted, limit) if wanted else limit
        return super()._handle_connack()

    # ------------------------------------------------------------------ reading
    def _sock_recv(self, bufsize: int) -> bytes:
        if self._sock is not self._rbuf_sock:  # a new connection: nothing carried over
            self._rbuf_sock = self._sock
            self._rbuf.clear()
        buf = self._rbuf
        if not buf:
            data = super()._sock_recv(max(bufsize, _READ_SIZE))
            if len(data) <= bufsize:
                return data
            buf += data
        out = bytes(buf[:bufsize])
        del buf[:bufsize]
        return out

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Handle every packet that is readable now (buffered or on the socket)."""
        n = 0
        while True:
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            if self._rbuf and self._in_packet["command"] == 0 and self._rbuf_sock is self._sock:
                rc = self._read_buffered()
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if not self._rbuf:
                    n += 1
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            n += 1
            # Stop only with an empty buffer: select() knows nothing of buffered bytes.
            if n >= _PACKETS_PER_WAKE and not self._rbuf:
                return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _read_buffered(self) -> MQTTErrorCode:
        """Handle the complete PUBLISH and PUBACK packets at the head of the read buffer.

        paho reads each packet in three steps (command byte, length, body) with its state
        in a dict; packets already in the buffer are cut out of it directly and handed to
        the same handlers.  Anything else, or an incomplete packet, is left to paho.
        """
        buf = self._rbuf
        size = len(buf)
        pos = 0
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        inp = self._in_packet
        try:
            while pos + 2 <= size:
                cmd = buf[pos]
                kind = cmd & 0xF0
                if kind != _PUBLISH and kind != _PUBACK_CMD:
                    break
                length, shift, i = 0, 0, pos + 1
                while i < size and shift <= 21:
                    byte = buf[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                else:
                    break  # the length is not all here (or is malformed: paho says so)
                end = i + length
                if end > size:
                    break
                inp["command"] = cmd
                inp["packet"] = buf[i:end]
                inp["remaining_length"] = length
                pos = end  # consumed even if its handler raises (as paho drops it then)
                if kind == _PUBLISH:
                    rc = self._handle_publish()
                else:
                    rc = self._handle_pubackcomp("PUBACK")
                if rc:
                    break
        finally:
            inp["command"] = 0
            inp["packet"] = bytearray()
            inp["remaining_length"] = 0
            if pos:
                del buf[:pos]
                with self._msgtime_mutex:
                    self._last_bytes_received = mqtt.time_func()
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        cb = self.on_raw_message
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if cb is None or qos == 2 or self._protocol != MQTTProtocolVersion.MQTTv5:
            return super()._handle_publish()
        packet = bytes(self._in_packet["packet"])
        try:
            end = 2 + int.from_bytes(packet[:2], "big")
            topic = packet[2:end].decode("utf-8")
            mid = 0
            if qos:
                mid = int.from_bytes(packet[end : end + 2], "big")
                end += 2
            start = end + 1
            if packet[end] != 0:
                if not self.raw_drops_properties:
                    return super()._handle_publish()
                size, shift = 0, 0
                while True:  # variable byte integer: the properties' length
                    byte = packet[end]
                    end += 1
                    size |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80 or shift > 21:
                        break
                start = end + size
                if start > len(packet):
                    return super()._handle_publish()
        except (IndexError, UnicodeDecodeError):
            return super()._handle_publish()  # let paho report what is wrong with it
        if not topic:
            return super()._handle_publish()
        with self._in_callback_mutex:
            try:
                cb(topic, mid, qos, packet[start:])
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_raw_message: %s", err)
                if not self.suppress_exceptions:
                    raise
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) < 2:
            return super()._handle_pubackcomp(cmd)
        mid = int.from_bytes(packet[:2], "big")
        reason = packet[2] if len(packet) > 2 else 0
        if self._batch_out:
            finished: _Batch | None = None
            with self._batch_lock:
                entry = self._batch_out.pop(mid, None)
                if entry is not None:
                    batch, i = entry
                    batch.codes[i] = reason
                    batch.left -= 1
                    if batch.callback is not None:
                        if batch.left == 0:
                            self._async_out.discard(batch)
                            self._finishing += 1
                            finished = batch
                    elif batch.left <= batch.wake_at:
                        batch.event.set()
            if finished is not None:
                self._finish_counted([finished])
            if entry is not None:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        if reason >= 0x80:
            self.refused[mid] = reason
        if len(packet) > 3 and packet[3] != 0:
            return super()._handle_pubackcomp(cmd)  # with properties: paho's own path
        code = _PUBACK_OK if reason == 0 else ReasonCode(PacketTypes.PUBACK, identifier=reason)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, code, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # ------------------------------------------------------------------ writing
    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        self._out_packet.append(
            {
                "command": command,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": info,
            }
        )
        wake = self._sockpairW
        if wake is not None:
            if wake is not self._wake_sock:  # a new wake-up socket (reconnect, loop_start)
                self._wake_sock = wake
                self._wake_pending = False
            # Appended before the flag is read, and loop_write clears the flag before it
            # drains the queue: a packet is never left behind by a skipped wake-up.
            if not self._wake_pending:
                self._wake_pending = True
                with contextlib.suppress(BlockingIOError):
                    wake.send(b"0")
        if (
            self._thread is None
            and self._on_socket_register_write is None
            and self._in_callback_mutex.acquire(False)
        ):
            self._in_callback_mutex.release()
            return self.loop_write()
        self._call_socket_register_write()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_write(self) -> MQTTErrorCode:
        """Write what is queued (clearing the pending wake-up first)."""
        self._wake_pending = False
        return super().loop_write()

    def _packet_write(self) -> MQTTErrorCode:
        """Write queued packets, several per ``send`` where paho makes one call each.

        Runs of QoS 1/2 PUBLISH and PUBACK packets (nothing to do once written) go out
        joined, up to 64 KiB per call; a partly written run puts its unwritten packets back
        at the head of the queue, as paho does with one.  Anything else (CONNECT, QoS 0,
        DISCONNECT…) takes paho's own path.
        """
        out = self._out_packet
        while True:
            run: list[Any] = []
            size = 0
            while out and size < _WRITE_SIZE:
                p = out[0]
                cmd = p["command"] & 0xF0
                if not (cmd == _PUBACK_CMD or (cmd == _PUBLISH and p["qos"] > 0)):
                    break
                run.append(out.popleft())
                size += p["to_process"]
            if not run:
                if out:
                    return super()._packet_write()
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if len(run) == 1:
                blob = run[0]["packet"][run[0]["pos"] :]
            else:
                blob = b"".join(bytes(p["packet"][p["pos"] :]) for p in run)
            try:
                n = sent = self._sock_send(blob)
            except (AttributeError, ValueError):
                out.extendleft(reversed(run))
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                out.extendleft(reversed(run))
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                out.extendleft(reversed(run))
                self._easy_log(mqtt.MQTT_LOG_ERR, "failed to send on socket: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            for i, p in enumerate(run):
                left = p["to_process"]
                if n >= left:
                    p["pos"] += left
                    p["to_process"] = 0
                    n -= left
                    continue
                p["pos"] += n
                p["to_process"] = left - n
                out.extendleft(reversed(run[i:]))
                break
            with self._msgtime_mutex:
                self._last_msg_out = mqtt.time_func()
            if not out or not sent:
                return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _update_inflight(self) -> MQTTErrorCode:
        # paho walks every outgoing message after each PUBACK looking for queued ones; when
        # every message is in flight there is none (the walk made acknowledging a large
        # window quadratic).
        if len(self._out_messages) <= self._inflight_messages:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._update_inflight()

    # ------------------------------------------------------------------ batches
    def publish_batch(
        self, messages: Sequence[tuple[str, bytes, bytes]], timeout: float
    ) -> list[int | None]:
        """Publish QoS 1 messages and wait for their PUBACKs (``timeout`` for all).

        ``messages`` are ``(topic, payload, properties)`` with the properties in wire format
        (``publish_properties(...).pack()``).  Returns each message's PUBACK reason code
        (0: accepted, >= 0x80: refused) or None when none came in time or the connection
        was lost first.

        The packets are built here and written together, and the acknowledgements are
        counted per batch: no paho message object, lock and condition per message.  They
        do not enter paho's outgoing queue, so paho does not send them again after a
        reconnect: a message without a PUBACK is the caller's to retry (the outbox does,
        with the same idempotency key).  At most the broker's Receive Maximum of messages
        (less paho's own) are unacknowledged at any time.
        """
        n = len(messages)
        batch = _Batch(n)
        if not n:
            return []
        deadline = time.monotonic() + timeout
        mids: list[int] = []
        sock = self._sock
        i = 0
        try:
            while True:
                chunk: list[bytes] = []
                with self._batch_lock:
                    limit = self._max_inflight_messages or 65535
                    room = limit - len(self._batch_out) - self._inflight_messages
                    while i < n and room > 0:
                        mid = self._mid_generate()
                        while mid in self._batch_out or mid in self._out_messages:
                            mid = self._mid_generate()
                        self._batch_out[mid] = (batch, i)
                        mids.append(mid)
                        topic, payload, props = messages[i]
                        chunk.append(_publish_packet(topic.encode("utf-8"), mid, props, payload))
                        i += 1
                        room -= 1
                    batch.left += len(chunk)
                    if i >= n and not batch.left:
                        break
                    # wake up when all are in, or when half the window is free again
                    batch.wake_at = 0 if i >= n else max(0, batch.left - max(1, limit // 2))
                    batch.event.clear()
                if chunk:
                    self._packet_queue(_PUBLISH | 0x02, b"".join(chunk), 0, 1)
                left = deadline - time.monotonic()
                if left <= 0 or sock is None or self._sock is not sock:
                    break  # out of time, or the connection they went out on is gone
                batch.event.wait(min(left, 0.5))
        finally:
            with self._batch_lock:
                for mid in mids:
                    entry = self._batch_out.get(mid)
                    if entry is not None and entry[0] is batch:
                        del self._batch_out[mid]
        return batch.codes

    def publish_batch_async(
        self,
        messages: Sequence[tuple[str, bytes, bytes]],
        timeout: float,
        done: Callable[[list[int | None]], None],
    ) -> bool:
        """:meth:`publish_batch` without waiting: ``done(codes)`` once all PUBACKs are in.

        ``done`` runs on the network thread (keep it short: hand the codes on), or in
        :meth:`expire_async` for a batch whose ``timeout`` passed or whose connection was
        lost (None for each message without a PUBACK).  Returns False, having sent nothing,
        when the broker's window has no room for all of them (use :meth:`publish_batch`).
        """
        n = len(messages)
        if not n:
            done([])
            return True
        batch = _Batch(n)
        batch.callback = done
        batch.deadline = time.monotonic() + timeout
        with self._batch_lock:
            sock = self._sock
            limit = self._max_inflight_messages or 65535
            room = limit - len(self._batch_out) - self._inflight_messages
            if sock is None or room < n:
                return False
            chunk: list[bytes] = []
            for i, (topic, payload, props) in enumerate(messages):
                mid = self._mid_generate()
                while mid in self._batch_out or mid in self._out_messages:
                    mid = self._mid_generate()
                self._batch_out[mid] = (batch, i)
                batch.mids.append(mid)
                chunk.append(_publish_packet(topic.encode("utf-8"), mid, props, payload))
            batch.left = n
            batch.sock = sock
            self._async_out.add(batch)
        self._packet_queue(_PUBLISH | 0x02, b"".join(chunk), 0, 1)
        return True

    def expire_async(self, now: float | None = None) -> int:
        """Finish asynchronous batches past their deadline or on a lost connection.

        Their unacknowledged messages get None (the caller retries them).  Returns how many
        batches were finished.
        """
        if not self._async_out:
            return 0
        now = time.monotonic() if now is None else now
        gone: list[_Batch] = []
        with self._batch_lock:
            for batch in list(self._async_out):
                if batch.deadline <= now or batch.sock is not self._sock:
                    self._async_out.discard(batch)
                    for mid in batch.mids:
                        entry = self._batch_out.get(mid)
                        if entry is not None and entry[0] is batch:
                            del self._batch_out[mid]
                    gone.append(batch)
            self._finishing += len(gone)
        self._finish_counted(gone)
        return len(gone)

    @property
    def async_pending(self) -> int:
        """Asynchronous batches still waiting for PUBACKs or for their callback to return."""
        return len(self._async_out) + self._finishing

    def _finish_counted(self, batches: list[_Batch]) -> None:
        """Call back for batches counted in ``_finishing``, then uncount them."""
        try:
            for batch in batches:
                self._finish(batch)
        finally:
            with self._batch_lock:
                self._finishing -= len(batches)

    @staticmethod
    def _finish(batch: _Batch) -> None:
        cb, batch.callback = batch.callback, None
        if cb is not None:
            try:
                cb(batch.codes)
            except Exception:  # pragma: no cover - a callback bug must not kill the loop
                log.exception("publish callback failed")

    # ------------------------------------------------------------------ acknowledging
    def ack_many(self, messages: Iterable[tuple[int, int]]) -> MQTTErrorCode:
        """Acknowledge ``(mid, qos)`` pairs (with ``manual_ack``): QoS 1 ones in one write."""
        if not self._manual_ack:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        blob = bytearray()
        for mid, qos in messages:
            if qos == 1:
                blob += _PUBACK.pack(_PUBACK_CMD, 2, mid)
            elif qos == 2:
                self.ack(mid, qos)
        if not blob:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._packet_queue(_PUBACK_CMD, bytes(blob), 0, 1)


class _Batch:
    """Acknowledgements of one :meth:`FastClient.publish_batch` (or ``_async``) call."""

    __slots__ = ("callback", "codes", "deadline", "event", "left", "mids", "sock", "wake_at")

    def __init__(self, n: int) -> None:
        self.codes: list[int | None] = [None] * n
        self.left = 0
        self.wake_at = 0
        self.event = threading.Event()
        #: asynchronous batches: called once with the codes (from the network thread)
        self.callback: Callable[[list[int | None]], None] | None = None
        self.deadline = 0.0
        self.sock: Any = None
        self.mids: list[int] = []


def _publish_packet(topic: bytes, mid: int, props: bytes, payload: bytes) -> bytes:
    """One QoS 1 PUBLISH packet (MQTT 5: ``props`` are the encoded properties)."""
    body = len(topic) + 4 + len(props) + len(payload)
    head = bytearray((_PUBLISH | 0x02,))
    while True:
        byte, body = body & 0x7F, body >> 7
        head.append(byte | 0x80 if body else byte)
        if not body:
            break
    return b"".join((head, _LEN.pack(len(topic)), topic, _LEN.pack(mid), props, payload))


def make_client(client_id: str, *, manual_ack: bool = False) -> FastClient:
    """An MQTT 5 :class:`FastClient` with the version-2 callback API."""
    c = FastClient(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    # paho walks its whole outgoing table on a PUBACK while messages are queued behind the
    # window (FastClient skips the walk when none is), so the window is a batch's size:
    # a dispatch round of a few hundred messages goes out at once.  The broker's Receive
    # Maximum lowers it (CONNACK).
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    return c


class _PackedProperties(Properties):
    """PUBLISH properties already in wire format (what :meth:`Properties.pack` returns)."""

    packetType = PacketTypes.PUBLISH
    _packed: bytes
    _fields: tuple[Any, ...]

    def __init__(self, packed: bytes, fields: tuple[Any, ...]) -> None:  # no name table
        d = self.__dict__
        d["_packed"] = packed
        d["_fields"] = fields

    def pack(self) -> bytes:
        return self._packed

    def __str__(self) -> str:
        expiry, content_type, user = self._fields
        return f"[MessageExpiryInterval={expiry}, ContentType={content_type}, UserProperty={user}]"

    __repr__ = __str__


def publish_properties(
    *,
    content_type: str | None = None,
    user_properties: Sequence[tuple[str, str]] = (),
    message_expiry_s: int | None = None,
) -> Properties:
    """PUBLISH properties for one message, already in wire format.

    The same bytes as a :class:`~paho.mqtt.properties.Properties` with those fields:

    >>> p = Properties(PacketTypes.PUBLISH)
    >>> p.MessageExpiryInterval = 60
    >>> p.ContentType = "application/json"
    >>> p.UserProperty = [("idempotency_key", "k1"), ("ünï", "cödé")]
    >>> fast = publish_properties(content_type="application/json",
    ...     user_properties=[("idempotency_key", "k1"), ("ünï", "cödé")], message_expiry_s=60)
    >>> fast.pack() == p.pack()
    True
    """
    parts = []
    if message_expiry_s is not None:
        parts.append(_EXPIRY.pack(0x02, int(message_expiry_s)))
    if content_type is not None:
        parts.append(_content_type(content_type))
    for k, v in user_properties:
        kb, vb = k.encode("utf-8"), v.encode("utf-8")
        parts.append(b"\x26" + _LEN.pack(len(kb)) + kb + _LEN.pack(len(vb)) + vb)
    body = b"".join(parts)
    size = len(body)
    head = bytes((size,)) if size < 128 else bytes(VariableByteIntegers.encode(size))  # type: ignore[no-untyped-call]
    return _PackedProperties(head + body, (message_expiry_s, content_type, user_properties))


@functools.lru_cache(maxsize=16)
def _content_type(value: str) -> bytes:
    b = value.encode("utf-8")
    return b"\x03" + _LEN.pack(len(b)) + b


def connect_properties(session_expiry_s: int, receive_maximum: int | None = None) -> Properties:
    """CONNECT properties: session expiry (a persistent session) and receive maximum."""
    p = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    p.SessionExpiryInterval = int(session_expiry_s)
    if receive_maximum:
        p.ReceiveMaximum = int(receive_maximum)
    return p


class ConnectionWatch:
    """Tracks a client's connection state through its callbacks (thread-safe)."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.reason: str | None = None
        self.connects = 0

    def on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        """Paho ``on_connect``."""
        if not rc.is_failure:
            self.connects += 1
            self.connected.set()
        else:
            self.reason = str(rc)

    def on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        """Paho ``on_disconnect``."""
        self.connected.clear()
        self.reason = str(rc)


class _Counters(Protocol):
    reconnects: int


StatsT = TypeVar("StatsT", bound=_Counters)


class MqttConsumer(Generic[StatsT]):
    """Life cycle shared by the subscribers that acknowledge only after their own work.

    A subclass sets up its state, then calls :meth:`_init_consumer`; it implements
    ``_on_message`` (and, for the fast path, ``_on_raw_message``), :meth:`_start_workers`
    and :meth:`_stop_workers`.  This class owns the client: a persistent session
    (``clean_start=False``, session expiry and receive maximum from the broker settings),
    manual acknowledgement, re-subscription on every reconnect (counted in
    ``stats.reconnects``), :meth:`wait_connected`, and :meth:`run_forever`, which stops
    cleanly on SIGTERM/SIGINT, a fatal error of a worker (``_stop`` set) or ``until(stats)``.
    Messages that arrive while not accepting are not acknowledged, so the broker delivers
    them again to the next session.
    """

    stats: StatsT
    broker: Any  # host, port, keepalive_s, session_expiry_s, receive_maximum
    topic: str
    client_id: str

    def _init_consumer(self, client_id: str, broker: Any, topic: str) -> None:
        self.client_id = client_id
        self.broker = broker
        self.topic = topic
        self.watch = ConnectionWatch()
        self.subscribed = threading.Event()
        self._accepting = threading.Event()
        self._stop = threading.Event()
        self.client = make_client(client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        raw = getattr(self, "_on_raw_message", None)
        if raw is not None:
            self.client.on_raw_message = raw
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(1, 30)

    # ------------------------------------------------------------------ callbacks
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self.watch.on_connect(client, userdata, flags, rc, props)
        if rc.is_failure:
            log.warning("%s: connect refused: %s", self.client_id, rc)
            return
        if self.watch.connects > 1:
            self.stats.reconnects += 1
        log.info(
            "connected to %s:%d as %s (session present: %s)",
            self.broker.host,
            self.broker.port,
            self.client_id,
            bool(getattr(flags, "session_present", False)),
        )
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any
    ) -> None:
        if any(rc.is_failure for rc in rcs):
            log.error("subscription to %s refused: %s", self.topic, [str(r) for r in rcs])
        else:
            log.info("subscribed to %s", self.topic)
            self.subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self.watch.on_disconnect(client, userdata, flags, rc, props)
        if not self._stop.is_set():
            log.warning("%s: disconnected from the broker (%s); reconnecting", self.client_id, rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ life cycle
    def _start_workers(self) -> None:
        """Start the subclass's threads (before the client connects)."""
        raise NotImplementedError

    def _stop_workers(self, timeout: float) -> None:
        """Join the subclass's threads (``_stop`` is already set; the client still runs)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the workers, then connect (persistent session) and subscribe."""
        self._accepting.set()
        self._start_workers()
        b = self.broker
        self.client.connect_async(
            b.host,
            b.port,
            keepalive=b.keepalive_s,
            clean_start=False,
            properties=connect_properties(b.session_expiry_s, b.receive_maximum),
        )
        self.client.loop_start()

    def wait_connected(
        self, timeout: float = 10.0, *, cancel: threading.Event | None = None
    ) -> bool:
        """Block until connected and subscribed (True) or the timeout passes (False).

        With ``cancel``, give up (False) as soon as that event is set, e.g. by a signal
        handler: a plain wait would not return before the timeout.
        """
        if cancel is None:
            return self.watch.connected.wait(timeout) and self.subscribed.wait(timeout)
        for ev in (self.watch.connected, self.subscribed):
            end = time.monotonic() + timeout
            while not ev.wait(min(0.05, max(0.0, end - time.monotonic()))):
                if cancel.is_set() or time.monotonic() >= end:
                    return False
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, let the workers finish what they hold, disconnect."""
        self._accepting.clear()
        self._stop.set()
        self._stop_workers(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def run_forever(
        self,
        *,
        install_signals: bool = True,
        until: Callable[[StatsT], bool] | None = None,
        status_every_s: float = 0.0,
        on_status: Callable[[StatsT], None] | None = None,
    ) -> StatsT:
        """Start; run until SIGTERM/SIGINT, a fatal worker error or ``until(stats)``; stop."""
        done = threading.Event()

        def _handler(signum: int, frame: FrameType | None) -> None:
            done.set()

        if install_signals:
            signal.signal(signal.SIGTERM, _handler)
            signal.signal(signal.SIGINT, _handler)
        self.start()
        last = time.monotonic()
        with contextlib.suppress(KeyboardInterrupt):
            while not done.wait(0.1):
                if self._stop.is_set() or (until is not None and until(self.stats)):
                    break
                if on_status and status_every_s and time.monotonic() - last >= status_every_s:
                    on_status(self.stats)
                    last = time.monotonic()
        self.stop()
        return self.stats


def vin_from_topic(topic: str) -> str | None:
    """The VIN segment of ``…/vehicles/{vin}/…`` (None when the topic has no such part).

    >>> vin_from_topic("autopersona/v1/vehicles/WVW123/events")
    'WVW123'
    >>> vin_from_topic("other/topic") is None
    True
    """
    parts = topic.split("/")
    for i, p in enumerate(parts[:-1]):
        if p == "vehicles":
            return parts[i + 1] or None
    return None
