"""Feedback in over MQTT (real local Mosquitto): join to decisions, quarantine, de-duplication,
persistent session across restarts and a crash before the acknowledgement, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from deliverykit import Publisher, wait_until

from autopersona.delivery.config import MqttBroker
from autopersona.delivery.feedback import FeedbackIntake, FeedbackListener, Inbound
from autopersona.store.warehouse import QUARANTINE_TABLE, Warehouse
from autopersona.strategy.decision import Decision, idempotency_key, write_decisions

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _decision(n: int, channel: str = "app_push") -> Decision:
    person, vin = f"PER-{n}", f"VIN{n:014d}"
    return Decision(
        decision_id=f"d{n}",
        idempotency_key=idempotency_key("s_feedback", person, "2026-03-02"),
        person_id=person,
        vin=vin,
        strategy_id="s_feedback",
        trigger="schedule",
        trigger_key="2026-03-02",
        channel=channel,
        status="send",
        guard=None,
        reason="test",
        arm="treatment" if n % 2 else "baseline",
        priority=50,
        expected_value=1.0,
        title="t",
        body="b",
        created_at=T0,
    )


DECISIONS = [_decision(1), _decision(2, "head_unit"), _decision(3, "sms")]


def _wh(path: Path) -> Warehouse:
    wh = Warehouse(path)
    write_decisions(wh.con, DECISIONS)
    return wh


def _broker(port: int, prefix: str) -> MqttBroker:
    return MqttBroker(port=port, topic_prefix=prefix, session_expiry_s=300, keepalive_s=10)


class FeedbackPublisher(Publisher):
    """Publishes channel feedback on ``{prefix}/feedback/{channel}`` (QoS 1)."""

    def feedback(self, channel: str, payload: dict[str, Any] | bytes) -> Any:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(f"{self.prefix}/feedback/{channel}", body, qos=1)
        info.wait_for_publish(10)
        return info


def _ts(minutes: int) -> str:
    return (T0.replace(minute=minutes)).isoformat()


def _handled(listener: FeedbackListener) -> int:
    s = listener.stats
    return s.loaded + s.duplicates + s.quarantined


def test_feedback_over_mqtt_is_joined_validated_and_deduplicated(
    shared_broker: int, prefix: str, tmp_path: Path
) -> None:
    wh = _wh(tmp_path / "w.duckdb")
    cid = f"fb-{uuid.uuid4().hex[:8]}"
    listener = FeedbackListener(wh, _broker(shared_broker, prefix), client_id=cid)
    pub = FeedbackPublisher(prefix, shared_broker)
    try:
        listener.start()
        assert listener.wait_connected(10)
        d1 = DECISIONS[0]
        sent = [
            # joined by idempotency key only: decision, person, strategy, arm filled in
            ("app", {"idempotency_key": d1.idempotency_key, "event_type": "sent", "ts": _ts(0)}),
            # by decision id, with dwell; channel from the topic
            ("app", {"decision_id": "d1", "event_type": "exposed", "ts": _ts(5), "dwell_s": 7.5}),
            # the channel retries its report: same derived key, same values -> duplicate
            ("app", {"idempotency_key": d1.idempotency_key, "event_type": "sent", "ts": _ts(0)}),
            ("head_unit", {"decision_id": "d2", "event_type": "voice_reply", "ts": _ts(7)}),
            (
                "sms",
                {
                    "event_id": "conv-3",
                    "decision_id": "d3",
                    "event_type": "converted",
                    "ts": _ts(30),
                    "value": 129.0,
                },
            ),
            # an organic purchase: no decision, named in full
            (
                "app",
                {
                    "event_id": "organic-9",
                    "person_id": "PER-9",
                    "campaign_id": "s_feedback",
                    "channel": "none",
                    "event_type": "converted",
                    "ts": _ts(40),
                    "value": 50.0,
                },
            ),
            # refused: unknown decision, foreign person, bad step, negative value, not JSON
            ("app", {"decision_id": "nope", "event_type": "clicked", "ts": _ts(9)}),
            (
                "app",
                {"decision_id": "d1", "person_id": "PER-2", "event_type": "clicked", "ts": _ts(9)},
            ),
            ("app", {"decision_id": "d1", "event_type": "liked", "event_id": "x1", "ts": _ts(9)}),
            (
                "sms",
                {
                    "decision_id": "d3",
                    "event_type": "converted",
                    "event_id": "x2",
                    "ts": _ts(9),
                    "value": -5,
                },
            ),
            ("app", b'{"decision_id": "d1", '),
        ]
        for ch, p in sent:
            pub.feedback(ch, p)
        assert wait_until(lambda: _handled(listener) >= len(sent), 20), listener.stats
    finally:
        pub.close()
        listener.stop()
    s = listener.stats
    assert (s.received, s.loaded, s.duplicates, s.quarantined) == (11, 5, 1, 5), s
    rows = wh.frame(
        "SELECT event_id, person_id, campaign_id, decision_id, arm, channel, event_type, value, "
        "dwell_s FROM marketing_feedback ORDER BY event_id"
    )
    got = {r["event_id"]: r for r in rows.to_dict("records")}
    assert set(got) == {"d1-sent", "d1-exposed", "d2-voice_reply", "conv-3", "organic-9"}
    assert got["d1-sent"]["person_id"] == "PER-1"
    assert got["d1-sent"]["campaign_id"] == "s_feedback"
    assert got["d1-sent"]["arm"] == "treatment"
    assert got["d1-sent"]["channel"] == "app"  # from the topic; app_push is the app channel
    assert got["d1-exposed"]["dwell_s"] == 7.5
    assert got["d2-voice_reply"]["channel"] == "head_unit"
    assert got["conv-3"]["value"] == 129.0 and got["conv-3"]["arm"] == "treatment"
    assert pd.isna(got["organic-9"]["decision_id"])
    q = wh.frame(f"SELECT source_file, field, reason, raw FROM {QUARANTINE_TABLE} ORDER BY reason")
    reasons = " | ".join(q["reason"])
    assert "unknown decision: decision_id 'nope'" in reasons
    assert "decision mismatch: person_id 'PER-2'" in reasons
    assert "liked" in reasons
    assert "value" in set(q["field"].dropna()) and "event_type" in set(q["field"].dropna())
    assert "invalid JSON" in reasons
    assert len(q) == 5 and q["source_file"].str.startswith(f"mqtt:{prefix}/feedback/").all()
    assert q["raw"].notna().all()  # the refused payload is kept, never lost
    wh.close()


def test_persistent_session_and_redelivery_after_a_crash(
    shared_broker: int, prefix: str, tmp_path: Path
) -> None:
    """Events published while the listener is down arrive when it comes back; events it
    loaded but never acknowledged (a crash) come again and count as duplicates."""
    wh = _wh(tmp_path / "w.duckdb")
    cid = f"fb-{uuid.uuid4().hex[:8]}"
    broker = _broker(shared_broker, prefix)
    first = FeedbackListener(wh, broker, client_id=cid)
    first.start()
    assert first.wait_connected(10)
    first.stop()
    pub = FeedbackPublisher(prefix, shared_broker)
    try:
        steps = ("sent", "delivered", "exposed", "clicked")
        for step in steps:  # the listener is down: the broker keeps them for its session
            pub.feedback("app", {"decision_id": "d1", "event_type": step, "ts": _ts(1)})
        crashing = FeedbackListener(wh, broker, client_id=cid)
        crashing.client.ack = lambda mid, qos: None  # type: ignore[method-assign]
        crashing.start()
        assert wait_until(lambda: _handled(crashing) >= len(steps), 20), crashing.stats
        assert crashing.stats.loaded == len(steps)
        crashing.client.loop_stop()  # dies: nothing acknowledged, no clean disconnect
        crashing.client.socket().close()  # type: ignore[union-attr]
        crashing._stop.set()
        again = FeedbackListener(wh, broker, client_id=cid)
        again.start()
        assert wait_until(lambda: _handled(again) >= len(steps), 20), again.stats
        pub.feedback("app", {"decision_id": "d3", "event_type": "sent", "ts": _ts(2)})
        assert wait_until(lambda: again.stats.loaded >= 1, 20), again.stats
        again.stop()
    finally:
        pub.close()
    assert again.stats.duplicates == len(steps)  # redelivered, not loaded twice
    n = wh.sql("SELECT count(*), count(DISTINCT event_id) FROM marketing_feedback")[0]
    assert n == (len(steps) + 1, len(steps) + 1)
    wh.close()


def test_cli_listen_takes_the_queued_feedback(
    shared_broker: int, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "w.duckdb"
    wh = _wh(path)
    cid = f"fb-cli-{uuid.uuid4().hex[:8]}"
    lst = FeedbackListener(wh, _broker(shared_broker, prefix), client_id=cid)
    lst.start()
    assert lst.wait_connected(10)
    lst.stop()
    wh.close()
    pub = FeedbackPublisher(prefix, shared_broker)
    try:
        pub.feedback("sms", {"decision_id": "d3", "event_type": "sent", "ts": _ts(3)})
        pub.feedback("sms", b"\xff\xfe")
    finally:
        pub.close()
    main = "from autopersona.cli import main; main()"
    cmd = [sys.executable, "-c", main, "feedback", "listen", "-w", str(path),
           "--port", str(shared_broker), "--topic-prefix", prefix, "--client-id", cid,
           "--count", "2"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert (stats["loaded"], stats["quarantined"], stats["joined"]) == (1, 1, 1)
    with Warehouse(path, read_only=True) as w:
        assert w.sql("SELECT event_id, channel FROM marketing_feedback") == [("d3-sent", "sms")]
        assert "non-UTF-8" in w.sql(f"SELECT reason FROM {QUARANTINE_TABLE}")[0][0]


def test_intake_reports_add_up_without_a_broker(tmp_path: Path) -> None:
    """The intake alone (the webhook path): every payload loaded, duplicate or quarantined."""
    with _wh(tmp_path / "w.duckdb") as wh:
        intake = FeedbackIntake(wh)
        batch = [
            Inbound({"decision_id": "d2", "event_type": "exposed", "ts": _ts(1)}),
            Inbound({"decision_id": "d2", "event_type": "exposed", "ts": _ts(1)}),
            Inbound({"decision_id": "d2", "event_type": "exposed", "ts": _ts(2)}),  # conflict
            Inbound(b"[1, 2]"),
            Inbound(b""),
        ]
        rep = intake.ingest(batch)
        assert rep.received == rep.loaded + rep.duplicates + rep.quarantined == 5
        assert (rep.loaded, rep.duplicates, rep.quarantined) == (1, 1, 3)
        assert rep.reasons.get("expected a JSON object, found list") == 1
        assert rep.reasons.get("empty payload") == 1
        again = intake.ingest(batch[:1])
        assert (again.loaded, again.duplicates) == (0, 1)


@pytest.mark.parametrize("pseudonymise", ["1", "0"])
def test_a_lone_surrogate_is_quarantined_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pseudonymise: str
) -> None:
    """A ``\\ud800`` escape is valid JSON syntax but no UTF-8 text: that payload is refused,
    the rest of its batch loads (it used to fail the whole batch, and kill the listener)."""
    monkeypatch.setenv("AUTOPERSONA_PSEUDONYMISE", pseudonymise)
    bad_id = b'{"decision_id": "d1", "event_type": "clicked", "event_id": "x\\ud800"}'
    bad_person = b'{"person_id": "P\\udc00", "event_type": "clicked", "event_id": "e9"}'
    bad_dict = {"decision_id": "d1", "event_type": "exposed", "event_id": "y\ud800"}
    bad_str = '{"decision_id": "d1", "event_type": "sent", "event_id": "z\ud800"}'
    good = {"decision_id": "d2", "event_type": "exposed", "ts": _ts(1)}
    for partition in (None, (0, 1)):
        with _wh(tmp_path / f"w{partition is None}.duckdb") as wh:
            intake = FeedbackIntake(wh, partition=partition)
            batch = [Inbound(p) for p in (bad_id, bad_person, bad_dict, bad_str, good)]
            rep = intake.ingest(batch)
            assert (rep.received, rep.loaded, rep.quarantined) == (5, 1, 4)
            assert wh.sql("SELECT event_id FROM marketing_feedback") == [("d2-exposed",)]
            reasons = [r[0] for r in wh.sql(f"SELECT reason FROM {QUARANTINE_TABLE}")]
            assert len(reasons) == 4 and all("surrogate" in r for r in reasons), reasons


def test_feedback_naming_a_decision_and_its_key_is_joined_when_the_key_recurs(
    tmp_path: Path,
) -> None:
    """Two decisions with one idempotency key (same strategy, person and trigger): the
    outbox sends one message, the first decision's; feedback naming that decision and the
    key is consistent and loads (it was refused as a mismatch with the later decision)."""
    later = Decision(
        **{**_decision(1).__dict__, "decision_id": "d1-again", "created_at": T0.replace(minute=5)}
    )
    with _wh(tmp_path / "w.duckdb") as wh:
        write_decisions(wh.con, [later])
        rep = FeedbackIntake(wh).ingest(
            [
                Inbound(
                    {
                        "decision_id": "d1",
                        "idempotency_key": DECISIONS[0].idempotency_key,
                        "event_type": "clicked",
                        "ts": _ts(6),
                    }
                )
            ]
        )
        assert (rep.loaded, rep.quarantined, rep.joined) == (1, 0, 1), rep.reasons
        assert wh.sql("SELECT decision_id, event_id FROM marketing_feedback") == [
            ("d1", "d1-clicked")
        ]
        wrong = {"decision_id": "d2", "idempotency_key": DECISIONS[0].idempotency_key}
        rep = FeedbackIntake(wh).ingest([Inbound({**wrong, "event_type": "clicked"})])
        assert (rep.quarantined, rep.reasons) == (1, {"decision mismatch": 1})
