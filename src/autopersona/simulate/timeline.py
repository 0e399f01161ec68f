"""Execute one vehicle's plans: trips, stays, charging sessions and refuelling stops.

The vehicle starts the window parked at home. Before each planned trip the driver checks
energy: a BEV whose SOC after the trip would fall under the person's reserve, or whose SOC
is already under their DC threshold, first drives to a public DC charger (or, for long
trips, charges at the motorway service area half-way); a car with a tank refuels at the
nearest gas station when the fuel left after the trip would fall under the person's refuel
level. On arrival at home a battery car is plugged in (AC) when its SOC is under the
person's home-plug level (PHEV/EREV owners only some of the time); BEVs sometimes use AC
chargers at work or at malls. A plugged car charges until the person's target SOC or until
it leaves, whichever comes first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from autopersona.simulate.energy import (
    AC_EFF,
    CS_FLOOR,
    TAPER_K,
    EnergyState,
    TripEnergy,
    ac_duration_s,
    dc_duration_s,
    dc_soc,
    nominal_kwh_per_km,
    nominal_l_per_km,
    relax,
    trip_energy,
)
from autopersona.simulate.environment import Weather, congestion_base
from autopersona.simulate.geo import CITIES, to_latlon, utc_offset_s
from autopersona.simulate.ids import make_id
from autopersona.simulate.motion import DriverParams, TripMotion, drive
from autopersona.simulate.places import Place, PoiPool
from autopersona.simulate.routes import build_route
from autopersona.simulate.schedule import PlannedTrip
from autopersona.simulate.truth import Person, VehicleSpec

__all__ = ["Session", "Stay", "Timeline", "Trip", "run_timeline", "stay_profile"]

FloatArray = NDArray[np.float64]

REFUEL_L_PER_S = 0.4
#: Maximum DC charging power by energy type and tier.
DC_MAX_KW: dict[str, dict[str, float]] = {
    "BEV": {"luxury": 250.0, "mid": 150.0, "economy": 80.0},
    "PHEV": {"luxury": 40.0, "mid": 40.0, "economy": 40.0},
    "EREV": {"luxury": 60.0, "mid": 60.0, "economy": 60.0},
}


@dataclass(frozen=True)
class Trip:
    """One driven trip (``dep`` = Unix second of its first fix, one fix per second)."""

    trip_id: str
    seq: int
    dep: int
    origin: Place
    dest: Place
    purpose: str
    activity: str
    motion: TripMotion
    energy: TripEnergy
    ambient_c: float
    lat: FloatArray
    lon: FloatArray
    congestion: int

    @property
    def arrive(self) -> int:
        """Unix second of the last fix (standstill at the destination)."""
        return self.dep + self.motion.n - 1


@dataclass(frozen=True)
class Session:
    """Charging (``ac``/``dc``) or refuelling while parked, from ``t0`` to ``t1``."""

    kind: str
    charger_type: str | None
    t0: int
    t1: int
    power_kw: float
    soc0: float
    soc1: float
    fuel0: float
    fuel1: float
    poi_id: str
    battery_kwh: float = 1.0


@dataclass(frozen=True)
class Stay:
    """The vehicle parked at ``place`` from ``t0`` to ``t1``."""

    place: Place
    t0: int
    t1: int
    start: EnergyState
    end: EnergyState
    session: Session | None


@dataclass
class Timeline:
    """Trips and stays in time order (stays interleave trips)."""

    trips: list[Trip]
    stays: list[Stay]


def stay_profile(
    stay_start: EnergyState,
    t0: int,
    session: Session | None,
    t: FloatArray,
    ambient_c: float,
    has_battery: bool,
    has_fuel: bool,
) -> dict[str, FloatArray]:
    """SOC, fuel, temperatures and charging power at times ``t`` during a stay."""
    t = np.asarray(t, dtype=float)
    soc = np.full(len(t), stay_start.soc)
    fuel = np.full(len(t), stay_start.fuel)
    power = np.zeros(len(t))
    charging = np.zeros(len(t), dtype=bool)
    batt = (
        relax(stay_start.batt_temp_c, ambient_c, 10800.0, t - t0) if has_battery else soc * np.nan
    )
    cool = relax(stay_start.coolant_c, ambient_c, 3600.0, t - t0) if has_fuel else soc * np.nan
    if session is not None:
        s = session
        during = (t >= s.t0) & (t <= s.t1)
        after = t > s.t1
        if s.kind == "refuel":
            frac = np.clip((t - s.t0) / max(s.t1 - s.t0, 1), 0, 1)
            fuel = np.where(t >= s.t0, s.fuel0 + (s.fuel1 - s.fuel0) * frac, fuel)
        else:
            charging = during
            if s.kind == "ac":
                frac = np.clip((t - s.t0) / max(s.t1 - s.t0, 1), 0, 1)
                soc = np.where(t >= s.t0, s.soc0 + (s.soc1 - s.soc0) * frac, soc)
                power = np.where(during, s.power_kw, 0.0)
                hot = ambient_c + 5.0
            else:
                curve = dc_soc(s.soc0, s.battery_kwh, s.power_kw, np.clip(t - s.t0, 0, None))
                soc = np.where(t >= s.t0, np.minimum(s.soc1, curve), soc)
                taper = np.where(soc > 0.8, 1 - TAPER_K * (soc - 0.8), 1.0)
                power = np.where(during, s.power_kw * taper, 0.0)
                hot = 36.0 + 0.03 * s.power_kw
            if has_battery:
                b0 = float(
                    relax(stay_start.batt_temp_c, ambient_c, 10800.0, np.array([s.t0 - t0]))[0]
                )
                tau = 900.0 if s.kind == "dc" else 3600.0
                b_in = relax(b0, hot, tau, t - s.t0)
                b1 = float(relax(b0, hot, tau, np.array([s.t1 - s.t0]))[0])
                b_after = relax(b1, ambient_c, 10800.0, t - s.t1)
                batt = np.where(during, b_in, np.where(after, b_after, batt))
    return {
        "soc": soc,
        "fuel": fuel,
        "power": power,
        "charging": charging,
        "batt": batt,
        "cool": cool,
    }


class _Runner:
    def __init__(
        self,
        person: Person,
        spec: VehicleSpec,
        home: Place,
        work: Place | None,
        pool: PoiPool,
        weather: Weather,
        t_start: int,
        t_end: int,
        seed: int,
        rng: np.random.Generator,
        erng: np.random.Generator,
    ) -> None:
        self.p, self.spec, self.home, self.work, self.pool = person, spec, home, work, pool
        self.weather, self.t_start, self.t_end, self.seed = weather, t_start, t_end, seed
        self.rng, self.erng = rng, erng
        self.city = person.city_obj
        self.grid = (CITIES.index(self.city) * 0.37 + 0.12) % (math.pi / 2)
        self.params = DriverParams(
            person.speed_factor,
            person.accel_mean_mps2,
            person.brake_mean_mps2,
            person.corner_lat_mps2,
            person.speed_noise,
            0.005 + 0.02 * person.aggressiveness,
        )
        amb = weather.temp_at(t_start)
        st = EnergyState(
            t=t_start,
            odometer_km=spec.odometer_start_km,
            soc=float(erng.uniform(0.45, 0.9)) if spec.has_battery else math.nan,
            fuel=float(erng.uniform(0.35, 0.95)) if spec.has_fuel else math.nan,
            batt_temp_c=amb if spec.has_battery else math.nan,
            coolant_c=amb if spec.has_fuel else math.nan,
        )
        self.trips: list[Trip] = []
        self.stays: list[Stay] = []
        self.place = home
        self.xy = (home.x, home.y)
        self.stay_t0 = t_start
        self.stay_state = st
        self.pending: tuple[str, str, float, float, int] | None = (
            None  # kind, charger, kW, target, plug t
        )
        self.session: Session | None = None
        self.ready = t_start
        self._undo: tuple[
            int, EnergyState, Session | None, tuple[str, str, float, float, int] | None
        ]
        self._undo = (t_start, st, None, None)
        self._maybe_plug(t_start - 3600)

    # ------------------------------------------------------------------ stays
    def _maybe_plug(self, arrival: int) -> None:
        p, spec, rng = self.p, self.spec, self.erng
        if not spec.has_battery:
            return
        soc = self.stay_state.soc
        kw = 11.0 if spec.tier == "luxury" else 6.6
        plug = arrival + int(rng.integers(60, 900))
        if self.place.poi_id == self.home.poi_id and p.home_charger and soc < p.home_plug_soc:
            if spec.energy_type == "BEV" or rng.random() < 0.5 + 0.5 * p.range_anxiety:
                self.pending = (
                    "ac",
                    "home_ac",
                    kw if spec.energy_type == "BEV" else 3.3,
                    p.target_soc,
                    plug,
                )
        elif spec.energy_type == "BEV" and soc < 0.6:
            at_work = self.work is not None and self.place.poi_id == self.work.poi_id
            if (at_work and rng.random() < (0.6 if not p.home_charger else 0.25)) or (
                self.place.category in ("shopping", "hotel", "office") and rng.random() < 0.3
            ):
                self.pending = ("ac", "public_ac", 7.0, p.target_soc, plug)

    def _close_stay(self, t_dep: int) -> EnergyState:
        """Finish the current stay at ``t_dep`` and return the state on departure."""
        st, t0 = self.stay_state, self.stay_t0
        session = self.session
        self._undo = (t0, st, self.session, self.pending)
        spec = self.spec
        if session is None and self.pending is not None:
            kind, charger, kw, target, plug = self.pending
            a = max(plug, t0 + 1)
            b_max = t_dep - 60
            if a < b_max and target > st.soc:
                dur = ac_duration_s(st.soc, target, spec.battery_kwh, kw)
                b = int(min(a + math.ceil(dur), b_max))
                soc1 = min(st.soc + (b - a) * kw * AC_EFF / spec.battery_kwh / 3600.0, 1.0)
                session = Session(
                    kind,
                    charger,
                    a,
                    b,
                    kw,
                    st.soc,
                    soc1,
                    st.fuel,
                    st.fuel,
                    self.place.poi_id,
                    spec.battery_kwh,
                )
        amb = self.weather.temp_at(t0 + (t_dep - t0) / 2)
        prof = stay_profile(
            st, t0, session, np.array([float(t_dep)]), amb, spec.has_battery, spec.has_fuel
        )
        end = EnergyState(
            t=t_dep,
            odometer_km=st.odometer_km,
            soc=float(prof["soc"][0]),
            fuel=float(prof["fuel"][0]),
            batt_temp_c=float(prof["batt"][0]),
            coolant_c=float(prof["cool"][0]),
        )
        self.stays.append(Stay(self.place, t0, t_dep, st, end, session))
        self.session = None
        self.pending = None
        return end

    # ------------------------------------------------------------------ energy checks
    def _cluster_of(self, place: Place) -> int:
        if not place.far:
            return -1
        i = self.pool.poi_id.index(place.poi_id)
        c = int(self.pool.cluster[i])
        return c if c >= 0 else -2 - c

    def _legs(
        self, plan: PlannedTrip, st: EnergyState, t: int
    ) -> list[tuple[Place, str, str, str | None]]:
        """Legs to drive for ``plan``: optional detours, then the destination."""
        p, spec = self.p, self.spec
        dest = plan.dest
        legs: list[tuple[Place, str, str, str | None]] = []
        km = math.hypot(dest.x - self.xy[0], dest.y - self.xy[1]) / 1000 * 1.35 + 1.0
        temp = self.weather.temp_at(t)
        cluster = self._cluster_of(dest) if dest.far else self._cluster_of(self.place)
        here_far = self.place.far
        # plan with the cruise speed of the trip: urban, or the motorway at the driver's pace
        v_plan = 12.0 if km < 25 else 33.3 * p.speed_factor
        if spec.energy_type == "BEV":
            per_km = nominal_kwh_per_km(spec, temp, v_plan) * 1.15 / spec.battery_kwh
            need = km * per_km
            dc_target = min(p.target_soc, 0.9)
            if st.soc - need < p.reserve_soc or st.soc < p.dc_soc_threshold:
                near = self.pool.place(
                    self.pool.nearest(self.xy[0], self.xy[1], "charging_station", far=here_far)
                )
                if dc_target - need >= p.reserve_soc or cluster < 0:
                    legs.append((near, "leisure", "charging", "dc"))
                else:
                    sa = self.pool.place(self.pool.cluster_member(-2 - cluster, "charging_station"))
                    to_sa = math.hypot(sa.x - self.xy[0], sa.y - self.xy[1]) / 1000 * 1.35 * per_km
                    if st.soc - to_sa < p.reserve_soc * 0.5:
                        legs.append((near, "leisure", "charging", "dc"))
                    legs.append((sa, "leisure", "charging_en_route", "dc"))
            elif cluster >= 0 and st.soc - need < p.reserve_soc + 0.05:
                sa = self.pool.place(self.pool.cluster_member(-2 - cluster, "charging_station"))
                legs.append((sa, "leisure", "charging_en_route", "dc"))
        elif spec.has_fuel:
            need_l = km * nominal_l_per_km(spec, v_plan) * 1.25
            if spec.energy_type != "ICE":
                ev_kwh = max(st.soc - CS_FLOOR[spec.energy_type], 0) * spec.battery_kwh
                ev_km = ev_kwh / nominal_kwh_per_km(spec, temp, v_plan)
                need_l = max(km - ev_km, 0.0) * nominal_l_per_km(spec, v_plan) * 1.25
            if st.fuel - need_l / spec.fuel_tank_l < p.refuel_threshold:
                gas = self.pool.place(
                    self.pool.nearest(self.xy[0], self.xy[1], "gas_station", far=here_far)
                )
                legs.append((gas, "leisure", "refuel", "refuel"))
        legs.append((dest, plan.purpose, plan.activity, None))
        return [
            leg
            for i, leg in enumerate(legs)
            if i == len(legs) - 1 or leg[0].poi_id != self.place.poi_id
        ]

    # ------------------------------------------------------------------ driving
    def _drive(self, dep: int, st: EnergyState, leg: tuple[Place, str, str, str | None]) -> bool:
        dest, purpose, activity, session_kind = leg
        rng = self.rng
        jitter = rng.normal(0, 6.0, 2)
        end_xy = np.array([dest.x + jitter[0], dest.y + jitter[1]])
        path = build_route(np.array(self.xy), end_xy, self.grid, rng, rural_end=dest.far)
        off = utc_offset_s(self.p.timezone, datetime.fromtimestamp(dep, UTC).date())
        local = datetime.fromtimestamp(dep + off, UTC)
        cong = congestion_base(local.hour + local.minute / 60, local.weekday(), rng)
        m = drive(path, self.params, cong, rng)
        if dep + m.n - 1 > self.t_end - 1:
            return False
        amb = self.weather.temp_at(dep)
        en = trip_energy(self.spec, m, amb, st, dep)
        lat, lon = to_latlon(self.city, m.x, m.y)
        seq = len(self.trips)
        self.trips.append(
            Trip(
                trip_id=make_id("TRP", self.seed, self.spec.vin, seq, size=6),
                seq=seq,
                dep=dep,
                origin=self.place,
                dest=dest,
                purpose=purpose,
                activity=activity,
                motion=m,
                energy=en,
                ambient_c=amb,
                lat=lat,
                lon=lon,
                congestion=cong,
            )
        )
        arrival = dep + m.n - 1
        self.place = dest
        self.xy = (float(end_xy[0]), float(end_xy[1]))
        self.stay_t0 = arrival
        self.stay_state = en.end
        erng = self.erng
        if session_kind == "dc":
            s0 = en.end.soc
            vmax = DC_MAX_KW[self.spec.energy_type][self.spec.tier]
            kw = float(min(vmax, erng.uniform(60, 180)))
            target = max(min(self.p.target_soc, 0.9), s0 + 0.05)
            a = arrival + int(erng.integers(60, 180))
            b = a + max(60, math.ceil(dc_duration_s(s0, target, self.spec.battery_kwh, kw)))
            self.session = Session(
                "dc",
                "public_dc",
                a,
                b,
                kw,
                s0,
                min(target, 0.99),
                en.end.fuel,
                en.end.fuel,
                dest.poi_id,
                self.spec.battery_kwh,
            )
            self.ready = b + int(erng.integers(60, 240))
        elif session_kind == "refuel":
            f0 = en.end.fuel
            a = arrival + int(erng.integers(30, 90))
            f1 = float(min(1.0, erng.uniform(0.93, 1.0)))
            b = a + max(60, math.ceil((f1 - f0) * self.spec.fuel_tank_l / REFUEL_L_PER_S))
            self.session = Session(
                "refuel", None, a, b, 0.0, en.end.soc, en.end.soc, f0, f1, dest.poi_id
            )
            self.ready = b + int(erng.integers(120, 300))
        else:
            self._maybe_plug(arrival)
            self.ready = arrival + int(erng.integers(300, 900))
        return True

    def run(self, plans: list[PlannedTrip]) -> Timeline:
        for plan in plans:
            if plan.dest.poi_id == self.place.poi_id:
                continue
            dep = int(max(math.ceil(plan.depart), self.ready))
            if dep >= self.t_end - 600:
                break
            st = self._close_stay(dep)
            done = False
            for i, leg in enumerate(self._legs(plan, st, dep)):
                if i > 0:
                    dep = self.ready
                    if dep >= self.t_end - 600:
                        done = True
                        break
                    st = self._close_stay(dep)
                if not self._drive(dep, st, leg):
                    # reopen the stay we just closed: nothing was driven
                    self.stays.pop()
                    self.stay_t0, self.stay_state, self.session, self.pending = self._undo
                    done = True
                    break
            if done:
                break
        self._close_stay(self.t_end - 1)
        return Timeline(self.trips, self.stays)


def run_timeline(
    person: Person,
    spec: VehicleSpec,
    home: Place,
    work: Place | None,
    pool: PoiPool,
    weather: Weather,
    plans: list[PlannedTrip],
    t_start: int,
    t_end: int,
    seed: int,
    rng: np.random.Generator,
    erng: np.random.Generator,
) -> Timeline:
    """Drive the plans of one vehicle within ``[t_start, t_end)`` (Unix seconds)."""
    return _Runner(person, spec, home, work, pool, weather, t_start, t_end, seed, rng, erng).run(
        plans
    )
