"""Guard maths: local days, quiet hours, caps, consent, arms (hypothesis where it is maths)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from autopersona.strategy.guards import (
    CapGuard,
    ConsentGuard,
    ConsentRecord,
    ExperimentArms,
    Ledger,
    LedgerEntry,
    QuietHoursGuard,
    local_date,
    local_day_bounds,
    share_of,
)

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Shanghai",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Asia/Tokyo",
]
instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
zones = st.sampled_from(ZONES)
minutes = st.integers(min_value=0, max_value=1439)


def wall(at: datetime, tz: str) -> pd.Timestamp:
    """Local wall time computed by pandas (independently of the guards' zoneinfo use)."""
    return pd.Timestamp(at).tz_convert(tz)


@settings(max_examples=150, deadline=None)
@given(at=instants, tz=zones)
def test_local_day_bounds_hold_the_instant_and_start_at_local_midnight(
    at: datetime, tz: str
) -> None:
    start, end = local_day_bounds(at, tz)
    assert start <= at < end
    hours = (end - start).total_seconds() / 3600
    assert hours in (23.0, 24.0, 25.0)
    s = wall(start, tz)
    assert (s.hour, s.minute) == (0, 0)
    assert s.date() == wall(at, tz).date() == local_date(at, tz)
    assert wall(end, tz).date() == local_date(at, tz) + timedelta(days=1)


@settings(max_examples=200, deadline=None)
@given(at=instants, tz=zones, a=minutes, b=minutes)
def test_quiet_hours_match_the_local_wall_clock(at: datetime, tz: str, a: int, b: int) -> None:
    if a == b:
        return
    q = QuietHoursGuard(f"{a // 60:02d}:{a % 60:02d}", f"{b // 60:02d}:{b % 60:02d}")
    w = wall(at, tz)
    m = w.hour * 60 + w.minute
    span = set(range(a, b)) if a < b else set(range(a, 1440)) | set(range(b))
    assert q.is_quiet(at, tz) == (m in span)
    end = q.ends(at, tz)
    assert end >= at and not q.is_quiet(end, tz)
    if end > at:  # every minute until the end is quiet
        step = max((end - at) / 7, timedelta(minutes=1))
        t = at
        while t < end - timedelta(minutes=1):
            assert q.is_quiet(t, tz)
            t += step


@pytest.mark.parametrize(
    ("quiet", "at", "ends"),
    [
        # The end (02:30) falls in New York's spring-forward gap: quiet until the jump.
        (("22:00", "02:30"), datetime(2025, 3, 9, 5, 0), datetime(2025, 3, 9, 7, 0)),
        # The gap swallows the whole non-quiet hour [02:00, 03:00): quiet until next night.
        (("03:00", "02:00"), datetime(2025, 3, 9, 0, 0), datetime(2025, 3, 10, 6, 0)),
        # Fall back: 01:30 occurs twice; quiet ends at its first occurrence (EDT).
        (("22:00", "01:30"), datetime(2025, 11, 2, 4, 0), datetime(2025, 11, 2, 5, 30)),
    ],
)
def test_quiet_hours_end_across_dst_changes(
    quiet: tuple[str, str], at: datetime, ends: datetime
) -> None:
    q = QuietHoursGuard(*quiet)
    tz = "America/New_York"
    end = q.ends(at.replace(tzinfo=UTC), tz)
    assert end == ends.replace(tzinfo=UTC)
    assert not q.is_quiet(end, tz)
    assert q.is_quiet(end - timedelta(seconds=1), tz)


@settings(max_examples=150, deadline=None)
@given(
    start=instants,
    tz=zones,
    cap=st.integers(min_value=1, max_value=3),
    gaps=st.lists(st.integers(min_value=1, max_value=20 * 60), min_size=1, max_size=40),
)
def test_person_day_cap_never_exceeded_and_only_refuses_when_full(
    start: datetime, tz: str, cap: int, gaps: list[int]
) -> None:
    ledger = Ledger()
    guard = CapGuard(ledger, person_day=cap, global_day=10**6)
    t = start
    sent: dict[date, int] = {}
    for i, g in enumerate(gaps):
        t = t + timedelta(minutes=g)
        day = wall(t, tz).date()
        refused = guard.person_day("P", tz, t)
        if refused is None:
            ledger.add(LedgerEntry(f"k{i}", "P", "s", "sms", t))
            sent[day] = sent.get(day, 0) + 1
        else:
            assert sent.get(day, 0) == cap  # refused only when the local day is full
        assert sent.get(day, 0) <= cap


@given(cap=st.integers(min_value=0, max_value=500), n=st.integers(min_value=1, max_value=16))
def test_cap_shares_add_up_to_the_cap_and_differ_by_at_most_one(cap: int, n: int) -> None:
    parts = [share_of(cap, (k, n)) for k in range(n)]
    assert sum(parts) == cap and max(parts) - min(parts) <= 1
    assert share_of(cap, None) == cap


def test_partitioned_workers_never_exceed_the_global_and_strategy_caps_together() -> None:
    # three workers, each owning its persons, each sending as much as its guard allows
    t = datetime(2026, 3, 2, 9, tzinfo=UTC)
    sent = 0
    by_strategy = 0
    for k in range(3):
        ledger = Ledger()
        guard = CapGuard(ledger, person_day=5, global_day=10, share=(k, 3))
        for i in range(50):
            at = t + timedelta(minutes=i)
            why = guard.strategy("s", f"P{k}-{i}", at, None, 7) or guard.global_cap(at)
            if why is None:
                ledger.add(LedgerEntry(f"{k}-{i}", f"P{k}-{i}", "s", "sms", at))
                sent += 1
                by_strategy += 1
        assert why is not None and f"worker {k}'s share of 7" in why
    assert sent == by_strategy == 7  # the strategy's 7 a day, split 3 + 2 + 2
    g = CapGuard(Ledger(), person_day=1, global_day=10, share=(0, 3))
    assert g.global_day_cap == 4


@pytest.mark.parametrize(
    ("tz", "before", "after"),
    [
        # last minute of the local day vs first minute of the next, around DST changes
        (
            "Europe/Berlin",
            datetime(2026, 3, 28, 22, 59, tzinfo=UTC),
            datetime(2026, 3, 28, 23, 0, tzinfo=UTC),
        ),
        (
            "Europe/Berlin",
            datetime(2026, 3, 29, 21, 59, tzinfo=UTC),
            datetime(2026, 3, 29, 22, 0, tzinfo=UTC),
        ),
        (
            "America/New_York",
            datetime(2026, 3, 8, 4, 59, tzinfo=UTC),
            datetime(2026, 3, 8, 5, 0, tzinfo=UTC),
        ),
        (
            "America/New_York",
            datetime(2026, 11, 1, 3, 59, tzinfo=UTC),
            datetime(2026, 11, 1, 4, 0, tzinfo=UTC),
        ),
        (
            "Asia/Shanghai",
            datetime(2026, 3, 29, 15, 59, tzinfo=UTC),
            datetime(2026, 3, 29, 16, 0, tzinfo=UTC),
        ),
    ],
)
def test_daily_cap_resets_at_local_midnight(tz: str, before: datetime, after: datetime) -> None:
    ledger = Ledger()
    ledger.add(LedgerEntry("k", "P", "s", "app_push", before - timedelta(hours=1)))
    guard = CapGuard(ledger, person_day=1, global_day=100)
    assert guard.person_day("P", tz, before) is not None
    assert guard.person_day("P", tz, after) is None


def test_dst_days_are_23_and_25_hours_long() -> None:
    for tz, d, hours in [
        ("Europe/Berlin", datetime(2026, 3, 29, 12, tzinfo=UTC), 23),
        ("Europe/Berlin", datetime(2026, 10, 25, 12, tzinfo=UTC), 25),
        ("America/New_York", datetime(2026, 3, 8, 17, tzinfo=UTC), 23),
        ("America/New_York", datetime(2026, 11, 1, 17, tzinfo=UTC), 25),
        ("Asia/Shanghai", datetime(2026, 3, 29, 12, tzinfo=UTC), 24),
    ]:
        s, e = local_day_bounds(d, tz)
        assert (e - s) == timedelta(hours=hours), tz


def test_consent_latest_record_wins_and_a_withdrawal_anywhere_wins() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    g = ConsentGuard(
        [
            ConsentRecord("A", "marketing", "any", True, t),
            ConsentRecord("A", "marketing", "sms", False, t + timedelta(days=1)),
            ConsentRecord("A", "marketing", "sms", True, t + timedelta(days=2)),
            ConsentRecord("B", "marketing", "email", True, t),
            ConsentRecord("C", "marketing", "email", False, t + timedelta(days=3)),
            ConsentRecord("A", "ubi", "any", True, t),
        ]
    )
    assert g.check(["A"], "marketing", "email", t)[0]  # 'any' covers e-mail
    assert not g.check(["A"], "marketing", "sms", t + timedelta(days=1, hours=1))[0]
    assert g.check(["A"], "marketing", "sms", t + timedelta(days=2, hours=1))[0]
    assert g.check(["A", "B", "C"], "marketing", "email", t + timedelta(days=2))[0]
    assert not g.check(["A", "B", "C"], "marketing", "email", t + timedelta(days=4))[0]
    assert not g.check(["B"], "ubi", "email", t)[0]
    assert g.check([], "marketing", "sms", t) == (False, "no marketing consent for sms")


def test_arms_are_deterministic_with_the_declared_share() -> None:
    arms = ExperimentArms()
    people = [f"P{i}" for i in range(4000)]
    got = [arms.arm("s1", "", p, 0.2) for p in people]
    assert got == [arms.arm("s1", "", p, 0.2) for p in people]
    k = got.count("control")
    assert binomtest(k, len(people), 0.2).pvalue > 0.001
    other = [arms.arm("s2", "", p, 0.2) for p in people]
    assert other != got  # independent per strategy
