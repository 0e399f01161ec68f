"""What every channel adapter does: send outbox messages and say how each attempt went."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from autopersona.delivery.outbox import OutboxMessage, SendResult

__all__ = ["IDEMPOTENCY_FIELD", "Channel", "message_body"]

IDEMPOTENCY_FIELD = "idempotency_key"


def message_body(m: OutboxMessage) -> dict[str, object]:
    """The JSON body a receiver gets: the payload plus the key, channel and address."""
    return {
        **m.payload,
        IDEMPOTENCY_FIELD: m.idempotency_key,
        "decision_id": m.decision_id,
        "channel": m.channel,
        "address": m.address,
    }


class Channel:
    """A delivery channel.

    Subclasses implement :meth:`send` (and may batch in :meth:`send_batch`); they never raise for a failed send but return a
    :class:`~autopersona.delivery.outbox.SendResult` that is retryable or permanent.
    """

    name = "channel"
    #: The adapter sends to a real address (phone, e-mail, a vehicle's topic): with
    #: pseudonymisation on, the dispatcher re-identifies the address through the vault first.
    clear_address = False

    def send(self, message: OutboxMessage) -> SendResult:
        """Send one message."""
        raise NotImplementedError

    def send_batch(self, messages: Sequence[OutboxMessage]) -> list[SendResult]:
        """Send several messages; one result each, in order."""
        return [self.send(m) for m in messages]

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> Channel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
