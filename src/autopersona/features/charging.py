"""Charging behaviour per plug-in vehicle and period (design brief §3), written once in Ibis.

A *session* is a run of consecutive ``charging`` samples of ``vehicle_signals``: ordered by
time among the charging samples only (a window over a few percent of the rows, like the
harsh-event edges of the driving stage), a sample starts a session when it has no charging
predecessor within ``session_gap_s`` or its charger type differs from the predecessor's.
Each session belongs to the period of its first sample and is described by that sample
(SOC at plug-in, charger type), so a period's features depend only on data up to its end.
Energy is attributed to the period in which it flowed: the SOC gained between consecutive
samples of a session times the usable battery capacity.  Everything else is a hash
aggregate; the local-time share of night sessions converts UTC hour buckets in pandas.

Only BEV, PHEV and EREV vehicles get rows (others have no charge port); the feature
dictionary (``dictionary/charging.yaml``) defines each output column.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from autopersona.features.driving import _bucket, _night_share, _period, _since_filter
from autopersona.features.engines import Engine
from autopersona.features.frames import ratio as _ratio
from autopersona.features.frames import run, text_columns

__all__ = ["PLUG_IN", "SOURCES", "ChargingParams", "charging_features"]

SOURCES = ["vehicle_signals", "vehicles"]
#: history each source needs before ``since``: a session running across ``since`` is
#: recognised from samples up to ``session_gap_s`` earlier (a day covers any sane setting)
LOOKBACK: dict[str, timedelta | None] = {"vehicle_signals": timedelta(days=1)}
#: Energy types with a charge port.
PLUG_IN = ("BEV", "PHEV", "EREV")
KEY = ["vin", "period_start"]


class ChargingParams(BaseModel):
    """Parameters of the charging stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_gap_s: float = Field(default=900.0, gt=0, le=86400)  # within LOOKBACK
    low_soc_pct: float = Field(default=20.0, ge=0, le=100)
    moving_mps: float = Field(default=0.5, ge=0)
    min_observed_days: float = Field(default=1.0, gt=0)
    night_hours: tuple[int, int] = (22, 6)


def charging_features(
    eng: Engine,
    *,
    period: str = "week",
    since: datetime | None = None,
    params: ChargingParams | None = None,
) -> pd.DataFrame:
    """Charging features per (vin, period_start) for plug-in vehicles, from ``since`` on.

    Parameters
    ----------
    eng
        Engine holding ``vehicle_signals`` and ``vehicles``.
    period
        ``day``, ``week`` (ISO weeks, Monday 00:00 UTC) or ``month``.
    since
        First instant to compute.  Charging samples up to ``session_gap_s`` earlier are
        read too, so that a session running across ``since`` is not counted twice.
    params
        Session gap, low-SOC threshold and night hours.

    Returns
    -------
    pandas.DataFrame
        One row per plug-in vehicle and period with signals, columns of
        ``dictionary/charging.yaml``.
    """
    import ibis
    from ibis import _

    p = params or ChargingParams()
    veh = eng.table("vehicles")
    plug = veh.filter(veh.energy_type.isin(PLUG_IN)).select("vin", "battery_kwh", "timezone")
    # per (vehicle, UTC day) first (cheap integer buckets), then per period
    sig = _since_filter(eng.table("vehicle_signals"), "ts", since)
    driving = ibis.coalesce(sig.ignition_on, False) | (sig.speed_mps > p.moving_mps)
    drv_soc = driving & sig.soc_pct.notnull()
    days = sig.group_by(["vin", _bucket(eng, sig.ts, 86400).name("day")]).aggregate(
        first=sig.ts.min(),
        last=sig.ts.max(),
        charging_samples=sig.count(where=sig.charging),
        driving_soc_n=sig.count(where=drv_soc),
        low_soc_n=sig.count(where=drv_soc & (sig.soc_pct < p.low_soc_pct)),
        driving_soc_sum=sig.soc_pct.sum(where=drv_soc),
    )
    days = days.mutate(period_start=_period(days.first, period))
    base = days.group_by(KEY).aggregate(
        first_s=days.first.min().epoch_seconds(),
        last_s=days.last.max().epoch_seconds(),
        charging_samples=days.charging_samples.sum(),
        driving_soc_n=days.driving_soc_n.sum(),
        low_soc_n=days.low_soc_n.sum(),
        driving_soc_sum=days.driving_soc_sum.sum(),
    )
    base = base.join(plug.select("vin"), "vin")

    # session edges among the charging samples only
    lead_in = since - timedelta(seconds=p.session_gap_s) if since is not None else None
    ch = _since_filter(eng.table("vehicle_signals"), "ts", lead_in)
    ch = ch.filter(ch.charging).select(
        "vin", "ts", "soc_pct", "charger_type", sec=ch.ts.epoch_seconds()
    )
    ch = ch.join(plug.select("vin"), "vin")
    w = ibis.window(group_by="vin", order_by="ts")
    ch = ch.mutate(
        prev_sec=ch.sec.lag().over(w),
        prev_soc=ch.soc_pct.lag().over(w),
        prev_type=ch.charger_type.lag().over(w),
    )
    new_type = (
        ch.charger_type.notnull() & ch.prev_type.notnull() & (ch.charger_type != ch.prev_type)
    )
    ch = ch.mutate(
        start=ch.prev_sec.isnull() | ((ch.sec - ch.prev_sec) > p.session_gap_s) | new_type,
        period_start=_period(ch.ts, period),
    )
    if since is not None:
        ch = ch.filter(ch.ts >= ibis.literal(since, type=ch.ts.type()))
    gain = (ch.soc_pct - ch.prev_soc).clip(lower=0)
    is_start = ch.start
    typed = is_start & ch.charger_type.notnull()
    sessions = ch.group_by(KEY).aggregate(
        sessions=ch.count(where=is_start),
        typed_sessions=ch.count(where=typed),
        home_sessions=ch.count(where=typed & (ch.charger_type == "home_ac")),
        dc_sessions=ch.count(where=typed & (ch.charger_type == "public_dc")),
        plug_in_soc_mean=ch.soc_pct.mean(where=is_start),
        plug_in_soc_n=ch.count(where=is_start & ch.soc_pct.notnull()),
        soc_gain_pct=gain.sum(where=~is_start),
    )
    starts = (
        ch.filter(is_start)
        .mutate(hour=_.ts.truncate("h"))
        .group_by([*KEY, "hour"])
        .aggregate(s=_.count())
    )

    out = run(eng, base).merge(run(eng, sessions), on=KEY, how="left")
    info = run(eng, plug)
    out = out.merge(info[["vin", "battery_kwh"]], on="vin", how="left")
    hours = run(eng, starts)
    if hours.empty:
        out["night_session_share"] = pd.Series(dtype="float64", index=out.index)
    else:
        night = _night_share(hours, info[["vin", "timezone"]], p.night_hours)
        out = out.merge(night, on=KEY, how="left").rename(
            columns={"night_share": "night_session_share"}
        )
    return text_columns(_finish(out, p).sort_values(KEY, kind="stable").reset_index(drop=True))


def _finish(df: pd.DataFrame, p: ChargingParams) -> pd.DataFrame:
    out = df.copy()
    counts = ["sessions", "typed_sessions", "home_sessions", "dc_sessions", "plug_in_soc_n"]
    counts += ["charging_samples", "driving_soc_n", "low_soc_n"]  # sums of counts may be decimals
    for col in counts:
        out[col] = out[col].fillna(0).astype("int64")
    days = (out["last_s"] - out["first_s"]).astype("float64") / 86400.0
    out["observed_days"] = days
    out["sessions_per_week"] = out["sessions"] * 7.0 / days.where(days >= p.min_observed_days)
    out["home_charge_share"] = _ratio(out["home_sessions"], out["typed_sessions"])
    out["public_charge_share"] = 1.0 - out["home_charge_share"]
    out["fast_charge_share"] = _ratio(out["dc_sessions"], out["typed_sessions"])
    out["plug_in_soc_mean"] = out["plug_in_soc_mean"].astype("float64")
    out["low_soc_share"] = _ratio(out["low_soc_n"], out["driving_soc_n"])
    out["driving_soc_mean"] = _ratio(out["driving_soc_sum"], out["driving_soc_n"])
    gain = out["soc_gain_pct"].astype("float64").fillna(0.0)
    out["energy_charged_kwh"] = gain / 100.0 * out["battery_kwh"].astype("float64")
    cols = [
        "vin",
        "period_start",
        "observed_days",
        "charging_samples",
        "sessions",
        "sessions_per_week",
        "home_charge_share",
        "public_charge_share",
        "fast_charge_share",
        "plug_in_soc_mean",
        "night_session_share",
        "driving_soc_mean",
        "low_soc_share",
        "energy_charged_kwh",
    ]
    return out[cols]
