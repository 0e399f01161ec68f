"""Delivery: the transactional outbox, channel adapters and the live engine.

Decisions to send are written to the outbox in the same transaction as the decision log
(:mod:`autopersona.delivery.outbox`); a dispatcher sends them through one adapter per channel
(:mod:`autopersona.delivery.channels`) with retries, backoff and a dead letter; the live engine
(:mod:`autopersona.delivery.live`) turns vehicle events from MQTT into decisions and sends.

Batch jobs and the demo call :func:`deliver_pending` (with :func:`file_sink_config` every
channel "sends" to a JSON-lines file or standard output).
"""

from autopersona.delivery.config import ChannelsConfig, RetryPolicy, load_channels_config
from autopersona.delivery.dispatch import (
    Dispatcher,
    DispatchReport,
    deliver_pending,
    file_sink_config,
    messages_for,
)
from autopersona.delivery.outbox import (
    DuckDBOutbox,
    Outbox,
    OutboxMessage,
    PostgresOutbox,
    SendResult,
    open_outbox,
)

__all__ = [
    "ChannelsConfig",
    "DispatchReport",
    "Dispatcher",
    "DuckDBOutbox",
    "Outbox",
    "OutboxMessage",
    "PostgresOutbox",
    "RetryPolicy",
    "SendResult",
    "deliver_pending",
    "file_sink_config",
    "load_channels_config",
    "messages_for",
    "open_outbox",
]
