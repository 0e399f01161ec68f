"""Per-key token buckets (rate limits) and the request-size limit.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request
takes one.  An empty bucket answers 429 with ``Retry-After`` (whole seconds until a token is
back).  Buckets live in the server process: with several worker processes each has its own.

Examples
--------
>>> b = TokenBucket(rate=1.0, burst=2, now=0.0)
>>> b.take(0.0), b.take(0.0), b.take(0.0)
(0.0, 0.0, 1.0)
>>> b.take(1.0)
0.0
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["BodyLimit", "RateLimiter", "TokenBucket"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TokenBucket:
    """A token bucket; :meth:`take` returns 0 when a token was taken, else seconds to wait."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take a token at time ``now`` (seconds); 0.0 on success, else the wait."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Buckets per key id."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str, rate: float, burst: int, now: float) -> int:
        """0 if the request may go, else the ``Retry-After`` seconds (at least 1)."""
        with self._lock:
            b = self._buckets.get(key_id)
            if b is None or b.rate != rate or b.burst != float(burst):
                b = self._buckets[key_id] = TokenBucket(rate, burst, now)
            wait = b.take(now)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))


_TOO_LARGE = (
    b'{"error":{"code":"payload_too_large","message":"request body above %d bytes","details":null}}'
)


class BodyLimit:
    """ASGI middleware: bodies above ``limit`` bytes get 413 (declared, or counted when chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _reject(self, send: Send) -> None:
        body = _TOO_LARGE.replace(b"%d", str(self.limit).encode())
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count streamed bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.limit + 1
                if declared > self.limit:
                    await self._reject(send)
                    return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS") or any(
            n == b"content-length" for n, _ in scope.get("headers", [])
        ):
            await self.app(scope, receive, send)
            return
        # no declared length (chunked): read the body up to the limit before the app runs
        buffered: list[Message] = []
        seen = 0
        while True:
            msg = await receive()
            buffered.append(msg)
            if msg["type"] != "http.request":
                break
            seen += len(msg.get("body", b""))
            if seen > self.limit:
                await self._reject(send)
                return
            if not msg.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)
