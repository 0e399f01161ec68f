"""The simulated tables conform to their contracts and hang together; truth stays apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr
from simcheck import Q, check_table

from autopersona.contracts import contract_names, get_contract
from autopersona.simulate.commerce import review_text
from autopersona.simulate.core import TRUTH_MARKER
from autopersona.simulate.truth import vin_check_digit

TABLES = contract_names()


def test_every_contract_table_is_written(clean_fleet: Path) -> None:
    files = sorted(p.stem for p in (clean_fleet / "tables").glob("*.parquet"))
    assert files == sorted(TABLES)
    assert len(files) == 16
    mf = pq.read_table(clean_fleet / "tables" / "marketing_feedback.parquet")
    assert mf.num_rows == 0
    assert mf.column_names == get_contract("marketing_feedback").column_names


@pytest.mark.parametrize("table", TABLES)
def test_clean_tables_conform_to_contract(clean_fleet: Path, table: str) -> None:
    t = pq.read_table(clean_fleet / "tables" / f"{table}.parquet")
    assert check_table(t, get_contract(table)) == []
    if table != "marketing_feedback":
        assert t.num_rows > 0


@pytest.mark.parametrize("table", TABLES)
def test_messy_tables_keep_types_values_and_ranges(messy_fleet: Path, table: str) -> None:
    """Mess adds duplicates and nulls, never wrong types, values or out-of-range numbers."""
    t = pq.read_table(messy_fleet / "tables" / f"{table}.parquet")
    assert check_table(t, get_contract(table), unique_key=False, monotonic=False) == []


def test_truth_lives_only_under_truth_with_marker(clean_fleet: Path) -> None:
    truth = clean_fleet / "truth"
    assert (truth / TRUTH_MARKER).is_file()
    assert not list((clean_fleet / "tables").glob(f"**/{TRUTH_MARKER}"))
    names = {p.stem for p in truth.glob("*.parquet")}
    assert {
        "persons",
        "vehicles_truth",
        "trips",
        "places",
        "identity",
        "charging",
        "service_plan",
        "mess",
        "products",
    } <= names
    latent = {
        "driving_style",
        "aggressiveness",
        "lifestyle",
        "commute_pattern",
        "content_taste",
        "price_sensitivity",
        "person_id",
        "range_anxiety",
        "true_name",
        "activity",
    }
    for p in (clean_fleet / "tables").glob("*.parquet"):
        cols = set(pq.read_schema(p).names)
        if p.stem == "marketing_feedback":  # its contract names the recipient person_id
            cols.discard("person_id")
        assert not cols & latent, p.name
    manifest = json.loads((clean_fleet / "manifest.json").read_text())
    assert manifest["truth"]["marker"] == TRUTH_MARKER
    assert set(manifest["tables"]) == set(TABLES)


def test_fleet_mix_covers_tiers_energy_types_and_ages(cq: Q) -> None:
    tiers = {
        r[0]
        for r in cq.rows(
            """SELECT CASE WHEN msrp_cny > 400000 THEN 'luxury' WHEN msrp_cny >= 150000 THEN 'mid'
                  ELSE 'economy' END FROM T.vehicles"""
        )
    }
    assert tiers == {"luxury", "mid", "economy"}
    assert {r[0] for r in cq.rows("SELECT energy_type FROM T.vehicles")} == {
        "ICE",
        "BEV",
        "PHEV",
        "EREV",
    }
    old, adas = cq.one(
        "SELECT count(*) FILTER (WHERE registration_date < DATE '2023-01-05'), count(*) FILTER (WHERE adas_equipped) FROM T.vehicles"
    )
    assert old >= 3 and adas >= 3
    vins = [r[0] for r in cq.rows("SELECT vin FROM T.vehicles")]
    assert len(set(vins)) == len(vins)
    assert all(len(v) == 17 and vin_check_digit(v) == v[8] for v in vins)


def test_truth_tier_and_style_agree_with_tables(cq: Q) -> None:
    bad = cq.one(
        """SELECT count(*) FROM R.vehicles_truth t JOIN T.vehicles v USING (vin)
           WHERE t.tier <> CASE WHEN v.msrp_cny > 400000 THEN 'luxury'
                                WHEN v.msrp_cny >= 150000 THEN 'mid' ELSE 'economy' END
              OR t.energy_type <> v.energy_type"""
    )[0]
    assert bad == 0
    assert cq.one("SELECT count(DISTINCT driving_style) FROM R.persons")[0] == 3


def test_trips_truth_matches_motion(cq: Q) -> None:
    n_truth, n_motion, bad = cq.one(
        """WITH m AS (SELECT trip_id, vin, min(ts) t0, max(ts) t1 FROM T.motion GROUP BY ALL)
           SELECT (SELECT count(*) FROM R.trips), count(*),
                  count(*) FILTER (WHERE t.start_ts <> m.t0 OR t.end_ts <> m.t1 OR t.vin <> m.vin)
           FROM m JOIN R.trips t USING (trip_id)"""
    )
    assert n_truth == n_motion and bad == 0
    purposes = {r[0] for r in cq.rows("SELECT DISTINCT purpose FROM R.trips")}
    assert purposes == {"commute", "business", "leisure"}
    assert cq.one("SELECT count(*) FROM R.trips WHERE long_trip")[0] >= 1
    # trips of one vehicle never overlap
    overlap = cq.one(
        """SELECT count(*) FROM (SELECT start_ts, lag(end_ts) OVER (PARTITION BY vin ORDER BY start_ts) prev
                                 FROM R.trips) WHERE start_ts <= prev"""
    )[0]
    assert overlap == 0


def test_trips_end_at_known_pois(cq: Q) -> None:
    missing = cq.one(
        "SELECT count(*) FROM R.trips t ANTI JOIN T.pois p ON p.poi_id = t.dest_poi_id"
    )[0]
    assert missing == 0
    far = cq.one(
        """SELECT max(st_d) FROM (
             SELECT 2 * 6371008.8 * asin(sqrt(power(sin(radians(m.lat - p.lat) / 2), 2)
                    + cos(radians(m.lat)) * cos(radians(p.lat)) * power(sin(radians(m.lon - p.lon) / 2), 2))) st_d
             FROM R.trips t JOIN T.motion m ON m.trip_id = t.trip_id AND m.ts = t.end_ts
             JOIN T.pois p ON p.poi_id = t.dest_poi_id)"""
    )[0]
    assert far < 200  # vehicles park near the POI they visit
    homes = cq.one(
        """SELECT count(*) FROM R.persons p JOIN T.pois h ON h.poi_id = p.home_poi_id
           WHERE h.category = 'residential'"""
    )[0]
    assert homes == cq.one("SELECT count(*) FROM R.persons")[0]


def test_home_is_where_nights_are_spent(cq: Q) -> None:
    """The last fix of each local day is mostly within 300 m of the true home."""
    share = cq.one(
        """WITH last AS (
             SELECT vin, arg_max(lat, ts) lat, arg_max(lon, ts) lon
             FROM T.motion GROUP BY vin, date_trunc('day', ts + INTERVAL 8 HOUR))
           SELECT avg((2 * 6371008.8 * asin(sqrt(power(sin(radians(l.lat - p.home_lat) / 2), 2)
                  + cos(radians(l.lat)) * cos(radians(p.home_lat))
                  * power(sin(radians(l.lon - p.home_lon) / 2), 2))) < 300)::INT)
           FROM last l JOIN R.persons p USING (vin) WHERE p.timezone = 'Asia/Shanghai'"""
    )[0]
    assert share > 0.75


def test_warnings_precede_their_service_visits(cq: Q) -> None:
    n, bad, other_vin = cq.one(
        """SELECT count(*), count(*) FILTER (WHERE s.ts <= w.ts), count(*) FILTER (WHERE s.vin <> w.vin)
           FROM T.service_records s JOIN T.warnings w USING (warning_id)"""
    )
    assert n > 10 and bad == 0 and other_vin == 0
    orphans = cq.one(
        "SELECT count(*) FROM T.service_records s ANTI JOIN T.warnings w USING (warning_id) WHERE s.warning_id IS NOT NULL"
    )[0]
    assert orphans == 0
    corr = cq.one(
        """SELECT corr(epoch(s.ts) - epoch(w.ts), p.service_delay_days)
           FROM T.service_records s JOIN T.warnings w USING (warning_id) JOIN R.persons p ON p.vin = s.vin"""
    )[0]
    assert corr > 0.3  # visit delay follows the person's latent delay


def test_adas_trials_belong_to_adas_vehicles(cq: Q) -> None:
    bad = cq.one(
        """SELECT count(*) FROM T.subscriptions s JOIN T.vehicles v USING (vin)
           WHERE s.product = 'adas_pilot' AND NOT v.adas_equipped"""
    )[0]
    assert bad == 0
    trials = cq.rows("SELECT ts, ends_at FROM T.subscriptions WHERE event = 'trial_start'")
    assert trials and all(end > ts for ts, end in trials)


def test_identity_truth_covers_every_account(cq: Q) -> None:
    n_acc, n_linked = cq.one(
        "SELECT count(*), count(i.person_id) FROM T.accounts a LEFT JOIN R.identity i USING (account_id)"
    )
    assert n_acc == n_linked
    multi = cq.one(
        "SELECT count(*) FROM (SELECT person_id FROM R.identity GROUP BY 1 HAVING count(*) >= 3)"
    )[0]
    assert multi > 0
    # messy identifiers: one person's names / phones are not all spelt the same
    variants = cq.one(
        """SELECT max(n_name), max(n_phone) FROM (
             SELECT count(DISTINCT a.name) n_name, count(DISTINCT a.phone) n_phone
             FROM T.accounts a JOIN R.identity i USING (account_id) GROUP BY i.person_id)"""
    )
    assert variants[0] >= 2 and variants[1] >= 2
    orphans = cq.one("SELECT count(*) FROM T.consents c ANTI JOIN T.accounts a USING (account_id)")[
        0
    ]
    assert orphans == 0


def test_orders_match_purchase_events(cq: Q) -> None:
    n, matched = cq.one(
        """SELECT count(*), count(e.event_id) FROM T.orders o LEFT JOIN T.commerce_events e
             ON e.customer_id = o.customer_id AND e.product_id = o.product_id AND e.ts = o.ts
            AND e.event_type = CASE WHEN o.is_cancellation THEN 'cancel' ELSE 'purchase' END"""
    )
    assert n > 0 and n == matched
    gaps = cq.one(
        """SELECT count(*) FROM (SELECT order_id, min(line_no) lo, max(line_no) hi, count(*) n
                                 FROM T.orders GROUP BY 1) WHERE lo <> 1 OR hi <> n"""
    )[0]
    assert gaps == 0
    wrong_sign = cq.one(
        "SELECT count(*) FROM T.orders WHERE (quantity < 0) <> is_cancellation OR currency <> 'CNY'"
    )[0]
    assert wrong_sign == 0
    customers = cq.one(
        """SELECT count(*) FROM T.commerce_events e ANTI JOIN T.accounts a
             ON a.account_id = e.customer_id AND a.source = 'ecommerce'"""
    )[0]
    assert customers == 0


def test_discretionary_purchases_follow_aftermarket_propensity(cq: Q) -> None:
    """Accessory visits per year of the car's age rank people by their hidden aftermarket
    propensity; orders fitted to a car (VIN set) were researched in its category first."""
    got = cq.np(
        """WITH acc AS (SELECT vin, count(*) FILTER (WHERE visit_type = 'accessory') AS n
                        FROM T.service_records GROUP BY 1)
           SELECT p.aftermarket_propensity AS p, coalesce(acc.n, 0) / greatest(
                    date_diff('day', v.registration_date, DATE '2026-01-05') / 365.25, 0.25
                  ) AS rate
           FROM R.persons p JOIN T.vehicles v USING (vin) LEFT JOIN acc USING (vin)"""
    )
    rho = spearmanr(np.asarray(got["p"]), np.asarray(got["rate"])).statistic
    assert rho > 0.6, rho
    fitted, researched = cq.one(
        """SELECT count(*), count(*) FILTER (WHERE EXISTS (
                    SELECT 1 FROM T.commerce_events e
                    WHERE e.customer_id = o.customer_id AND e.category = o.category
                      AND e.event_type = 'view' AND e.ts < o.ts
                      AND e.ts > o.ts - INTERVAL 14 DAY))
           FROM T.orders o WHERE o.vin IS NOT NULL AND NOT o.is_cancellation"""
    )
    assert int(str(fitted)) > 0 and researched == fitted


def test_review_sentiment_matches_rating(cq: Q) -> None:
    """Review wording varies, and a plain word lexicon scores high ratings above low ones."""
    rows = cq.rows("SELECT rating, text FROM T.reviews WHERE kind = 'review'")
    assert len(rows) >= 30
    texts = [str(t) for _, t in rows]
    assert len(set(texts)) >= 0.8 * len(texts)  # not a handful of canned sentences
    good = ("good", "great", "love", "excellent", "fantastic", "recommend", "happy", "well")
    bad = (
        *("poor", "terrible", "broke", "waste", "cheap", "disappoint", "awful", "not worth"),
        *("stopped", "rattle", "not fit", "never", "useless", "expensive", "avoid", "worst"),
        *("return", "refund", "rubbish", "dangerous", "crash", "overheat", "scratch"),
        "not recommend",  # "would not recommend" also holds the good word "recommend"
    )

    def lexicon(text: str) -> int:
        low = text.lower()
        return sum(w in low for w in good) - sum(w in low for w in bad)

    by_rating: dict[int, list[int]] = {}
    for rating, text in rows:
        by_rating.setdefault(int(str(rating)), []).append(lexicon(str(text)))
    mean = {r: sum(v) / len(v) for r, v in by_rating.items()}
    assert mean[5] > 0 and mean.get(4, 1) > 0
    for lo in (1, 2):
        if lo in mean:
            assert mean[lo] < 0 and mean[lo] < mean[4]
    assert review_text(2, "roof tent", "MSG-x") == review_text(2, "roof tent", "MSG-x")


def test_media_follows_content_taste(cq: Q) -> None:
    share = cq.one(
        """SELECT avg((c.media_genre = p.content_taste)::INT) FROM T.cabin_events c
           JOIN R.persons p USING (vin) WHERE c.event_type = 'media'"""
    )[0]
    assert share > 0.45  # 60 % by construction, 5 % by chance


def test_no_vehicle_runs_dry(cq: Q) -> None:
    n = cq.one("SELECT count(*) FROM T.vehicle_signals WHERE soc_pct <= 1 OR fuel_level_pct <= 1")[
        0
    ]
    assert n == 0
