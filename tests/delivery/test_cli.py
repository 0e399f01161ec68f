"""``autopersona outbox``: counts, dead letters with reasons, refused events, requeue;
``autopersona run``: argument errors, a listener that cannot start, its stop signals and
its feedback catch-up."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    # typer imports click.utils.get_binary_stream, deprecated in newer click (third party).
    warnings.simplefilter("ignore", DeprecationWarning)
    from typer.testing import CliRunner

from autopersona.delivery.outbox import OutboxMessage, SendResult, open_outbox
from autopersona.store.warehouse import Warehouse


@pytest.fixture
def app():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from autopersona.cli import app

    return app


def _fill(path: Path) -> None:
    with Warehouse(path) as wh:
        ob = open_outbox(warehouse=wh)
        ms = [OutboxMessage(f"k{i}", f"d{i}", "sms", "+49", {"title": "t"}) for i in range(3)]
        ob.enqueue(ms)
        claimed = ob.claim("w")
        ob.complete(
            [
                (claimed[0], SendResult.fail("sms: HTTP 400 Bad Request: invalid number")),
                (claimed[1], SendResult.sent()),
                (claimed[2], SendResult.retry("sms: HTTP 503")),
            ]
        )
        ob.dead_letter_event("p/vehicles/V/events", "malformed JSON: x", b"{")


def test_outbox_json_and_dead_letters(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wh = tmp_path / "wh.duckdb"
    _fill(wh)
    r = CliRunner().invoke(app, ["outbox", "-w", str(wh), "--status", "dead", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["counts"] == {"dead": 1, "failed": 1, "sent": 1}
    (dead,) = out["messages"]
    assert dead["idempotency_key"] == "k0"
    assert dead["last_error"] == "sms: HTTP 400 Bad Request: invalid number"
    r = CliRunner().invoke(app, ["outbox", "-w", str(wh), "--events", "--json"])
    assert [e["reason"] for e in json.loads(r.stdout)["event_dead_letters"]] == [
        "malformed JSON: x"
    ]
    r = CliRunner().invoke(app, ["outbox", "-w", str(wh)])
    assert r.exit_code == 0 and "dead 1, failed 1, sent 1" in r.stdout
    r = CliRunner().invoke(app, ["outbox", "-w", str(wh), "--requeue-dead"])
    assert "requeued 1 dead messages" in r.stdout
    r = CliRunner().invoke(app, ["outbox", "-w", str(wh), "--status", "lost"])
    assert r.exit_code == 2 and "--status must be one of" in r.output


def test_run_refuses_a_bad_engine_spec(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(app, ["run", "-w", str(tmp_path / "w.duckdb"), "--engine", "nope"])
    assert r.exit_code == 2 and "module:callable" in r.output
    bad = tmp_path / "ch.yaml"
    bad.write_text("channels: {}\nretry: {seed: x}\n")
    r = CliRunner().invoke(app, ["run", "-c", str(bad)])
    assert r.exit_code == 1 and f"{bad}:2: retry -> seed:" in r.output


@pytest.mark.parametrize("spec", ["2/2", "1", "a/b", "-1/2", "0/0"])
def test_run_refuses_a_partition_that_is_not_k_of_n(app, tmp_path: Path, spec: str) -> None:  # type: ignore[no-untyped-def]
    w = tmp_path / "w.duckdb"
    r = CliRunner().invoke(app, ["run", "-w", str(w), "--partition", spec])
    assert r.exit_code == 2, r.output
    assert f"--partition {spec!r}: expected K/N with 0 <= K < N" in r.output
    assert not w.exists()  # refused before anything was opened


def test_run_fails_when_the_feedback_listener_cannot_start(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """No broker on the port: ``run`` gives up with the reason instead of waiting forever."""
    from deliverykit import free_port

    port = str(free_port())
    args = ["run", "-w", str(tmp_path / "w.duckdb"), "--port", port, "--feedback-timeout", "0.5"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1, r.output
    assert "error: the feedback listener did not connect and subscribe to" in r.output
    assert f"127.0.0.1:{port} within 0.5 s" in r.output and "--no-feedback" in r.output


def test_run_feedback_catch_up_waits_for_the_engine_within_bounds() -> None:
    """The catch-up of ``run``'s listener waits for the engine to recover its journal, but
    never longer than its bound; a command that stops before the engine was ready defers
    the batch (for the next session) at once."""
    from autopersona.delivery.cli import _EngineGate
    from autopersona.delivery.feedback import FeedbackDeferred

    gate = _EngineGate(wait_s=0.3)  # no engine ever comes: the caller quarantines
    t0 = time.monotonic()
    gate()
    assert 0.3 <= time.monotonic() - t0 < 2
    gate = _EngineGate(wait_s=60)
    threading.Timer(0.2, gate.close).start()
    t0 = time.monotonic()
    with pytest.raises(FeedbackDeferred, match="stopped before it recovered its journal"):
        gate()
    assert 0.2 <= time.monotonic() - t0 < 2
    t0 = time.monotonic()
    with pytest.raises(FeedbackDeferred):
        gate()  # closed: at once
    assert time.monotonic() - t0 < 0.1


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers are set in the main thread only",
)
def test_run_stop_signals_request_a_stop_and_restore_the_handlers() -> None:
    from autopersona.delivery.cli import _StopSignals

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with _StopSignals() as signals:
        assert not signals.requested.is_set() and signals.name == ""
        os.kill(os.getpid(), signal.SIGTERM)  # would end this process without the handler
        assert signals.requested.wait(2)
        assert signals.name == "SIGTERM"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
