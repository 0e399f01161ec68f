"""Daily plans: where each person intends to go and when, from their latent pattern.

Plans are in local time (the person's IANA zone) and converted to UTC. Execution
(:mod:`autopersona.simulate.fleet`) may push a departure later when the previous trip or a
charging stop ran late, and may insert charging or refuelling detours.

Patterns
--------
* **regular commuter**: home→work every weekday (departure ``N(depart_hour, 7–13 min)``),
  work→home after ``work_hours`` (±15 min); evening leisure with the lifestyle probability;
  weekends 0–3 leisure outings (Poisson).
* **flexible commuter**: commutes on 60–80 % of weekdays, departure spread 30–60 min and
  shorter, variable days; errands on home days.
* **frequent business**: commuter plus Poisson(1.2–2.2) business trips a day from the office
  to clients (office, hotel, restaurant, airport), and on 8–18 % of days an intercity
  business trip (60–220 km) instead.
* **weekend traveller**: no work place; on 70–95 % of Saturdays a long excursion to a far
  scenic spot, staying overnight at a nearby hotel 60 % of the time; errands on some
  weekdays.

Trip purposes (truth): ``commute`` (home↔work), ``business`` (trips for work other than the
commute), ``leisure`` (everything else, including charging and refuelling detours).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from autopersona.simulate.geo import local_midnight_utc_s
from autopersona.simulate.places import LEISURE_GIVEN_LIFESTYLE, Place, PoiPool
from autopersona.simulate.truth import Person

__all__ = ["PlannedTrip", "Planner"]

BUSINESS_DEST = {"office": 0.55, "hotel": 0.2, "restaurant": 0.15, "airport": 0.1}


@dataclass(frozen=True)
class PlannedTrip:
    """An intended trip: leave for ``dest`` at ``depart`` (Unix seconds, UTC) or later."""

    depart: float
    dest: Place
    purpose: str
    activity: str


class Planner:
    """Builds the plans of one person.

    Parameters
    ----------
    person, home, work, pool
        The person, their home and work places and their city's POI pool.
    rng
        The vehicle's ``plan`` stream.
    """

    def __init__(
        self,
        person: Person,
        home: Place,
        work: Place | None,
        pool: PoiPool,
        rng: np.random.Generator,
    ) -> None:
        self.p = person
        self.home = home
        self.work = work
        self.pool = pool
        self.rng = rng
        cats = LEISURE_GIVEN_LIFESTYLE[person.lifestyle]
        self.cats = list(cats)
        self.cat_p = np.array(list(cats.values()))
        self.cat_p = self.cat_p / self.cat_p.sum()
        # favourite places: two per leisure category, near home
        self.favs: dict[str, list[int]] = {
            c: sorted({pool.pick_near(home.x, home.y, c, 3000.0, rng) for _ in range(2)})
            for c in self.cats
        }
        self.fav_clusters = sorted({int(rng.integers(pool.n_clusters)) for _ in range(3)})

    # -------------------------------------------------------------- destinations
    def leisure(self, x: float, y: float) -> Place:
        """A leisure destination: a favourite (65 %) or a new place near ``(x, y)``."""
        rng = self.rng
        cat = self.cats[int(rng.choice(len(self.cats), p=self.cat_p))]
        if rng.random() < 0.65:
            favs = self.favs[cat]
            return self.pool.place(favs[int(rng.integers(len(favs)))])
        return self.pool.place(self.pool.pick_near(x, y, cat, 5000.0, rng))

    def business(self, x: float, y: float) -> Place:
        """A client site near ``(x, y)``."""
        cats = list(BUSINESS_DEST)
        p = np.array(list(BUSINESS_DEST.values()))
        cat = cats[int(self.rng.choice(len(cats), p=p / p.sum()))]
        if cat == "airport":
            return self.pool.place(self.pool.nearest(x, y, "airport", far=False))
        return self.pool.place(self.pool.pick_near(x, y, cat, 8000.0, self.rng))

    def cluster(self) -> int:
        """An excursion cluster (one of three favourites 70 % of the time)."""
        if self.rng.random() < 0.7:
            return self.fav_clusters[int(self.rng.integers(len(self.fav_clusters)))]
        return int(self.rng.integers(self.pool.n_clusters))

    # -------------------------------------------------------------- plans
    def plan(self, start: date, days: int) -> list[PlannedTrip]:
        """All planned trips of the window, in departure order."""
        p, rng = self.p, self.rng
        out: list[PlannedTrip] = []
        away_overnight = False
        for d in range(days):
            day = start + timedelta(days=d)
            wd = day.weekday()
            base = local_midnight_utc_s(p.timezone, day)

            def at(h: float, base: int = base) -> float:
                return base + h * 3600.0

            def add(h: float, dest: Place, purpose: str, activity: str) -> None:
                out.append(PlannedTrip(at(h), dest, purpose, activity))

            if away_overnight:
                away_overnight = False
                add(float(rng.uniform(10.5, 14.5)), self.home, "leisure", "long_trip_return")
                continue
            weekend = wd >= 5
            commuting = not weekend and self.work is not None and rng.random() < p.commute_prob
            end_h = 17.0
            if commuting:
                assert self.work is not None
                work = self.work
                dep = p.depart_hour + float(rng.normal(0, p.depart_sd_h))
                add(dep, work, "commute", "to_work")
                sd = 0.25 if p.commute_pattern == "regular_commuter" else 0.7
                end_h = dep + p.work_hours + float(rng.normal(0, sd))
                if p.commute_pattern == "frequent_business" and rng.random() < p.intercity_prob:
                    c = self.cluster()
                    office = self.pool.place(self.pool.cluster_member(c, "office"))
                    t1 = dep + float(rng.uniform(0.75, 1.5))
                    add(t1, office, "business", "intercity_business")
                    end_h = t1 + float(rng.uniform(6.0, 8.0))
                    add(end_h, self.home, "business", "intercity_return")
                else:
                    if p.commute_pattern == "frequent_business":
                        k = int(rng.poisson(p.business_trips_per_day))
                        times = np.sort(rng.uniform(dep + 1.0, max(dep + 1.5, end_h - 1.5), k))
                        for t in times:
                            add(float(t), self.business(work.x, work.y), "business", "client_visit")
                            add(
                                float(t) + float(rng.uniform(0.6, 1.6)),
                                work,
                                "business",
                                "back_to_office",
                            )
                    elif rng.random() < 0.12:
                        lunch = self.pool.place(
                            self.pool.pick_near(work.x, work.y, "restaurant", 1500.0, rng)
                        )
                        add(float(rng.uniform(11.8, 12.4)), lunch, "leisure", "lunch")
                        add(float(rng.uniform(12.9, 13.4)), work, "leisure", "back_from_lunch")
                    add(end_h, self.home, "commute", "to_home")
            elif weekend:
                if wd == 5 and rng.random() < p.weekend_trip_prob:
                    c = self.cluster()
                    scenic = self.pool.place(self.pool.cluster_member(c, "scenic"))
                    add(float(rng.uniform(7.5, 9.5)), scenic, "leisure", "long_trip")
                    if rng.random() < 0.6 and d + 1 < days:
                        hotel = self.pool.place(self.pool.cluster_member(c, "hotel"))
                        add(float(rng.uniform(16.0, 18.0)), hotel, "leisure", "long_trip")
                        away_overnight = True
                    else:
                        add(
                            float(rng.uniform(15.5, 17.5)), self.home, "leisure", "long_trip_return"
                        )
                    continue
                mean = 0.8 if p.commute_pattern == "weekend_traveller" else p.weekend_leisure_mean
                k = int(rng.poisson(mean))
                t = float(rng.uniform(9.0, 11.0))
                x, y = self.home.x, self.home.y
                for i in range(k):
                    dest = self.leisure(x, y)
                    add(t, dest, "leisure", "outing")
                    x, y = dest.x, dest.y
                    t += float(rng.uniform(1.0, 3.0))
                    if i == k - 1 or rng.random() < 0.5:
                        add(t, self.home, "leisure", "return_home")
                        x, y = self.home.x, self.home.y
                        t += float(rng.uniform(1.0, 3.0))
                end_h = t
            else:  # weekday at home
                if rng.random() < (0.45 if p.has_work else 0.35):
                    t = float(rng.uniform(9.5, 16.0))
                    add(t, self.leisure(self.home.x, self.home.y), "leisure", "errand")
                    add(t + float(rng.uniform(0.5, 2.0)), self.home, "leisure", "return_home")
                    end_h = t + 2.0
            if rng.random() < p.evening_leisure_prob:
                if p.night_owl:
                    t = float(rng.uniform(21.0, 22.5))
                    stay = float(rng.uniform(1.5, 3.5))
                else:
                    t = max(end_h + float(rng.uniform(0.8, 1.5)), 19.0 + float(rng.normal(0, 0.5)))
                    stay = float(rng.uniform(1.0, 2.5))
                add(t, self.leisure(self.home.x, self.home.y), "leisure", "evening_out")
                add(t + stay, self.home, "leisure", "return_home")
        return out
