"""App push and SMS: an HTTP POST to a gateway's webhook, with the idempotency key as header.

2xx is sent; 408, 425, 429, 5xx, timeouts and connection errors are retryable; any other 4xx
is permanent (the gateway refused this message and will refuse it again).
"""

from __future__ import annotations

import httpx

from autopersona.delivery.channels.base import Channel, message_body
from autopersona.delivery.config import WebhookSpec
from autopersona.delivery.outbox import OutboxMessage, SendResult

__all__ = ["AppPushChannel", "SmsChannel", "WebhookChannel"]

_RETRYABLE = {408, 425, 429}


class WebhookChannel(Channel):
    """POST each message as JSON to ``spec.url``.

    Parameters
    ----------
    spec
        URL, timeout and idempotency header name.
    """

    name = "webhook"

    def __init__(self, spec: WebhookSpec) -> None:
        self.spec = spec
        self.client = httpx.Client(timeout=spec.timeout_s)

    def send(self, message: OutboxMessage) -> SendResult:
        """POST one message."""
        headers = {self.spec.idempotency_header: message.idempotency_key}
        try:
            r = self.client.post(self.spec.url, json=message_body(message), headers=headers)
        except httpx.TimeoutException as exc:
            return SendResult.retry(f"{self.name}: timeout ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return SendResult.retry(f"{self.name}: {type(exc).__name__}: {exc}")
        if 200 <= r.status_code < 300:
            return SendResult.sent()
        err = f"{self.name}: HTTP {r.status_code} {r.reason_phrase}: {r.text[:200]}"
        if r.status_code >= 500 or r.status_code in _RETRYABLE:
            return SendResult.retry(err)
        return SendResult.fail(err)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()


class AppPushChannel(WebhookChannel):
    """Brand-app push through the push gateway's webhook (address: the person id)."""

    name = "app_push"


class SmsChannel(WebhookChannel):
    """SMS through the SMS gateway's webhook (address: the phone number)."""

    name = "sms"
    clear_address = True
