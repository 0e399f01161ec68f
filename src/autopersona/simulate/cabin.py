"""In-cabin interaction (``cabin_events``) and diagnostic trouble codes (``dtc_events``).

Per trip:

* **voice** requests arrive as a Poisson process (about one per 15 min, scaled by
  lifestyle); the intent mix leans to ``navigation`` for unfamiliar destinations, ``music``
  for pop-music lovers, ``news`` for news lovers, ``phone`` for business people and
  ``charging`` for BEVs low on charge. Sentiment is ``N(0.15 + 0.4 satisfaction, 0.3)``
  minus 0.25 in heavy congestion, clipped to [-1, 1].
* **app** use about every 20 min with a log-normal duration; the app mix leans to the
  person's taste (music, podcasts, news), phone for business people, and the charging map
  only exists in battery cars.
* **media**: playback starts in 75 % of trips (and again every ~25 min on long trips); the
  genre is the person's content taste 60 % of the time, otherwise uniform over the others.
* **dms** (driver monitoring): fatigue at a rate that grows after the first hour of
  driving and at night (22:00–05:00 local); distraction and phone use grow with
  aggressiveness.

While DC charging, people watch video or browse (app events).

DTCs: each vehicle-day raises a code with probability ``0.015 (1 + age / 4)``, at a random
moment of that day's driving; severity mix about 55 % info / 35 % warning / 10 % critical.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from autopersona.simulate.geo import utc_offset_s
from autopersona.simulate.timeline import Timeline
from autopersona.simulate.truth import Person, VehicleSpec
from autopersona.simulate.writer import Cat, const

__all__ = ["DTC_CODES", "RaisedDtc", "cabin_columns", "raise_dtcs"]

US = 1_000_000
INTENTS = (
    "navigation",
    "music",
    "vehicle_control",
    "phone",
    "weather",
    "news",
    "charging",
    "other",
)
GENRES = (
    "news",
    "finance_podcast",
    "pop_music",
    "classical",
    "childrens_stories",
    "rock",
    "talk",
    "sports",
)
APPS = (
    "navigation",
    "music",
    "podcast",
    "news",
    "phone",
    "wechat",
    "weather",
    "charging_map",
    "vehicle_settings",
    "video",
)
DMS = ("fatigue", "distraction", "phone_use")
EVENT_TYPES = ("voice", "app", "media", "dms")

#: (code, severity, ecu, applies to: all / fuel / battery / adas)
DTC_CODES: tuple[tuple[str, str, str, str], ...] = (
    ("P0128", "info", "ECM", "fuel"),
    ("P0442", "info", "ECM", "fuel"),
    ("P0171", "warning", "ECM", "fuel"),
    ("P0420", "warning", "ECM", "fuel"),
    ("P0300", "critical", "ECM", "fuel"),
    ("P1E00", "info", "VCU", "battery"),
    ("P0A7F", "warning", "BMS", "battery"),
    ("P0AA6", "critical", "BMS", "battery"),
    ("P0A80", "critical", "BMS", "battery"),
    ("U0100", "warning", "VCU", "battery"),
    ("C1234", "info", "ABS", "all"),
    ("B1318", "info", "BCM", "all"),
    ("U3000", "info", "IVI", "all"),
    ("C0561", "info", "ESP", "all"),
    ("C0035", "warning", "ABS", "all"),
    ("U0121", "warning", "GW", "all"),
    ("C1A00", "warning", "ADAS", "adas"),
)
_SEV_W = {"info": 0.55, "warning": 0.35, "critical": 0.10}


@dataclass(frozen=True)
class RaisedDtc:
    """A DTC raised while driving (``trip_end`` = Unix second the trip ended)."""

    ts: int
    code: str
    severity: str
    ecu: str
    trip_end: int


def raise_dtcs(
    tl: Timeline, spec: VehicleSpec, t_start: int, days: int, rng: np.random.Generator
) -> list[RaisedDtc]:
    """DTCs raised during the window."""
    ok = [
        c
        for c in DTC_CODES
        if c[3] == "all"
        or (c[3] == "fuel" and spec.has_fuel)
        or (c[3] == "battery" and spec.has_battery)
        or (c[3] == "adas" and spec.adas_equipped)
    ]
    w = np.array([_SEV_W[c[1]] / sum(1 for d in ok if d[1] == c[1]) for c in ok])
    age = spec.age_years(datetime.fromtimestamp(t_start, UTC).date())
    p = 0.015 * (1 + age / 4)
    out: list[RaisedDtc] = []
    for d in range(days):
        if rng.random() >= p:
            continue
        lo, hi = t_start + d * 86400, t_start + (d + 1) * 86400
        trips = [t for t in tl.trips if lo <= t.dep < hi]
        if not trips:
            continue
        t = trips[int(rng.integers(len(trips)))]
        code = ok[int(rng.choice(len(ok), p=w / w.sum()))]
        ts = t.dep + int(rng.integers(0, t.motion.n))
        out.append(RaisedDtc(ts, code[0], code[1], code[2], t.arrive))
    return out


def _unique_times(times: np.ndarray[Any, Any], lo: int, hi: int) -> np.ndarray[Any, Any]:
    return np.unique(np.clip(times.astype(np.int64), lo, hi))


def cabin_columns(
    tl: Timeline, person: Person, spec: VehicleSpec, rng: np.random.Generator
) -> tuple[dict[str, Any], int]:
    """Columns of the ``cabin_events`` table of one vehicle."""
    p = person
    taste = GENRES.index(p.content_taste)
    genre_p = np.full(len(GENRES), 0.4 / (len(GENRES) - 1))
    genre_p[taste] = 0.6
    voice_rate = {"trend_seeker": 1.3, "business_elite": 1.1, "family": 1.0, "outdoor": 0.8}[
        p.lifestyle
    ]
    base_int = np.array([0.22, 0.2, 0.2, 0.08, 0.05, 0.05, 0.04 if spec.has_battery else 0.0, 0.1])
    # app mix (without video while driving): taste, lifestyle and powertrain shape it
    app_p = np.array(
        [0.2, 0.15, 0.08, 0.08, 0.1, 0.15, 0.05, 0.08 if spec.has_battery else 0.0, 0.06]
    )
    app_p[1] += 0.1 * (p.content_taste == "pop_music")
    app_p[2] += 0.12 * (p.content_taste == "finance_podcast")
    app_p[3] += 0.12 * (p.content_taste == "news")
    app_p[4] += 0.1 * (p.lifestyle == "business_elite")
    app_p = app_p / app_p.sum()
    if p.content_taste == "pop_music":
        base_int[1] += 0.12
    if p.content_taste in ("news", "finance_podcast"):
        base_int[5] += 0.1
    if p.lifestyle == "business_elite":
        base_int[3] += 0.12
    rows: dict[str, list[Any]] = {
        k: [] for k in ("ts", "type", "intent", "sentiment", "app", "dur", "genre", "dms")
    }

    def add(
        ts: np.ndarray[Any, Any],
        etype: int,
        intent: Any = None,
        sent: Any = None,
        app: Any = None,
        dur: Any = None,
        genre: Any = None,
        dms: Any = None,
    ) -> None:
        k = len(ts)
        if k == 0:
            return
        rows["ts"].append(ts)
        rows["type"].append(np.full(k, etype))
        rows["intent"].append(np.full(k, -1) if intent is None else intent)
        rows["sentiment"].append(np.full(k, np.nan) if sent is None else sent)
        rows["app"].append(np.full(k, -1) if app is None else app)
        rows["dur"].append(np.full(k, np.nan) if dur is None else dur)
        rows["genre"].append(np.full(k, -1) if genre is None else genre)
        rows["dms"].append(np.full(k, -1) if dms is None else dms)

    off = (
        utc_offset_s(p.timezone, datetime.fromtimestamp(tl.trips[0].dep, UTC).date())
        if tl.trips
        else 0
    )
    for t in tl.trips:
        n = t.motion.n
        lo, hi = t.dep, t.arrive
        mins = n / 60
        # voice
        k = int(rng.poisson(mins / 15 * voice_rate))
        ts = _unique_times(lo + rng.uniform(0, n, k), lo, hi)
        if len(ts):
            ip = base_int.copy()
            if t.dest.category not in ("residential", "office"):
                ip[0] += 0.15
            if spec.energy_type == "BEV" and t.energy.soc[0] < 0.5:
                ip[6] += 0.25
            intent = rng.choice(len(INTENTS), size=len(ts), p=ip / ip.sum())
            sent = np.clip(
                rng.normal(0.15 + 0.4 * p.satisfaction - 0.25 * (t.congestion >= 2), 0.3, len(ts)),
                -1,
                1,
            )
            add(ts, 0, intent=intent, sent=np.round(sent, 3))
        # app
        k = int(rng.poisson(mins / 20))
        ts = _unique_times(lo + rng.uniform(0, n, k), lo, hi)
        if len(ts):
            apps = rng.choice(9, size=len(ts), p=app_p)  # no video while driving
            dur = np.minimum(rng.lognormal(np.log(120), 0.8, len(ts)), (hi - ts) + 1.0)
            add(ts, 1, app=apps, dur=np.round(dur, 1))
        # media
        starts = []
        if rng.random() < 0.75:
            starts.append(lo + int(rng.integers(3, 60)))
        s = lo + 1500
        while s < hi - 300:
            if rng.random() < 0.6:
                starts.append(s + int(rng.integers(0, 120)))
            s += 1500
        ts = _unique_times(np.array(starts, dtype=float), lo, hi)
        if len(ts):
            g = rng.choice(len(GENRES), size=len(ts), p=genre_p)
            dur = np.minimum(rng.lognormal(np.log(900), 0.6, len(ts)), (hi - ts) + 1.0)
            add(ts, 2, genre=g, dur=np.round(dur, 1))
        # driver monitoring
        hour = ((lo + off) % 86400) / 3600
        night = hour >= 22 or hour < 5
        into_h = np.arange(0, n, 600) / 3600
        lam = (0.04 + 0.5 * np.maximum(into_h - 1.0, 0) + (0.5 if night else 0.0)) / 6
        k_f = rng.poisson(lam)
        ts_f = (
            np.concatenate([lo + 600 * i + rng.uniform(0, 600, c) for i, c in enumerate(k_f)])
            if k_f.sum()
            else np.zeros(0)
        )
        k_d = int(rng.poisson(mins / 60 * 0.1 * (1 + 2 * p.aggressiveness)))
        k_p = int(rng.poisson(mins / 60 * 0.05 * (1 + 3 * p.aggressiveness)))
        for ts_raw, code in (
            (ts_f, 0),
            (lo + rng.uniform(0, n, k_d), 1),
            (lo + rng.uniform(0, n, k_p), 2),
        ):
            ts = _unique_times(np.asarray(ts_raw), lo, hi)
            if len(ts):
                add(ts, 3, dms=np.full(len(ts), code))
    # while DC charging: video / browsing
    for st in tl.stays:
        ses = st.session
        if ses is None or ses.kind != "dc" or rng.random() > 0.7:
            continue
        ts = np.array([ses.t0 + int(rng.integers(30, 240))])
        dur = np.array([round(float(max(60.0, (ses.t1 - ts[0]) * rng.uniform(0.5, 0.95))), 1)])
        add(ts, 1, app=np.array([9 if rng.random() < 0.6 else 5]), dur=dur)
    if not rows["ts"]:
        return {}, 0
    cols = {k: np.concatenate(v) for k, v in rows.items()}
    order = np.lexsort((cols["type"], cols["ts"]))
    cols = {k: v[order] for k, v in cols.items()}
    # (vin, ts, event_type) must be unique: drop same-second repeats of a type
    keep = np.ones(len(cols["ts"]), dtype=bool)
    keep[1:] = (np.diff(cols["ts"]) != 0) | (np.diff(cols["type"]) != 0)
    cols = {k: v[keep] for k, v in cols.items()}
    n_all = len(cols["ts"])
    return {
        "vin": const(spec.vin, n_all),
        "ts": cols["ts"].astype(np.int64) * US,
        "event_type": Cat(cols["type"].astype(np.int64), list(EVENT_TYPES)),
        "voice_intent": Cat(cols["intent"].astype(np.int64), list(INTENTS)),
        "sentiment": cols["sentiment"],
        "app": Cat(cols["app"].astype(np.int64), list(APPS)),
        "duration_s": cols["dur"],
        "media_genre": Cat(cols["genre"].astype(np.int64), list(GENRES)),
        "dms_event": Cat(cols["dms"].astype(np.int64), list(DMS)),
    }, n_all
