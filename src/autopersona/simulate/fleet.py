"""Simulate one vehicle (and the person behind it) end to end.

:func:`simulate_vehicle` draws the truth, plans and drives the window, derives every
canonical table and the truth tables, and injects the configured mess. Vehicle ``k`` uses
only its own random streams (see :mod:`autopersona.simulate.ids`), so its output does not
depend on the fleet size or on how vehicles are split over worker processes.

Each vehicle covers ``days`` local days from local midnight of ``start`` in its own time
zone.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from autopersona.contracts import get_contract
from autopersona.simulate.business import business_events
from autopersona.simulate.cabin import cabin_columns, raise_dtcs
from autopersona.simulate.commerce import commerce_rows, main_account
from autopersona.simulate.config import COMMERCE_HISTORY_DAYS, MessConfig
from autopersona.simulate.environment import city_weather
from autopersona.simulate.geo import local_midnight_utc_s, utc_offset_s
from autopersona.simulate.identity import accounts_for, consent_rows, true_identity
from autopersona.simulate.ids import vehicle_rngs
from autopersona.simulate.mess import MESS_SCHEMA, inject
from autopersona.simulate.places import personal_place, poi_pool
from autopersona.simulate.schedule import Planner
from autopersona.simulate.telemetry import motion_columns, signal_columns, v2x_columns
from autopersona.simulate.timeline import Timeline, run_timeline
from autopersona.simulate.truth import Person, sample_person, sample_vehicle
from autopersona.simulate.writer import rows_to_arrow, to_arrow

__all__ = ["TABLES", "TRUTH_SCHEMAS", "VehicleResult", "simulate_vehicle"]

US = 1_000_000
#: Canonical tables in the order they are generated and written.
TABLES = (
    "vehicles",
    "accounts",
    "vehicle_signals",
    "motion",
    "dtc_events",
    "cabin_events",
    "v2x_context",
    "pois",
    "service_records",
    "warnings",
    "subscriptions",
    "commerce_events",
    "orders",
    "reviews",
    "consents",
    "marketing_feedback",
)
_TS = pa.timestamp("us", tz="UTC")
_PY2PA = {"str": pa.string(), "float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}


def _person_schema() -> pa.Schema:
    fields = [
        pa.field(f.name, _PY2PA[str(f.type)]) for f in dataclasses.fields(Person) if f.name != "k"
    ]
    fields += [
        pa.field("vin", pa.string()),
        pa.field("true_name", pa.string()),
        pa.field("true_phone", pa.string()),
        pa.field("true_email", pa.string()),
        pa.field("home_poi_id", pa.string()),
        pa.field("work_poi_id", pa.string()),
    ]
    return pa.schema(fields)


#: Schemas of the ground-truth tables written to ``truth/``.
TRUTH_SCHEMAS: dict[str, pa.Schema] = {
    "persons": _person_schema(),
    "vehicles_truth": pa.schema(
        [
            ("vin", pa.string()),
            ("person_id", pa.string()),
            ("driving_style", pa.string()),
            ("aggressiveness", pa.float64()),
            ("tier", pa.string()),
            ("energy_type", pa.string()),
            ("adas_equipped", pa.bool_()),
            ("age_years", pa.float64()),
            ("odometer_start_km", pa.float64()),
            ("annual_km_est", pa.float64()),
            ("window_km", pa.float64()),
            ("window_drive_h", pa.float64()),
            ("trips", pa.int64()),
            ("harsh_accel_per_100km", pa.float64()),
            ("harsh_brake_per_100km", pa.float64()),
            ("harsh_corner_per_100km", pa.float64()),
            ("home_charger", pa.bool_()),
            ("commute_pattern", pa.string()),
            ("lifestyle", pa.string()),
        ]
    ),
    "trips": pa.schema(
        [
            ("trip_id", pa.string()),
            ("vin", pa.string()),
            ("person_id", pa.string()),
            ("seq", pa.int64()),
            ("start_ts", _TS),
            ("end_ts", _TS),
            ("purpose", pa.string()),
            ("activity", pa.string()),
            ("origin_poi_id", pa.string()),
            ("dest_poi_id", pa.string()),
            ("dest_category", pa.string()),
            ("distance_km", pa.float64()),
            ("duration_s", pa.int64()),
            ("long_trip", pa.bool_()),
            ("base_congestion", pa.int64()),
            ("kwh", pa.float64()),
            ("litres", pa.float64()),
            ("stops", pa.int64()),
        ]
    ),
    "places": pa.schema(
        [
            ("person_id", pa.string()),
            ("vin", pa.string()),
            ("kind", pa.string()),
            ("poi_id", pa.string()),
            ("category", pa.string()),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
        ]
    ),
    "identity": pa.schema(
        [
            ("account_id", pa.string()),
            ("person_id", pa.string()),
            ("source", pa.string()),
            ("vin", pa.string()),
            ("duplicate", pa.bool_()),
        ]
    ),
    "charging": pa.schema(
        [
            ("vin", pa.string()),
            ("person_id", pa.string()),
            ("kind", pa.string()),
            ("charger_type", pa.string()),
            ("start_ts", _TS),
            ("end_ts", _TS),
            ("poi_id", pa.string()),
            ("soc_start", pa.float64()),
            ("soc_end", pa.float64()),
            ("fuel_start", pa.float64()),
            ("fuel_end", pa.float64()),
            ("power_kw", pa.float64()),
        ]
    ),
    "service_plan": pa.schema(
        [
            ("warning_id", pa.string()),
            ("vin", pa.string()),
            ("warning_ts", _TS),
            ("planned_visit_ts", _TS),
            ("visited", pa.bool_()),
            ("ignored", pa.bool_()),
        ]
    ),
    "mess": MESS_SCHEMA,
}


@dataclass
class VehicleResult:
    """Everything one vehicle contributes: canonical tables, truth tables, its city."""

    tables: dict[str, pa.Table]
    truth: dict[str, pa.Table]
    city: str


def _truth_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = TRUTH_SCHEMAS[name]
    fixed = []
    for r in rows:
        d = dict(r)
        for f in schema:
            if f.type == _TS and d.get(f.name) is not None:
                v = int(d[f.name])
                d[f.name] = None if v == np.iinfo(np.int64).min else v
            elif (
                f.type == pa.float64()
                and isinstance(d.get(f.name), float)
                and math.isnan(d[f.name])
            ):
                d[f.name] = None
        fixed.append(d)
    cols = {f.name: [d.get(f.name) for d in fixed] for f in schema}
    arrays = [
        pa.array(cols[f.name], type=pa.int64()).cast(_TS)
        if f.type == _TS
        else pa.array(cols[f.name], type=f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _harsh(tl: Timeline) -> tuple[float, float, float, float, float]:
    km = sum(t.motion.distance_m for t in tl.trips) / 1000
    hours = sum(t.motion.n for t in tl.trips) / 3600

    def events(mask: np.ndarray[Any, Any]) -> int:
        return int((np.diff(mask.astype(np.int8), prepend=0) == 1).sum())

    ha = hb = hc = 0
    for t in tl.trips:
        m = t.motion
        ha += events(m.a_long > 2.5)
        hb += events(m.a_long < -2.5)
        hc += events(np.abs(m.v * m.v * m.kappa) > 0.4 * 9.80665)
    per = 100 / km if km > 0 else 0.0
    return km, hours, ha * per, hb * per, hc * per


def simulate_vehicle(seed: int, k: int, start: date, days: int, mess: MessConfig) -> VehicleResult:
    """Simulate vehicle ``k`` (and its person) for ``days`` local days from ``start``."""
    r = vehicle_rngs(seed, k)
    person = sample_person(k, seed, start, r["person"])
    spec = sample_vehicle(person, start, r["vehicle"])
    city = person.city_obj
    pool = poi_pool(seed, city)
    weather = city_weather(seed, city, start, days)
    t_start = local_midnight_utc_s(person.timezone, start)
    t_end = local_midnight_utc_s(person.timezone, start + timedelta(days=days))
    home, home_row = personal_place(seed, city, "home", k, person.home_x, person.home_y, r["plan"])
    work, work_row = (None, None)
    if person.has_work:
        work, work_row = personal_place(
            seed, city, "work", k, person.work_x, person.work_y, r["plan"]
        )
    planner = Planner(person, home, work, pool, r["plan"])
    plans = planner.plan(start, days)
    tl = run_timeline(
        person,
        spec,
        home,
        work,
        pool,
        weather,
        plans,
        t_start,
        t_end,
        seed,
        r["drive"],
        r["energy"],
    )

    tables: dict[str, pa.Table] = {}

    def put(name: str, cols: dict[str, Any], n: int) -> None:
        tables[name] = to_arrow(get_contract(name), cols, n)

    put("motion", *motion_columns(tl, spec, person, r["drive"]))
    put("vehicle_signals", *signal_columns(tl, spec, weather, r["energy"]))
    put("v2x_context", *v2x_columns(tl, spec, weather, r["cabin"]))
    put("cabin_events", *cabin_columns(tl, person, spec, r["cabin"]))
    dtcs = raise_dtcs(tl, spec, t_start, days, r["cabin"])

    # identity
    ti = true_identity(person, city, r["identity"])
    dealer_idx = pool.indices("dealer")
    d = np.hypot(pool.x[dealer_idx] - home.x, pool.y[dealer_idx] - home.y)
    dealers = [pool.poi_id[int(i)] for i in dealer_idx[np.argsort(d, kind="stable")[:2]]]
    accounts = accounts_for(person, spec, ti, seed, start, dealers[0], r["identity"])
    tables["accounts"] = rows_to_arrow(get_contract("accounts"), [a.row for a in accounts])
    tables["consents"] = rows_to_arrow(
        get_contract("consents"),
        consent_rows(person, accounts, t_start * US, t_end * US, r["identity"]),
    )

    # service side
    owner = next((a for a in accounts if a.source == "owner"), None) or next(
        (a for a in accounts if a.source == "app"), None
    )
    t_hist = t_start - COMMERCE_HISTORY_DAYS * 86400
    shop = main_account(accounts)
    biz = business_events(
        person,
        spec,
        tl,
        dtcs,
        dealers,
        owner.account_id if owner else None,
        t_start,
        t_end,
        seed,
        r["business"],
        online_from=max(t_hist, shop.created_at_us // US) if shop else None,
    )
    tables["warnings"] = rows_to_arrow(get_contract("warnings"), biz.warnings)
    tables["service_records"] = rows_to_arrow(get_contract("service_records"), biz.services)
    tables["subscriptions"] = rows_to_arrow(get_contract("subscriptions"), biz.subscriptions)
    dtc_rows = [
        {
            "vin": spec.vin,
            "ts": x.ts * US,
            "code": x.code,
            "severity": x.severity,
            "status": "active",
            "ecu": x.ecu,
        }
        for x in dtcs
    ]
    dtc_rows += [
        {
            "vin": spec.vin,
            "ts": ts * US,
            "code": code,
            "severity": sev,
            "status": "cleared",
            "ecu": ecu,
        }
        for ts, code, sev, ecu in biz.dtc_cleared
        if ts < t_end
    ]
    dtc_rows.sort(key=lambda x: (x["ts"], x["code"], x["status"]))
    tables["dtc_events"] = rows_to_arrow(get_contract("dtc_events"), dtc_rows)

    # commerce
    off = utc_offset_s(person.timezone, start)
    com = commerce_rows(
        person, spec, accounts, seed, t_hist, t_end, off, r["commerce"], biz.online_purchases
    )
    for name, rows in com.items():
        tables[name] = rows_to_arrow(get_contract(name), rows)

    # master data
    tables["vehicles"] = rows_to_arrow(
        get_contract("vehicles"),
        [
            {
                "vin": spec.vin,
                "brand": spec.brand,
                "model": spec.model,
                "model_year": spec.model_year,
                "body_type": spec.body_type,
                "msrp_cny": spec.msrp_cny,
                "energy_type": spec.energy_type,
                "battery_kwh": spec.battery_kwh if spec.has_battery else None,
                "fuel_tank_l": spec.fuel_tank_l if spec.has_fuel else None,
                "range_km": spec.range_km,
                "adas_equipped": spec.adas_equipped,
                "curb_weight_kg": spec.curb_weight_kg,
                "registration_date": (spec.registration_date - date(1970, 1, 1)).days,
                "region": spec.region,
                "timezone": spec.timezone,
            }
        ],
    )
    tables["pois"] = rows_to_arrow(
        get_contract("pois"), [home_row] + ([work_row] if work_row else [])
    )
    tables["marketing_feedback"] = rows_to_arrow(get_contract("marketing_feedback"), [])

    # mess: fixed table order so the mess stream is consumed deterministically
    mess_parts: list[pa.Table] = []
    for name in TABLES:
        tables[name], recs = inject(get_contract(name), tables[name], mess, r["mess"])
        mess_parts.append(recs)

    # truth
    km, hours, ha, hb, hc = _harsh(tl)
    prow = person.row()
    prow.update(
        vin=spec.vin,
        true_name=ti.full_name,
        true_phone=ti.phone_digits,
        true_email=ti.email,
        home_poi_id=home.poi_id,
        work_poi_id=work.poi_id if work else None,
    )
    for key in ("work_x", "work_y", "work_lat", "work_lon"):
        if isinstance(prow[key], float) and math.isnan(prow[key]):
            prow[key] = None
    truth = {
        "persons": [prow],
        "vehicles_truth": [
            {
                "vin": spec.vin,
                "person_id": person.person_id,
                "driving_style": person.driving_style,
                "aggressiveness": person.aggressiveness,
                "tier": spec.tier,
                "energy_type": spec.energy_type,
                "adas_equipped": spec.adas_equipped,
                "age_years": round(spec.age_years(start), 3),
                "odometer_start_km": spec.odometer_start_km,
                "annual_km_est": spec.annual_km_est,
                "window_km": round(km, 3),
                "window_drive_h": round(hours, 3),
                "trips": len(tl.trips),
                "harsh_accel_per_100km": round(ha, 3),
                "harsh_brake_per_100km": round(hb, 3),
                "harsh_corner_per_100km": round(hc, 3),
                "home_charger": person.home_charger,
                "commute_pattern": person.commute_pattern,
                "lifestyle": person.lifestyle,
            }
        ],
        "trips": [
            {
                "trip_id": t.trip_id,
                "vin": spec.vin,
                "person_id": person.person_id,
                "seq": t.seq,
                "start_ts": t.dep * US,
                "end_ts": t.arrive * US,
                "purpose": t.purpose,
                "activity": t.activity,
                "origin_poi_id": t.origin.poi_id,
                "dest_poi_id": t.dest.poi_id,
                "dest_category": t.dest.category,
                "distance_km": round(t.motion.distance_m / 1000, 4),
                "duration_s": t.motion.n - 1,
                "long_trip": t.motion.distance_m > 100_000,
                "base_congestion": t.congestion,
                "kwh": round(t.energy.kwh, 4),
                "litres": round(t.energy.litres, 4),
                "stops": t.motion.stops,
            }
            for t in tl.trips
        ],
        "places": [
            {
                "person_id": person.person_id,
                "vin": spec.vin,
                "kind": kind,
                "poi_id": pl.poi_id,
                "category": pl.category,
                "lat": pl.lat,
                "lon": pl.lon,
            }
            for kind, pl in [
                ("home", home),
                ("work", work),
                *(("favourite", pool.place(i)) for c in planner.cats for i in planner.favs[c]),
            ]
            if pl is not None
        ],
        "identity": [
            {
                "account_id": a.account_id,
                "person_id": person.person_id,
                "source": a.source,
                "vin": spec.vin,
                "duplicate": a.duplicate,
            }
            for a in accounts
        ],
        "charging": [
            {
                "vin": spec.vin,
                "person_id": person.person_id,
                "kind": s.session.kind,
                "charger_type": s.session.charger_type,
                "start_ts": s.session.t0 * US,
                "end_ts": s.session.t1 * US,
                "poi_id": s.session.poi_id,
                "soc_start": s.session.soc0,
                "soc_end": s.session.soc1,
                "fuel_start": s.session.fuel0,
                "fuel_end": s.session.fuel1,
                "power_kw": s.session.power_kw,
            }
            for s in tl.stays
            if s.session is not None
        ],
        "service_plan": biz.warning_truth,
    }
    truth_tables = {k_: _truth_table(k_, v) for k_, v in truth.items()}
    truth_tables["mess"] = pa.concat_tables(mess_parts)
    return VehicleResult(tables, truth_tables, city.name)
