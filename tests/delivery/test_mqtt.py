"""FastClient (paho with buffered reads, raw PUBLISH callback, batched acks) against Mosquitto."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from deliverykit import PrivateBroker, free_port, port_open, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from autopersona.delivery.channels import HeadUnitChannel
from autopersona.delivery.config import MqttBroker, MqttSpec
from autopersona.delivery.mqtt import (
    FastClient,
    connect_properties,
    make_client,
    publish_properties,
)
from autopersona.delivery.outbox import OutboxMessage

pytestmark = pytest.mark.integration


def _publisher(port: int) -> mqtt.Client:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    c.max_inflight_messages_set(20)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _subscriber(
    port: int,
    topic: str,
    client_id: str,
    *,
    manual_ack: bool = False,
    on_raw: Any = None,
    on_message: Any = None,
) -> FastClient:
    c = make_client(client_id, manual_ack=manual_ack)
    c.on_raw_message = on_raw  # before connecting: a resumed session delivers at once
    if on_message is not None:
        c.on_message = on_message
    ready = threading.Event()
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.connect("127.0.0.1", port, clean_start=False, properties=connect_properties(600))
    c.loop_start()
    assert ready.wait(10), "subscriber did not subscribe"
    return c


def _close(*clients: mqtt.Client) -> None:
    for c in clients:
        c.disconnect()
        c.loop_stop()


def test_raw_callback_burst_and_property_fallback(shared_broker: int, prefix: str) -> None:
    """A burst of small messages arrives whole through the buffered reader; a message with
    properties takes paho's path (on_message) with its properties."""
    raw: list[tuple[str, int, bytes]] = []
    full: list[Any] = []
    sub = _subscriber(
        shared_broker,
        f"{prefix}/#",
        f"sub-{uuid.uuid4().hex[:8]}",
        on_raw=lambda topic, mid, qos, payload: raw.append((topic, qos, payload)),
        on_message=lambda c, u, msg: full.append(msg),
    )
    pub = _publisher(shared_broker)
    try:
        n = 3000
        infos = [pub.publish(f"{prefix}/a/{i % 7}", f"m{i}".encode(), qos=1) for i in range(n)]
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = [("k", "v")]
        pub.publish(f"{prefix}/b", b"with-props", qos=1, properties=props)
        for info in infos:
            info.wait_for_publish(10)
        assert wait_until(lambda: len(raw) >= n and len(full) >= 1, 20)
        time.sleep(0.2)
    finally:
        _close(pub, sub)
    assert sorted(p for _, _, p in raw) == sorted(f"m{i}".encode() for i in range(n))
    assert {t for t, _, _ in raw} == {f"{prefix}/a/{i}" for i in range(7)}
    assert {q for _, q, _ in raw} == {1}
    assert [(m.topic, m.payload) for m in full] == [(f"{prefix}/b", b"with-props")]
    assert full[0].properties.UserProperty == [("k", "v")]


def test_ack_many_acknowledges_exactly_those_messages(private_broker: PrivateBroker) -> None:
    """Messages acknowledged with ack_many are not delivered again when the session resumes;
    the others are."""
    port = private_broker.port
    topic = f"acks-{uuid.uuid4().hex[:6]}/e"
    cid = f"worker-{uuid.uuid4().hex[:6]}"
    got: list[tuple[int, int, bytes]] = []
    sub = _subscriber(
        port, topic, cid, manual_ack=True, on_raw=lambda t, mid, q, p: got.append((mid, q, p))
    )
    pub = _publisher(port)
    try:
        for i in range(40):
            pub.publish(topic, f"e{i}".encode(), qos=1).wait_for_publish(5)
        assert wait_until(lambda: len(got) >= 40, 10)
        first = sorted(got, key=lambda g: int(g[2][1:]))
        sub.ack_many((mid, qos) for mid, qos, p in first if int(p[1:]) < 25)
        time.sleep(0.5)  # let the acknowledgements reach the broker
        _close(sub)
        again: list[bytes] = []
        sub2 = _subscriber(
            port, topic, cid, manual_ack=True, on_raw=lambda t, mid, q, p: again.append(p)
        )
        try:
            assert wait_until(lambda: len(again) >= 15, 10)
            time.sleep(0.5)
        finally:
            _close(sub2)
    finally:
        _close(pub)
    assert sorted(again) == sorted(f"e{i}".encode() for i in range(25, 40))


def test_receive_maximum_caps_messages_in_flight(shared_broker: int) -> None:
    """The broker's Receive Maximum (Mosquitto's default 20) caps paho's window of 100."""
    c = make_client(f"rm-{uuid.uuid4().hex[:8]}")
    seen: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(cl: Any, u: Any, f: Any, rc: Any, props: Any) -> None:
        seen["limit"] = getattr(props, "ReceiveMaximum", None)
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", shared_broker)
    c.loop_start()
    try:
        assert done.wait(10)
    finally:
        _close(c)
    if seen["limit"] is None:
        pytest.skip("this broker announces no Receive Maximum")
    assert c.max_inflight_messages == min(100, int(seen["limit"]))


def test_refused_publish_is_retryable(tmp_path: Path) -> None:
    """A PUBACK with an error reason code (here: not authorised by the broker's ACL) makes the
    head-unit send a retryable failure instead of a delivery; allowed topics still go out."""
    if PrivateBroker.unavailable():
        pytest.skip("the mosquitto binary is not installed")
    port = free_port()
    (tmp_path / "acl").write_text("topic readwrite ok/#\n")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        # user root: a broker started by root would read the ACL as 'mosquitto' and fail
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        f"acl_file {tmp_path}/acl\nlog_dest file {tmp_path}/mosquitto.log\n"
    )
    broker = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ch = HeadUnitChannel(
        MqttSpec(kind="mqtt", timeout_s=5), MqttBroker(port=port), client_id="hu-acl"
    )
    try:
        assert wait_until(lambda: port_open(port), 10)
        msgs = [
            OutboxMessage("k-ok", "d1", "head_unit", "ok/vehicles/V1/headunit", {"title": "T"}),
            OutboxMessage("k-no", "d2", "head_unit", "no/vehicles/V1/headunit", {"title": "T"}),
        ]
        ok, refused = ch.send_batch(msgs)
    finally:
        ch.close()
        broker.terminate()
        broker.wait(10)
    assert ok.ok
    assert not refused.ok and refused.retryable
    assert "refused" in (refused.error or "") and "authori" in (refused.error or "")


def test_publish_batch_window_properties_and_lost_connection(
    private_broker: PrivateBroker,
) -> None:
    """publish_batch sends a batch larger than the window (PUBACKs free it), the messages keep
    their properties (a receiver that drops them gets the body), and a batch sent while the
    connection is gone comes back unacknowledged (None: the caller retries)."""
    port = private_broker.port
    topic = f"batch-{uuid.uuid4().hex[:6]}"
    raw: list[bytes] = []
    full: list[Any] = []
    sub = _subscriber(
        port, f"{topic}/#", f"sub-{uuid.uuid4().hex[:6]}", on_message=lambda c, u, m: full.append(m)
    )
    bodies = _subscriber(port, f"{topic}/#", f"raw-{uuid.uuid4().hex[:6]}")
    bodies.raw_drops_properties = True
    bodies.on_raw_message = lambda t, mid, q, p: raw.append(p)
    pub = make_client(f"batch-{uuid.uuid4().hex[:6]}")
    pub.max_inflight_messages_set(7)  # far below the batch: the window refills as PUBACKs come
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        assert wait_until(lambda: pub.is_connected(), 10)
        props = publish_properties(
            content_type="application/json",
            user_properties=[("idempotency_key", "k")],
            message_expiry_s=600,
        ).pack()  # type: ignore[no-untyped-call]
        n = 250
        codes = pub.publish_batch(
            [(f"{topic}/v/{i % 5}", f'{{"i":{i}}}'.encode(), props) for i in range(n)], 10
        )
        assert codes == [0] * n
        assert wait_until(lambda: len(full) >= n and len(raw) >= n, 10)
        assert sorted(raw) == sorted(f'{{"i":{i}}}'.encode() for i in range(n))
        assert full[0].properties.UserProperty == [("idempotency_key", "k")]
        assert full[0].properties.ContentType == "application/json"
        assert not pub._batch_out and len({m.mid for m in full}) > 1
        private_broker.stop()
        assert wait_until(lambda: not pub.is_connected(), 10)
        t0 = time.monotonic()
        assert pub.publish_batch([(f"{topic}/v/0", b"{}", props)] * 3, 5) == [None] * 3
        assert time.monotonic() - t0 < 2 and not pub._batch_out
    finally:
        _close(pub, sub, bodies)


def test_publish_batch_async_calls_back_and_expires(private_broker: PrivateBroker) -> None:
    """publish_batch_async returns at once; the codes come through the callback when the
    PUBACKs are in; a batch that outgrows the window is refused (nothing sent); one sent
    before the connection drops is finished by expire_async with None for each message."""
    port = private_broker.port
    topic = f"async-{uuid.uuid4().hex[:6]}"
    got: list[list[int | None]] = []
    pub = make_client(f"async-{uuid.uuid4().hex[:6]}")
    pub.max_inflight_messages_set(20)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        assert wait_until(lambda: pub.is_connected(), 10)
        props = publish_properties(content_type="application/json").pack()  # type: ignore[no-untyped-call]
        msgs = [(f"{topic}/v/{i}", b"{}", props) for i in range(12)]
        assert pub.publish_batch_async(msgs, 10, got.append)
        # 0x10: accepted, no subscriber (any code below 0x80 is a success)
        assert wait_until(lambda: got == [[0x10] * 12], 10), got
        assert pub.async_pending == 0 and not pub._batch_out
        assert not pub.publish_batch_async(msgs * 2, 10, got.append)  # 24 > window of 20
        assert len(got) == 1 and not pub._batch_out
        private_broker.stop()
        assert wait_until(lambda: not pub.is_connected(), 10)
        # the connection is gone: nothing is sent and the caller is told at once
        assert not pub.publish_batch_async(msgs[:3], 10, got.append)
        assert pub.expire_async() == 0
    finally:
        _close(pub)


def test_publish_batch_async_is_pending_until_its_callback_returns(shared_broker: int) -> None:
    """A batch whose last PUBACK is in counts as pending until its callback has returned:
    the live engine's dispatcher waits for ``async_pending`` before it ends, and a callback
    still running (journaling the send results) was missed by the applier."""
    entered, release = threading.Event(), threading.Event()
    got: list[list[int | None]] = []

    def slow(codes: list[int | None]) -> None:
        entered.set()
        release.wait(5)
        got.append(codes)

    pub = make_client(f"async-{uuid.uuid4().hex[:6]}")
    pub.connect("127.0.0.1", shared_broker)
    pub.loop_start()
    try:
        assert wait_until(lambda: pub.is_connected(), 10)
        assert pub.publish_batch_async(
            [(f"async-{uuid.uuid4().hex[:6]}", b"{}", b"\x00")], 10, slow
        )
        assert entered.wait(10)
        assert pub.async_pending == 1  # its callback is running
        release.set()
        assert wait_until(lambda: pub.async_pending == 0, 5)
        assert got == [[0x10]]
    finally:
        release.set()
        _close(pub)


def test_publish_batch_async_times_out_without_pubacks(private_broker: PrivateBroker) -> None:
    """A batch whose PUBACKs do not come (the broker is frozen) is finished by expire_async
    after its timeout, each message None (retryable)."""
    port = private_broker.port
    got: list[list[int | None]] = []
    pub = make_client(f"async-{uuid.uuid4().hex[:6]}")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        assert wait_until(lambda: pub.is_connected(), 10)
        assert private_broker.proc is not None
        private_broker.proc.send_signal(signal.SIGSTOP)  # alive, but answers nothing
        try:
            assert pub.publish_batch_async([("t/x", b"{}", b"\x00")] * 2, 0.3, got.append)
            assert pub.expire_async() == 0  # not yet due
            time.sleep(0.4)
            assert pub.expire_async() == 1
            assert got == [[None, None]] and pub.async_pending == 0 and not pub._batch_out
        finally:
            private_broker.proc.send_signal(signal.SIGCONT)
    finally:
        _close(pub)
