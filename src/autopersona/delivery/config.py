"""Delivery settings as data: the live engine's broker, the channel endpoints, retry policy.

One YAML file (the built-in ``delivery/channels.yaml`` unless another is given), validated
by pydantic models with ``extra="forbid"``; errors name ``file:line``.

Examples
--------
>>> cfg = load_channels_config()
>>> cfg.channels["head_unit"].kind, cfg.retry.max_attempts
('mqtt', 6)
>>> cfg.retry.delay("key-1", 1) == cfg.retry.delay("key-1", 1)
True
>>> 1.0 <= cfg.retry.delay("key-1", 1) <= 2.0
True
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from autopersona.catalog import CatalogError, CatalogIssue, line_for, load_yaml_with_lines

__all__ = [
    "ChannelSpec",
    "ChannelsConfig",
    "FileSpec",
    "MqttBroker",
    "MqttSpec",
    "RetryPolicy",
    "SmtpSpec",
    "WebhookSpec",
    "builtin_config_path",
    "load_channels_config",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttBroker(_Model):
    """The broker the live engine reads vehicle events from (and head-unit messages go to)."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "autopersona/v1"
    client_id: str = "autopersona-engine"
    share_group: str | None = "autopersona"
    session_expiry_s: int = Field(86400, ge=0)
    keepalive_s: int = Field(30, ge=5)
    receive_maximum: int = Field(1000, ge=1, le=65535)

    @property
    def events_topic(self) -> str:
        """Subscription filter of vehicle events (shared when ``share_group`` is set)."""
        topic = f"{self.topic_prefix}/vehicles/+/events"
        return f"$share/{self.share_group}/{topic}" if self.share_group else topic


class MqttSpec(_Model):
    """Head unit: publish to the vehicle's topic (``{prefix}`` and ``{vin}`` are filled in)."""

    kind: Literal["mqtt"]
    topic: str = "{prefix}/vehicles/{vin}/headunit"
    qos: Literal[0, 1, 2] = 1
    timeout_s: float = Field(10.0, gt=0)


class WebhookSpec(_Model):
    """App push / SMS gateway: HTTP POST of the message as JSON with an idempotency header."""

    kind: Literal["webhook"]
    url: str
    timeout_s: float = Field(5.0, gt=0)
    idempotency_header: str = "Idempotency-Key"


class SmtpSpec(_Model):
    """E-mail through an SMTP relay."""

    kind: Literal["smtp"]
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    sender: str
    timeout_s: float = Field(10.0, gt=0)


class FileSpec(_Model):
    """Append each message as one JSON line to a file (``-`` is standard output)."""

    kind: Literal["file"]
    path: str = "-"


_KINDS = ("mqtt", "webhook", "smtp", "file")
ChannelSpec = Annotated[MqttSpec | WebhookSpec | SmtpSpec | FileSpec, Field(discriminator="kind")]


class RetryPolicy(_Model):
    """Exponential backoff with seeded jitter; dead-letter after ``max_attempts``.

    The delay before attempt ``n + 1`` after ``n`` failed attempts is
    ``d * (1 - jitter) + d * jitter * u`` with ``d = min(cap_s, base_s * 2 ** (n - 1))`` and
    ``u`` in [0, 1) drawn from a hash of (seed, key, n): the same message gets the same
    schedule on every worker and every run, and different messages spread out.
    """

    max_attempts: int = Field(6, ge=1)
    base_s: float = Field(2.0, ge=0)
    cap_s: float = Field(600.0, ge=0)
    jitter: float = Field(0.5, ge=0, le=1)
    seed: int = 0

    def delay(self, key: str, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed attempts of message ``key``."""
        d = min(self.cap_s, self.base_s * 2.0 ** max(0, attempts - 1))
        h = hashlib.blake2b(f"{self.seed}:{key}:{attempts}".encode(), digest_size=8).digest()
        u = int.from_bytes(h, "big") / 2.0**64
        return d * (1.0 - self.jitter) + d * self.jitter * u


class ChannelsConfig(_Model):
    """The whole delivery configuration."""

    mqtt: MqttBroker = MqttBroker()
    channels: dict[str, ChannelSpec]
    retry: RetryPolicy = RetryPolicy()
    lease_s: float = Field(30.0, gt=0)
    event_max_bytes: int = Field(65536, ge=64)


def builtin_config_path() -> Path:
    """The built-in configuration file (loopback endpoints)."""
    return Path(str(resources.files("autopersona.delivery") / "channels.yaml"))


def load_channels_config(path: str | Path | None = None) -> ChannelsConfig:
    """Load and validate a channels file (default: the built-in one).

    Raises
    ------
    autopersona.catalog.CatalogError
        With ``file:line`` for each problem.
    """
    path = path or builtin_config_path()
    data, lines = load_yaml_with_lines(path)
    try:
        return ChannelsConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = list(err["loc"])
            # A channel's loc carries the discriminator (channels -> name -> kind -> field).
            if len(loc) >= 3 and loc[0] == "channels" and loc[2] in _KINDS:
                del loc[2]
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            where = " -> ".join(str(p) for p in loc)
            issues.append(CatalogIssue(str(path), line_for(lines, tuple(loc)), where, msg))
        raise CatalogError(issues) from None
