"""``POST /v1/feedback``: the channels' webhook joins events to decisions (same intake as MQTT)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from autopersona.api.app import create_app
from autopersona.store.warehouse import QUARANTINE_TABLE, Warehouse
from autopersona.strategy.decision import Decision, idempotency_key, write_decisions

from .apicheck import hdr, make_key, settings_for

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_feedback_webhook_joins_quarantines_and_deduplicates(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    key = idempotency_key("s_hook", "PER-1", "2026-03-02")
    with Warehouse(db) as wh:
        write_decisions(
            wh.con,
            [
                Decision(
                    decision_id="d1",
                    idempotency_key=key,
                    person_id="PER-1",
                    vin="V1",
                    strategy_id="s_hook",
                    trigger="schedule",
                    trigger_key="2026-03-02",
                    channel="app_push",
                    status="send",
                    guard=None,
                    reason="test",
                    arm="treatment",
                    priority=1,
                    expected_value=0.0,
                    title="t",
                    body="b",
                    created_at=T0,
                )
            ],
        )
    s = settings_for(db)
    writer, reader = make_key(s, "write:events"), make_key(s, "read:profiles")
    rows = [
        {"idempotency_key": key, "event_type": "sent", "ts": "2026-03-02T10:00:00Z"},
        {
            "idempotency_key": key,
            "event_type": "clicked",
            "ts": "2026-03-02T10:05:00Z",
            "dwell_s": 42,
        },
        {
            "decision_id": "d1",
            "event_id": "c1",
            "event_type": "converted",
            "ts": "2026-03-02T12:00:00Z",
            "value": 300,
        },
        {"decision_id": "d404", "event_type": "clicked", "ts": "2026-03-02T10:05:00Z"},
    ]
    with TestClient(create_app(s)) as client:
        assert (
            client.post("/v1/feedback", json={"rows": rows}, headers=hdr(reader)).status_code == 403
        )
        r = client.post("/v1/feedback", json={"rows": rows}, headers=hdr(writer))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["received"], body["loaded"], body["quarantined"], body["joined"]) == (
            4,
            3,
            1,
            3,
        )
        assert body["reasons"] == {"unknown decision": 1}
        again = client.post("/v1/feedback", json={"rows": rows[:3]}, headers=hdr(writer)).json()
        assert (again["loaded"], again["duplicates"]) == (0, 3)
    with Warehouse(db, read_only=True) as wh:
        got = wh.sql(
            "SELECT event_id, person_id, campaign_id, channel, arm, dwell_s, value "
            "FROM marketing_feedback ORDER BY ts"
        )
        assert got == [
            ("d1-sent", "PER-1", "s_hook", "app", "treatment", None, None),
            ("d1-clicked", "PER-1", "s_hook", "app", "treatment", 42.0, None),
            ("c1", "PER-1", "s_hook", "app", "treatment", None, 300.0),
        ]
        q = wh.sql(f"SELECT source_file, reason FROM {QUARANTINE_TABLE}")
        assert q == [("webhook", "unknown decision: decision_id 'd404'")]
