"""The live engine's journal: framing, torn tails, segments, and exactly-once application."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopersona.delivery.hotpath import (
    BATCH,
    RESULTS,
    BatchRecord,
    LedgerRow,
    WarehouseApplier,
    dead_row,
    encode_results,
    replay_audits,
)
from autopersona.delivery.journal import Journal, JournalError
from autopersona.delivery.outbox import DuckDBOutbox, OutboxMessage
from autopersona.store.warehouse import Warehouse
from autopersona.strategy.decision import Decision, create_decision_table

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jlog"))


def test_records_survive_reopen_and_positions_are_global(tmp_path: Path) -> None:
    with Journal(tmp_path, sync=True) as j:
        p1 = j.append(b"E", b"one")
        p2 = j.append(b"A", b"two", sync=True)
        assert p1 < p2 == j.position
    with Journal(tmp_path) as j:
        assert [(k, b) for _, k, b in j.records(0)] == [(b"E", b"one"), (b"A", b"two")]
        assert [b for _, _, b in j.records(p1)] == [b"two"]
        assert list(j.records(p2)) == []
        assert j.append(b"E", b"three") > p2


def test_bad_kind_and_closed_journal_are_refused(tmp_path: Path) -> None:
    j = Journal(tmp_path, sync=False)
    with pytest.raises(JournalError, match="one byte"):
        j.append(b"EE", b"x")
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.append(b"E", b"x")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    bodies=st.lists(st.binary(max_size=64), min_size=1, max_size=12),
    cut=st.integers(min_value=0, max_value=10_000),
    flip=st.booleans(),
)
def test_a_torn_or_corrupt_tail_is_cut_and_the_rest_kept(
    tmp_path_factory: pytest.TempPathFactory, bodies: list[bytes], cut: int, flip: bool
) -> None:
    folder = tmp_path_factory.mktemp("j")
    ends = []
    with Journal(folder, sync=False) as j:
        for b in bodies:
            ends.append(j.append(b"E", b))
    (seg,) = _segments(folder)
    data = bytearray(seg.read_bytes())
    cut = cut % (len(data) + 1)
    if flip and cut < len(data):
        data[cut] ^= 0xFF  # a corrupt byte: that record and everything after it go
        kept = [b for b, e in zip(bodies, ends, strict=True) if e <= cut]
    else:
        del data[cut:]  # a torn write
        kept = [b for b, e in zip(bodies, ends, strict=True) if e <= cut]
    seg.write_bytes(bytes(data))
    with Journal(folder, sync=False) as j:
        assert [b for _, _, b in j.records(0)] == kept
        assert j.position == (ends[len(kept) - 1] if kept else 0)
        end = j.append(b"E", b"after")  # appends continue right after the intact part
        assert [b for _, _, b in j.records(0)][-1] == b"after"
        assert end == j.position


def test_segments_roll_and_applied_ones_are_released(tmp_path: Path) -> None:
    j = Journal(tmp_path, sync=True, segment_bytes=50)  # one record per segment
    ends = [j.append(b"E", bytes([i]) * 60) for i in range(5)]
    assert len(_segments(tmp_path)) == 5
    assert [b[0] for _, _, b in j.records(0)] == [0, 1, 2, 3, 4]
    assert j.release(ends[2]) == 3  # the first three segments end at or before it
    assert [b[0] for _, _, b in j.records(0)] == [3, 4]
    assert [b[0] for _, _, b in j.records(ends[3])] == [4]
    j.close()
    with Journal(tmp_path) as j2:
        assert j2.position == ends[-1]


def test_a_cleared_journal_continues_after_the_applied_position(tmp_path: Path) -> None:
    with Journal(tmp_path / "a", sync=False) as j:
        j.continue_from(500)  # empty: positions go on from there
        assert j.append(b"E", b"x") > 500
    with Journal(tmp_path / "a", sync=False) as j:
        assert [p for p, _, _ in j.records(500)] == [j.position]
        with pytest.raises(JournalError, match=r"ends at position .* but 9999 was applied"):
            j.continue_from(9999)  # records between were lost: refuse to go on


def test_new_and_renamed_segment_names_are_synced_with_their_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fdatasync makes a segment's records durable, not its name: without an fsync of its
    # folder a power cut can lose a new journal's first segment (with records already
    # acknowledged) or undo continue_from's rename (its records back at position 0).
    synced: list[tuple[int, int]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            synced.append((st.st_dev, st.st_ino))
        real(fd)

    def key(p: Path) -> tuple[int, int]:
        st = p.stat()
        return (st.st_dev, st.st_ino)

    monkeypatch.setattr(os, "fsync", spy)
    folder = tmp_path / "wh.journal" / "w1"
    with Journal(folder) as j:
        assert {key(folder), key(folder.parent), key(tmp_path)} <= set(synced)
        synced.clear()
        j.continue_from(500)
        assert key(folder) in synced
    synced.clear()
    Journal(folder, sync=False).close()  # without sync: no fsync at all
    Journal(tmp_path / "nosync", sync=False).close()
    assert synced == []


# --------------------------------------------------------------------------- application
def _decision(i: int, status: str = "send") -> Decision:
    return Decision(
        f"d{i}", f"k{i}", f"P{i}", f"V{i}", "s", "event", f"e{i}", "head_unit", status, None,
        "r", "treatment", 1, 1.0, "T", "B", {"code": "X"}, T0 + timedelta(seconds=i), None,
    )  # fmt: skip


def _record(i: int) -> BatchRecord:
    d = _decision(i)
    m = OutboxMessage(d.idempotency_key, d.decision_id, "head_unit", f"p/{d.vin}/hu", {"n": i})
    return BatchRecord(
        now=T0 + timedelta(seconds=i),
        worker="w1",
        ledger=[LedgerRow(f"e{i}", f"V{i}", "route_planned", f"p/vehicles/V{i}/events", 1, T0)],
        decisions=[d],
        messages=[m],
        dead=[dead_row("p/vehicles/X/events", "malformed JSON", b"{", T0)] if i % 2 else [],
    )


def test_batch_record_round_trip() -> None:
    rec = _record(3)
    assert BatchRecord.decode(rec.encode()) == rec


def _warehouse(path: Path) -> tuple[Warehouse, WarehouseApplier]:
    wh = Warehouse(path)
    create_decision_table(wh.con)
    wh.con.execute(
        """CREATE TABLE IF NOT EXISTS live_events (event_id VARCHAR PRIMARY KEY, vin VARCHAR,
        type VARCHAR, topic VARCHAR, decisions INTEGER, worker VARCHAR,
        received_at TIMESTAMPTZ, processed_at TIMESTAMPTZ)"""
    )
    return wh, WarehouseApplier(DuckDBOutbox(wh.con.cursor()), "w1")


def test_replay_applies_each_record_exactly_once(tmp_path: Path) -> None:
    wh, applier = _warehouse(tmp_path / "wh.duckdb")
    j = Journal(tmp_path / "journal", sync=True)
    ends = [j.append(BATCH, _record(i).encode()) for i in range(6)]
    j.append(b"A", b"[]")  # another store's record: skipped here
    # a crash after the first three were applied, before the rest
    applier.apply([_record(i).encode() for i in range(3)], ends[2])
    assert applier.replay(j) == 3
    assert applier.replay(j) == 0  # nothing left: a second restart changes nothing
    counts = wh.sql(
        "SELECT (SELECT count(*) FROM strategy_decisions), (SELECT count(*) FROM live_events), "
        "(SELECT count(*) FROM outbox WHERE status = 'sending' AND lease_owner = 'w1'), "
        "(SELECT count(*) FROM event_dead_letters)"
    )
    assert counts == [(6, 6, 6, 3)]
    # every column as recorded (DuckDB reads the JSON records itself)
    got = wh.sql(
        "SELECT decision_id, idempotency_key, person_id, vin, status, guard, priority, "
        "expected_value, offer, created_at, not_after FROM strategy_decisions ORDER BY 1"
    )
    want = [_decision(i) for i in range(6)]
    assert got == [
        (d.decision_id, d.idempotency_key, d.person_id, d.vin, d.status, d.guard, d.priority,
         d.expected_value, '{"code":"X"}', d.created_at, d.not_after)
        for d in want
    ]  # fmt: skip
    assert wh.sql("SELECT payload FROM outbox WHERE idempotency_key = 'k2'") == [('{"n":2}',)]
    assert wh.sql("SELECT reason, payload_bytes, payload FROM event_dead_letters LIMIT 1") == [
        ("malformed JSON", 1, "{")
    ]
    assert applier.applied() == j.position
    lease = wh.sql("SELECT lease_until - created_at FROM outbox LIMIT 1")[0][0]
    assert lease == timedelta(seconds=applier.outbox.lease_s)
    j.close()
    wh.close()


def test_send_results_apply_after_their_rows(tmp_path: Path) -> None:
    from autopersona.delivery.outbox import SendResult

    wh, applier = _warehouse(tmp_path / "wh.duckdb")
    rec = _record(1)
    # the record and the result of its send arrive in the same round
    at = T0 + timedelta(seconds=5)
    applier.apply([rec.encode()], 10, [(rec.messages[0], SendResult.sent(), at)])
    assert wh.sql("SELECT status, attempts, sent_at FROM outbox") == [("sent", 1, at)]
    assert wh.sql("SELECT outcome, attempted_at FROM delivery_attempts") == [("sent", at)]
    wh.close()


def test_replayed_results_mark_messages_sent(tmp_path: Path) -> None:
    """Results journaled before a crash are applied on restart: those messages are not
    sent again; a retryable failure is scheduled for its retry as it would have been."""
    from autopersona.delivery.outbox import SendResult

    wh, applier = _warehouse(tmp_path / "wh.duckdb")
    j = Journal(tmp_path / "journal", sync=False)
    recs = [_record(i) for i in range(3)]
    for rec in recs:
        j.append(BATCH, rec.encode())
    done = [(recs[0].messages[0], SendResult.sent()), (recs[1].messages[0], SendResult.retry("x"))]
    j.append(RESULTS, encode_results(done, T0 + timedelta(seconds=9)))
    assert applier.replay(j) == 4
    got = wh.sql("SELECT idempotency_key, status, attempts FROM outbox ORDER BY 1")
    assert got == [("k0", "sent", 1), ("k1", "failed", 1), ("k2", "sending", 0)]
    j.close()
    wh.close()


def test_journal_files_are_private(tmp_path: Path) -> None:
    """Only the engine's user may read the journal (it holds decisions and addresses)."""
    j = Journal(tmp_path / "j", sync=False, segment_bytes=10)
    j.append(b"E", b"x" * 20)
    j.append(b"E", b"y")  # a second segment
    j.close()
    assert stat.S_IMODE((tmp_path / "j").stat().st_mode) == 0o700
    modes = {stat.S_IMODE(p.stat().st_mode) for p in _segments(tmp_path / "j")}
    assert modes == {0o600}


def test_journaled_audits_reach_the_vault_once(tmp_path: Path) -> None:
    """Audit records written ahead (the dispatcher's) are appended to the vault's audit table
    on replay, with the vault's own position: a second replay adds nothing."""
    import orjson

    from autopersona.privacy.pseudo import AUDIT_TABLE, Vault

    vault = Vault(tmp_path / "vault.duckdb")
    j = Journal(tmp_path / "journal", sync=False)
    row = (T0, "live:w1", "delivery:head_unit", "vin", "0123456789abcdef", True)
    j.append(b"A", orjson.dumps([row, row]))
    j.append(BATCH, _record(0).encode())  # the warehouse's record: not the vault's business
    j.append(b"A", orjson.dumps([row]))
    assert replay_audits(j, vault, "w1") == 3
    assert replay_audits(j, vault, "w1") == 0
    assert vault.journal_position("w1") == j.position
    got = vault.con.execute(f"SELECT read_at, actor, purpose, kind, found FROM {AUDIT_TABLE}")
    assert got.fetchall() == [(T0, "live:w1", "delivery:head_unit", "vin", True)] * 3
    j.close()
    vault.close()


def _slow_fdatasync(
    monkeypatch: pytest.MonkeyPatch, delay: float
) -> tuple[list[tuple[str, float]], threading.Event]:
    """Replace the journal's fdatasync by a slow one that logs when each call starts and ends."""
    real = os.fdatasync
    calls: list[tuple[str, float]] = []
    started = threading.Event()

    def slow(fd: int) -> None:
        calls.append(("start", time.monotonic()))
        started.set()
        time.sleep(delay)
        real(fd)
        calls.append(("end", time.monotonic()))

    monkeypatch.setattr(os, "fdatasync", slow)  # the journal calls os.fdatasync
    return calls, started


def test_sync_returns_only_once_an_fdatasync_begun_after_the_records_has_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two threads sync the same records (the applier and the dispatcher do): the second
    # must not return while the first one's fdatasync, which covers its records, is still
    # running: it would acknowledge messages that a power cut could still lose.
    calls, started = _slow_fdatasync(monkeypatch, 0.2)
    with Journal(tmp_path / "j") as j:
        j.append(b"E", b"one")
        j.append(b"E", b"two")
        first = threading.Thread(target=j.sync)
        first.start()
        assert started.wait(5)
        j.sync()
        returned = time.monotonic()
        ends = [t for kind, t in calls if kind == "end"]
        assert ends and min(ends) <= returned, calls
        first.join()
        assert sum(kind == "start" for kind, _ in calls) == 1  # one fdatasync served both


def test_sync_after_a_new_record_waits_for_its_own_fdatasync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, started = _slow_fdatasync(monkeypatch, 0.2)
    with Journal(tmp_path / "j") as j:
        j.append(b"E", b"one")
        first = threading.Thread(target=j.sync)
        first.start()
        assert started.wait(5)
        j.append(b"E", b"two")  # written while the first fdatasync runs: not covered by it
        t_append = time.monotonic()
        j.sync()
        returned = time.monotonic()
        first.join()
        starts = [t for kind, t in calls if kind == "start"]
        ends = [t for kind, t in calls if kind == "end"]
        # calls never overlap (one at a time), so starts and ends pair up in order
        assert len(starts) == len(ends) == 2, calls
        assert any(s >= t_append and e <= returned for s, e in zip(starts, ends, strict=True))


def test_after_a_failed_fdatasync_no_sync_reports_records_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Linux reports a write-back error once per open file and marks the lost pages clean:
    # the next fdatasync succeeds though records are gone.  A thread syncing after another
    # one's failure (the dispatcher after the applier) must not be told they are durable,
    # or it acknowledges events a power cut loses.
    real = os.fdatasync
    calls: list[int] = []

    def once_broken(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", once_broken)
    j = Journal(tmp_path / "j", segment_bytes=64)
    j.append(b"E", b"one")
    with pytest.raises(OSError, match="Input/output"):
        j.sync()
    with pytest.raises(JournalError, match="fdatasync failed"):
        j.sync()
    j.append(b"E", b"x" * 100)  # written (never reported durable): the segment is full
    with pytest.raises(JournalError, match="fdatasync failed"):
        j.append(b"E", b"y")  # rolling the segment over syncs it
    with pytest.raises(JournalError, match="fdatasync failed"):
        j.close()
    assert j._fd is None  # closed all the same


def test_sync_while_the_segment_rolls_syncs_the_file_it_wrote(tmp_path: Path) -> None:
    # A tiny segment size: nearly every append starts a new segment while other threads
    # sync; no sync may fail on a descriptor the roll closed.
    with Journal(tmp_path / "j", segment_bytes=64) as j:
        errors: list[BaseException] = []

        def syncer() -> None:
            try:
                for _ in range(300):
                    j.sync()
            except BaseException as exc:  # pragma: no cover - the failure being tested
                errors.append(exc)

        threads = [threading.Thread(target=syncer) for _ in range(2)]
        for t in threads:
            t.start()
        for i in range(300):
            j.append(b"E", b"x" * (i % 50))
        for t in threads:
            t.join()
        assert not errors
        assert [b for _, _, b in j.records(0)] == [b"x" * (i % 50) for i in range(300)]
