"""``autopersona outbox``: counts, dead letters with reasons, refused events, requeue."""

from __future__ import annotations

import json
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


def test_run_fails_when_the_feedback_listener_cannot_start(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """No broker on the port: ``run`` gives up with the reason instead of waiting forever."""
    from deliverykit import free_port

    port = str(free_port())
    args = ["run", "-w", str(tmp_path / "w.duckdb"), "--port", port, "--feedback-timeout", "0.5"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1, r.output
    assert "error: the feedback listener did not connect and subscribe to" in r.output
    assert f"127.0.0.1:{port} within 0.5 s" in r.output and "--no-feedback" in r.output
