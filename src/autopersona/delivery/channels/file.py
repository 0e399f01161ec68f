"""A file (or standard output) sink: each message as one JSON line.  For demos and dry runs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from autopersona.delivery.channels.base import Channel, message_body
from autopersona.delivery.config import FileSpec
from autopersona.delivery.outbox import OutboxMessage, SendResult

__all__ = ["FileChannel"]


class FileChannel(Channel):
    """Append messages to ``spec.path`` (``-`` = standard output) as JSON lines."""

    name = "file"

    def __init__(self, spec: FileSpec) -> None:
        self.spec = spec

    def send(self, message: OutboxMessage) -> SendResult:
        """Write one message."""
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[OutboxMessage]) -> list[SendResult]:
        """Write the messages in one go."""
        text = "".join(
            json.dumps(message_body(m), default=str, sort_keys=True) + "\n" for m in messages
        )
        try:
            if self.spec.path == "-":
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                with Path(self.spec.path).open("a", encoding="utf-8") as f:
                    f.write(text)
        except OSError as exc:
            return [SendResult.retry(f"file: {exc}")] * len(messages)
        return [SendResult.sent()] * len(messages)
