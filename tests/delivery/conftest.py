"""Fixtures of the delivery tests: outboxes on both backends, sinks and brokers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deliverykit import (
    PG_URL,
    PrivateBroker,
    SmtpSink,
    WebhookSink,
    pg_unavailable,
    shared_broker_unavailable,
)

from autopersona.delivery.config import RetryPolicy
from autopersona.delivery.outbox import DuckDBOutbox, Outbox, PostgresOutbox

POLICY = RetryPolicy(max_attempts=3, base_s=10, cap_s=100, jitter=0.5, seed=1)


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.integration)])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outbox]:
    """An empty outbox per backend (PostgreSQL skips with the reason when unavailable)."""
    if request.param == "duckdb":
        ob: Outbox = DuckDBOutbox(tmp_path / "outbox.duckdb", policy=POLICY, lease_s=60)
        try:
            yield ob
        finally:
            ob.close()
        return
    reason = pg_unavailable()
    if reason:
        pytest.skip(f"PostgreSQL not available: {reason}")
    schema = f"ap_ob_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    pg = PostgresOutbox(PG_URL, schema=schema, policy=POLICY, lease_s=60)
    try:
        yield pg
    finally:
        pg.drop_schema()
        pg.close()


@pytest.fixture
def webhook() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture
def shared_broker() -> int:
    """Port of the shared local Mosquitto (started if needed; skips when impossible)."""
    reason = shared_broker_unavailable()
    if reason:
        pytest.skip(reason)
    return 1883


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A Mosquitto of this test's own (persistence in tmp), for restarts."""
    reason = PrivateBroker.unavailable()
    if reason:
        pytest.skip(reason)
    b = PrivateBroker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test only (the shared broker serves everyone)."""
    return f"aptest-{uuid.uuid4().hex[:10]}/v1"
