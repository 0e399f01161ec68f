"""City areas, a local metric plane per city, and time-zone helpers.

Positions are simulated in metres on a local plane centred on the city (``x`` east,
``y`` north) and converted to WGS84 with a per-point longitude scale, which keeps the
haversine distance between consecutive fixes within about 1 % of the planar distance for
trips up to a few hundred kilometres.

Examples
--------
>>> c = CITIES[0]
>>> c.name, c.timezone
('Shanghai', 'Asia/Shanghai')
>>> lat, lon = to_latlon(c, np.array([0.0]), np.array([1000.0]))
>>> round(float(haversine_m(c.lat, c.lon, lat[0], lon[0])), 1)
1000.0
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CITIES",
    "EARTH_RADIUS_M",
    "City",
    "city_by_name",
    "district_of",
    "haversine_m",
    "local_midnight_utc_s",
    "to_latlon",
    "utc_offset_s",
]

FloatArray = NDArray[np.float64]

EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True)
class City:
    """A city area vehicles live in.

    Attributes
    ----------
    share
        Probability that a simulated person lives here.
    far_bearing
        Compass bearings (degrees, clockwise from north) allowed for long trips out of the
        city; the interval may wrap through north.
    temp_mean_c, temp_amp_c
        Annual mean temperature and seasonal amplitude (coldest around 20 January in the
        northern hemisphere).
    """

    name: str
    timezone: str
    country: str
    lat: float
    lon: float
    alt_m: float
    share: float
    home_radius_km: float
    far_bearing: tuple[float, float]
    temp_mean_c: float
    temp_amp_c: float
    humidity_pct: float
    phone_style: str
    name_style: str
    districts: tuple[tuple[str, float, float], ...]


CITIES: tuple[City, ...] = (
    City(
        "Shanghai",
        "Asia/Shanghai",
        "CN",
        31.2304,
        121.4737,
        4.0,
        0.84,
        22.0,
        (200.0, 330.0),
        17.0,
        11.5,
        75.0,
        "cn",
        "cn",
        (
            ("Huangpu", 31.2317, 121.4845),
            ("Xuhui", 31.1885, 121.4365),
            ("Changning", 31.2204, 121.4242),
            ("Jing'an", 31.2286, 121.4479),
            ("Putuo", 31.2494, 121.3964),
            ("Hongkou", 31.2646, 121.5050),
            ("Yangpu", 31.2595, 121.5260),
            ("Pudong", 31.2214, 121.5447),
            ("Minhang", 31.1125, 121.3817),
            ("Baoshan", 31.4054, 121.4898),
            ("Jiading", 31.3747, 121.2655),
            ("Songjiang", 31.0323, 121.2277),
            ("Qingpu", 31.1497, 121.1241),
            ("Fengxian", 30.9181, 121.4740),
            ("Jinshan", 30.7418, 121.3422),
        ),
    ),
    City(
        "Urumqi",
        "Asia/Urumqi",
        "CN",
        43.8256,
        87.6168,
        800.0,
        0.04,
        14.0,
        (60.0, 300.0),
        7.5,
        20.0,
        58.0,
        "cn",
        "cn",
        (
            ("Tianshan", 43.7963, 87.6313),
            ("Shayibake", 43.7881, 87.5984),
            ("Xinshi", 43.8707, 87.5692),
            ("Shuimogou", 43.8326, 87.6427),
            ("Midong", 43.9610, 87.6535),
        ),
    ),
    City(
        "Tokyo",
        "Asia/Tokyo",
        "JP",
        35.6812,
        139.7671,
        40.0,
        0.03,
        18.0,
        (200.0, 340.0),
        16.0,
        10.5,
        65.0,
        "jp",
        "jp",
        (
            ("Chiyoda", 35.6940, 139.7536),
            ("Minato", 35.6581, 139.7516),
            ("Shinjuku", 35.6938, 139.7034),
            ("Shibuya", 35.6640, 139.6982),
            ("Setagaya", 35.6466, 139.6532),
            ("Nerima", 35.7356, 139.6517),
        ),
    ),
    City(
        "Hong Kong",
        "Asia/Hong_Kong",
        "HK",
        22.3193,
        114.1694,
        30.0,
        0.03,
        12.0,
        (300.0, 30.0),
        23.5,
        5.5,
        78.0,
        "hk",
        "cn",
        (
            ("Central and Western", 22.2866, 114.1548),
            ("Wan Chai", 22.2793, 114.1722),
            ("Kowloon City", 22.3283, 114.1913),
            ("Sha Tin", 22.3771, 114.1974),
            ("Tsuen Wan", 22.3707, 114.1048),
        ),
    ),
    City(
        "Berlin",
        "Europe/Berlin",
        "DE",
        52.5200,
        13.4050,
        35.0,
        0.03,
        18.0,
        (0.0, 360.0),
        10.0,
        9.5,
        78.0,
        "de",
        "west",
        (
            ("Mitte", 52.5200, 13.4050),
            ("Charlottenburg", 52.5160, 13.3041),
            ("Pankow", 52.5693, 13.4016),
            ("Neukoelln", 52.4811, 13.4350),
            ("Spandau", 52.5352, 13.1996),
            ("Steglitz", 52.4566, 13.3219),
        ),
    ),
    City(
        "Los Angeles",
        "America/Los_Angeles",
        "US",
        34.0522,
        -118.2437,
        90.0,
        0.03,
        25.0,
        (0.0, 150.0),
        18.5,
        4.5,
        60.0,
        "us",
        "west",
        (
            ("Downtown", 34.0407, -118.2468),
            ("Hollywood", 34.0928, -118.3287),
            ("Santa Monica", 34.0195, -118.4912),
            ("Pasadena", 34.1478, -118.1445),
            ("Long Beach", 33.7701, -118.1937),
            ("Burbank", 34.1808, -118.3090),
        ),
    ),
)


def city_by_name(name: str) -> City:
    """Return the :class:`City` called ``name``."""
    for c in CITIES:
        if c.name == name:
            return c
    raise KeyError(name)


def to_latlon(city: City, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Convert plane metres (east ``x``, north ``y``) to WGS84 degrees."""
    lat = city.lat + np.degrees(y / EARTH_RADIUS_M)
    lon = city.lon + np.degrees(x / (EARTH_RADIUS_M * np.cos(np.radians(lat))))
    return lat, lon


def to_plane(city: City, lat: float, lon: float) -> tuple[float, float]:
    """Inverse of :func:`to_latlon` for one point."""
    y = np.radians(lat - city.lat) * EARTH_RADIUS_M
    x = np.radians(lon - city.lon) * EARTH_RADIUS_M * np.cos(np.radians(lat))
    return float(x), float(y)


def haversine_m(
    lat1: FloatArray | float,
    lon1: FloatArray | float,
    lat2: FloatArray | float,
    lon2: FloatArray | float,
) -> FloatArray:
    """Great-circle distance in metres."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(h, 1.0))))


def district_of(city: City, lat: float, lon: float) -> str:
    """Nearest district centroid."""
    names = [d[0] for d in city.districts]
    la = np.array([d[1] for d in city.districts])
    lo = np.array([d[2] for d in city.districts])
    return names[int(np.argmin(haversine_m(lat, lon, la, lo)))]


@lru_cache(maxsize=4096)
def utc_offset_s(tz: str, day: date) -> int:
    """UTC offset of ``tz`` at local noon of ``day``, in seconds."""
    local_noon = datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(tz))
    off = local_noon.utcoffset()
    assert off is not None
    return int(off.total_seconds())


def local_midnight_utc_s(tz: str, day: date) -> int:
    """Unix seconds (UTC) of local midnight starting ``day`` in ``tz`` (noon offset)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return int(midnight.timestamp()) - utc_offset_s(tz, day)


def day_of(start: date, k: int) -> date:
    """The ``k``-th day after ``start``."""
    return start + timedelta(days=k)
