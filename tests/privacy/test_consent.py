"""Consent registry: history, channels, persons across accounts, audiences at the next run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest
from privcheck import Fleet

from autopersona.privacy.consent import (
    consent_state,
    consented,
    current_consent,
    filter_consented,
    history,
    record_consent,
)
from autopersona.store.warehouse import Warehouse

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _day(n: int) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def wh() -> Warehouse:
    w = Warehouse(":memory:")
    w.con.execute(
        "INSERT INTO accounts (account_id, source, vin) VALUES "
        "('OWN-1', 'owner', 'VIN1'), ('APP-1', 'app', NULL), ('OWN-2', 'owner', 'VIN2'), "
        "('OWN-3', 'owner', 'VIN2')"
    )
    w.con.execute(
        "CREATE TABLE identity_links (account_id VARCHAR, person_id VARCHAR, method VARCHAR, "
        "match_probability DOUBLE, linked_at TIMESTAMPTZ)"
    )
    w.con.execute(
        "INSERT INTO identity_links VALUES ('OWN-1', 'P1', 'exact', 1, now()), "
        "('APP-1', 'P1', 'exact', 1, now()), ('OWN-2', 'P2', 'singleton', NULL, now()), "
        "('OWN-3', 'P3', 'singleton', NULL, now())"
    )
    return w


def test_latest_decision_wins_per_channel_with_history(wh: Warehouse) -> None:
    record_consent(wh, "OWN-1", "marketing", "sms", True, _day(0))
    record_consent(wh, "APP-1", "marketing", "app", True, _day(1))
    record_consent(wh, "OWN-1", "marketing", "any", False, _day(5))  # withdraws every channel
    record_consent(wh, "APP-1", "marketing", "email", True, _day(9))  # then one channel again
    assert current_consent(wh, "P1", "marketing", "sms", at=_day(2))
    assert current_consent(wh, "P1", "marketing", "app", at=_day(2))
    assert not current_consent(wh, "P1", "marketing", "email", at=_day(2))
    assert not current_consent(wh, "P1", "marketing", at=_day(6))  # on no channel
    assert current_consent(wh, "P1", "marketing", "email", at=_day(10))
    assert not current_consent(wh, "P1", "marketing", "sms", at=_day(10))
    assert current_consent(wh, "APP-1", "marketing", at=_day(10))  # an account id works too
    assert not current_consent(wh, "P1", "analytics", at=_day(10))  # opt-in: no decision, no
    assert not current_consent(wh, "P1", "marketing", at=_day(-1))  # before any decision
    assert len(history(wh, "P1")) == 4 and len(history(wh, "P1", "analytics")) == 0
    st = consent_state(wh, _day(10))
    assert set(st["channel"]) == {"head_unit", "app", "sms", "email"}


def test_a_shared_vin_needs_every_person(wh: Warehouse) -> None:
    record_consent(wh, "OWN-2", "ubi", "any", True, _day(0))
    assert consented(wh, "ubi", entity="person", at=_day(1)) == {"P2"}
    assert consented(wh, "ubi", entity="vin", at=_day(1)) == set()  # P3 shares VIN2
    record_consent(wh, "OWN-3", "ubi", "any", True, _day(2))
    assert consented(wh, "ubi", entity="vin", at=_day(3)) == {"VIN2"}
    assert consented(wh, "ubi", entity="account", at=_day(3)) == {"OWN-2", "OWN-3"}


def test_bad_purpose_channel_and_column_are_errors(wh: Warehouse) -> None:
    with pytest.raises(ValueError, match="unknown purpose 'ads'"):
        consented(wh, "ads")
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        record_consent(wh, "OWN-1", "marketing", "fax", True)
    with pytest.raises(KeyError, match="no column 'vin'"):
        filter_consented(pd.DataFrame({"x": [1]}), wh, "analytics", column="vin")


def test_withdrawing_marketing_consent_removes_the_person_from_every_audience_next_run(
    fleet: Fleet, tmp_path: Path
) -> None:
    with Warehouse(fleet.copy(tmp_path)) as wh:
        now = wh.sql("SELECT max(ts) FROM consents")[0][0] + timedelta(days=1)
        people = consented(wh, "marketing", at=now)
        assert people, "the simulated fleet has marketing consents"
        # audiences: one per channel, built from the account list as a strategy would
        accounts = wh.frame("SELECT account_id FROM accounts")

        def audiences(at: datetime) -> dict[str, set[str]]:
            return {
                ch: set(
                    filter_consented(
                        accounts,
                        wh,
                        "marketing",
                        column="account_id",
                        entity="account",
                        channel=ch,
                        at=at,
                    )["account_id"]
                )
                for ch in ("head_unit", "app", "sms", "email")
            }

        before = audiences(now)
        target = sorted(set().union(*before.values()))[0]
        assert any(target in a for a in before.values())
        record_consent(wh, target, "marketing", "any", False, now + timedelta(hours=1))
        after = audiences(now + timedelta(hours=2))
        assert all(target not in a for a in after.values())
        # nobody else changed
        for ch in before:
            assert before[ch] - {target} == after[ch]


def test_consent_at_many_times_equals_one_time_at_a_time() -> None:
    """``consented_at`` (one read of the history, for builds with many periods) gives what
    ``consented`` gives at each time, for people, accounts and VINs, ties included."""
    import random

    from autopersona.privacy.consent import CHANNELS, PURPOSES, consented_at

    rnd = random.Random(1)
    with Warehouse(":memory:") as w:
        for i in range(40):
            w.con.execute(
                "INSERT INTO accounts (account_id, source, vin) VALUES (?, 'owner', ?)",
                [f"A{i}", f"V{i % 25}"],
            )
        for _ in range(400):  # whole days: many decisions share a time
            record_consent(
                w,
                f"A{rnd.randrange(45)}",
                rnd.choice(PURPOSES),
                rnd.choice([*CHANNELS, "any"]),
                rnd.random() < 0.6,
                _day(rnd.randrange(30)),
            )
        times = [_day(d) + timedelta(hours=h) for d in range(-1, 32, 3) for h in (0, 5)]
        entities: list[Literal["person", "account", "vin"]] = ["person", "account", "vin"]
        for entity in entities:
            fast = consented_at(w, list(PURPOSES), times, entity)
            for p in PURPOSES:
                for t in times:
                    assert fast[(p, t)] == consented(w, p, "any", t, entity), (entity, p, t)
