"""Test kit of delivery: local sinks (HTTP webhook, SMTP, head-unit MQTT subscriber), the
shared and private Mosquitto brokers, PostgreSQL (through ``tests/store/pgcheck``) and a small
decision engine with the strategy engine's interface.

Every sink de-duplicates by idempotency key the way a real receiver must, and also counts raw
deliveries, so tests can tell "delivered exactly once" from "delivered at least once".
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
from pgcheck import PG_URL, pg_unavailable

from autopersona.strategy.decision import (
    Decision,
    create_decision_table,
    idempotency_key,
    new_decision_id,
    write_decisions,
)

__all__ = ["PG_URL", "pg_unavailable"]

MQTT_HOST = "127.0.0.1"
MQTT_PORT = 1883


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(pred: Any, timeout: float = 20.0, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


_broker_state: dict[str, str | None] = {}


def shared_broker_unavailable() -> str | None:
    """None when the local Mosquitto on 1883 answers (started if needed), else why not."""
    if "reason" in _broker_state:
        return _broker_state["reason"]
    reason = None
    if not port_open(MQTT_PORT):
        try:
            subprocess.run(
                ["mosquitto", "-d", "-c", "/etc/mosquitto/mosquitto.conf"],
                check=False,
                capture_output=True,
                timeout=20,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            reason = f"Mosquitto is not running on {MQTT_PORT} and cannot be started: {exc}"
        if reason is None and not wait_until(lambda: port_open(MQTT_PORT), 10):
            reason = f"Mosquitto is not running on {MQTT_PORT} and did not start"
    _broker_state["reason"] = reason
    return reason


class PrivateBroker:
    """A Mosquitto of the test's own on a free loopback port, with persistence in tmp."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "max_queued_messages 200000\n"
            "max_inflight_messages 0\n"
            f"log_dest file {folder}/mosquitto.log\n"
        )

    @staticmethod
    def unavailable() -> str | None:
        return None if shutil.which("mosquitto") else "the mosquitto binary is not installed"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_until(lambda: port_open(self.port), 10):
            raise RuntimeError(f"private mosquitto on {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


# --------------------------------------------------------------------------- sinks
@dataclass
class Received:
    raw: Counter[str] = field(default_factory=Counter)
    bodies: dict[str, Any] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, body: Any) -> None:
        with self.lock:
            self.raw[key] += 1
            if key not in self.bodies:  # the receiver's de-duplication
                self.bodies[key] = body
                self.times[key] = time.perf_counter()

    @property
    def unique(self) -> int:
        with self.lock:
            return len(self.bodies)

    @property
    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.raw.values())


class WebhookSink:
    """HTTP sink on 127.0.0.1; ``responses[path]`` is a list of status codes to answer in turn
    (the last one repeats); default 200."""

    def __init__(self) -> None:
        self.received: dict[str, Received] = {}
        self.responses: dict[str, list[int]] = {}
        self.calls: Counter[str] = Counter()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                key = self.headers.get("Idempotency-Key") or ""
                with threading.Lock():
                    seq = sink.responses.get(self.path, [200])
                    i = sink.calls[self.path]
                    sink.calls[self.path] += 1
                code = seq[min(i, len(seq) - 1)]
                if 200 <= code < 300:
                    sink.received.setdefault(self.path, Received()).add(key, body)
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> Received:
        return self.received.setdefault(path, Received())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    """aiosmtpd on 127.0.0.1: keeps each mail by its X-Idempotency-Key."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.received = Received()
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = message_from_bytes(envelope.content)
                sink.received.add(
                    str(msg["X-Idempotency-Key"]),
                    {"to": envelope.rcpt_tos, "subject": msg["Subject"], "id": msg["Message-ID"]},
                )
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
        asyncio.set_event_loop(None)


class HeadUnitListener:
    """A vehicle-side MQTT client subscribed to every head-unit topic under ``prefix``
    (persistent session, QoS 1)."""

    def __init__(self, prefix: str, port: int = MQTT_PORT, client_id: str | None = None) -> None:
        self.received = Received()
        self.user_props: dict[str, str] = {}
        self.connected = threading.Event()
        self.topic = f"{prefix}/vehicles/+/headunit"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"hu-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(1, 2)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect(MQTT_HOST, port, clean_start=False, properties=props)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("head-unit listener could not connect")

    def _on_connect(self, c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        c.subscribe(self.topic, qos=1)
        time.sleep(0.05)
        self.connected.set()

    def _on_disconnect(self, c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        self.connected.clear()  # set again once reconnected and subscribed

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        body = json.loads(msg.payload)
        for k, v in getattr(msg.properties, "UserProperty", []) or []:
            if k == "idempotency_key":
                self.user_props[body["idempotency_key"]] = v
        self.received.add(body["idempotency_key"], body)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    """Publishes vehicle events (QoS 1) like a vehicle gateway."""

    def __init__(self, prefix: str, port: int = MQTT_PORT) -> None:
        self.prefix = prefix
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"pub-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(1, 2)
        self.client.connect(MQTT_HOST, port)
        self.client.loop_start()

    def raw(self, vin: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        return self.client.publish(f"{self.prefix}/vehicles/{vin}/events", payload, qos=1)

    def event(self, vin: str, event_id: str, **extra: Any) -> mqtt.MQTTMessageInfo:
        ev = {
            "event_id": event_id,
            "vin": vin,
            "type": extra.pop("type", "route_planned"),
            "ts": extra.pop("ts", datetime.now(UTC).isoformat()),
            "payload": extra,
        }
        return self.raw(vin, json.dumps(ev).encode())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- engine
# the engine's own record and key (the fake engine only decides differently)
FakeDecision = Decision
key_of = idempotency_key


def make_decision(**fields: Any) -> Decision:
    """A ``send`` decision on the app channel with test values; ``fields`` override them."""
    person = str(fields.get("person_id", "P1"))
    trigger_key = str(fields.get("trigger_key", "e1"))
    strategy = str(fields.get("strategy_id", "s_test"))
    base: dict[str, Any] = {
        "decision_id": uuid.uuid4().hex,
        "idempotency_key": key_of(strategy, person, trigger_key),
        "person_id": person,
        "vin": f"V-{person}",
        "strategy_id": strategy,
        "trigger": "event",
        "trigger_key": trigger_key,
        "channel": "app_push",
        "status": "send",
        "guard": None,
        "reason": "test",
        "arm": "treatment",
        "priority": 1,
        "expected_value": 1.0,
        "title": "t",
        "body": "b",
        "created_at": datetime.now(UTC),
    }
    return Decision(**(base | fields))


class FakeEngine:
    """The strategy engine's interface with trivial decisions, for delivery tests: one
    ``send`` decision per channel listed in ``payload.channels`` (default head unit), logged
    in ``strategy_decisions`` through the warehouse connection (the caller's transaction),
    triggered by the event (or by ``payload.trigger_key``, which several events may share);
    event type ``boom`` raises, like an engine bug."""

    def __init__(self, wh: Any, catalogue: Any = None, *, profiles: Any = None, clock: Any = None):
        self.wh = wh
        self.partition: tuple[int, int] | None = None
        create_decision_table(wh.con)

    def take_partition(self, k: int, n: int) -> None:
        """As the strategy engine: decision ids drawn in the worker's partition."""
        self.partition = (k, n)

    def person_of(self, vin: str) -> str:
        """The person the decisions name (``P-{vin}``), which workers partition by."""
        return f"P-{vin}"

    def on_event(self, event: dict[str, Any], *, log: bool = True) -> list[FakeDecision]:
        if event["type"] == "boom":
            raise ValueError("engine exploded on purpose")
        payload = event.get("payload") or {}
        out = []
        for ch in payload.get("channels", ["head_unit"]):
            sid = f"fake_{ch}"
            person = self.person_of(event["vin"])
            out.append(
                make_decision(
                    decision_id=new_decision_id(self.partition),
                    person_id=person,
                    vin=event["vin"],
                    strategy_id=sid,
                    trigger_key=payload.get("trigger_key", event["event_id"]),
                    channel=ch,
                    title=f"Offer for {event['vin']}",
                    body="Charging stops along your route.",
                    offer={"code": "TRIP10"},
                )
            )
        if log:
            self.log(out)
        return out

    def log(self, decisions: list[FakeDecision], con: Any = None) -> int:
        return write_decisions(con or self.wh.con, decisions, create=False)

    def release_held(
        self, vin: str, speed_mps: float, now: datetime, *, log: bool = True
    ) -> list[FakeDecision]:
        return []


class SlowStartEngine(FakeEngine):
    """:class:`FakeEngine` that takes two seconds to build, like a strategy engine loading
    its catalogue and models: ``run``'s feedback listener is connected meanwhile."""

    def __init__(self, wh: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(2.0)
        super().__init__(wh, *args, **kwargs)


class FakeContacts:
    def phone(self, person_id: str) -> str | None:
        return "+4915100000000"

    def email(self, person_id: str) -> str | None:
        return f"{person_id.lower()}@example.org"


def channels_yaml(
    path: Path,
    *,
    port: int,
    prefix: str,
    webhook_port: int,
    smtp_port: int,
    client_id: str,
    max_attempts: int = 4,
    base_s: float = 0.05,
    lease_s: float = 30,
    event_max_bytes: int = 4096,
) -> Path:
    path.write_text(
        f"""mqtt:
  host: 127.0.0.1
  port: {port}
  topic_prefix: {prefix}
  client_id: {client_id}
  share_group: g{uuid.uuid4().hex[:6]}
  session_expiry_s: 600
  keepalive_s: 5
  receive_maximum: 1000
channels:
  head_unit: {{kind: mqtt, topic: "{{prefix}}/vehicles/{{vin}}/headunit", qos: 1, timeout_s: 3}}
  app_push: {{kind: webhook, url: "http://127.0.0.1:{webhook_port}/push", timeout_s: 2}}
  sms: {{kind: webhook, url: "http://127.0.0.1:{webhook_port}/sms", timeout_s: 2}}
  email: {{kind: smtp, host: 127.0.0.1, port: {smtp_port}, sender: offers@example.org}}
retry: {{max_attempts: {max_attempts}, base_s: {base_s}, cap_s: 1, jitter: 0.5, seed: 7}}
lease_s: {lease_s}
event_max_bytes: {event_max_bytes}
"""
    )
    return path
