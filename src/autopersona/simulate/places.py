"""Points of interest: a shared pool per city plus each person's home and work.

The pool of a city depends only on the seed (not on the fleet size): in-city POIs of every
contract category, and *excursion clusters* 60–220 km out (scenic spot, hotel, restaurant,
office, charging and gas stations) with a motorway service area half-way that has a
charging and a gas station. Vehicles park a few tens of metres from the POI they visit.

Examples
--------
>>> from autopersona.simulate.geo import CITIES
>>> pool = poi_pool(1, CITIES[0])
>>> sorted(set(pool.category))[:3]
['airport', 'charging_station', 'dealer']
>>> p = pool.place(int(pool.nearest(0.0, 0.0, "charging_station")))
>>> p.category
'charging_station'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from autopersona.simulate.geo import CITIES, City, district_of, to_latlon, to_plane
from autopersona.simulate.ids import make_id, shared_rng

__all__ = ["LEISURE_GIVEN_LIFESTYLE", "Place", "PoiPool", "poi_pool"]

FloatArray = NDArray[np.float64]

#: In-city POI counts for a city with share 1.0 (smaller cities get a floor of 30 %).
POOL_COUNTS = {
    "shopping": 120,
    "restaurant": 250,
    "school": 80,
    "hospital": 40,
    "park": 60,
    "scenic": 25,
    "sports": 50,
    "hotel": 60,
    "charging_station": 130,
    "dealer": 20,
    "gas_station": 90,
    "entertainment": 70,
    "office": 150,
    "other": 30,
}
NOUN = {
    "residential": "Residence",
    "office": "Office Tower",
    "shopping": "Mall",
    "restaurant": "Restaurant",
    "school": "School",
    "hospital": "Hospital",
    "park": "Park",
    "scenic": "Scenic Area",
    "sports": "Sports Centre",
    "hotel": "Hotel",
    "airport": "Airport",
    "charging_station": "Charging Station",
    "dealer": "Dealer",
    "gas_station": "Gas Station",
    "entertainment": "Cinema",
    "other": "Market",
}
#: Leisure destination categories by lifestyle (probabilities).
LEISURE_GIVEN_LIFESTYLE: dict[str, dict[str, float]] = {
    "business_elite": {
        "restaurant": 0.3,
        "hotel": 0.15,
        "shopping": 0.15,
        "sports": 0.15,
        "entertainment": 0.1,
        "scenic": 0.05,
        "other": 0.1,
    },
    "family": {
        "school": 0.25,
        "shopping": 0.25,
        "park": 0.15,
        "hospital": 0.08,
        "restaurant": 0.17,
        "entertainment": 0.1,
    },
    "outdoor": {"park": 0.3, "scenic": 0.25, "sports": 0.25, "restaurant": 0.1, "shopping": 0.1},
    "trend_seeker": {
        "entertainment": 0.3,
        "shopping": 0.3,
        "restaurant": 0.3,
        "sports": 0.05,
        "scenic": 0.05,
    },
}
_AIRPORTS = {"Shanghai": ((31.1443, 121.8083), (31.1979, 121.3363))}


@dataclass(frozen=True)
class Place:
    """A place a vehicle parks at: ``(x, y)`` is the parking spot on the city plane."""

    poi_id: str
    category: str
    name: str
    x: float
    y: float
    lat: float
    lon: float
    far: bool = False


@dataclass(frozen=True)
class PoiPool:
    """The shared POIs of one city (arrays indexed by POI)."""

    city: City
    poi_id: list[str]
    name: list[str]
    category: list[str]
    lat: FloatArray
    lon: FloatArray
    x: FloatArray  # parking spot
    y: FloatArray
    far: NDArray[np.bool_]
    cluster: NDArray[np.int64]  # excursion cluster (-1 in town)
    n_clusters: int

    def place(self, i: int) -> Place:
        """The :class:`Place` of POI ``i``."""
        return Place(
            self.poi_id[i],
            self.category[i],
            self.name[i],
            float(self.x[i]),
            float(self.y[i]),
            float(self.lat[i]),
            float(self.lon[i]),
            bool(self.far[i]),
        )

    def indices(self, category: str, far: bool = False) -> NDArray[np.int64]:
        """POIs of ``category`` (in town, or in excursion clusters when ``far``)."""
        cat = np.array(self.category)
        return np.flatnonzero((cat == category) & (self.far == far))

    def nearest(self, x: float, y: float, category: str, far: bool | None = None) -> int:
        """The POI of ``category`` nearest to ``(x, y)`` (in town and far when ``far`` is None)."""
        cat = np.array(self.category)
        mask = cat == category
        if far is not None:
            mask &= self.far == far
        idx = np.flatnonzero(mask)
        d = np.hypot(self.x[idx] - x, self.y[idx] - y)
        return int(idx[int(np.argmin(d))])

    def pick_near(
        self, x: float, y: float, category: str, scale_m: float, rng: np.random.Generator
    ) -> int:
        """A random in-town POI of ``category``, weighted by ``exp(-distance / scale_m)``."""
        idx = self.indices(category)
        d = np.hypot(self.x[idx] - x, self.y[idx] - y)
        w = np.exp(-(d - d.min()) / scale_m)
        return int(idx[int(rng.choice(len(idx), p=w / w.sum()))])

    def cluster_member(self, cluster: int, category: str) -> int:
        """The POI of ``category`` in excursion ``cluster`` (-2 = its service area)."""
        cat = np.array(self.category)
        return int(np.flatnonzero((self.cluster == cluster) & (cat == category))[0])


def _row(
    out: dict[str, list[object]],
    city: City,
    pid: str,
    name: str,
    cat: str,
    x: float,
    y: float,
    park: tuple[float, float],
    far: bool,
    cluster: int,
) -> None:
    (lat,), (lon,) = to_latlon(city, np.array([x]), np.array([y]))
    out["poi_id"].append(pid)
    out["name"].append(name)
    out["category"].append(cat)
    out["lat"].append(round(float(lat), 7))
    out["lon"].append(round(float(lon), 7))
    out["x"].append(x + park[0])
    out["y"].append(y + park[1])
    out["far"].append(far)
    out["cluster"].append(cluster)


@lru_cache(maxsize=16)
def poi_pool(seed: int, city: City) -> PoiPool:
    """The shared POI pool of ``city`` for ``seed`` (cached)."""
    ci = CITIES.index(city)
    rng = shared_rng(seed, "pois", ci)
    scale = max(city.share, 0.3)
    R = city.home_radius_km * 1000
    out: dict[str, list[object]] = {
        k: [] for k in ("poi_id", "name", "category", "lat", "lon", "x", "y", "far", "cluster")
    }

    def park() -> tuple[float, float]:
        r, a = float(rng.uniform(20, 120)), float(rng.uniform(0, 2 * math.pi))
        return r * math.cos(a), r * math.sin(a)

    n = 0
    for cat, cnt in POOL_COUNTS.items():
        for _ in range(max(3, round(cnt * scale))):
            r = min(abs(float(rng.normal(0, R / 1.8))), 1.3 * R)
            a = float(rng.uniform(0, 2 * math.pi))
            x, y = r * math.cos(a), r * math.sin(a)
            (lat,), (lon,) = to_latlon(city, np.array([x]), np.array([y]))
            dist = district_of(city, float(lat), float(lon))
            _row(
                out,
                city,
                make_id("POI", seed, ci, n),
                f"{dist} {NOUN[cat]} {n % 97 + 1}",
                cat,
                x,
                y,
                park(),
                False,
                -1,
            )
            n += 1
    airports = _AIRPORTS.get(city.name)
    if airports:
        apts = [to_plane(city, la, lo) for la, lo in airports]
    else:
        a = float(rng.uniform(0, 2 * math.pi))
        apts = [(0.9 * R * math.cos(a), 0.9 * R * math.sin(a))]
    for j, (x, y) in enumerate(apts):
        _row(
            out,
            city,
            make_id("POI", seed, ci, n),
            f"{city.name} {NOUN['airport']} {j + 1}",
            "airport",
            x,
            y,
            park(),
            False,
            -1,
        )
        n += 1
    # excursion clusters with a service area half-way
    n_cl = 12 if city.share > 0.5 else 6
    lo, hi = city.far_bearing
    span = (hi - lo) % 360 or 360.0
    for c in range(n_cl):
        bearing = math.radians(lo + span * (c + float(rng.uniform(0.1, 0.9))) / n_cl)
        dist_m = float(rng.uniform(60_000, 220_000))
        cx, cy = dist_m * math.sin(bearing), dist_m * math.cos(bearing)
        label = f"Excursion {c + 1:02d}"
        for cat in ("scenic", "hotel", "restaurant", "office", "charging_station", "gas_station"):
            x = cx + float(rng.normal(0, 2500))
            y = cy + float(rng.normal(0, 2500))
            _row(
                out,
                city,
                make_id("POI", seed, ci, n),
                f"{label} {NOUN[cat]}",
                cat,
                x,
                y,
                park(),
                True,
                c,
            )
            n += 1
        mx, my = cx * 0.5 + float(rng.normal(0, 3000)), cy * 0.5 + float(rng.normal(0, 3000))
        for cat in ("charging_station", "gas_station"):
            _row(
                out,
                city,
                make_id("POI", seed, ci, n),
                f"{label} Service Area {NOUN[cat]}",
                cat,
                mx,
                my,
                park(),
                True,
                -2 - c,
            )
            n += 1
    return PoiPool(
        city=city,
        poi_id=[str(v) for v in out["poi_id"]],
        name=[str(v) for v in out["name"]],
        category=[str(v) for v in out["category"]],
        lat=np.array(out["lat"], dtype=float),
        lon=np.array(out["lon"], dtype=float),
        x=np.array(out["x"], dtype=float),
        y=np.array(out["y"], dtype=float),
        far=np.array(out["far"], dtype=bool),
        cluster=np.array(out["cluster"], dtype=np.int64),
        n_clusters=n_cl,
    )


def personal_place(
    seed: int, city: City, kind: str, k: int, x: float, y: float, rng: np.random.Generator
) -> tuple[Place, dict[str, object]]:
    """A person's home (residential) or work (office) place and its POI row.

    The vehicle parks at ``(x, y)``; the POI itself is 20–80 m away.
    """
    cat = "residential" if kind == "home" else "office"
    r, a = float(rng.uniform(20, 80)), float(rng.uniform(0, 2 * math.pi))
    px, py = x + r * math.cos(a), y + r * math.sin(a)
    (plat,), (plon,) = to_latlon(city, np.array([px]), np.array([py]))
    (lat,), (lon,) = to_latlon(city, np.array([x]), np.array([y]))
    pid = make_id("POI", seed, kind, k)
    name = f"{district_of(city, float(plat), float(plon))} {NOUN[cat]} {int(rng.integers(1, 400))}"
    row: dict[str, object] = {
        "poi_id": pid,
        "name": name,
        "category": cat,
        "lat": round(float(plat), 7),
        "lon": round(float(plon), 7),
    }
    return Place(pid, cat, name, x, y, float(lat), float(lon)), row
