"""Cabin, service, charging and commerce features: dictionary, recovery, incremental, bad input.

One simulated fleet per module (30 vehicles x 7 days from Thursday 2026-01-08, so the data
spans two ISO weeks) is ingested once; tests work on copies of that warehouse.  Only the
scoring tests read the simulator's ground truth (``truth/``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from autopersona.features.build import STEPS, build_features
from autopersona.features.cabin import cabin_features
from autopersona.features.charging import charging_features
from autopersona.features.commerce import commerce_features
from autopersona.features.dictionary import domains
from autopersona.features.driving import driving_features, load_params
from autopersona.features.engines import DuckDBEngine
from autopersona.features.service import service_features
from autopersona.ingest.engine import ingest
from autopersona.simulate import simulate
from autopersona.store.warehouse import Warehouse

# Feature steps group by whatever identifies a vehicle; these tests score them against the
# simulator's truth and name vehicles by their clear VINs: in clear (AUTOPERSONA_PSEUDONYMISE=0;
# features on pseudonyms: tests/privacy/test_pseudo_pipeline.py).
pytestmark = pytest.mark.usefixtures("clear_identifiers_module")

FLEET = {"vehicles": 30, "days": 7, "seed": 3}
START = date(2026, 1, 8)  # a Thursday: the week holds Thu-Sun, the next Mon-Wed
WEEK2 = datetime(2026, 1, 12, tzinfo=UTC)
RELATIONAL = list(STEPS)  # driving, cabin, service, charging, commerce (mobility is not here)
TIME_TABLES = [
    "motion",
    "vehicle_signals",
    "v2x_context",
    "cabin_events",
    "service_records",
    "warnings",
    "dtc_events",
    "commerce_events",
    "orders",
    "reviews",
]


def _fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(simulation folder, ingested warehouse file), made once per test session and worker."""
    base = tmp_path_factory.getbasetemp() / "features-fleet-{vehicles}x{days}-s{seed}".format(
        **FLEET
    )
    db, ok = base / "wh.duckdb", base / "ingested.ok"
    if not ok.exists():
        shutil.rmtree(base, ignore_errors=True)
        simulate(out=base, start=START, workers=1, **FLEET)
        with Warehouse(db) as wh:
            ingest([base / "tables"], wh)
        ok.write_text("ok\n")
    return base, db


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _fleet(tmp_path_factory)


def _copy(db: Path, to: Path) -> Warehouse:
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(db, to)
    return Warehouse(to)


@pytest.fixture(scope="module")
def built(
    fleet: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouse]:
    """A copy of the fleet warehouse with every domain built (DuckDB, weekly)."""
    with _copy(fleet[1], tmp_path_factory.mktemp("built") / "wh.duckdb") as wh:
        build_features(wh, full=True, only=RELATIONAL)
        yield wh


def _truth(fleet: tuple[Path, Path], name: str) -> pd.DataFrame:
    return pd.read_parquet(fleet[0] / "truth" / f"{name}.parquet")


def _table(wh: Warehouse, name: str) -> pd.DataFrame:
    key = "customer_id" if name == "commerce" else "vin"
    return wh.con.execute(
        f"SELECT * EXCLUDE (computed_at) FROM features_{name} ORDER BY {key}, period_start"
    ).df()


# ----------------------------------------------------------------------------- dictionary
def test_every_domain_is_declared_in_order(built: Warehouse) -> None:
    dicts = domains()
    for name in STEPS:
        d = dicts[name]
        df = _table(built, name)
        assert len(df) > 0, name
        assert list(df.columns[:3]) == [d.entity, "period_start", "period"]
        assert list(df.columns[3:]) == [f.name for f in d.features], name


def test_shares_are_shares(built: Warehouse) -> None:
    cab = _table(built, "cabin")
    genre = cab.filter(like="genre_share_").sum(axis=1, min_count=1).dropna()
    voice = cab.filter(like="voice_share_").sum(axis=1, min_count=1).dropna()
    assert genre.round(9).eq(1.0).all() and voice.round(9).eq(1.0).all()
    com = _table(built, "commerce")
    hours = com.filter(like="active_").sum(axis=1, min_count=1).dropna()
    assert len(hours) and hours.round(9).eq(1.0).all()
    assert com["modal_hour"].dropna().between(0, 23).all()
    ch = _table(built, "charging")
    both = (ch["home_charge_share"] + ch["public_charge_share"]).dropna()
    assert len(both) and both.round(9).eq(1.0).all()
    assert (ch["fast_charge_share"].dropna() <= ch["public_charge_share"].dropna() + 1e-12).all()


# ----------------------------------------------------------------------------- recovery
def test_top_genre_recovers_content_taste(fleet: tuple[Path, Path]) -> None:
    """Measured on this fleet: 29 of 30 (96.7 %); the simulator plays the taste 60 % of the time."""
    with Warehouse(fleet[1], read_only=True) as wh:
        df = cabin_features(DuckDBEngine(wh), period="month")  # the whole week, pooled
    m = df.merge(_truth(fleet, "persons")[["vin", "content_taste"]], on="vin")
    assert len(m) == FLEET["vehicles"]
    hit = (m["top_genre"] == m["content_taste"]).mean()
    assert hit >= 0.9
    taste_share = pd.Series([m.at[i, f"genre_share_{t}"] for i, t in m["content_taste"].items()])
    assert taste_share.mean() >= 0.45


def test_plug_in_soc_ordered_by_range_anxiety(fleet: tuple[Path, Path]) -> None:
    """Plug-in SOC rises with the hidden range anxiety.

    Measured on this fleet: Spearman 0.52 over 19 charging vehicles; mean plug-in SOC of
    the high tier 62.3 % against 47.7 % (mid) and 49.1 % (low).  Only 3 vehicles are in the
    low tier, so mid and low are not ordered against each other here (an earlier draw of
    the fleet had 65.0 > 53.3 > 39.5 %, Spearman 0.64).
    """
    with Warehouse(fleet[1], read_only=True) as wh:
        df = charging_features(DuckDBEngine(wh), period="month")
    truth = _truth(fleet, "persons")[["vin", "range_anxiety", "range_anxiety_tier"]]
    m = df.merge(truth, on="vin")
    tier = m.groupby("range_anxiety_tier")["plug_in_soc_mean"].mean()
    assert tier["high"] > max(tier["mid"], tier["low"]) + 10.0
    rho = m[["plug_in_soc_mean", "range_anxiety"]].corr(method="spearman").iloc[0, 1]
    assert rho >= 0.5


def test_sessions_match_true_charging(fleet: tuple[Path, Path]) -> None:
    """Every true AC/DC session is found once; energy within 1 % (measured: exact counts)."""
    with Warehouse(fleet[1], read_only=True) as wh:
        df = charging_features(DuckDBEngine(wh), period="month")
        cap = wh.con.execute("SELECT vin, battery_kwh FROM vehicles").df()
    tc = _truth(fleet, "charging")
    tc = tc[tc["kind"].isin(["ac", "dc"])].merge(cap, on="vin")
    tc["kwh"] = (tc["soc_end"] - tc["soc_start"]) * tc["battery_kwh"]
    true = tc.groupby("vin").agg(n=("kwh", "size"), kwh=("kwh", "sum")).reset_index()
    m = df.merge(true, on="vin", how="left").fillna({"n": 0, "kwh": 0.0})
    assert (m["sessions"] == m["n"]).mean() >= 0.95
    true_per_week = m["n"] / (FLEET["days"] / 7)
    assert (m["sessions_per_week"] - true_per_week).abs().max() <= 0.1
    charged = m[m["kwh"] > 0]
    rel = (charged["energy_charged_kwh"] - charged["kwh"]).abs() / charged["kwh"]
    assert len(charged) and rel.max() <= 0.01
    home = m.merge(_truth(fleet, "persons")[["vin", "home_charger"]], on="vin")
    assert (home.loc[~home["home_charger"], "home_charge_share"].fillna(0) == 0).all()


def _pooled_rates(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby("vin")[
        ["harsh_accel_events", "harsh_brake_events", "harsh_corner_events", "distance_km"]
    ].sum()
    km = g["distance_km"].where(g["distance_km"] >= 1.0)
    return pd.DataFrame(
        {
            f"harsh_{k}_per_100km": g[f"harsh_{k}_events"] / km * 100.0
            for k in ("accel", "brake", "corner")
        }
    ).reset_index()


def test_harsh_rates_ordered_by_driving_style(built: Warehouse, fleet: tuple[Path, Path]) -> None:
    """Stored weekly rows pooled per vehicle; measured (events/100 km, class thresholds):
    aggressive 57.5/52.1/19.8 > moderate 14.0/19.5/6.0 > cautious 0.0/1.2/0.1."""
    vt = _truth(fleet, "vehicles_truth")
    ours = _pooled_rates(_table(built, "driving")).merge(vt[["vin", "driving_style"]], on="vin")
    by = ours.groupby("driving_style").mean(numeric_only=True)
    for col in ("harsh_accel_per_100km", "harsh_brake_per_100km", "harsh_corner_per_100km"):
        assert by.at["aggressive", col] > by.at["moderate", col] > by.at["cautious", col], col


def test_harsh_rates_agree_with_truth(fleet: tuple[Path, Path]) -> None:
    """The truth counts runs above 2.5 m/s^2 / 0.4 g for every vehicle class, on clean data.

    With those thresholds our event counts agree with the truth's to within 1 % of all
    events and 3 events per vehicle (measured: 10 of 1,454 accelerations, 7 of 1,810
    brakings, 0 of 574 corners; at most 3 on one vehicle), and the rates correlate at
    0.999+; with the shipped class thresholds (lower for SUV, MPV and pickup) they stay
    highly correlated but higher for those classes.  Counts, not rates, are compared: one
    event is 0.75 per 100 km on a vehicle that drove 132 km this week.
    """
    p = load_params()
    same = p.model_copy(update={"harsh_thresholds": {"default": p.harsh_thresholds["default"]}})
    vt = _truth(fleet, "vehicles_truth")
    with Warehouse(fleet[1], read_only=True) as wh:
        eng = DuckDBEngine(wh)
        ours = driving_features(eng, period="month", params=same).merge(
            vt, on="vin", suffixes=("", "_t")
        )
        shipped = driving_features(eng, period="month").merge(vt, on="vin", suffixes=("", "_t"))
    for kind in ("accel", "brake", "corner"):
        col = f"harsh_{kind}_per_100km"
        true_events = (ours[f"{col}_t"] * ours["distance_km"] / 100).round()
        diff = (ours[f"harsh_{kind}_events"] - true_events).abs()
        assert diff.sum() <= 0.01 * true_events.sum() and diff.max() <= 3, col
        assert ours[col].corr(ours[f"{col}_t"]) > 0.999, col
        assert shipped[col].corr(shipped[f"{col}_t"]) > 0.8, col
        assert shipped[col].mean() >= ours[col].mean(), col


# ----------------------------------------------------------------------------- incremental
def test_incremental_equals_full_and_is_idempotent(
    fleet: tuple[Path, Path], tmp_path: Path
) -> None:
    names = list(STEPS)
    with _copy(fleet[1], tmp_path / "full.duckdb") as wh:
        build_features(wh, full=True, only=RELATIONAL)
        full = {n: _table(wh, n) for n in names}
    with _copy(fleet[1], tmp_path / "inc.duckdb") as wh:
        con = wh.con
        for t in TIME_TABLES:  # week 1 only has arrived
            con.execute(
                f'CREATE TEMP TABLE "later_{t}" AS SELECT * FROM "{t}" WHERE ts >= ?', [WEEK2]
            )
            con.execute(f'DELETE FROM "{t}" WHERE ts >= ?', [WEEK2])
        first = build_features(wh, only=RELATIONAL)
        assert first.since is None
        for t in TIME_TABLES:  # then week 2
            con.execute(f'INSERT INTO "{t}" SELECT * FROM "later_{t}"')
        rep = build_features(wh, since=WEEK2.date(), only=RELATIONAL)
        assert rep.since == WEEK2.isoformat()
        assert all(rep.periods[n] == 1 for n in names), rep.periods
        for n in names:
            pd.testing.assert_frame_equal(_table(wh, n), full[n], check_dtype=False, rtol=1e-9)
        again = build_features(wh, only=RELATIONAL)  # the latest stored period: week 2
        assert again.since == WEEK2.isoformat()
        for n in names:
            pd.testing.assert_frame_equal(_table(wh, n), full[n], check_dtype=False, rtol=1e-9)


# ----------------------------------------------------------------------------- bad input
def test_vehicle_without_cabin_events(fleet: tuple[Path, Path], tmp_path: Path) -> None:
    with _copy(fleet[1], tmp_path / "w.duckdb") as wh:
        vin = wh.con.execute("SELECT min(vin) FROM motion").fetchone()[0]  # type: ignore[index]
        wh.con.execute("DELETE FROM cabin_events WHERE vin = ?", [vin])
        df = cabin_features(DuckDBEngine(wh))
    row = df[df["vin"] == vin]
    assert len(row) >= 1  # the vehicle drove, so it has rows
    assert (row["cabin_events"] == 0).all() and (row["driving_h"] > 0).all()
    assert row[["voice_share_music", "genre_share_news", "top_genre", "top_app"]].isna().all().all()
    assert row[["fatigue_per_driving_h", "distraction_per_driving_h"]].isna().all().all()
    assert (row[["app_minutes", "media_minutes"]] == 0).all().all()


def test_customer_with_only_cancellations(fleet: tuple[Path, Path], tmp_path: Path) -> None:
    with _copy(fleet[1], tmp_path / "w.duckdb") as wh:
        wh.con.execute(
            """INSERT INTO orders (order_id, line_no, customer_id, ts, product_id, quantity,
                   unit_price, currency, is_cancellation)
               VALUES ('CX1', 1, 'EC-ONLY-CANCEL', TIMESTAMPTZ '2026-01-09 10:00:00+00', 'P1',
                       -2, 50.0, 'CNY', true),
                      ('CX1', 2, 'EC-ONLY-CANCEL', TIMESTAMPTZ '2026-01-09 10:00:00+00', 'P2',
                       -1, 20.0, 'CNY', NULL)"""
        )
        df = commerce_features(DuckDBEngine(wh))
    row = df[df["customer_id"] == "EC-ONLY-CANCEL"]
    assert len(row) == 1
    r = row.iloc[0]
    assert (r.frequency, r.monetary, r.orders_to_date) == (0, 0.0, 0)
    # the unflagged line has a negative quantity: a return, so a cancellation line too
    assert r.monetary_net == pytest.approx(-120.0)
    assert r.events == 0 and r.cancelled_orders == 1
    assert pd.isna(r.recency_days) and pd.isna(r.avg_order_value) and pd.isna(r.browse_depth)


def test_ice_vehicles_have_no_charging_rows(fleet: tuple[Path, Path], tmp_path: Path) -> None:
    with _copy(fleet[1], tmp_path / "w.duckdb") as wh:
        ice = wh.con.execute("SELECT min(vin) FROM vehicles WHERE energy_type = 'ICE'").fetchone()[
            0
        ]  # type: ignore[index]
        # a faulty ICE feed claiming to charge
        wh.con.execute("UPDATE vehicle_signals SET charging = true WHERE vin = ?", [ice])
        df = charging_features(DuckDBEngine(wh))
        plug = wh.con.execute(
            "SELECT count(*) FROM vehicles WHERE energy_type IN ('BEV', 'PHEV', 'EREV')"
        ).fetchone()[0]  # type: ignore[index]
    assert ice is not None and ice not in set(df["vin"])
    assert df["vin"].nunique() == plug


def test_no_data_gives_empty_tables(wh: Warehouse) -> None:
    """Empty tables give empty feature tables typed like full ones (VARCHAR keys, not NULL)."""
    eng = DuckDBEngine(wh)
    dicts = domains()
    for name in RELATIONAL:
        df = STEPS[name][0](eng)
        d = dicts[name]
        assert len(df) == 0, name
        assert list(df.columns) == [d.entity, "period_start", *(f.name for f in d.features)]
    rep = build_features(wh, only=RELATIONAL)
    assert rep.rows == dict.fromkeys(RELATIONAL, 0)
    types = wh.con.execute(
        "SELECT DISTINCT data_type FROM information_schema.columns WHERE table_name LIKE 'features_%'"
    ).fetchall()
    assert ("NULL",) not in types and ('"NULL"',) not in types


def test_sparse_tables_give_nulls_not_crashes(wh: Warehouse) -> None:
    """One vehicle without registration date, signals or battery size; one lone review."""
    con = wh.con
    con.execute("INSERT INTO vehicles (vin, energy_type) VALUES ('V1', 'BEV'), ('V2', 'ICE')")
    con.execute(
        """INSERT INTO vehicle_signals (vin, ts, charging, soc_pct, charger_type) VALUES
           ('V1', TIMESTAMPTZ '2026-01-05 10:00:00+00', true, 30.0, NULL),
           ('V1', TIMESTAMPTZ '2026-01-05 10:02:00+00', true, 35.0, NULL),
           ('V1', TIMESTAMPTZ '2026-01-05 12:00:00+00', false, 60.0, NULL)"""
    )
    con.execute(
        """INSERT INTO service_records (service_id, vin, ts, visit_type, warning_id)
           VALUES ('S1', 'V2', TIMESTAMPTZ '2026-01-06 09:00:00+00', 'maintenance', 'W-missing')"""
    )
    con.execute(
        """INSERT INTO reviews (message_id, customer_id, ts, kind)
           VALUES ('M1', 'C1', TIMESTAMPTZ '2026-01-06 09:00:00+00', 'chat')"""
    )
    eng = DuckDBEngine(wh)
    ch = charging_features(eng).iloc[0]
    assert (ch.vin, ch.sessions) == ("V1", 1)
    assert pd.isna(ch.sessions_per_week)  # two hours observed
    assert pd.isna(ch.home_charge_share) and pd.isna(ch.energy_charged_kwh)  # no type, no kWh
    assert ch.plug_in_soc_mean == pytest.approx(30.0)
    sv = service_features(eng).set_index("vin")
    assert pd.isna(sv.at["V2", "vehicle_age_years"]) and sv.at["V2", "visits"] == 1
    assert sv.at["V2", "after_warning_share"] == 1.0 and pd.isna(sv.at["V2", "warning_delay_days"])
    assert pd.isna(sv.at["V2", "maintenance_interval_days"]) and sv.at["V2", "spend_cny"] == 0
    assert sv.at["V2", "accessory_visits_to_date"] == 0  # a maintenance visit is not one
    assert pd.isna(sv.at["V2", "accessory_visits_per_year"])  # no registration date
    co = commerce_features(eng).iloc[0]
    assert (co.customer_id, co.chats, co.reviews, co.events) == ("C1", 1, 0, 0)
    assert pd.isna(co.modal_hour) and pd.isna(co.rating_mean)
