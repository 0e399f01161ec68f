"""The outbox on DuckDB and PostgreSQL: idempotent enqueue, leases, retries, dead letters."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopersona.delivery.config import RetryPolicy
from autopersona.delivery.outbox import (
    DuckDBOutbox,
    Outbox,
    OutboxMessage,
    SendResult,
    open_outbox,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def msg(i: int, **kw: object) -> OutboxMessage:
    base: dict[str, object] = {
        "idempotency_key": f"k{i:04d}",
        "decision_id": f"d{i}",
        "channel": "app_push",
        "address": f"P{i}",
        "payload": {"title": f"t{i}", "offer": {"pct": 10}},
    }
    base.update(kw)
    return OutboxMessage(**base)  # type: ignore[arg-type]


def test_enqueue_is_idempotent(outbox: Outbox) -> None:
    assert outbox.enqueue([msg(1), msg(2)], now=T0) == ["k0001", "k0002"]
    assert outbox.enqueue([msg(2), msg(3), msg(3)], now=T0) == ["k0003"]
    assert outbox.counts() == {"pending": 3}
    row = next(r for r in outbox.rows() if r["idempotency_key"] == "k0001")
    assert row["payload"] == {"title": "t1", "offer": {"pct": 10}}
    assert row["attempts"] == 0 and row["max_attempts"] == 3


def test_rollback_leaves_nothing(outbox: Outbox) -> None:
    def crash() -> None:
        with outbox.transaction():
            outbox.enqueue([msg(1)], now=T0)
            raise RuntimeError("crash between decision and commit")

    with pytest.raises(RuntimeError):
        crash()
    assert outbox.counts() == {}
    with outbox.transaction():
        outbox.enqueue([msg(1)], now=T0)
    assert outbox.counts() == {"pending": 1}


def test_claim_leases_and_expired_leases_are_taken_over(outbox: Outbox) -> None:
    outbox.enqueue([msg(i) for i in range(5)], now=T0)
    a = outbox.claim("w1", limit=3, now=T0)
    b = outbox.claim("w2", limit=10, now=T0)
    assert len(a) == 3 and len(b) == 2
    assert not {m.idempotency_key for m in a} & {m.idempotency_key for m in b}
    assert outbox.claim("w3", now=T0 + timedelta(seconds=59)) == []
    # w1 died: after the 60 s lease its rows are due again.
    again = outbox.claim("w3", now=T0 + timedelta(seconds=61))
    assert {m.idempotency_key for m in again} == {m.idempotency_key for m in a + b}


def test_recover_releases_own_leases(outbox: Outbox) -> None:
    outbox.enqueue([msg(1), msg(2)], now=T0, claim_for="w1")
    outbox.enqueue([msg(3)], now=T0, claim_for="w2")
    assert outbox.counts() == {"sending": 3}
    assert outbox.claim("w9", now=T0) == []
    assert outbox.recover("w1", now=T0) == 2
    assert {m.idempotency_key for m in outbox.claim("w9", now=T0)} == {"k0001", "k0002"}


def test_retry_backoff_then_dead_letter(outbox: Outbox) -> None:
    outbox.enqueue([msg(1)], now=T0)
    now = T0
    delays = []
    for attempt in range(1, 4):
        (m,) = outbox.claim("w", now=now)
        assert m.attempts == attempt - 1
        outbox.complete([(m, SendResult.retry("HTTP 503"))], now=now)
        row = outbox.rows()[0]
        if attempt < 3:
            assert row["status"] == "failed"
            wait = (row["next_attempt_at"] - now).total_seconds()
            delays.append(wait)
            assert wait == pytest.approx(POLICY_DELAY(m.idempotency_key, attempt), abs=1e-3)
            assert outbox.claim("w", now=now + timedelta(seconds=wait - 0.01)) == []
            now = now + timedelta(seconds=wait)
    row = outbox.rows(status="dead")[0]
    assert row["attempts"] == 3
    assert row["last_error"] == "gave up after 3 attempts; last error: HTTP 503"
    log = outbox.attempts("k0001")
    assert [(a["attempt"], a["outcome"], a["error"]) for a in log] == [
        (1, "retry", "HTTP 503"),
        (2, "retry", "HTTP 503"),
        (3, "dead", "HTTP 503"),
    ]
    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20
    assert outbox.claim("w", now=now + timedelta(days=1)) == []


def POLICY_DELAY(key: str, attempts: int) -> float:
    return RetryPolicy(max_attempts=3, base_s=10, cap_s=100, jitter=0.5, seed=1).delay(
        key, attempts
    )


def test_permanent_failure_and_expiry_go_dead(outbox: Outbox) -> None:
    outbox.enqueue([msg(1), msg(2, not_after=T0 + timedelta(minutes=5)), msg(3)], now=T0)
    m1, m2, m3 = outbox.claim("w", now=T0)
    outbox.complete(
        [
            (m1, SendResult.fail("HTTP 400 bad address")),
            (m2, SendResult.too_late(m2.not_after)),  # type: ignore[arg-type]
            (m3, SendResult.sent()),
        ],
        now=T0,
    )
    dead = {r["idempotency_key"]: r for r in outbox.rows(status="dead")}
    assert dead["k0001"]["last_error"] == "HTTP 400 bad address"
    assert dead["k0001"]["attempts"] == 1
    assert dead["k0002"]["last_error"].startswith("expired: not sent by 2026-03-01T08:05")
    assert [a["outcome"] for a in outbox.attempts("k0002")] == ["expired"]
    assert [a["outcome"] for a in outbox.attempts("k0001")] == ["dead"]
    sent = outbox.rows(status="sent")
    assert [r["idempotency_key"] for r in sent] == ["k0003"]
    assert sent[0]["sent_at"] is not None
    assert outbox.requeue_dead(["k0001"], now=T0) == 1
    assert [m.idempotency_key for m in outbox.claim("w", now=T0)] == ["k0001"]


def test_event_dead_letters(outbox: Outbox) -> None:
    outbox.dead_letter_event("a/vehicles/V1/events", "malformed JSON: x", b"{oops", received_at=T0)
    outbox.dead_letter_event(None, "oversized: 9000 bytes > limit 4096", b"x" * 9000)
    rows = outbox.event_dead_letters()
    assert {r["reason"] for r in rows} == {
        "malformed JSON: x",
        "oversized: 9000 bytes > limit 4096",
    }
    big = next(r for r in rows if r["payload_bytes"] == 9000)
    assert len(big["payload"]) == 4096


def test_an_event_with_nul_bytes_is_dead_lettered(outbox: Outbox) -> None:
    """A malformed event may hold NUL bytes, which PostgreSQL text cannot store: there they
    become U+FFFD (the dead-letter insert failed, so the event could not be kept at all)."""
    raw = b'{"vin": "V1\x00", "type": "\x00"}'
    outbox.dead_letter_event("a/vehicles/V1/events", "malformed JSON: \x00 at 10", raw)
    (row,) = outbox.event_dead_letters()
    assert row["payload_bytes"] == len(raw)
    assert row["payload"].replace("\ufffd", "\x00") == raw.decode()
    assert row["reason"].replace("\ufffd", "\x00") == "malformed JSON: \x00 at 10"


def test_unknown_status_is_an_error(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="unknown status 'lost'"):
        outbox.rows("lost")


def test_concurrent_claimers_never_share_a_message(outbox: Outbox) -> None:
    """Four threads, each with its own connection, claim until the outbox is empty."""
    outbox.enqueue([msg(i) for i in range(150)], now=T0)
    got: list[list[str]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        ob = outbox.clone()
        try:
            while True:
                try:
                    batch = ob.claim(f"w{i}", limit=7, now=T0)
                except Exception as exc:  # DuckDB: optimistic conflict, try again
                    if "onflict" not in str(exc):
                        raise
                    continue
                if not batch:
                    return
                got[i].extend(m.idempotency_key for m in batch)
        finally:
            if ob is not outbox:
                ob.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    flat = [k for g in got for k in g]
    assert len(flat) == 150 and len(set(flat)) == 150


def test_decision_and_outbox_share_the_warehouse_transaction() -> None:
    from autopersona.store.warehouse import Warehouse

    with Warehouse(":memory:") as wh:
        ob = open_outbox(warehouse=wh)
        assert isinstance(ob, DuckDBOutbox) and ob.con is wh.con
        wh.con.execute("CREATE TABLE decisions (k VARCHAR)")

        def crash() -> None:
            with ob.transaction():
                wh.con.execute("INSERT INTO decisions VALUES ('k0001')")
                ob.enqueue([msg(1)], now=T0)
                raise RuntimeError("crash")

        with pytest.raises(RuntimeError):
            crash()
        assert wh.count("decisions") == 0 and ob.counts() == {}
        with ob.transaction():
            wh.con.execute("INSERT INTO decisions VALUES ('k0001')")
            ob.enqueue([msg(1)], now=T0)
        assert wh.count("decisions") == 1 and ob.counts() == {"pending": 1}


@pytest.mark.integration
def test_workers_starting_together_create_the_postgres_tables_once() -> None:
    """Several workers opening one fresh PostgreSQL outbox at the same moment all start
    (``CREATE … IF NOT EXISTS`` racing in the catalog failed all but one of them)."""
    from deliverykit import PG_URL, pg_unavailable
    from pgcheck import open_together

    from autopersona.delivery.outbox import PostgresOutbox

    reason = pg_unavailable()
    if reason:
        pytest.skip(f"PostgreSQL not available: {reason}")
    for _ in range(3):
        schema, errors = open_together(
            lambda sc: PostgresOutbox(PG_URL, schema=sc).close(), "ap_ob"
        )
        ob = PostgresOutbox(PG_URL, schema=schema)
        try:
            assert errors == [] and ob.counts() == {}
        finally:
            ob.drop_schema()
            ob.close()


@given(
    attempts=st.integers(1, 40),
    base=st.floats(0, 100),
    cap=st.floats(0, 1000),
    jitter=st.floats(0, 1),
    seed=st.integers(0, 2**31),
    key=st.text(max_size=20),
)
def test_backoff_bounds(
    attempts: int, base: float, cap: float, jitter: float, seed: int, key: str
) -> None:
    p = RetryPolicy(base_s=base, cap_s=cap, jitter=jitter, seed=seed)
    d = min(cap, base * 2.0 ** (attempts - 1))
    got = p.delay(key, attempts)
    assert d * (1 - jitter) - 1e-9 <= got <= d + 1e-9
    assert got == p.delay(key, attempts)


def test_backoff_jitter_spreads_messages() -> None:
    p = RetryPolicy(base_s=8, cap_s=100, jitter=1.0, seed=3)
    delays = [p.delay(f"k{i}", 1) for i in range(2000)]
    from scipy import stats

    # u is uniform on [0, 1): the delays are uniform on [0, 8).
    assert stats.kstest([d / 8 for d in delays], "uniform").pvalue > 0.001
    assert RetryPolicy(base_s=8, jitter=1.0, seed=4).delay("k1", 1) != p.delay("k1", 1)


@settings(max_examples=60, deadline=None)
@given(
    max_attempts=st.integers(1, 4),
    outcomes=st.lists(
        st.sampled_from(["sent", "retry", "fail", "expired"]), min_size=4, max_size=4
    ),
)
def test_message_lifecycle(max_attempts: int, outcomes: list[str]) -> None:
    """Whatever the outcomes, a message ends sent or dead, never claimed after that."""
    ob = DuckDBOutbox(":memory:", policy=RetryPolicy(max_attempts=max_attempts, base_s=1))
    ob.enqueue([msg(1)], now=T0)
    now, made = T0, []
    while claimed := ob.claim("w", now=now):
        (m,) = claimed
        r = {
            "sent": SendResult.sent(),
            "retry": SendResult.retry("503"),
            "fail": SendResult.fail("400"),
            "expired": SendResult.too_late(T0),
        }[outcomes[len(made)]]
        made.append(outcomes[len(made)])
        ob.complete([(m, r)], now=now)
        now += timedelta(days=1)
    # Expected: retries until the first final outcome or the last allowed attempt.
    want = []
    for o in outcomes[:max_attempts]:
        want.append(o)
        if o != "retry":
            break
    assert made == want
    (row,) = ob.rows()
    assert row["status"] == ("sent" if want[-1] == "sent" else "dead")
    assert row["attempts"] == len(want) - (want[-1] == "expired")
    log = [a["outcome"] for a in ob.attempts("k0001")]
    assert log == [
        *(["retry"] * (len(want) - 1)),
        {"sent": "sent", "expired": "expired"}.get(want[-1], "dead"),
    ]
    assert ob.claim("w", now=now + timedelta(days=30)) == []
    ob.close()
