"""Latent ground truth: who each simulated person is and what vehicle they drive.

Every attribute is drawn from an explicit distribution documented next to the draw, and
everything here is written to ``truth/`` only (never to ``tables/``). Raw data in the other
modules is generated *from* these attributes.

Distributions (per person)
--------------------------
* **city**: Shanghai 84 %, Urumqi, Tokyo, Hong Kong, Berlin, Los Angeles 3–4 % each; the
  person's IANA time zone is the city's.
* **driving_style**: aggressive 25 % / moderate 50 % / cautious 25 %, a latent driver
  type; the continuous ``aggressiveness`` scatters around the type's centre (0.8, 0.5,
  0.2) as ``centre + 0.36 (Beta(3, 3) - 0.5)``, so types are groups whose thin tails
  overlap ([0.62, 0.98], [0.32, 0.68], [0.02, 0.38]) rather than cuts of one uniform
  continuum, which no clustering of behaviour could recover; it sets
  ``speed_factor = 0.88 + 0.32 a`` (cruise speed relative to the limit), mean acceleration
  ``1.1 + 1.3 a`` m/s², mean braking ``1.1 + 1.35 a`` m/s², lateral acceleration accepted in
  corners ``2.0 + 2.6 a`` m/s² (0.4 g = 3.92), time headway ``2.8 - 1.9 a`` s.
* **commute_pattern**: regular commuter 38 %, flexible commuter 24 %, frequent business
  16 %, weekend traveller 22 % (weekend travellers have no work place).
* **lifestyle | pattern** and **content taste | lifestyle**: tables ``LIFESTYLE_GIVEN_PATTERN``
  and ``CONTENT_GIVEN_LIFESTYLE`` below.
* **home**: polar around the city centre, radius ``|N(0, R/2)|`` clipped to ``R``; **work**:
  home + a log-normal distance (median 9 km, clipped to 2–25 km) in a direction biased
  towards the centre.
* **vehicle_tier | lifestyle**: ``TIER_GIVEN_LIFESTYLE``; energy type | tier:
  ``ENERGY_GIVEN_TIER``; model uniform among the catalogue models of that tier and energy.
* **price_sensitivity**: Beta with mean 0.7 / 0.5 / 0.25 for economy / mid / luxury owners.
* **aftermarket / value-added-service propensity**: logistic of a normal draw plus tier,
  lifestyle, age and price-sensitivity effects; tiers high > 0.62 > mid > 0.38 > low.
* **channel responsiveness**: per-channel response probability (head_unit, app, sms,
  email) by age group and lifestyle.
* **service delay**: median days from a warning to the visit, ``exp(N(ln 8, 0.7))``,
  shorter for high aftermarket propensity.
* **range_anxiety**: Beta(2, 2); sets the SOC under which the person plugs in at home
  (``0.45 + 0.45 r``), goes to a public DC charger (``0.12 + 0.38 r``), the reserve kept
  for a planned trip (``0.08 + 0.25 r``), the charge target (``0.8 + 0.2 r``) and the fuel
  level that triggers a refuel (``0.10 + 0.25 r``).
* **ubi_claim_rate**: claims per year ``0.02 + 0.18 a^2`` times a log-normal factor.
* **churn_propensity**: Beta(1.5, 4); e-commerce activity decays with it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from autopersona.simulate.geo import CITIES, City, to_latlon

__all__ = [
    "CONTENT_GIVEN_LIFESTYLE",
    "LIFESTYLE_GIVEN_PATTERN",
    "MODELS",
    "Person",
    "VehicleModel",
    "VehicleSpec",
    "sample_person",
    "sample_vehicle",
]

STYLES = ("aggressive", "moderate", "cautious")
PATTERNS = ("regular_commuter", "flexible_commuter", "frequent_business", "weekend_traveller")
LIFESTYLES = ("business_elite", "family", "outdoor", "trend_seeker")
CONTENTS = ("news", "finance_podcast", "pop_music", "childrens_stories")
CHANNELS = ("head_unit", "app", "sms", "email")

PATTERN_P = (0.38, 0.24, 0.16, 0.22)
LIFESTYLE_GIVEN_PATTERN: dict[str, tuple[float, float, float, float]] = {
    "regular_commuter": (0.20, 0.40, 0.15, 0.25),
    "flexible_commuter": (0.15, 0.30, 0.20, 0.35),
    "frequent_business": (0.60, 0.20, 0.05, 0.15),
    "weekend_traveller": (0.10, 0.25, 0.50, 0.15),
}
CONTENT_GIVEN_LIFESTYLE: dict[str, tuple[float, float, float, float]] = {
    "business_elite": (0.40, 0.45, 0.10, 0.05),
    "family": (0.15, 0.10, 0.25, 0.50),
    "outdoor": (0.25, 0.15, 0.50, 0.10),
    "trend_seeker": (0.10, 0.10, 0.75, 0.05),
}
TIER_GIVEN_LIFESTYLE: dict[str, tuple[float, float, float]] = {  # luxury, mid, economy
    "business_elite": (0.55, 0.40, 0.05),
    "family": (0.10, 0.50, 0.40),
    "outdoor": (0.15, 0.50, 0.35),
    "trend_seeker": (0.15, 0.45, 0.40),
}
ENERGY_GIVEN_TIER: dict[str, tuple[float, float, float, float]] = {  # BEV, PHEV, EREV, ICE
    "luxury": (0.40, 0.25, 0.15, 0.20),
    "mid": (0.35, 0.20, 0.15, 0.30),
    "economy": (0.30, 0.15, 0.08, 0.47),
}
OCCUPATIONS: dict[str, tuple[str, ...]] = {
    "business_elite": ("executive", "manager", "entrepreneur", "consultant", "lawyer"),
    "family": ("teacher", "engineer", "civil servant", "nurse", "accountant"),
    "outdoor": ("engineer", "designer", "freelancer", "photographer", "doctor"),
    "trend_seeker": ("designer", "marketing", "student", "streamer", "sales"),
}
AGE_GIVEN_LIFESTYLE: dict[str, tuple[float, float]] = {
    "business_elite": (42.0, 8.0),
    "family": (38.0, 6.0),
    "outdoor": (34.0, 8.0),
    "trend_seeker": (28.0, 5.0),
}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _tier3(x: float) -> str:
    return "high" if x > 0.62 else ("low" if x < 0.38 else "mid")


@dataclass(frozen=True)
class VehicleModel:
    """A catalogue model. Consumption figures are physical parameters, not ratings."""

    brand: str
    model: str
    tier: str
    energy_type: str
    body_type: str
    msrp_lo: float
    msrp_hi: float
    battery_kwh: float
    fuel_tank_l: float
    range_km: float
    curb_weight_kg: float
    cda_m2: float
    power_kw: float
    wmi: str


MODELS: tuple[VehicleModel, ...] = (
    VehicleModel(
        "Aurelis", "S9", "luxury", "BEV", "sedan", 520e3, 680e3, 100, 0, 650, 2350, 0.55, 390, "LAU"
    ),
    VehicleModel(
        "Aurelis", "X7", "luxury", "PHEV", "suv", 450e3, 560e3, 35, 60, 950, 2450, 0.78, 330, "LAU"
    ),
    VehicleModel(
        "Aurelis", "GT", "luxury", "ICE", "coupe", 480e3, 620e3, 0, 70, 700, 1850, 0.62, 300, "LAU"
    ),
    VehicleModel(
        "Aurelis", "Q8", "luxury", "EREV", "suv", 420e3, 520e3, 45, 65, 1100, 2500, 0.80, 350, "LAU"
    ),
    VehicleModel(
        "Meridian", "M5", "mid", "BEV", "sedan", 220e3, 300e3, 75, 0, 580, 1950, 0.56, 230, "LME"
    ),
    VehicleModel(
        "Meridian", "M7", "mid", "BEV", "suv", 260e3, 350e3, 85, 0, 600, 2150, 0.72, 260, "LME"
    ),
    VehicleModel(
        "Meridian", "L6", "mid", "EREV", "suv", 250e3, 330e3, 40, 55, 1050, 2300, 0.76, 250, "LME"
    ),
    VehicleModel(
        "Meridian", "H5", "mid", "PHEV", "sedan", 170e3, 230e3, 20, 50, 1000, 1750, 0.60, 180, "LME"
    ),
    VehicleModel(
        "Meridian", "C6", "mid", "ICE", "sedan", 160e3, 240e3, 0, 55, 800, 1500, 0.62, 140, "LME"
    ),
    VehicleModel(
        "Meridian", "V9", "mid", "ICE", "mpv", 300e3, 390e3, 0, 65, 750, 2100, 0.95, 180, "LME"
    ),
    VehicleModel(
        "Zhiyuan",
        "E3",
        "economy",
        "BEV",
        "hatchback",
        80e3,
        130e3,
        45,
        0,
        400,
        1350,
        0.58,
        100,
        "LZY",
    ),
    VehicleModel(
        "Zhiyuan",
        "D5",
        "economy",
        "PHEV",
        "sedan",
        110e3,
        145e3,
        18,
        45,
        1000,
        1600,
        0.62,
        145,
        "LZY",
    ),
    VehicleModel(
        "Zhiyuan", "C3", "economy", "ICE", "sedan", 70e3, 120e3, 0, 45, 650, 1200, 0.60, 85, "LZY"
    ),
    VehicleModel(
        "Zhiyuan", "T5", "economy", "ICE", "suv", 100e3, 145e3, 0, 50, 620, 1450, 0.75, 115, "LZY"
    ),
    VehicleModel(
        "Zhiyuan", "R2", "economy", "EREV", "suv", 130e3, 149e3, 28, 40, 900, 1750, 0.74, 130, "LZY"
    ),
)


@dataclass(frozen=True)
class Person:
    """The latent truth of one simulated person (one per vehicle). See the module doc."""

    person_id: str
    k: int
    city: str
    timezone: str
    driving_style: str
    aggressiveness: float
    speed_factor: float
    accel_mean_mps2: float
    brake_mean_mps2: float
    corner_lat_mps2: float
    headway_s: float
    lane_sd_m: float
    speed_noise: float
    commute_pattern: str
    has_work: bool
    depart_hour: float
    depart_sd_h: float
    work_hours: float
    commute_prob: float
    business_trips_per_day: float
    intercity_prob: float
    weekend_trip_prob: float
    evening_leisure_prob: float
    weekend_leisure_mean: float
    night_owl: bool
    home_x: float
    home_y: float
    home_lat: float
    home_lon: float
    work_x: float
    work_y: float
    work_lat: float
    work_lon: float
    lifestyle: str
    content_taste: str
    price_sensitivity: float
    aftermarket_propensity: float
    aftermarket_tier: str
    vas_sensitivity: float
    vas_tier: str
    resp_head_unit: float
    resp_app: float
    resp_sms: float
    resp_email: float
    preferred_channel: str
    service_delay_days: float
    range_anxiety: float
    range_anxiety_tier: str
    home_plug_soc: float
    dc_soc_threshold: float
    reserve_soc: float
    target_soc: float
    refuel_threshold: float
    home_charger: bool
    ubi_claim_rate: float
    ubi_risk_tier: str
    churn_propensity: float
    satisfaction: float
    shop_sessions_per_week: float
    shop_hour: float
    birth_year: int
    gender: str
    occupation: str
    vehicle_tier: str

    @property
    def city_obj(self) -> City:
        """The :class:`City` the person lives in."""
        for c in CITIES:
            if c.name == self.city:
                return c
        raise KeyError(self.city)

    def row(self) -> dict[str, Any]:
        """A flat dict for the truth table."""
        d = asdict(self)
        d.pop("k")
        return d


@dataclass(frozen=True)
class VehicleSpec:
    """Master data and physical parameters of one vehicle."""

    vin: str
    person_id: str
    brand: str
    model: str
    model_year: int
    body_type: str
    msrp_cny: float
    tier: str
    energy_type: str
    battery_kwh: float
    fuel_tank_l: float
    range_km: float
    adas_equipped: bool
    curb_weight_kg: float
    cda_m2: float
    power_kw: float
    registration_date: date
    region: str
    timezone: str
    odometer_start_km: float
    annual_km_est: float

    @property
    def has_battery(self) -> bool:
        """Has a traction battery (BEV, PHEV, EREV)."""
        return self.energy_type in ("BEV", "PHEV", "EREV")

    @property
    def has_fuel(self) -> bool:
        """Has a fuel tank (ICE, PHEV, EREV)."""
        return self.energy_type in ("ICE", "PHEV", "EREV")

    def age_years(self, on: date) -> float:
        """Vehicle age in years on ``on``."""
        return (on - self.registration_date).days / 365.25


def _choice(rng: np.random.Generator, items: tuple[str, ...], p: tuple[float, ...]) -> str:
    return items[int(rng.choice(len(items), p=np.asarray(p) / sum(p)))]


def _pick_city(rng: np.random.Generator) -> City:
    shares = np.array([c.share for c in CITIES])
    return CITIES[int(rng.choice(len(CITIES), p=shares / shares.sum()))]


def sample_person(k: int, seed: int, start: date, rng: np.random.Generator) -> Person:
    """Draw the latent truth of person ``k`` (see the module doc for distributions)."""
    from autopersona.simulate.ids import make_id

    city = _pick_city(rng)
    style_i = int(rng.choice(3, p=[0.25, 0.5, 0.25]))
    style = STYLES[style_i]
    centre = (0.8, 0.5, 0.2)[style_i]
    a = centre + 0.36 * (float(rng.beta(3.0, 3.0)) - 0.5)
    speed_factor = 0.88 + 0.32 * a + float(rng.normal(0, 0.015))
    accel = 1.1 + 1.3 * a
    brake = 1.1 + 1.35 * a
    corner = 2.0 + 2.6 * a
    headway = 2.8 - 1.9 * a
    lane_sd = 0.12 + 0.25 * a
    speed_noise = 0.02 + 0.05 * a

    pattern = _choice(rng, PATTERNS, PATTERN_P)
    lifestyle = _choice(rng, LIFESTYLES, LIFESTYLE_GIVEN_PATTERN[pattern])
    content = _choice(rng, CONTENTS, CONTENT_GIVEN_LIFESTYLE[lifestyle])

    # schedule
    has_work = pattern != "weekend_traveller"
    if pattern == "regular_commuter":
        dep, dep_sd, work_h, cprob = (
            rng.uniform(6.8, 8.6),
            rng.uniform(0.1, 0.22),
            rng.uniform(8.5, 10),
            0.97,
        )
    elif pattern == "flexible_commuter":
        dep, dep_sd, work_h, cprob = (
            rng.uniform(8.0, 10.5),
            rng.uniform(0.5, 1.0),
            rng.uniform(5.5, 9),
            rng.uniform(0.6, 0.8),
        )
    elif pattern == "frequent_business":
        dep, dep_sd, work_h, cprob = (
            rng.uniform(7.5, 9.0),
            rng.uniform(0.2, 0.4),
            rng.uniform(9, 11),
            0.95,
        )
    else:
        dep, dep_sd, work_h, cprob = 9.0, 1.0, 0.0, 0.0
    biz_rate = float(rng.uniform(1.2, 2.2)) if pattern == "frequent_business" else 0.0
    intercity = float(rng.uniform(0.08, 0.18)) if pattern == "frequent_business" else 0.0
    weekend_trip = float(rng.uniform(0.7, 0.95)) if pattern == "weekend_traveller" else 0.05
    evening = {"business_elite": 0.2, "family": 0.25, "outdoor": 0.2, "trend_seeker": 0.4}[
        lifestyle
    ]
    wk_mean = {"business_elite": 1.2, "family": 2.0, "outdoor": 1.5, "trend_seeker": 2.0}[lifestyle]
    night_owl = bool(rng.random() < (0.5 if lifestyle == "trend_seeker" else 0.1))

    # places (plane metres around the city centre)
    R = city.home_radius_km * 1000
    r = min(abs(float(rng.normal(0, R / 2))), R)
    ang = float(rng.uniform(0, 2 * np.pi))
    hx, hy = r * math.cos(ang), r * math.sin(ang)
    if has_work:
        d = float(np.clip(rng.lognormal(math.log(9000), 0.55), 2000, 25000))
        to_c = math.atan2(-hy, -hx) if r > 500 else float(rng.uniform(0, 2 * np.pi))
        wa = to_c + float(rng.normal(0, math.radians(60)))
        wx, wy = hx + d * math.cos(wa), hy + d * math.sin(wa)
    else:
        wx = wy = float("nan")
    (hlat,), (hlon,) = to_latlon(city, np.array([hx]), np.array([hy]))
    if has_work:
        (wlat,), (wlon,) = to_latlon(city, np.array([wx]), np.array([wy]))
    else:
        wlat = wlon = float("nan")

    # demographics
    mu, sd = AGE_GIVEN_LIFESTYLE[lifestyle]
    age = float(np.clip(rng.normal(mu, sd), 20, 75))
    birth_year = start.year - round(age)
    gender = _choice(rng, ("M", "F", "X"), (0.6, 0.38, 0.02))
    occupation = OCCUPATIONS[lifestyle][int(rng.integers(len(OCCUPATIONS[lifestyle])))]

    # tier is drawn here (it shapes price sensitivity); the vehicle stream picks the model
    tier = _choice(rng, ("luxury", "mid", "economy"), TIER_GIVEN_LIFESTYLE[lifestyle])
    ps_mean = {"luxury": 0.25, "mid": 0.5, "economy": 0.7}[tier]
    price_sens = float(rng.beta(6 * ps_mean, 6 * (1 - ps_mean)))
    after = _sigmoid(
        float(rng.normal(0, 1))
        + 0.8 * (tier == "luxury")
        + 0.4 * (lifestyle == "outdoor")
        + 0.6 * a
        - 1.2 * (price_sens - 0.5)
        - 0.3
    )
    vas = _sigmoid(
        float(rng.normal(0, 1))
        + 0.7 * (lifestyle == "trend_seeker")
        + 0.5 * (lifestyle == "business_elite")
        + 0.5 * (tier == "luxury")
        - 1.2 * (price_sens - 0.5)
        - 0.03 * (age - 38)
        - 0.3
    )
    young = age < 35
    base = {
        "head_unit": 0.08,
        "app": 0.09 if young else 0.05,
        "sms": 0.02 if young else 0.05,
        "email": 0.06 if lifestyle == "business_elite" else 0.02,
    }
    resp = {ch: float(np.clip(v * rng.lognormal(0, 0.35), 0.003, 0.5)) for ch, v in base.items()}
    preferred = max(CHANNELS, key=lambda ch: resp[ch])
    delay = float(np.clip(rng.lognormal(math.log(8), 0.7) * (1.4 - 0.8 * after), 0.5, 90))
    ra = float(rng.beta(2, 2))
    home_charger = bool(rng.random() < 0.8)
    ubi = float(0.02 + 0.18 * a * a) * float(rng.lognormal(0, 0.25))
    ubi_tier = "preferred" if ubi < 0.05 else ("high" if ubi > 0.11 else "standard")
    return Person(
        person_id=make_id("P", seed, k, size=5),
        k=k,
        city=city.name,
        timezone=city.timezone,
        driving_style=style,
        aggressiveness=round(a, 4),
        speed_factor=round(speed_factor, 4),
        accel_mean_mps2=round(accel, 3),
        brake_mean_mps2=round(brake, 3),
        corner_lat_mps2=round(corner, 3),
        headway_s=round(headway, 3),
        lane_sd_m=round(lane_sd, 3),
        speed_noise=round(speed_noise, 4),
        commute_pattern=pattern,
        has_work=has_work,
        depart_hour=round(float(dep), 3),
        depart_sd_h=round(float(dep_sd), 3),
        work_hours=round(float(work_h), 3),
        commute_prob=round(float(cprob), 3),
        business_trips_per_day=round(biz_rate, 3),
        intercity_prob=round(intercity, 3),
        weekend_trip_prob=round(weekend_trip, 3),
        evening_leisure_prob=evening,
        weekend_leisure_mean=wk_mean,
        night_owl=night_owl,
        home_x=hx,
        home_y=hy,
        home_lat=float(hlat),
        home_lon=float(hlon),
        work_x=wx,
        work_y=wy,
        work_lat=float(wlat),
        work_lon=float(wlon),
        lifestyle=lifestyle,
        content_taste=content,
        price_sensitivity=round(price_sens, 4),
        aftermarket_propensity=round(after, 4),
        aftermarket_tier=_tier3(after),
        vas_sensitivity=round(vas, 4),
        vas_tier=_tier3(vas),
        resp_head_unit=round(resp["head_unit"], 4),
        resp_app=round(resp["app"], 4),
        resp_sms=round(resp["sms"], 4),
        resp_email=round(resp["email"], 4),
        preferred_channel=preferred,
        service_delay_days=round(delay, 3),
        range_anxiety=round(ra, 4),
        range_anxiety_tier="high" if ra > 0.62 else ("low" if ra < 0.38 else "mid"),
        home_plug_soc=round(0.45 + 0.45 * ra, 3),
        dc_soc_threshold=round(0.12 + 0.38 * ra, 3),
        reserve_soc=round(0.08 + 0.25 * ra, 3),
        target_soc=round(min(1.0, 0.8 + 0.2 * ra), 3),
        refuel_threshold=round(0.10 + 0.25 * ra, 3),
        home_charger=home_charger,
        ubi_claim_rate=round(ubi, 4),
        ubi_risk_tier=ubi_tier,
        churn_propensity=round(float(rng.beta(1.5, 4)), 4),
        satisfaction=round(float(np.clip(rng.normal(0.35, 0.35), -1, 1)), 4),
        shop_sessions_per_week=round(float(np.clip(rng.lognormal(math.log(1.0), 0.6), 0.1, 8)), 3),
        shop_hour=float(
            rng.choice([8.0, 12.5, 13.0, 20.0, 21.0, 22.0], p=[0.1, 0.15, 0.1, 0.25, 0.25, 0.15])
        ),
        birth_year=birth_year,
        gender=gender,
        occupation=occupation,
        vehicle_tier=tier,
    )


_TRANSLIT = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"  # 2010 = A ... cycles every 30 years


def vin_check_digit(vin17: str) -> str:
    """ISO 3779 check digit (position 9) of a 17-character VIN.

    >>> vin_check_digit("1M8GDM9AXKP042788")
    'X'
    """
    total = sum(_TRANSLIT[ch] * w for ch, w in zip(vin17, _WEIGHTS, strict=True))
    r = total % 11
    return "X" if r == 10 else str(r)


def make_vin(wmi: str, model_year: int, k: int, rng: np.random.Generator) -> str:
    """A syntactically valid VIN whose serial is unique per vehicle index ``k``."""
    vds = "".join(_VIN_CHARS[int(i)] for i in rng.integers(0, len(_VIN_CHARS), 5))
    year = _YEAR_CODES[(model_year - 2010) % 30]
    plant = _VIN_CHARS[int(rng.integers(0, len(_VIN_CHARS)))]
    serial = f"{(k * 7919 + 100003) % 1_000_000:06d}"
    raw = f"{wmi}{vds}0{year}{plant}{serial}"
    return raw[:8] + vin_check_digit(raw) + raw[9:]


def sample_vehicle(person: Person, start: date, rng: np.random.Generator) -> VehicleSpec:
    """Draw the vehicle of ``person`` (its tier was drawn with the person)."""
    tier = person.vehicle_tier
    energy = _choice(rng, ("BEV", "PHEV", "EREV", "ICE"), ENERGY_GIVEN_TIER[tier])
    options = [m for m in MODELS if m.tier == tier and m.energy_type == energy]
    m = options[int(rng.integers(len(options)))]
    msrp = round(float(rng.uniform(m.msrp_lo, m.msrp_hi)) / 100) * 100
    p_adas = {"luxury": 0.9, "mid": 0.6, "economy": 0.25}[tier]
    adas = bool(rng.random() < p_adas)
    # age: 35 % under a year, 25 % one to three years, 40 % three to eight years
    u = rng.random()
    if u < 0.35:
        age_days = int(rng.integers(20, 365))
    elif u < 0.6:
        age_days = int(rng.integers(365, 3 * 365))
    else:
        age_days = int(rng.integers(3 * 365, 8 * 365))
    reg = start - timedelta(days=age_days)
    model_year = reg.year + (1 if reg.month >= 9 else 0)
    vin = make_vin(m.wmi, model_year, person.k, rng)
    annual = _annual_km(person) * float(rng.lognormal(0, 0.15))
    odo = round(annual * age_days / 365.25 + float(rng.uniform(5, 60)), 1)
    return VehicleSpec(
        vin=vin,
        person_id=person.person_id,
        brand=m.brand,
        model=m.model,
        model_year=model_year,
        body_type=m.body_type,
        msrp_cny=float(msrp),
        tier=tier,
        energy_type=energy,
        battery_kwh=float(m.battery_kwh),
        fuel_tank_l=float(m.fuel_tank_l),
        range_km=float(m.range_km),
        adas_equipped=adas,
        curb_weight_kg=float(m.curb_weight_kg),
        cda_m2=m.cda_m2,
        power_kw=m.power_kw,
        registration_date=reg,
        region=person.city,
        timezone=person.timezone,
        odometer_start_km=odo,
        annual_km_est=round(annual, 1),
    )


def _annual_km(p: Person) -> float:
    """Rough yearly mileage implied by the schedule (used for the pre-window odometer)."""
    hw = math.hypot(p.work_x - p.home_x, p.work_y - p.home_y) / 1000 if p.has_work else 0.0
    if p.commute_pattern == "weekend_traveller":
        return 52 * (0.8 * 320 + 40)
    weekly = 2 * 1.3 * hw * 5 * p.commute_prob + 15 * p.weekend_leisure_mean + 20
    if p.commute_pattern == "frequent_business":
        weekly += 5 * p.business_trips_per_day * 12 + 5 * p.intercity_prob * 300
    return 52 * weekly
