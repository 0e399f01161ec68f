"""Feedback to partitioned live workers: each payload is written by exactly one of them.

Every worker's listener receives every feedback payload (``run --partition K/N``); each
warehouse holds only its own persons' decisions.  No broker needed: the intakes are fed
the same batch, as the listeners would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from deliverykit import make_decision

from autopersona.delivery.feedback import FeedbackIntake, Inbound
from autopersona.store.warehouse import QUARANTINE_TABLE, Warehouse
from autopersona.strategy.decision import (
    Decision,
    new_decision_id,
    partition_of,
    write_decisions,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
#: the first persons each partition owns
PERSONS = {
    k: [p for p in (f"PER-{i}" for i in range(40)) if partition_of(p, 2) == k][:2] for k in (0, 1)
}


def _decision(person: str, k: int, trigger: str) -> Decision:
    return make_decision(
        decision_id=new_decision_id((k, 2)),
        person_id=person,
        strategy_id="s_live",
        trigger_key=trigger,
        priority=50,
        created_at=T0,
    )


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[tuple[FeedbackIntake, Warehouse, list[Decision]]]]:
    out = []
    for k in (0, 1):
        wh = Warehouse(tmp_path / f"w{k}.duckdb")
        ds = [_decision(p, k, f"e{j}") for j, p in enumerate(PERSONS[k])]
        write_decisions(wh.con, ds)
        out.append((FeedbackIntake(wh, partition=(k, 2)), wh, ds))
    yield out
    for _, wh, _ in out:
        wh.close()


def _feed(workers: list[Any], payloads: list[Any]) -> list[Any]:
    return [intake.ingest([Inbound(p, "mqtt:test") for p in payloads]) for intake, _, _ in workers]


def _ts(m: int) -> str:
    return T0.replace(minute=m).isoformat()


def test_each_payload_is_written_by_one_worker(workers: list[Any]) -> None:
    (_, _, d0), (_, _, d1) = workers[0], workers[1]
    # a key whose hash names the holder (0) and, further below, one that names the other
    batch = [
        {"person_id": d0[0].person_id, "decision_id": d0[0].decision_id,
         "event_type": "clicked", "ts": _ts(1)},  # by person
        {"decision_id": d1[0].decision_id, "event_type": "exposed", "ts": _ts(2)},  # by id
        {"event_id": "buy-1", "person_id": PERSONS[1][1], "event_type": "converted",
         "ts": _ts(3), "campaign_id": "organic", "channel": "app", "value": 30.0},  # organic
        {"decision_id": new_decision_id((1, 2)), "event_type": "exposed", "ts": _ts(4)},  # unknown
        b"{not json",  # refused: by the hash of the payload
    ]  # fmt: skip
    reps = _feed(workers, batch)
    for rep in reps:
        assert rep.received == rep.loaded + rep.duplicates + rep.quarantined + rep.others == 5
    assert sum(r.loaded for r in reps) == 3
    assert sum(r.quarantined for r in reps) == 2
    assert sum(r.others for r in reps) == 5  # every payload skipped by the other worker
    (_, wh0, _), (_, wh1, _) = workers
    assert wh0.sql("SELECT person_id, event_type FROM marketing_feedback") == [
        (d0[0].person_id, "clicked")
    ]
    assert sorted(wh1.sql("SELECT person_id, event_type FROM marketing_feedback")) == sorted(
        [(d1[0].person_id, "exposed"), (PERSONS[1][1], "converted")]
    )
    unknown = wh1.sql(f"SELECT reason FROM {QUARANTINE_TABLE} WHERE reason LIKE 'unknown%'")
    assert len(unknown) == 1  # the unknown decision id hashes to worker 1, which holds none


def test_a_key_alone_is_taken_by_the_worker_that_holds_its_decision(workers: list[Any]) -> None:
    keys = [(k, d.idempotency_key) for k, (_, _, ds) in enumerate(workers) for d in ds]
    for holder, key in keys:
        reps = _feed(workers, [{"idempotency_key": key, "event_type": "delivered", "ts": _ts(5)}])
        assert reps[holder].loaded == 1 and reps[holder].joined == 1
        other = reps[1 - holder]
        # the other worker cannot tell that the holder has it: it skips the payload, or, when
        # the key's hash names it, quarantines it as unknown there (nothing is lost)
        if partition_of(key, 2) == holder:
            assert (other.others, other.quarantined) == (1, 0)
        else:
            assert (other.others, other.quarantined) == (0, 1)
            (_, wh, _) = workers[1 - holder]
            (why,) = wh.sql(f"SELECT reason FROM {QUARANTINE_TABLE} WHERE raw LIKE ?", [f"%{key}%"])
            assert "another worker may hold it" in why[0]


def test_partitioned_workers_draw_decision_ids_in_their_partition() -> None:
    assert {partition_of(new_decision_id((k, 3)), 3) for k in range(3) for _ in range(20)} == {
        0,
        1,
        2,
    }
    assert all(partition_of(new_decision_id((1, 3)), 3) == 1 for _ in range(50))
