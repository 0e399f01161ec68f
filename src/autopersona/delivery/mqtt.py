"""Small helpers around paho-mqtt 2.x (MQTT 5): clients, connection waits, topic parsing."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["ConnectionWatch", "connect_properties", "make_client", "vin_from_topic"]


def make_client(client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    """An MQTT 5 client with the version-2 callback API."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    # paho walks its whole in-flight table on every PUBACK (Client._update_inflight), so a
    # large window makes acknowledging a batch quadratic; 100 in flight keeps that cheap and
    # is far more than a loopback or LAN round trip needs.
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    return c


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
