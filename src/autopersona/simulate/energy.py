"""Energy: traction power from the motion, SOC and fuel, charging and refuelling.

Per second of a trip the power at the wheels is
``P = (m a + m g C_rr + ½ ρ C_dA v²) · v`` (``m`` = curb weight + 120 kg, ``a`` the exact
speed difference, ``v`` the mean speed over the second). Battery vehicles draw
``P / 0.88`` when ``P > 0`` and recover ``0.6 P`` when braking, plus auxiliary power for
heating/cooling (``0.4 + 0.11 · max(0, 18 − T) + 0.15 · max(0, T − 26)`` kW). ICE vehicles
burn ``max(P, 0) / 0.26`` at 8.9 kWh per litre plus 0.8 L/h idle. PHEV/EREV drive
electrically down to a charge-sustaining floor (18 % / 20 % SOC) and then run the engine
(30 % efficient) for the rest.

Charging: AC at a constant 6.6 kW (11 kW for luxury cars), 92 % efficient; DC at up to
the vehicle's and station's limit until 80 %, then tapering linearly to 30 % of that
power at 100 % (closed form). Refuelling fills the tank at about 0.5 L/s.

Examples
--------
>>> ac_duration_s(soc0=0.3, target=0.8, battery_kwh=60, power_kw=6.6) > 4 * 3600
True
>>> s = dc_soc(0.2, 75.0, 120.0, np.array([0.0, 600.0, 3600.0]))
>>> bool(s[0] == 0.2 and s[1] > 0.3 and s[2] <= 1.0)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from autopersona.simulate.motion import TripMotion
from autopersona.simulate.truth import VehicleSpec

__all__ = [
    "EnergyState",
    "TripEnergy",
    "ac_duration_s",
    "dc_duration_s",
    "dc_soc",
    "nominal_kwh_per_km",
    "nominal_l_per_km",
    "relax",
    "trip_energy",
]

FloatArray = NDArray[np.float64]

RHO = 1.2
G = 9.81
CRR = 0.011
FUEL_KWH_PER_L = 8.9
EV_EFF = 0.88
REGEN_EFF = 0.6
ICE_EFF = 0.26
GEN_EFF = 0.30
IDLE_L_PER_S = 0.8 / 3600
AC_EFF = 0.92
DC_EFF = 0.95
TAPER_K = 3.5  # power falls to 1 - 0.2 k = 30 % at 100 % SOC
CS_FLOOR = {"PHEV": 0.18, "EREV": 0.20}


@dataclass(frozen=True)
class EnergyState:
    """State of charge, fuel, odometer and temperatures at one instant (NaN = n/a)."""

    t: float
    odometer_km: float
    soc: float
    fuel: float
    batt_temp_c: float
    coolant_c: float


@dataclass(frozen=True)
class TripEnergy:
    """Per-second energy arrays of one trip (aligned with :class:`TripMotion`)."""

    odometer_km: FloatArray
    soc: FloatArray
    fuel: FloatArray
    batt_temp_c: FloatArray
    coolant_c: FloatArray
    engine_on: NDArray[np.bool_]
    wheel_kw: FloatArray
    kwh: float
    litres: float
    end: EnergyState


def aux_kw(temp_c: float) -> float:
    """Cabin heating/cooling and electronics."""
    return 0.4 + 0.11 * max(0.0, 18.0 - temp_c) + 0.15 * max(0.0, temp_c - 26.0)


def relax(x0: float, target: float, tau_s: float, dt: FloatArray) -> FloatArray:
    """Exponential relaxation from ``x0`` towards ``target`` after ``dt`` seconds."""
    return np.asarray(target + (x0 - target) * np.exp(-np.asarray(dt) / tau_s))


def nominal_kwh_per_km(spec: VehicleSpec, temp_c: float, v_mps: float = 12.0) -> float:
    """Planning estimate of battery kWh per km when cruising at about ``v_mps``.

    Urban driving (12 m/s) gets a 35 % stop-and-go overhead, faster driving 10 %.
    """
    m = spec.curb_weight_kg + 120
    f = m * G * CRR + 0.5 * RHO * spec.cda_m2 * v_mps * v_mps
    overhead = 1.35 if v_mps < 20 else 1.10
    wheel = f * 1000 / 3.6e6 * overhead
    return wheel / EV_EFF + aux_kw(temp_c) / (v_mps * 3.6)


def nominal_l_per_km(spec: VehicleSpec, v_mps: float = 12.0) -> float:
    """Planning estimate of litres per km (engine-driven) at about ``v_mps``."""
    m = spec.curb_weight_kg + 120
    f = m * G * CRR + 0.5 * RHO * spec.cda_m2 * v_mps * v_mps
    overhead = 1.35 if v_mps < 20 else 1.10
    wheel_kwh = f * 1000 / 3.6e6 * overhead
    if spec.energy_type == "ICE":
        return wheel_kwh / (ICE_EFF * FUEL_KWH_PER_L) + IDLE_L_PER_S * 1000 / v_mps
    return wheel_kwh / EV_EFF / (GEN_EFF * FUEL_KWH_PER_L)


def trip_energy(
    spec: VehicleSpec, m: TripMotion, ambient_c: float, st: EnergyState, t_dep: float
) -> TripEnergy:
    """Energy use along one trip, starting from state ``st``."""
    v = m.v
    vm = 0.5 * (v + np.append(v[1:], 0.0))
    mass = spec.curb_weight_kg + 120
    force = mass * m.a_true + mass * G * CRR * (vm > 0.05) + 0.5 * RHO * spec.cda_m2 * vm * vm
    pw = force * vm  # W over each 1 s step
    n = len(v)
    dt = np.arange(n, dtype=float)
    kwh = litres = 0.0
    soc = np.full(n, np.nan)
    fuel = np.full(n, np.nan)
    engine_on = np.zeros(n, dtype=bool)
    if spec.has_battery:
        pb = np.where(pw > 0, pw / EV_EFF, pw * REGEN_EFF) + aux_kw(ambient_c) * 1000
        e = np.concatenate([[0.0], np.cumsum(pb)[:-1]]) / 3.6e6  # kWh used before sample k
        if spec.energy_type == "BEV":
            soc = np.maximum(st.soc - e / spec.battery_kwh, 0.005)
            kwh = float(e[-1])
        else:
            floor = CS_FLOOR[spec.energy_type]
            avail = max(st.soc - floor, 0.0) * spec.battery_kwh
            ev = np.minimum(e, avail)
            excess = np.maximum.accumulate(np.maximum(e - avail, 0.0))
            soc = st.soc - np.maximum(ev, -0.02 * spec.battery_kwh) / spec.battery_kwh
            soc = np.minimum(soc, 1.0)
            engine_on = e > avail
            burnt = excess / (GEN_EFF * FUEL_KWH_PER_L) + engine_on.cumsum() * IDLE_L_PER_S * 0.3
            fuel = st.fuel - burnt / spec.fuel_tank_l
            kwh = float(ev[-1])
            litres = float(burnt[-1])
    else:
        lps = np.maximum(pw, 0) / ICE_EFF / (FUEL_KWH_PER_L * 3.6e6) + IDLE_L_PER_S
        burnt = np.concatenate([[0.0], np.cumsum(lps)[:-1]])
        fuel = st.fuel - burnt / spec.fuel_tank_l
        engine_on = np.ones(n, dtype=bool)
        litres = float(burnt[-1])
    if spec.has_fuel:
        fuel = np.maximum(fuel, 0.01)
    batt = (
        relax(st.batt_temp_c, ambient_c + 14.0, 2400.0, dt)
        if spec.has_battery
        else np.full(n, np.nan)
    )
    if spec.has_fuel:
        first_on = int(np.argmax(engine_on)) if engine_on.any() else n
        cool = relax(st.coolant_c, ambient_c, 7200.0, dt)
        if first_on < n:
            c0 = float(cool[first_on])
            cool[first_on:] = relax(c0, 90.0, 400.0, dt[first_on:] - first_on)
    else:
        cool = np.full(n, np.nan)
    odo = st.odometer_km + m.s / 1000.0
    end = EnergyState(
        t=t_dep + n - 1,
        odometer_km=float(odo[-1]),
        soc=float(soc[-1]),
        fuel=float(fuel[-1]),
        batt_temp_c=float(batt[-1]),
        coolant_c=float(cool[-1]),
    )
    return TripEnergy(
        odometer_km=odo,
        soc=soc,
        fuel=fuel,
        batt_temp_c=batt,
        coolant_c=cool,
        engine_on=engine_on,
        wheel_kw=pw / 1000.0,
        kwh=kwh,
        litres=litres,
        end=end,
    )


def ac_duration_s(soc0: float, target: float, battery_kwh: float, power_kw: float) -> float:
    """Seconds of AC charging from ``soc0`` to ``target``."""
    return max(0.0, target - soc0) * battery_kwh / (power_kw * AC_EFF) * 3600.0


def dc_soc(soc0: float, battery_kwh: float, power_kw: float, t: FloatArray) -> FloatArray:
    """SOC after ``t`` seconds of DC charging (constant power to 80 %, then a linear taper).

    The taper would reach zero power just above 100 %; the SOC is capped at 1.
    """
    rate = power_kw * DC_EFF / battery_kwh / 3600.0  # SOC per second at full power
    t = np.asarray(t, dtype=float)
    if soc0 < 0.8:
        t1 = (0.8 - soc0) / rate
        lin = soc0 + rate * t
        tail = 0.8 + (1 - np.exp(-TAPER_K * rate * np.maximum(t - t1, 0))) / TAPER_K
        return np.asarray(np.minimum(np.where(t <= t1, lin, tail), 1.0))
    # already in the taper: shift time so the closed form passes through soc0
    t0 = -math.log(1 - TAPER_K * (soc0 - 0.8)) / (TAPER_K * rate)
    return np.asarray(np.minimum(0.8 + (1 - np.exp(-TAPER_K * rate * (t + t0))) / TAPER_K, 1.0))


def dc_duration_s(soc0: float, target: float, battery_kwh: float, power_kw: float) -> float:
    """Seconds of DC charging from ``soc0`` to ``target`` (target <= 0.99)."""
    target = min(target, 0.99)
    if target <= soc0:
        return 0.0
    rate = power_kw * DC_EFF / battery_kwh / 3600.0

    def t_of(s: float) -> float:
        if s <= 0.8:
            return s / rate
        return 0.8 / rate - math.log(1 - TAPER_K * (s - 0.8)) / (TAPER_K * rate)

    return t_of(target) - t_of(soc0)


def with_time(st: EnergyState, t: float, **kw: float) -> EnergyState:
    """A copy of ``st`` at time ``t`` with some fields replaced."""
    return replace(st, t=t, **kw)
