"""Service history, warnings and value-added-service subscriptions of one vehicle.

History runs from registration to the end of the window (the odometer before the window
is linear in time at the vehicle's yearly mileage; inside it follows the trips).

Warnings and visits
-------------------
* ``oil_change`` (ICE/PHEV/EREV: every 7,500 km or 365 days) and ``maintenance_due`` (BEV:
  every 20,000 km or 730 days; every second service of a fuel car): a warning 0–3 days
  before the due point, then a ``maintenance`` visit after the person's delay
  (``lognormal(ln median_delay, 0.5)`` days); 25 % of the time the owner comes in before
  any warning, 8 % of warnings are ignored.
* ``brake_wear``: pads last ``45,000 (1.35 − 0.7 a)`` km (``a`` = aggressiveness); warning
  then a ``repair`` visit at the dealer with probability ``0.3 + 0.7 p`` (``p`` = aftermarket
  propensity: the others go to an independent garage, which leaves no service record).
* ``tyre_pressure``: Poisson 0.7 a year; ``0.1 + 0.5 p`` of them lead to a ``tyres`` visit
  at the dealer (the others are fixed elsewhere).
* ``battery_health``: battery cars older than 3 years, Poisson 0.25 a year → ``inspection``.
* ``dtc_followup``: for warning/critical DTCs in the window (and Poisson 0.3 a year
  before it, repaired at the dealer with probability ``0.3 + 0.7 p``) → ``repair`` visit
  (critical ones three times sooner); the DTC is cleared at the visit.
* Visits without a warning: ``accessory`` (the discretionary purchases below),
  ``tyres`` replacement every ~45,000 km (bought at the dealer with probability
  ``0.3 + 0.7 p``), ``inspection`` every two years for cars older than six.

Discretionary aftermarket purchases
-----------------------------------
A renewal process from registration (:func:`renewal_times`, Gamma(6) gaps: a buying
habit, more regular than Poisson) at :func:`discretionary_rate` ``(p)`` a year
(``0.02 e^{7p}`` capped at 12: 0.08 at p = 0.2, 0.66 at 0.5, 5.4 at 0.8): an aftermarket
buyer keeps buying for the car, a reluctant one almost never does, so whether a person
buys within a quarter follows ``p`` (the true propensity ranks realised 90-day purchase
labels with an AUC of about 0.85 on simulated fleets, tyres and repairs included).
Once the owner shops online (``online_from``: the e-commerce account exists and its
clickstream is simulated) half of them are e-commerce orders fitted to the car
(returned in ``online_purchases`` for :func:`autopersona.simulate.commerce.commerce_rows`);
the others, and all earlier ones, are ``accessory`` visits at the dealer.

Amounts scale with the tier (economy 1, mid 2, luxury 4.5), log-normal noise, and extra
up-sold items accepted with probability ``p``.

Subscriptions
-------------
ADAS cars: a delivery trial (6 months, 12 for luxury) for cars under two years, and a
90-day campaign trial for others ending between 20 days before and 60 days after the
window start; after a trial ends the owner buys with probability
``0.03 + 0.65 s^2`` (``s`` = value-added-service sensitivity). Connectivity is free for 3
years then renewed yearly (or cancelled); entertainment is monthly; BEVs may buy
``ota_performance`` (one-off) and ``battery_care``; ADAS cars may try ``remote_parking``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from autopersona.simulate.cabin import RaisedDtc
from autopersona.simulate.geo import utc_offset_s
from autopersona.simulate.ids import make_id
from autopersona.simulate.timeline import Timeline
from autopersona.simulate.truth import Person, VehicleSpec
from autopersona.simulate.writer import NAT

__all__ = ["BusinessResult", "business_events", "discretionary_rate", "renewal_times"]

US = 1_000_000
DAY = 86400
YEAR = 365.25 * DAY
TIER_F = {"economy": 1.0, "mid": 2.0, "luxury": 4.5}
EXTRAS = (
    ("cabin air filter", 120),
    ("wiper blades", 90),
    ("wheel alignment", 260),
    ("interior detailing", 380),
    ("AC cleaning", 180),
    ("ceramic coating", 1200),
)
ACCESSORIES = (
    "floor mats",
    "dash cam",
    "window tint",
    "roof rack",
    "wireless charger pad",
    "child seat installation",
    "mud flaps",
    "ambient lighting kit",
)
PRICES = {  # product -> (economy, mid, luxury) price in CNY
    "adas_pilot": (3800.0, 6800.0, 12800.0),
    "connectivity": (199.0, 299.0, 399.0),
    "entertainment": (25.0, 30.0, 45.0),
    "ota_performance": (4000.0, 7000.0, 12000.0),
    "remote_parking": (1200.0, 1800.0, 2800.0),
    "battery_care": (399.0, 599.0, 899.0),
}


@dataclass
class BusinessResult:
    """Rows for ``warnings``, ``service_records``, ``subscriptions``, cleared DTCs and truth.

    ``online_purchases``: times (s) of the discretionary purchases made online, not at the
    dealer.
    """

    warnings: list[dict[str, Any]]
    services: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    dtc_cleared: list[tuple[int, str, str, str]]
    warning_truth: list[dict[str, Any]]
    online_purchases: list[int] = field(default_factory=list)


def renewal_times(
    rate_per_year: float, t0: float, t1: float, rng: np.random.Generator, shape: float = 6.0
) -> list[float]:
    """Event times in ``[t0, t1)`` of a renewal process at ``rate_per_year``.

    Gaps are Gamma(``shape``) with mean ``1 / rate_per_year`` years (more regular than
    Poisson: a habit); the process starts in its stationary state (the first gap is a
    uniform fraction of a length-biased gap).

    >>> r = np.random.default_rng(0)
    >>> n = [len(renewal_times(4.0, 0, 10 * YEAR, r)) for _ in range(200)]
    >>> 38 < float(np.mean(n)) < 42, float(np.std(n)) < 4
    (True, True)
    """
    if rate_per_year <= 0 or t1 <= t0:
        return []
    mean_gap = YEAR / rate_per_year
    out: list[float] = []
    t = t0 + float(rng.uniform()) * float(rng.gamma(shape + 1.0, mean_gap / shape))
    while t < t1:
        out.append(t)
        t += float(rng.gamma(shape, mean_gap / shape))
    return out


def discretionary_rate(propensity: float) -> float:
    """Discretionary aftermarket purchases a year (accessories, fitted parts) at ``propensity``.

    >>> [round(discretionary_rate(p), 2) for p in (0.0, 0.2, 0.5, 0.8, 1.0)]
    [0.02, 0.08, 0.66, 5.41, 12.0]
    """
    return min(0.02 * math.exp(7.0 * propensity), 12.0)


class _Odo:
    """Odometer as a function of time (history linear, window from trips)."""

    def __init__(self, spec: VehicleSpec, tl: Timeline, t_start: int) -> None:
        self.rate = spec.annual_km_est / YEAR
        self.t_start = t_start
        self.o_start = spec.odometer_start_km
        kt = [float(t_start)]
        ko = [self.o_start]
        for t in tl.trips:
            kt += [float(t.dep), float(t.arrive)]
            ko += [float(t.energy.odometer_km[0]), float(t.energy.odometer_km[-1])]
        self.kt = np.array(kt)
        self.ko = np.array(ko)

    def at(self, t: float) -> float:
        if t <= self.t_start:
            return max(self.o_start - self.rate * (self.t_start - t), 0.0)
        if t <= self.kt[-1]:
            return float(np.interp(t, self.kt, self.ko))
        return float(self.ko[-1] + self.rate * (t - self.kt[-1]))

    def time_of(self, odo: float) -> float:
        """First time the odometer reaches ``odo``."""
        if odo <= self.o_start:
            return self.t_start - (self.o_start - odo) / self.rate
        if odo <= self.ko[-1]:
            i = int(np.searchsorted(self.ko, odo))
            i = max(i, 1)
            o0, o1, t0, t1 = self.ko[i - 1], self.ko[i], self.kt[i - 1], self.kt[i]
            return float(t0 + (odo - o0) / max(o1 - o0, 1e-9) * (t1 - t0))
        return float(self.kt[-1] + (odo - self.ko[-1]) / self.rate)


def business_events(
    person: Person,
    spec: VehicleSpec,
    tl: Timeline,
    dtcs: list[RaisedDtc],
    dealers: list[str],
    account_id: str | None,
    t_start: int,
    t_end: int,
    seed: int,
    rng: np.random.Generator,
    online_from: int | None = None,
) -> BusinessResult:
    """Warnings, service visits, subscriptions and DTC clearings of one vehicle.

    ``online_from``: the time (s) from which the owner can buy online (None: never).
    """
    p, vin = person, spec.vin
    odo = _Odo(spec, tl, t_start)
    reg = datetime(
        spec.registration_date.year,
        spec.registration_date.month,
        spec.registration_date.day,
        tzinfo=UTC,
    ).timestamp()
    t_reg = int(reg) - utc_offset_s(p.timezone, spec.registration_date)
    tf = TIER_F[spec.tier]
    warnings: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    wtruth: list[dict[str, Any]] = []
    cleared: list[tuple[int, str, str, str]] = []
    counter = {"w": 0, "s": 0}

    def local_time(t: float, h_lo: float, h_hi: float) -> int:
        """Move ``t`` to a random local time of day in [h_lo, h_hi) on the same local day."""
        d = datetime.fromtimestamp(t, UTC).date()
        off = utc_offset_s(p.timezone, d)
        day0 = (int(t) + off) // DAY * DAY - off
        return int(day0 + rng.uniform(h_lo, h_hi) * 3600)

    def channel() -> str:
        if rng.random() < 0.5:
            return p.preferred_channel
        return str(rng.choice(["head_unit", "app", "sms", "email"], p=[0.4, 0.35, 0.2, 0.05]))

    def dealer() -> str:
        return dealers[0] if rng.random() < 0.75 or len(dealers) == 1 else dealers[1]

    def delay_s(factor: float = 1.0) -> float:
        return float(rng.lognormal(math.log(p.service_delay_days), 0.5)) * factor * DAY

    def add_visit(
        t: float, visit_type: str, items: list[str], amount: float, warning_id: str | None
    ) -> None:
        if t > t_end - 1 or t < t_reg:
            return
        if p.aftermarket_propensity > rng.random() and visit_type in (
            "maintenance",
            "repair",
            "tyres",
        ):
            for _ in range(int(rng.integers(1, 3))):
                name, price = EXTRAS[int(rng.integers(len(EXTRAS)))]
                if name not in items:
                    items.append(name)
                    amount += price * (0.7 + 0.3 * tf) * float(rng.lognormal(0, 0.15))
        counter["s"] += 1
        services.append(
            {
                "service_id": make_id("SRV", seed, vin, counter["s"]),
                "vin": vin,
                "ts": int(t) * US,
                "dealer_id": dealer(),
                "visit_type": visit_type,
                "items": ";".join(items),
                "amount_cny": round(amount, 2),
                "odometer_km": round(odo.at(t), 1),
                "warning_id": warning_id,
            }
        )

    def add_warning(
        t: float,
        wtype: str,
        visit: tuple[str, list[str], float] | None,
        factor: float = 1.0,
        ignore_p: float = 0.08,
    ) -> float | None:
        """Send a warning at ``t``; schedule the visit. Returns the visit time (or None)."""
        if t > t_end - 1 or t < t_reg:
            return None
        t = local_time(t, 8.0, 21.0)
        if t > t_end - 1:
            return None
        counter["w"] += 1
        wid = make_id("WRN", seed, vin, counter["w"])
        warnings.append(
            {
                "warning_id": wid,
                "vin": vin,
                "ts": int(t) * US,
                "warning_type": wtype,
                "channel": channel(),
            }
        )
        visit_t: float | None = None
        if visit is not None and rng.random() >= ignore_p:
            visit_t = local_time(t + max(delay_s(factor), 3600.0), 9.0, 18.0)
            if visit_t <= t:
                visit_t = local_time(t + DAY, 9.0, 18.0)
            add_visit(visit_t, visit[0], list(visit[1]), visit[2], wid)
        wtruth.append(
            {
                "warning_id": wid,
                "vin": vin,
                "warning_ts": int(t) * US,
                "planned_visit_ts": int(visit_t) * US if visit_t is not None else NAT,
                "visited": visit_t is not None and visit_t <= t_end - 1,
                "ignored": visit is not None and visit_t is None,
            }
        )
        return visit_t

    # --- periodic maintenance
    fuel = spec.has_fuel
    km_int, d_int = (7500.0, 365.0) if fuel else (20000.0, 730.0)
    last_t, last_o, n_serv = float(t_reg), odo.at(t_reg), 0
    vt: float
    while True:
        due = min(odo.time_of(last_o + km_int), last_t + d_int * DAY)
        if due > t_end + 90 * DAY:
            break
        n_serv += 1
        big = not fuel or n_serv % 2 == 0
        wtype = "maintenance_due" if big else "oil_change"
        items = ["engine oil", "oil filter"] if fuel else ["inspection", "brake fluid check"]
        if big:
            items += ["air filter", "brake check"] if fuel else ["coolant check", "tyre rotation"]
        amount = (450 if fuel else 300) * tf * (1.6 if big else 1.0) * float(rng.lognormal(0, 0.2))
        if rng.random() < 0.25:  # proactive owner, no warning
            vt = float(local_time(due - rng.uniform(0, 10) * DAY, 9.0, 18.0))
            add_visit(vt, "maintenance", items, amount, None)
        else:
            vt_opt = add_warning(
                due - rng.uniform(0, 3) * DAY, wtype, ("maintenance", items, amount)
            )
            vt = vt_opt if vt_opt is not None else due + 30 * DAY
        last_t, last_o = max(vt, last_t + DAY), odo.at(max(vt, last_t + DAY))

    # --- brake wear
    life = 45000 * (1.35 - 0.7 * p.aggressiveness) * float(rng.lognormal(0, 0.1))
    wear0 = odo.at(t_reg)
    while True:
        t = odo.time_of(wear0 + life)
        if t > t_end:
            break
        at_dealer = rng.random() < 0.3 + 0.7 * p.aftermarket_propensity
        vt_b = add_warning(
            t,
            "brake_wear",
            (
                "repair",
                ["front brake pads", "brake fluid"],
                600 * tf * float(rng.lognormal(0, 0.2)),
            )
            if at_dealer
            else None,
            ignore_p=0.03,
        )
        wear0 = odo.at(vt_b if vt_b is not None else t + 20 * DAY)

    # --- random processes before and in the window
    def poisson_times(rate_per_year: float, t0: float) -> np.ndarray[Any, Any]:
        if t0 >= t_end:
            return np.zeros(0)
        n = int(rng.poisson(rate_per_year * (t_end - t0) / YEAR))
        return np.sort(rng.uniform(t0, t_end, n))

    for t in poisson_times(0.7, t_reg):
        visit = (
            ("tyres", ["tyre pressure check", "puncture repair"], 150 * tf)
            if rng.random() < 0.1 + 0.5 * p.aftermarket_propensity
            else None
        )
        add_warning(float(t), "tyre_pressure", visit)
    if spec.has_battery:
        for t in poisson_times(0.25, t_reg + 3 * YEAR):
            add_warning(
                float(t),
                "battery_health",
                ("inspection", ["battery health check"], 200 * tf),
                ignore_p=0.3,
            )
    for t in poisson_times(0.3, t_reg):
        if t < t_start:
            at_dealer = rng.random() < 0.3 + 0.7 * p.aftermarket_propensity
            add_warning(
                float(t),
                "dtc_followup",
                (
                    "repair",
                    ["diagnostics", "sensor replacement"],
                    800 * tf * float(rng.lognormal(0, 0.4)),
                )
                if at_dealer
                else None,
            )
    for d in dtcs:
        if d.severity == "info":
            cleared.append((d.trip_end + int(rng.integers(1, 120)), d.code, d.severity, d.ecu))
            continue
        factor = 0.3 if d.severity == "critical" else 1.0
        vt_d = add_warning(
            d.ts + int(rng.integers(60, 3600)),
            "dtc_followup",
            (
                "repair",
                ["diagnostics", f"fault {d.code}"],
                (1500 if d.severity == "critical" else 600) * tf,
            ),
            factor=factor,
            ignore_p=0.0,
        )
        if vt_d is not None and vt_d <= t_end - 1:
            cleared.append((int(vt_d) + 1800, d.code, d.severity, d.ecu))
    online: list[int] = []
    for t in renewal_times(discretionary_rate(p.aftermarket_propensity), t_reg, t_end, rng):
        if online_from is not None and t >= online_from and rng.random() < 0.5:
            online.append(int(t))
            continue
        k = int(rng.integers(1, 3))
        items = list(rng.choice(ACCESSORIES, size=k, replace=False))
        add_visit(
            local_time(float(t), 9.0, 18.0),
            "accessory",
            [str(i) for i in items],
            float(k * 450 * (0.6 + 0.4 * tf) * rng.lognormal(0, 0.5)),
            None,
        )
    tyre_km = 45000 * float(rng.lognormal(0, 0.1))
    k = 1
    while True:
        t = odo.time_of(odo.at(t_reg) + k * tyre_km)
        if t > t_end:
            break
        k += 1
        if rng.random() >= 0.3 + 0.7 * p.aftermarket_propensity:
            continue  # replaced at an independent tyre shop
        add_visit(
            local_time(t, 9.0, 18.0),
            "tyres",
            ["tyre replacement x4", "wheel balancing"],
            1200 * tf * float(rng.lognormal(0, 0.15)),
            None,
        )
    t = t_reg + 6 * YEAR
    while t < t_end:
        add_visit(
            local_time(t + rng.uniform(-30, 30) * DAY, 9.0, 18.0),
            "inspection",
            ["annual inspection"],
            float(rng.uniform(200, 400)),
            None,
        )
        t += 2 * YEAR

    subs = _subscriptions(p, spec, account_id, t_reg, t_start, t_end, seed, rng)
    order = sorted(range(len(services)), key=lambda i: services[i]["ts"])
    services = [services[i] for i in order]
    warnings.sort(key=lambda r: r["ts"])
    return BusinessResult(warnings, services, subs, cleared, wtruth, online)


def _subscriptions(
    p: Person,
    spec: VehicleSpec,
    account_id: str | None,
    t_reg: int,
    t_start: int,
    t_end: int,
    seed: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    tier_i = ("economy", "mid", "luxury").index(spec.tier)

    def add(product: str, event: str, t: float, ends: float | None, price: float | None) -> None:
        if t > t_end - 1:
            return
        rows.append(
            {
                "event_id": make_id("SUB", seed, spec.vin, len(rows)),
                "vin": spec.vin,
                "account_id": account_id if rng.random() < 0.9 else None,
                "product": product,
                "event": event,
                "ts": int(t) * US,
                "ends_at": int(ends) * US if ends is not None else NAT,
                "price_cny": round(price, 2) if price is not None else math.nan,
            }
        )

    def price(product: str) -> float:
        return PRICES[product][tier_i]

    buy_p = 0.03 + 0.65 * p.vas_sensitivity**2
    if spec.adas_equipped:
        if t_start - t_reg < 2 * YEAR:
            ts = t_reg + rng.uniform(0, 14) * DAY
            te = ts + (365 if spec.tier == "luxury" else 182) * DAY
        else:
            te = t_start + rng.uniform(-20, 60) * DAY
            ts = te - 90 * DAY
        add("adas_pilot", "trial_start", ts, te, None)
        add("adas_pilot", "trial_end", te, te, None)
        if rng.random() < buy_p:
            tb = te + rng.uniform(-3, 10) * DAY
            add("adas_pilot", "purchase", tb, tb + 365 * DAY, price("adas_pilot"))
            if tb + 365 * DAY < t_end:
                add(
                    "adas_pilot",
                    "renew" if rng.random() < 0.7 else "cancel",
                    tb + 365 * DAY,
                    tb + 730 * DAY,
                    price("adas_pilot"),
                )
        if rng.random() < 0.3:
            tr = t_reg + rng.uniform(0, max(t_end - t_reg, DAY))
            add("remote_parking", "trial_start", tr, tr + 30 * DAY, None)
            add("remote_parking", "trial_end", tr + 30 * DAY, tr + 30 * DAY, None)
            if rng.random() < buy_p:
                add("remote_parking", "purchase", tr + 31 * DAY, None, price("remote_parking"))
    # connectivity: free for three years, then yearly
    t = t_reg + 3 * YEAR
    while t < t_end:
        if rng.random() < 0.5 + 0.5 * p.vas_sensitivity:
            add("connectivity", "renew", t, t + YEAR, price("connectivity"))
            t += YEAR
        else:
            add("connectivity", "cancel", t, None, None)
            break
    # entertainment: monthly
    if rng.random() < 0.1 + 0.6 * p.vas_sensitivity:
        t = max(t_reg, t_start - 365 * DAY) + rng.uniform(0, 200) * DAY
        add("entertainment", "purchase", t, t + 30 * DAY, price("entertainment"))
        t += 30 * DAY
        while t < t_end:
            if rng.random() < 0.08 + 0.2 * p.churn_propensity:
                add("entertainment", "cancel", t, None, None)
                break
            add("entertainment", "renew", t, t + 30 * DAY, price("entertainment"))
            t += 30 * DAY
    if spec.energy_type == "BEV":
        if spec.tier != "economy" and rng.random() < 0.35 * p.vas_sensitivity:
            add(
                "ota_performance",
                "purchase",
                t_reg + rng.uniform(0.1, 1.0) * (t_end - t_reg),
                None,
                price("ota_performance"),
            )
        if t_end - t_reg > 2 * YEAR and rng.random() < 0.15 + 0.3 * p.range_anxiety:
            t = t_reg + 2 * YEAR + rng.uniform(0, 1) * (t_end - t_reg - 2 * YEAR)
            add("battery_care", "purchase", t, t + YEAR, price("battery_care"))
    rows.sort(key=lambda r: (r["ts"], r["event_id"]))
    return rows


def _unused(_: date) -> None:  # pragma: no cover
    return None
