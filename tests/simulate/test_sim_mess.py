"""Injected mess: rates as configured, recorded in truth/mess.parquet, absent with --clean.

The messy fleet uses the same seed as the clean one with 4x the default rates, so the
clean fleet is the "before" picture. Rates are checked within ±40 % of the configured
value (binomial noise on a few thousand candidates is far smaller).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from simcheck import MESSY, Q

from autopersona.contracts import get_contract
from autopersona.simulate import MessConfig
from autopersona.simulate.geo import haversine_m


def _close(observed: float, expected: float) -> bool:
    return 0.6 * expected <= observed <= 1.4 * expected


def test_clean_fleet_has_no_mess(cq: Q) -> None:
    assert cq.one("SELECT count(*) FROM R.mess")[0] == 0
    for table in ("motion", "vehicle_signals", "v2x_context", "cabin_events"):
        c = get_contract(table)
        inversions = cq.one(
            f"""SELECT count(*) FROM (
                  SELECT {c.time_column} AS t, lag({c.time_column}) OVER (PARTITION BY vin ORDER BY file_row_number) AS prev
                  FROM read_parquet('{cq.root / "tables" / table}.parquet', file_row_number = true))
                WHERE t < prev"""
        )[0]
        assert inversions == 0, table
    assert (
        cq.one("SELECT count(*) FROM T.motion WHERE alt_m IS NULL OR heading_deg IS NULL")[0] == 0
    )


def test_mess_adds_only_recorded_duplicates(cq: Q, mq: Q) -> None:
    for table in ("motion", "vehicle_signals", "commerce_events", "service_records"):
        clean = cq.one(f"SELECT count(*) FROM T.{table}")[0]
        messy = mq.one(f"SELECT count(*) FROM T.{table}")[0]
        dups = mq.one(
            f"SELECT count(*) FROM R.mess WHERE \"table\" = '{table}' AND kind = 'duplicate'"
        )[0]
        assert messy == clean + dups, table


def test_duplicate_rate(mq: Q) -> None:
    rows, distinct = mq.one(
        "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT * FROM T.motion)) FROM T.motion"
    )
    assert _close((rows - distinct) / distinct, MESSY.duplicate_rate)


def test_gps_drift_rate_and_detectability(mq: Q) -> None:
    n_fix = mq.one("SELECT count(DISTINCT (vin, ts)) FROM T.motion")[0]
    drifts = mq.rows(
        "SELECT vin, ts, original, injected, detail FROM R.mess WHERE kind = 'gps_drift'"
    )
    assert _close(len(drifts) / n_fix, MESSY.gps_drift_rate)
    m = mq.np("""SELECT DISTINCT vin, epoch_us(ts) us, lat, lon FROM T.motion ORDER BY vin, us""")
    vin, us, lat, lon = (np.asarray(m[k]) for k in ("vin", "us", "lat", "lon"))
    where = {(v, int(t)): i for i, (v, t) in enumerate(zip(vin, us, strict=True))}
    for v, ts, _orig, _inj, detail in drifts:
        i = where[(v, int(ts.timestamp() * 1e6))]
        assert json.loads(detail)["offset_m"] >= MESSY.gps_drift_min_m
        for j in (i - 1, i + 1):  # neighbours are one second away on the true track
            assert abs(us[j] - us[i]) == 1_000_000
            assert haversine_m(lat[i], lon[i], lat[j], lon[j]) > 90


def test_can_jump_rate_and_detectability(mq: Q) -> None:
    jumps = mq.rows(
        "SELECT vin, ts, \"column\", original, injected FROM R.mess WHERE kind = 'can_jump'"
    )
    driving = mq.one("SELECT count(*) FROM T.vehicle_signals WHERE ignition_on")[0]
    assert _close(len(jumps) / driving, MESSY.can_jump_rate)
    for vin, ts, col, orig, inj in jumps[:200]:
        assert abs(inj - orig) >= min(MESSY.can_jump_min_pct, orig, 100 - orig) - 1e-9
        prev, dt_prev, nxt, dt_next = mq.one(
            f"""SELECT lag(v) OVER w, epoch(ts - lag(ts) OVER w), lead(v) OVER w, epoch(lead(ts) OVER w - ts)
                FROM (SELECT DISTINCT ts, {col} v FROM T.vehicle_signals WHERE vin = '{vin}')
                WINDOW w AS (ORDER BY ts)
                QUALIFY ts = TIMESTAMPTZ '{ts.isoformat()}'"""
        )
        # the contract's jump rule (more than 2 %/s) sees it from both sides
        assert abs(inj - prev) / dt_prev > 2
        assert abs(inj - nxt) / dt_next > 2


@pytest.mark.parametrize(
    ("table", "column"),
    [("motion", "alt_m"), ("vehicle_signals", "soc_pct"), ("v2x_context", "weather")],
)
def test_missing_values_rate_and_record(cq: Q, mq: Q, table: str, column: str) -> None:
    recorded = mq.one(
        f"""SELECT count(*) FROM R.mess WHERE kind = 'missing' AND "table" = '{table}' AND "column" = '{column}'"""
    )[0]
    base = cq.one(f"SELECT count({column}) FROM T.{table}")[0]
    nulls_clean = cq.one(f"SELECT count(*) - count({column}) FROM T.{table}")[0]
    nulls_messy = mq.one(
        f"SELECT count(*) - count({column}) FROM (SELECT DISTINCT * FROM T.{table})"
    )[0]
    assert nulls_messy - nulls_clean == recorded
    assert _close(recorded / base, MESSY.missing_rate)


def test_out_of_order_rows(mq: Q) -> None:
    late = mq.one(
        "SELECT count(*) FROM R.mess WHERE kind = 'out_of_order' AND \"table\" = 'motion'"
    )[0]
    rows = mq.one("SELECT count(*) FROM T.motion")[0]
    assert _close(late / rows, MESSY.out_of_order_rate)
    inversions = mq.one(
        f"""SELECT count(*) FROM (
              SELECT ts, lag(ts) OVER (PARTITION BY vin ORDER BY file_row_number) prev
              FROM read_parquet('{mq.root / "tables" / "motion"}.parquet', file_row_number = true))
            WHERE ts < prev"""
    )[0]
    assert inversions >= 0.5 * late


def test_mess_records_point_at_real_rows(mq: Q) -> None:
    recs = mq.rows('SELECT "table", key FROM R.mess WHERE "table" = \'motion\' LIMIT 50')
    assert recs
    for _table, key in recs:
        k = json.loads(key)
        assert set(k) == {"vin", "ts"}
        n = mq.one(
            f"SELECT count(*) FROM T.motion WHERE vin = '{k['vin']}' AND ts = TIMESTAMPTZ '{k['ts']}'"
        )[0]
        assert n >= 1


def test_mess_config_scaling() -> None:
    base = MessConfig()
    assert base.enabled and not MessConfig.clean().enabled
    assert base.scaled(0).enabled is False
    assert base.scaled(3).missing_rate == pytest.approx(3 * base.missing_rate)
    assert base.scaled(1000).gps_drift_rate == 0.2  # capped
    with pytest.raises(ValueError, match=">= 0"):
        base.scaled(-1)
