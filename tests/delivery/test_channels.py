"""Channel adapters against real local receivers: HTTP webhook, SMTP, MQTT head unit, file."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from deliverykit import HeadUnitListener, SmtpSink, WebhookSink, free_port, wait_until

from autopersona.catalog import CatalogError
from autopersona.delivery.channels import (
    EmailChannel,
    FileChannel,
    HeadUnitChannel,
    SmsChannel,
    WebhookChannel,
    headunit_topic,
)
from autopersona.delivery.config import (
    FileSpec,
    MqttBroker,
    MqttSpec,
    SmtpSpec,
    WebhookSpec,
    load_channels_config,
)
from autopersona.delivery.dispatch import Dispatcher, deliver_pending, file_sink_config
from autopersona.delivery.outbox import DuckDBOutbox, OutboxMessage, SendResult


def m(key: str, channel: str = "app_push", address: str = "P1", **kw: object) -> OutboxMessage:
    return OutboxMessage(key, f"d-{key}", channel, address, {"title": "T", "body": "B"}, **kw)  # type: ignore[arg-type]


@pytest.mark.integration
def test_webhook_status_codes(webhook: WebhookSink) -> None:
    ch = WebhookChannel(WebhookSpec(kind="webhook", url=webhook.url("/push"), timeout_s=2))
    webhook.responses["/push"] = [200, 503, 429, 400]
    try:
        results = [ch.send(m(f"k{i}")) for i in range(4)]
    finally:
        ch.close()
    assert results[0] == SendResult.sent()
    assert results[1].retryable and "HTTP 503" in (results[1].error or "")
    assert results[2].retryable and "HTTP 429" in (results[2].error or "")
    assert not results[3].ok and not results[3].retryable and "HTTP 400" in (results[3].error or "")
    got = webhook.at("/push")
    assert got.unique == 1 and got.bodies["k0"]["idempotency_key"] == "k0"
    assert got.bodies["k0"]["address"] == "P1"


def test_webhook_unreachable_and_timeout_are_retryable() -> None:
    port = free_port()  # nothing listens there
    ch = SmsChannel(WebhookSpec(kind="webhook", url=f"http://127.0.0.1:{port}/sms", timeout_s=1))
    try:
        r = ch.send(m("k1", "sms", "+49151"))
    finally:
        ch.close()
    assert r.retryable and r.error and r.error.startswith("sms: ConnectError")


@pytest.mark.integration
def test_email_carries_the_key(smtp: SmtpSink) -> None:
    ch = EmailChannel(SmtpSpec(kind="smtp", port=smtp.port, sender="o@example.org"))
    rs = ch.send_batch([m("k1", "email", "ann@example.org"), m("k2", "email", "bob@example.org")])
    assert rs == [SendResult.sent(), SendResult.sent()]
    assert wait_until(lambda: smtp.received.unique == 2, 5)
    assert smtp.received.bodies["k1"] == {
        "to": ["ann@example.org"],
        "subject": "T",
        "id": "<k1@autopersona>",
    }


def test_email_server_down_is_retryable() -> None:
    ch = EmailChannel(SmtpSpec(kind="smtp", port=free_port(), sender="o@example.org", timeout_s=1))
    (r,) = ch.send_batch([m("k1", "email", "ann@example.org")])
    assert r.retryable and "cannot reach" in (r.error or "")


@pytest.mark.integration
def test_head_unit_publishes_to_the_vehicle_topic(shared_broker: int, prefix: str) -> None:
    broker = MqttBroker(port=shared_broker, topic_prefix=prefix, client_id="t-hu")
    spec = MqttSpec(kind="mqtt", timeout_s=5)
    listener = HeadUnitListener(prefix, shared_broker)
    ch = HeadUnitChannel(spec, broker, client_id=f"t-hu-{time.time_ns()}")
    try:
        soon = datetime.now(UTC) + timedelta(hours=1)
        past = datetime.now(UTC) - timedelta(seconds=1)
        msgs = [
            m("k1", "head_unit", headunit_topic(spec, broker, "VIN1")),
            m("k2", "head_unit", headunit_topic(spec, broker, "VIN2"), not_after=soon),
            m("k3", "head_unit", headunit_topic(spec, broker, "VIN3"), not_after=past),
        ]
        rs = ch.send_batch(msgs)
        assert rs[:2] == [SendResult.sent(), SendResult.sent()]
        assert rs[2].expired
        assert wait_until(lambda: listener.received.unique == 2, 10)
        assert listener.user_props == {"k1": "k1", "k2": "k2"}
        assert listener.received.bodies["k2"]["address"].endswith("/vehicles/VIN2/headunit")
    finally:
        ch.close()
        listener.close()


def test_head_unit_async_send_reports_through_the_callback(shared_broker: int, prefix: str) -> None:
    broker = MqttBroker(port=shared_broker, topic_prefix=prefix, client_id="t-hu-async")
    spec = MqttSpec(kind="mqtt", timeout_s=5)
    listener = HeadUnitListener(prefix, shared_broker)
    ch = HeadUnitChannel(spec, broker, client_id=f"t-hua-{time.time_ns()}")
    got: list[list[SendResult]] = []
    try:
        past = datetime.now(UTC) - timedelta(seconds=1)
        msgs = [
            m("k1", "head_unit", headunit_topic(spec, broker, "VIN1")),
            m("k2", "head_unit", headunit_topic(spec, broker, "VIN2"), not_after=past),
            m("k3", "head_unit", "bad/+/topic"),
        ]
        ch.send_batch_async(msgs, got.append)
        assert wait_until(lambda: len(got) == 1, 10)
        (rs,) = got
        assert rs[0] == SendResult.sent() and rs[1].expired and not rs[2].retryable
        assert wait_until(lambda: listener.received.unique == 1, 10)
        assert ch.async_pending == 0 and ch.expire_async() == 0
    finally:
        ch.close()
        listener.close()


def test_head_unit_broker_down_is_retryable() -> None:
    broker = MqttBroker(port=free_port(), client_id="t-down")
    ch = HeadUnitChannel(MqttSpec(kind="mqtt", timeout_s=1), broker)
    try:
        (r,) = ch.send_batch([m("k1", "head_unit", "x/vehicles/V/headunit")])
    finally:
        ch.close()
    assert r.retryable and "not connected" in (r.error or "")
    got: list[list[SendResult]] = []
    ch = HeadUnitChannel(MqttSpec(kind="mqtt", timeout_s=1), broker)
    try:
        ch.send_batch_async([m("k1", "head_unit", "x/vehicles/V/headunit")], got.append)
    finally:
        ch.close()
    assert got and got[0][0].retryable  # told before send_batch_async returns


def test_file_channel_and_deliver_pending(tmp_path: Path) -> None:
    out = tmp_path / "sent.jsonl"
    ob = DuckDBOutbox(":memory:")
    ob.enqueue([m("k1"), m("k2", "email", "a@example.org"), m("k3", "sms", "")])
    report = deliver_pending(ob, file_sink_config(str(out)))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["idempotency_key"] for x in lines) == ["k1", "k2"]
    assert (report.sent, report.dead) == (2, 1)
    (dead,) = ob.rows(status="dead")
    assert (
        dead["idempotency_key"] == "k3" and dead["last_error"] == "sms: no address for this person"
    )
    assert (
        FileChannel(FileSpec(kind="file", path=str(tmp_path / "no" / "dir")))
        .send(m("k9"))
        .retryable
    )


def test_unconfigured_channel_is_dead_lettered() -> None:
    ob = DuckDBOutbox(":memory:")
    ob.enqueue([m("k1", "carrier_pigeon")])
    rep = Dispatcher(ob, {}).drain()
    assert rep.dead == 1
    assert ob.rows()[0]["last_error"] == "no channel 'carrier_pigeon' is configured"


def test_config_errors_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "channels.yaml"
    p.write_text(
        "channels:\n"
        "  app_push:\n"
        "    kind: webhook\n"
        "    url: http://127.0.0.1:1/push\n"
        "    timout_s: 3\n"
        "retry:\n"
        "  max_attempts: 0\n"
    )
    with pytest.raises(CatalogError) as e:
        load_channels_config(p)
    text = str(e.value)
    assert f"{p}:5: channels -> app_push -> timout_s: unknown key" in text
    assert f"{p}:7: retry -> max_attempts:" in text
