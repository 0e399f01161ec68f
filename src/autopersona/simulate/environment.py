"""Weather per city (shared by all vehicles there) and V2X context along trips.

Weather is an hourly series per city that depends only on the seed, the city and the
window: a seasonal mean (coldest around 20 January) plus a daily AR(1) anomaly and a
diurnal cycle peaking at 14:00 local time; the weather class follows a persistent Markov
chain on three-hour blocks (rain turns into snow below 1 °C).

Examples
--------
>>> from datetime import date
>>> from autopersona.simulate.geo import CITIES
>>> w = city_weather(1, CITIES[0], date(2026, 1, 5), 3)
>>> temp, hum, wind, cls = w.at(np.array([w.t0 + 3600.0 * 30]))
>>> bool(-15 < temp[0] < 25)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from autopersona.simulate.geo import CITIES, City, local_midnight_utc_s, utc_offset_s
from autopersona.simulate.ids import shared_rng

__all__ = ["WEATHER_CLASSES", "Weather", "city_weather", "congestion_base"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

WEATHER_CLASSES = ("clear", "clouds", "rain", "snow", "fog", "storm", "other")
_BASE_P = np.array([0.36, 0.34, 0.17, 0.0, 0.06, 0.02, 0.05])


@dataclass(frozen=True)
class Weather:
    """Hourly weather of one city starting at Unix second ``t0``."""

    t0: int
    temp_c: FloatArray
    humidity_pct: FloatArray
    wind_mps: FloatArray
    cls: IntArray

    def at(self, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, IntArray]:
        """Temperature, humidity, wind and weather class at Unix seconds ``t``."""
        h = (np.asarray(t, dtype=float) - self.t0) / 3600.0
        hi = np.clip(h.astype(np.int64), 0, len(self.cls) - 1)
        grid = np.arange(len(self.temp_c), dtype=float)
        return (
            np.interp(h, grid, self.temp_c),
            np.interp(h, grid, self.humidity_pct),
            np.interp(h, grid, self.wind_mps),
            self.cls[hi],
        )

    def temp_at(self, t: float) -> float:
        """Temperature at one instant."""
        return float(self.at(np.array([t]))[0][0])


@lru_cache(maxsize=32)
def city_weather(seed: int, city: City, start: date, days: int) -> Weather:
    """The weather of ``city`` from two days before ``start`` to two days after the window."""
    rng = shared_rng(seed, "weather", CITIES.index(city))
    t0 = local_midnight_utc_s(city.timezone, start) - 2 * 86400
    n_days = days + 4
    hours = n_days * 24
    off_h = utc_offset_s(city.timezone, start) / 3600.0
    doy = start.timetuple().tm_yday - 2 + np.arange(hours) / 24.0
    seasonal = city.temp_mean_c - city.temp_amp_c * np.cos(2 * np.pi * (doy - 20) / 365.25)
    anomaly = np.zeros(n_days)
    for d in range(n_days):
        anomaly[d] = (0.7 * anomaly[d - 1] if d else 0.0) + float(rng.normal(0, 2.5))
    local_h = (np.arange(hours) + off_h) % 24
    diurnal = 4.0 * np.cos(2 * np.pi * (local_h - 14) / 24)
    temp = seasonal + np.repeat(anomaly, 24) + diurnal + rng.normal(0, 0.4, hours)
    blocks = hours // 3 + 1
    p = _BASE_P * np.array([1, 1, city.humidity_pct / 70, 1, city.humidity_pct / 70, 1, 1])
    p = p / p.sum()
    cls_b = np.zeros(blocks, dtype=np.int64)
    cls_b[0] = int(rng.choice(len(p), p=p))
    for b in range(1, blocks):
        cls_b[b] = cls_b[b - 1] if rng.random() < 0.75 else int(rng.choice(len(p), p=p))
    cls = np.repeat(cls_b, 3)[:hours]
    cls = np.where((cls == 2) & (temp < 1.0), 3, cls)
    wet = np.isin(cls, [2, 3, 4, 5])
    hum = np.clip(
        city.humidity_pct
        + 15 * wet
        - 8 * np.cos(2 * np.pi * (local_h - 3) / 24)
        + rng.normal(0, 4, hours),
        12,
        100,
    )
    wind = np.clip(rng.lognormal(math.log(3.0), 0.4, hours) * np.where(cls == 5, 3.5, 1.0), 0, 35)
    return Weather(
        t0=t0,
        temp_c=np.round(temp, 2),
        humidity_pct=np.round(hum, 1),
        wind_mps=np.round(wind, 2),
        cls=cls,
    )


def congestion_base(local_hour: float, weekday: int, rng: np.random.Generator) -> int:
    """Base congestion level (0..3) for a departure at ``local_hour`` on ``weekday``."""
    h = local_hour % 24
    if weekday < 5 and (7 <= h < 9.5 or 17 <= h < 19.5):
        return int(rng.choice([1, 2, 3], p=[0.3, 0.5, 0.2]))
    if 9.5 <= h < 19.5:
        return int(rng.choice([0, 1, 2], p=[0.4, 0.45, 0.15]))
    if 19.5 <= h < 22:
        return int(rng.choice([0, 1], p=[0.6, 0.4]))
    return 0
