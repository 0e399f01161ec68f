"""Channel adapters: one small class per channel, built from the channels configuration.

========== ====================================== ==================================
channel    adapter                                where the idempotency key goes
========== ====================================== ==================================
head_unit  :class:`HeadUnitChannel` (MQTT QoS 1)   payload field + MQTT user property
app_push   :class:`AppPushChannel` (webhook)       ``Idempotency-Key`` header + body
sms        :class:`SmsChannel` (webhook)           ``Idempotency-Key`` header + body
email      :class:`EmailChannel` (SMTP)            ``Message-ID`` + ``X-Idempotency-Key``
(any)      :class:`FileChannel` (JSON lines)       payload field
========== ====================================== ==================================
"""

from __future__ import annotations

from autopersona.delivery.channels.base import Channel, message_body
from autopersona.delivery.channels.email import EmailChannel
from autopersona.delivery.channels.file import FileChannel
from autopersona.delivery.channels.headunit import HeadUnitChannel, headunit_topic
from autopersona.delivery.channels.webhook import AppPushChannel, SmsChannel, WebhookChannel
from autopersona.delivery.config import (
    ChannelsConfig,
    FileSpec,
    MqttSpec,
    SmtpSpec,
    WebhookSpec,
)

__all__ = [
    "AppPushChannel",
    "Channel",
    "EmailChannel",
    "FileChannel",
    "HeadUnitChannel",
    "SmsChannel",
    "WebhookChannel",
    "build_channels",
    "headunit_topic",
    "message_body",
]


def build_channels(config: ChannelsConfig, *, client_id: str | None = None) -> dict[str, Channel]:
    """One adapter per configured channel.

    >>> from autopersona.delivery.config import load_channels_config
    >>> sorted(build_channels(load_channels_config()))
    ['app_push', 'email', 'head_unit', 'sms']
    """
    out: dict[str, Channel] = {}
    for name, spec in config.channels.items():
        if isinstance(spec, MqttSpec):
            out[name] = HeadUnitChannel(spec, config.mqtt, client_id=client_id)
        elif isinstance(spec, WebhookSpec):
            cls = {"app_push": AppPushChannel, "sms": SmsChannel}.get(name, WebhookChannel)
            out[name] = cls(spec)
        elif isinstance(spec, SmtpSpec):
            out[name] = EmailChannel(spec)
        elif isinstance(spec, FileSpec):
            out[name] = FileChannel(spec)
    return out
