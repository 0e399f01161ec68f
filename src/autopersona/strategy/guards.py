"""Guards: consent, quiet hours, caps, driving safety, de-duplication, arbitration, arms.

One small class per guard.

Time zones are IANA names resolved with :mod:`zoneinfo`, so local days and quiet hours are
correct across daylight-saving changes: a local day is the span from local midnight to the
next local midnight (23 or 25 hours long on a change day).

Examples
--------
>>> from datetime import datetime, UTC
>>> q = QuietHoursGuard("22:00", "07:00")
>>> q.is_quiet(datetime(2026, 3, 29, 5, 30, tzinfo=UTC), "Europe/Berlin")  # 07:30 CEST
False
>>> q.is_quiet(datetime(2026, 3, 28, 5, 30, tzinfo=UTC), "Europe/Berlin")  # 06:30 CET
True
>>> start, end = local_day_bounds(datetime(2026, 3, 29, 12, tzinfo=UTC), "Europe/Berlin")
>>> (end - start).total_seconds() / 3600
23.0
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "ArbitrationGuard",
    "CapGuard",
    "ConsentGuard",
    "ConsentRecord",
    "DedupGuard",
    "DrivingSafetyGuard",
    "ExperimentArms",
    "FatigueGuard",
    "Ledger",
    "LedgerEntry",
    "QuietHoursGuard",
    "local_date",
    "local_day_bounds",
    "share_of",
    "zone",
]


@lru_cache(maxsize=256)
def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The :class:`ZoneInfo` of ``name``; ``default`` when it is empty or unknown."""
    try:
        return ZoneInfo(name) if name else ZoneInfo(default)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)


def _utc(t: datetime) -> datetime:
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def local_date(at: datetime, tz: str | None) -> date:
    """Calendar date of the instant ``at`` in time zone ``tz``.

    >>> local_date(datetime(2026, 1, 1, 20, tzinfo=UTC), "Asia/Shanghai")
    datetime.date(2026, 1, 2)
    """
    return _utc(at).astimezone(zone(tz)).date()


def local_day_bounds(at: datetime, tz: str | None) -> tuple[datetime, datetime]:
    """UTC instants of the start of ``at``'s local day and of the next local day."""
    z = zone(tz)
    d = local_date(at, tz)
    start = datetime.combine(d, time(0), tzinfo=z).astimezone(UTC)
    end = datetime.combine(d + timedelta(days=1), time(0), tzinfo=z).astimezone(UTC)
    return start, end


# ----------------------------------------------------------------------------- consent
@dataclass(frozen=True)
class ConsentRecord:
    """One row of the consents table."""

    account_id: str
    purpose: str
    channel: str
    granted: bool
    ts: datetime


class ConsentGuard:
    """Consent per purpose and channel; for each account the latest record wins.

    A record for the channel or for ``any`` covers the channel; per account the latest such
    record at or before the decision time counts.  A person is reachable when at least one
    of their accounts has granted and none has withdrawn (a withdrawal anywhere wins).

    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> g = ConsentGuard([ConsentRecord("A", "marketing", "sms", True, t),
    ...                   ConsentRecord("A", "marketing", "sms", False, t + timedelta(days=1))])
    >>> g.check(["A"], "marketing", "sms", t + timedelta(hours=1))[0]
    True
    >>> g.check(["A"], "marketing", "sms", t + timedelta(days=2))
    (False, 'marketing consent for sms withdrawn (account A, 2026-01-02T00:00:00+00:00)')
    """

    def __init__(self, records: Iterable[ConsentRecord]) -> None:
        self._by_account: dict[str, list[ConsentRecord]] = defaultdict(list)
        for r in records:
            self._by_account[r.account_id].append(r)
        for rs in self._by_account.values():
            rs.sort(key=lambda r: r.ts)

    def check(
        self, accounts: Iterable[str], purpose: str, channel: str, at: datetime
    ) -> tuple[bool, str]:
        """``(allowed, reason)`` for reaching ``accounts`` on ``channel`` for ``purpose``."""
        at = _utc(at)
        granted: str | None = None
        for acc in sorted(set(accounts)):
            latest: ConsentRecord | None = None
            for r in self._by_account.get(acc, ()):
                if r.ts > at:
                    break
                if r.purpose == purpose and r.channel in (channel, "any"):
                    latest = r
            if latest is None:
                continue
            if not latest.granted:
                return (
                    False,
                    f"{purpose} consent for {channel} withdrawn "
                    f"(account {acc}, {latest.ts.isoformat()})",
                )
            granted = granted or acc
        if granted is None:
            return False, f"no {purpose} consent for {channel}"
        return True, f"{purpose} consent for {channel} (account {granted})"


# ----------------------------------------------------------------------------- quiet hours
class QuietHoursGuard:
    """Quiet hours ``[start, end)`` in local time; ``start > end`` spans midnight."""

    def __init__(self, start: str, end: str) -> None:
        h1, m1 = map(int, start.split(":"))
        h2, m2 = map(int, end.split(":"))
        self.start = h1 * 60 + m1
        self.end = h2 * 60 + m2
        if self.start == self.end:
            raise ValueError("quiet hours start and end are equal")
        self.label = f"{start}-{end}"

    def _quiet_minute(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def is_quiet(self, at: datetime, tz: str | None) -> bool:
        """Whether the instant ``at`` falls in the quiet hours of zone ``tz``."""
        loc = _utc(at).astimezone(zone(tz))
        return self._quiet_minute(loc.hour * 60 + loc.minute)

    def ends(self, at: datetime, tz: str | None) -> datetime:
        """The UTC instant the quiet span containing ``at`` ends (``at`` if not quiet).

        That is the first instant whose local clock is outside the quiet hours.  When the
        end time does not exist that day (the clock springs forward over it), the span ends
        when the clock jumps, unless the jump lands in quiet hours again; then it runs on
        to the next day's end.

        >>> q = QuietHoursGuard("22:00", "02:30")
        >>> q.ends(datetime(2025, 3, 9, 5, 0, tzinfo=UTC), "America/New_York")  # 00:00 EST
        datetime.datetime(2025, 3, 9, 7, 0, tzinfo=datetime.timezone.utc)
        """
        u = _utc(at)
        if not self.is_quiet(u, tz):
            return u
        z = zone(tz)
        loc = u.astimezone(z)
        d = loc.date()
        if self.start > self.end and loc.hour * 60 + loc.minute >= self.start:
            d = d + timedelta(days=1)
        end = time(self.end // 60, self.end % 60)
        for _ in range(3):
            t = _first_instant_reading(datetime.combine(d, end), z)
            if t > u and not self.is_quiet(t, tz):
                return t
            d = d + timedelta(days=1)
        return t


def _first_instant_reading(wall_time: datetime, z: ZoneInfo) -> datetime:
    """The first UTC instant at which the clock of zone ``z`` reads ``wall_time`` or later.

    The instant itself when that local time exists (its first occurrence when the clock
    falls back), the moment of the jump when the clock springs forward over it.
    """
    t = wall_time.replace(tzinfo=z).astimezone(UTC)
    if t.astimezone(z).replace(tzinfo=None) == wall_time:
        return t
    # A gap: before the jump (fold=1 takes the later offset) the clock reads less, after it
    # (fold=0) more; bisect for the jump.
    lo = int(wall_time.replace(tzinfo=z, fold=1).astimezone(UTC).timestamp())
    hi = int(t.timestamp())
    while hi - lo > 1:  # zone transitions fall on whole seconds
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, z).replace(tzinfo=None) >= wall_time:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


# ----------------------------------------------------------------------------- ledger & caps
@dataclass(frozen=True)
class LedgerEntry:
    """A send (or held message) already decided: counts toward caps and arbitration."""

    idempotency_key: str
    person_id: str
    strategy_id: str
    channel: str | None
    created_at: datetime
    priority: int = 0


@dataclass
class Ledger:
    """Sends and held messages by person, strategy and UTC day (one entry per key)."""

    by_person: dict[str, list[LedgerEntry]] = field(default_factory=lambda: defaultdict(list))
    strategy_day: dict[tuple[str, date], int] = field(default_factory=lambda: defaultdict(int))
    global_day: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    keys: set[str] = field(default_factory=set)

    def add(self, e: LedgerEntry) -> None:
        """Record an entry (a repeated key is counted once)."""
        if e.idempotency_key in self.keys:
            return
        self.keys.add(e.idempotency_key)
        self.by_person[e.person_id].append(e)
        d = _utc(e.created_at).date()
        self.strategy_day[(e.strategy_id, d)] += 1
        self.global_day[d] += 1

    def person_between(
        self, person_id: str, start: datetime, end: datetime, *, channel: str | None = None
    ) -> list[LedgerEntry]:
        """The person's entries in ``[start, end)`` (on ``channel`` when given)."""
        return [
            e
            for e in self.by_person.get(person_id, ())
            if start <= _utc(e.created_at) < end and (channel is None or e.channel == channel)
        ]


def share_of(cap: int, share: tuple[int, int] | None) -> int:
    """Part ``k`` of ``n`` of a count cap: the ``n`` parts add up to ``cap`` exactly.

    >>> [share_of(10, (k, 4)) for k in range(4)], share_of(10, None)
    ([3, 3, 2, 2], 10)
    """
    if share is None:
        return cap
    k, n = share
    return cap // n + (1 if k < cap % n else 0)


class CapGuard:
    """Frequency caps per person, strategy and overall.

    Per person per local day (all channels, and per channel), per strategy (per person over
    N days, and total per UTC day) and global per UTC day.  With ``share=(k, n)`` (live
    worker ``k`` of ``n`` partitions, each owning whole persons) the totals per UTC day,
    global and per strategy, are this worker's part of them (:func:`share_of`), so that the
    workers together never exceed them; the per-person caps are whole, since a person's
    messages all come from one worker.

    >>> led = Ledger()
    >>> t = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)  # 23:30 in Berlin (CET)
    >>> led.add(LedgerEntry("k1", "P", "s", "sms", t))
    >>> cap = CapGuard(led, person_day=1, global_day=10)
    >>> cap.person_day("P", "Europe/Berlin", t + timedelta(minutes=40))  # 00:10 local, new day
    >>> cap.person_day("P", "Europe/Berlin", t + timedelta(minutes=20))  # 23:50, same day
    'person already got 1 message(s) on 2026-03-28 (Europe/Berlin), cap 1'
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        person_day: int,
        global_day: int,
        share: tuple[int, int] | None = None,
    ) -> None:
        self.ledger = ledger
        self.person_day_cap = person_day
        self.share = share
        self.global_day_cap = share_of(global_day, share)
        self._of = f" (worker {share[0]}'s share of {global_day})" if share else ""

    def person_day(self, person_id: str, tz: str | None, at: datetime) -> str | None:
        """Reason if the person's local-day cap is reached, else None."""
        start, end = local_day_bounds(at, tz)
        n = len(self.ledger.person_between(person_id, start, end))
        if n >= self.person_day_cap:
            return (
                f"person already got {n} message(s) on {local_date(at, tz).isoformat()} "
                f"({zone(tz).key}), cap {self.person_day_cap}"
            )
        return None

    def channel_day(
        self, person_id: str, channel: str, cap: int | None, tz: str | None, at: datetime
    ) -> str | None:
        """Reason if the person's local-day cap on ``channel`` is reached, else None."""
        if cap is None:
            return None
        start, end = local_day_bounds(at, tz)
        n = len(self.ledger.person_between(person_id, start, end, channel=channel))
        if n >= cap:
            return f"{channel} cap {cap} a day reached ({local_date(at, tz).isoformat()})"
        return None

    def strategy(
        self,
        strategy_id: str,
        person_id: str,
        at: datetime,
        per_person: tuple[int, float] | None,
        per_day: int | None,
    ) -> str | None:
        """Reason if a cap of the strategy is reached, else None."""
        at = _utc(at)
        if per_person is not None:
            count, days = per_person
            since = at - timedelta(days=days)
            n = sum(
                1
                for e in self.ledger.person_between(
                    person_id, since, at + timedelta(microseconds=1)
                )
                if e.strategy_id == strategy_id
            )
            if n >= count:
                return f"{n} send(s) of {strategy_id} in the last {days:g} days, cap {count}"
        if per_day is not None:
            mine = share_of(per_day, self.share)
            if self.ledger.strategy_day[(strategy_id, at.date())] >= mine:
                of = f" (worker {self.share[0]}'s share of {per_day})" if self.share else ""
                return (
                    f"{strategy_id} reached its {mine} sends{of} on {at.date().isoformat()} (UTC)"
                )
        return None

    def global_cap(self, at: datetime) -> str | None:
        """Reason if the global daily cap is reached, else None."""
        d = _utc(at).date()
        if self.ledger.global_day[d] >= self.global_day_cap:
            return (
                f"global cap of {self.global_day_cap} sends{self._of} on {d.isoformat()} (UTC) "
                "reached"
            )
        return None


# ----------------------------------------------------------------------------- others
class DrivingSafetyGuard:
    """No message on a pop-up channel while the vehicle moves faster than the limit.

    >>> g = DrivingSafetyGuard()
    >>> g.observe("V1", 13.9); g.moving("V1", 2.0), g.moving("V2", 2.0)
    (True, False)
    """

    def __init__(self) -> None:
        self.speed: dict[str, float] = {}

    def observe(self, vin: str, speed_mps: float) -> None:
        """Note the latest speed of ``vin``."""
        self.speed[vin] = float(speed_mps)

    def moving(self, vin: str | None, max_speed_mps: float) -> bool:
        """Whether the vehicle's last known speed is above ``max_speed_mps`` (unknown: no)."""
        return vin is not None and self.speed.get(vin, 0.0) > max_speed_mps


class DedupGuard:
    """Refuses a key that was already sent, held or held out."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self.keys = set(keys)

    def seen(self, key: str) -> bool:
        """Whether the key was decided before."""
        return key in self.keys

    def add(self, key: str) -> None:
        """Remember a key."""
        self.keys.add(key)


class ArbitrationGuard:
    """At most one message per person per window; candidates come in priority order."""

    def __init__(self, ledger: Ledger, window_hours: float) -> None:
        self.ledger = ledger
        self.window = timedelta(hours=window_hours)

    def blocked(self, person_id: str, at: datetime) -> str | None:
        """Reason if the person already has a message within the window around ``at``."""
        if self.window <= timedelta(0):
            return None
        at = _utc(at)
        hits = self.ledger.person_between(person_id, at - self.window, at + self.window)
        if hits:
            best = max(hits, key=lambda e: e.priority)
            return (
                f"one message per {self.window.total_seconds() / 3600:g} h: "
                f"{best.strategy_id} (priority {best.priority}) already chosen"
            )
        return None


class ExperimentArms:
    """Deterministic arms by hashing (strategy, salt, person) to a uniform number in [0, 1).

    >>> a = ExperimentArms()
    >>> a.arm("s", "", "P1", 0.0), a.arm("s", "", "P1", 1.0)
    ('treatment', 'control')
    """

    @staticmethod
    def uniform(*parts: str) -> float:
        """A number in [0, 1) from the SHA-256 of the parts."""
        h = hashlib.sha256("\x1f".join(parts).encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    def arm(self, strategy_id: str, salt: str, person_id: str, control_share: float) -> str:
        """``control`` for a ``control_share`` of people, else ``treatment``."""
        u = self.uniform("arm", strategy_id, salt, person_id)
        return "control" if u < control_share else "treatment"


class FatigueGuard:
    """Ad fatigue: a person who left the last ``max_unanswered`` messages unanswered rests.

    ``unanswered`` maps a person to the number of messages sent to them (``sent`` feedback
    events within the look-back) since their latest response (visit, click, conversion or
    redemption).

    >>> g = FatigueGuard({"P1": 5, "P2": 1}, max_unanswered=4, days=30)
    >>> g.blocked("P1"), g.blocked("P2"), g.blocked("P3")
    ('5 messages in 30 days without a response (fatigue limit 4)', None, None)
    """

    def __init__(self, unanswered: dict[str, int], *, max_unanswered: int, days: float) -> None:
        self.unanswered = unanswered
        self.max_unanswered = max_unanswered
        self.days = days

    def blocked(self, person_id: str) -> str | None:
        """Reason if the person is fatigued, else None."""
        n = self.unanswered.get(person_id, 0)
        if n >= self.max_unanswered:
            return (
                f"{n} messages in {self.days:g} days without a response "
                f"(fatigue limit {self.max_unanswered})"
            )
        return None
