"""Cabin-interaction features per vehicle and period (design brief §3), written once in Ibis.

Everything is a hash aggregate per (vehicle, period): the voice-intent mix and the
content-genre shares are conditional counts and sums over ``cabin_events``; the driving
hours that turn driver-monitoring events into rates are a count of moving 1 Hz fixes in
``motion`` (no ordering needed).  The top app needs an arg-max per group, which is taken in
pandas over the small (vehicle, period, app) aggregate so that ties break the same way on
every engine (longest duration, then the app name).

The feature dictionary (``dictionary/cabin.yaml``) defines each output column.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from autopersona.features.driving import _bucket, _period, _since_filter
from autopersona.features.engines import Engine
from autopersona.features.frames import ratio as _ratio
from autopersona.features.frames import run, text_columns, top_share

__all__ = [
    "GENRES",
    "INTENTS",
    "SOURCES",
    "CabinParams",
    "cabin_features",
]

SOURCES = ["cabin_events", "motion"]


def _allowed(column: str) -> tuple[str, ...]:
    """Allowed values of a ``cabin_events`` column, from its contract (one source of truth)."""
    from autopersona.contracts import get_contract

    return tuple(str(v) for v in get_contract("cabin_events").column(column).allowed or [])


#: Voice intents and media genres of the ``cabin_events`` contract (one share column each).
INTENTS = _allowed("voice_intent")
GENRES = _allowed("media_genre")
KEY = ["vin", "period_start"]


class CabinParams(BaseModel):
    """Parameters of the cabin stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    moving_mps: float = Field(default=0.5, ge=0)
    min_driving_h: float = Field(default=0.1, gt=0)


def cabin_features(
    eng: Engine,
    *,
    period: str = "week",
    since: datetime | None = None,
    params: CabinParams | None = None,
) -> pd.DataFrame:
    """Cabin features per (vin, period_start) for events and driving at or after ``since``.

    A vehicle gets a row for a period when it has cabin events or motion fixes in it; rates
    per driving hour are null without cabin events (no cabin feed) or under
    ``min_driving_h`` of driving.

    Parameters
    ----------
    eng
        Engine holding ``cabin_events`` and ``motion``.
    period
        ``day``, ``week`` (ISO weeks, Monday 00:00 UTC) or ``month``.
    since
        First instant to read (the start of the first period to compute).
    params
        Moving-speed threshold and the least driving time for rates.

    Returns
    -------
    pandas.DataFrame
        One row per vehicle and period with the columns of ``dictionary/cabin.yaml``.
    """
    from ibis import _

    p = params or CabinParams()
    c = _since_filter(eng.table("cabin_events"), "ts", since)
    c = c.mutate(period_start=_period(c.ts, period))
    voice = c.event_type == "voice"
    app = c.event_type == "app"
    media = c.event_type == "media"
    dur = c.duration_s
    aggs: dict[str, Any] = {
        "cabin_events": _.count(),
        "voice_requests": c.count(where=voice),
        "voice_known": c.count(where=voice & c.voice_intent.notnull()),
        "voice_sentiment_mean": c.sentiment.mean(where=voice),
        "app_events": c.count(where=app),
        "app_s": dur.sum(where=app),
        "media_events": c.count(where=media),
        "media_s": dur.sum(where=media & c.media_genre.notnull()),
        "media_all_s": dur.sum(where=media),
        "fatigue_events": c.count(where=c.dms_event == "fatigue"),
        "distraction_events": c.count(where=c.dms_event == "distraction"),
        "phone_use_events": c.count(where=c.dms_event == "phone_use"),
    }
    for intent in INTENTS:
        aggs[f"n_{intent}"] = c.count(where=voice & (c.voice_intent == intent))
    for genre in GENRES:
        aggs[f"s_{genre}"] = dur.sum(where=media & (c.media_genre == genre))
    main = c.group_by(KEY).aggregate(**aggs)
    apps = (
        c.filter(app & c.app.notnull())
        .group_by([*KEY, "app"])
        .aggregate(app_s=_.duration_s.sum(), n=_.count())
    )
    # moving seconds per (vehicle, UTC day) first: grouping by integer day buckets is cheap,
    # truncating timestamps to periods is not, so only the day rows are truncated
    m = _since_filter(eng.table("motion"), "ts", since)
    days = m.group_by(["vin", _bucket(eng, m.ts, 86400).name("day")]).aggregate(
        t=m.ts.min(), moving_s=m.count(where=m.speed_mps > p.moving_mps)
    )
    drive = days.group_by(["vin", _period(days.t, period)]).aggregate(moving_s=days.moving_s.sum())
    out = run(eng, main).merge(run(eng, drive), on=KEY, how="outer")
    top = top_share(run(eng, apps), KEY, "app", "app_s", "top_app")
    out = out.merge(top, on=KEY, how="left")
    return text_columns(_finish(out, p).sort_values(KEY, kind="stable").reset_index(drop=True))


def _finish(df: pd.DataFrame, p: CabinParams) -> pd.DataFrame:
    out = df.copy()
    counts = [
        "cabin_events",
        "voice_requests",
        "voice_known",
        "app_events",
        "media_events",
        "fatigue_events",
        "distraction_events",
        "phone_use_events",
        "moving_s",
    ]
    for col in counts + [f"n_{i}" for i in INTENTS]:
        out[col] = out[col].fillna(0).astype("int64")
    for col in ("app_s", "media_s", "media_all_s", *(f"s_{g}" for g in GENRES)):
        out[col] = out[col].astype("float64")
    for intent in INTENTS:
        out[f"voice_share_{intent}"] = _ratio(out[f"n_{intent}"], out["voice_known"])
    for genre in GENRES:
        out[f"genre_share_{genre}"] = _ratio(out[f"s_{genre}"].fillna(0), out["media_s"])
    shares = out[[f"genre_share_{g}" for g in GENRES]]
    # the longest-played genre; ties to the earlier genre of the contract's list
    best = shares.fillna(-1.0).to_numpy().argmax(axis=1)
    out["top_genre"] = pd.Series([GENRES[i] for i in best], index=out.index, dtype="object").where(
        shares.notna().any(axis=1) & (out["media_s"] > 0)
    )
    out["app_minutes"] = out["app_s"].fillna(0) / 60.0
    out["media_minutes"] = out["media_all_s"].fillna(0) / 60.0
    out["driving_h"] = out["moving_s"] / 3600.0
    hours = out["driving_h"].where(
        (out["driving_h"] >= p.min_driving_h) & (out["cabin_events"] > 0)
    )
    out["fatigue_per_driving_h"] = out["fatigue_events"] / hours
    out["distraction_per_driving_h"] = (out["distraction_events"] + out["phone_use_events"]) / hours
    cols = [
        "vin",
        "period_start",
        "cabin_events",
        "voice_requests",
        *(f"voice_share_{i}" for i in INTENTS),
        "voice_sentiment_mean",
        "app_events",
        "app_minutes",
        "top_app",
        "top_app_share",
        "media_events",
        "media_minutes",
        *(f"genre_share_{g}" for g in GENRES),
        "top_genre",
        "driving_h",
        "fatigue_events",
        "fatigue_per_driving_h",
        "distraction_events",
        "phone_use_events",
        "distraction_per_driving_h",
    ]
    return out[cols]
