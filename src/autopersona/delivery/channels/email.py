"""E-mail through SMTP.

The idempotency key becomes the ``Message-ID`` (and an ``X-Idempotency-Key`` header) so a
mail system can drop a resent copy.
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from email.message import EmailMessage

from autopersona.delivery.channels.base import Channel
from autopersona.delivery.config import SmtpSpec
from autopersona.delivery.outbox import OutboxMessage, SendResult

__all__ = ["EmailChannel", "build_email"]


def build_email(message: OutboxMessage, sender: str) -> EmailMessage:
    """The e-mail for an outbox message: subject = title, text = body (+ offer terms).

    >>> m = OutboxMessage("k-1", "d-1", "email", "ann@example.org", {"title": "Hi", "body": "B"})
    >>> e = build_email(m, "offers@example.org")
    >>> e["Message-ID"], e["To"], e["Subject"]
    ('<k-1@autopersona>', 'ann@example.org', 'Hi')
    """
    e = EmailMessage()
    e["From"] = sender
    e["To"] = message.address
    e["Subject"] = str(message.payload.get("title") or "")
    e["Message-ID"] = f"<{message.idempotency_key}@autopersona>"
    e["X-Idempotency-Key"] = message.idempotency_key
    text = str(message.payload.get("body") or "")
    offer = message.payload.get("offer")
    if offer:
        text += "\n\n" + "\n".join(f"{k}: {v}" for k, v in dict(offer).items())
    e.set_content(text + "\n")
    return e


class EmailChannel(Channel):
    """Send through an SMTP relay; one connection per batch.

    SMTP 4xx replies and connection problems are retryable, 5xx replies permanent.
    """

    name = "email"
    clear_address = True

    def __init__(self, spec: SmtpSpec) -> None:
        self.spec = spec

    def send(self, message: OutboxMessage) -> SendResult:
        """Send one e-mail."""
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[OutboxMessage]) -> list[SendResult]:
        """Send e-mails over one SMTP session."""
        try:
            smtp = smtplib.SMTP(self.spec.host, self.spec.port, timeout=self.spec.timeout_s)
        except (OSError, smtplib.SMTPException) as exc:
            err = SendResult.retry(f"email: cannot reach {self.spec.host}:{self.spec.port}: {exc}")
            return [err] * len(messages)
        out: list[SendResult] = []
        try:
            for i, m in enumerate(messages):
                try:
                    smtp.send_message(build_email(m, self.spec.sender))
                    out.append(SendResult.sent())
                except smtplib.SMTPRecipientsRefused as exc:
                    codes = [c for c, _ in exc.recipients.values()]
                    why = f"email: recipient refused: {exc.recipients}"
                    temp = any(400 <= c < 500 for c in codes)
                    out.append(SendResult.retry(why) if temp else SendResult.fail(why))
                except smtplib.SMTPResponseException as exc:
                    why = f"email: SMTP {exc.smtp_code} {exc.smtp_error!r}"
                    temp = 400 <= exc.smtp_code < 500
                    out.append(SendResult.retry(why) if temp else SendResult.fail(why))
                except (OSError, smtplib.SMTPException) as exc:
                    err = SendResult.retry(f"email: {type(exc).__name__}: {exc}")
                    out.extend([err] * (len(messages) - i))
                    break
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return out
