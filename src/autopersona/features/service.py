"""Vehicle and service features per vehicle and period (design brief §3), written once in Ibis.

Two kinds of feature:

* *in the period*: visits, spend, warnings sent and DTCs raised (by severity) — hash
  aggregates over the period's rows;
* *to date* (the vehicle's history up to the period end): maintenance interval, spend per
  visit, share of visits that followed a warning, warning-to-visit delay, accessory visits
  (discretionary purchases; also per year of the vehicle's age) and the DTCs still
  active.  These join each (vehicle, period) to the vehicle's earlier records with the
  condition ``record period <= period`` (the same as ``record time < period end``) and
  aggregate; means of consecutive gaps telescope to ``(last - first) / (n - 1)``, so no
  ordering is needed, and "still active" compares the last raise with the last clear.

History is read in full whatever ``since`` is (only the periods computed start there);
service tables are small.  A vehicle gets a row for a period when it has signals, a visit,
a warning or a DTC in it.  The dictionary ``dictionary/service.yaml`` defines each column.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from autopersona.features.driving import _bucket, _period, _since_filter
from autopersona.features.engines import Engine
from autopersona.features.frames import run, text_columns

__all__ = ["SEVERITIES", "SOURCES", "ServiceParams", "period_end", "service_features"]

SOURCES = ["service_records", "warnings", "dtc_events", "vehicles", "vehicle_signals"]
#: history each source needs before ``since`` (None: all of it; absent: none) — the
#: "to date" features read every earlier visit, warning and DTC
LOOKBACK: dict[str, timedelta | None] = {
    "service_records": None,
    "warnings": None,
    "dtc_events": None,
}
SEVERITIES = ("info", "warning", "critical")
KEY = ["vin", "period_start"]
DAY_S = 86400.0
#: the shortest vehicle age (years) a per-year rate divides by (a new car's first visit is
#: not a rate of 50 a year)
MIN_AGE_YEARS = 0.25


class ServiceParams(BaseModel):
    """Parameters of the service stage.

    Which visit types count as maintenance and which as discretionary accessory purchases.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    maintenance_types: tuple[str, ...] = ("maintenance",)
    accessory_types: tuple[str, ...] = ("accessory",)


def period_end(start: pd.Series, period: str) -> pd.Series:
    """Exclusive end of each period (naive UTC midnights).

    Examples
    --------
    >>> s = pd.Series(pd.to_datetime(["2026-01-05", "2026-01-31"]))
    >>> period_end(s, "week").dt.strftime("%Y-%m-%d").tolist()
    ['2026-01-12', '2026-02-07']
    >>> period_end(pd.Series(pd.to_datetime(["2026-01-01"])), "month").iloc[0]
    Timestamp('2026-02-01 00:00:00')
    """
    if period == "day":
        return start + pd.Timedelta(days=1)
    if period == "week":
        return start + pd.Timedelta(days=7)
    if period == "month":
        return start + pd.DateOffset(months=1)
    raise ValueError(f"unknown period {period!r}: use day, week or month")


def service_features(
    eng: Engine,
    *,
    period: str = "week",
    since: datetime | None = None,
    params: ServiceParams | None = None,
) -> pd.DataFrame:
    """Service features per (vin, period_start) for periods at or after ``since``.

    Parameters
    ----------
    eng
        Engine holding ``service_records``, ``warnings``, ``dtc_events``, ``vehicles`` and
        ``vehicle_signals``.
    period
        ``day``, ``week`` (ISO weeks, Monday 00:00 UTC) or ``month``.
    since
        Start of the first period to compute (history before it is still read).
    params
        Which visit types count as maintenance.

    Returns
    -------
    pandas.DataFrame
        One row per vehicle and period with the columns of ``dictionary/service.yaml``.
    """
    import ibis
    from ibis import _

    p = params or ServiceParams()
    svc_all = eng.table("service_records")
    svc_all = svc_all.mutate(
        period_start=_period(svc_all.ts, period), sec=svc_all.ts.epoch_seconds()
    )
    wrn_all = eng.table("warnings")
    wrn_all = wrn_all.mutate(period_start=_period(wrn_all.ts, period))
    dtc_all = eng.table("dtc_events")
    dtc_all = dtc_all.mutate(
        period_start=_period(dtc_all.ts, period), sec=dtc_all.ts.epoch_seconds()
    )
    sig = _since_filter(eng.table("vehicle_signals"), "ts", since)

    def recent(t: Any) -> Any:
        return _since_filter(t, "ts", since)

    svc, wrn, dtc = recent(svc_all), recent(wrn_all), recent(dtc_all)
    # signal days first (cheap integer buckets), then only their first instants truncated
    sig_days = sig.group_by(["vin", _bucket(eng, sig.ts, 86400).name("day")]).aggregate(
        t=sig.ts.min()
    )
    keys = ibis.union(
        sig_days.select("vin", _period(sig_days.t, period)),
        svc.select(*KEY),
        wrn.select(*KEY),
        dtc.select(*KEY),
        distinct=True,
    )

    # in the period
    visits = svc.group_by(KEY).aggregate(visits=_.count(), spend_cny=_.amount_cny.sum())
    warns = wrn.group_by(KEY).aggregate(warnings=_.count())
    raised = dtc.status == "active"
    dtcs = dtc.group_by(KEY).aggregate(
        **{f"dtc_{s}_raised": dtc.count(where=raised & (dtc.severity == s)) for s in SEVERITIES}
    )

    # to date: visits (with their warning's time) up to each period's end
    w = wrn_all.select(warning_id="warning_id", w_vin="vin", w_sec=wrn_all.ts.epoch_seconds())
    hist = svc_all.left_join(w, (svc_all.warning_id == w.warning_id) & (svc_all.vin == w.w_vin))
    # in seconds: divisions stay in pandas (Spark would make 86400.0 a decimal literal)
    delay = (hist.sec - hist.w_sec).cast("float64")
    hist = hist.select(
        "vin",
        h_period=hist.period_start,
        sec=hist.sec,
        day=hist.ts.truncate("D").epoch_seconds(),
        amount=hist.amount_cny,
        after_warning=hist.warning_id.notnull(),
        delay_s=ibis.ifelse(delay >= 0, delay, ibis.null("float64")),
        maint=hist.visit_type.isin(p.maintenance_types),
        accessory=hist.visit_type.isin(p.accessory_types),
    )
    k = keys.select(k_vin="vin", k_period="period_start")
    j = k.join(hist, (k.k_vin == hist.vin) & (hist.h_period <= k.k_period))
    todate = j.group_by(vin=j.k_vin, period_start=j.k_period).aggregate(
        visits_to_date=j.count(),
        accessory_visits_to_date=j.count(where=j.accessory),
        spend_to_date=j.amount.sum(),
        amount_n=j.amount.count(),
        after_warning_n=j.count(where=j.after_warning),
        warning_delay_s=j.delay_s.mean(),
        maint_first=j.day.min(where=j.maint),
        maint_last=j.day.max(where=j.maint),
        maint_days=j.day.nunique(where=j.maint),
    )
    # to date: codes whose last raise is later than their last clear
    d = dtc_all.select("vin", "code", "sec", "status", d_period="period_start")
    jd = k.join(d, (k.k_vin == d.vin) & (d.d_period <= k.k_period))
    per_code = jd.group_by(vin=jd.k_vin, period_start=jd.k_period, code=jd.code).aggregate(
        last_on=jd.sec.max(where=jd.status == "active"),
        last_off=jd.sec.max(where=jd.status == "cleared"),
    )
    on = per_code.last_on.notnull() & (
        per_code.last_off.isnull() | (per_code.last_on > per_code.last_off)
    )
    active = per_code.group_by(KEY).aggregate(active_dtcs=per_code.count(where=on))

    out = run(eng, keys)
    for part in (visits, warns, dtcs, todate, active):
        out = out.merge(run(eng, part), on=KEY, how="left")
    reg = run(eng, eng.table("vehicles").select("vin", "registration_date"))
    out = out.merge(reg, on="vin", how="left")
    return text_columns(_finish(out, period).sort_values(KEY, kind="stable").reset_index(drop=True))


def _finish(df: pd.DataFrame, period: str) -> pd.DataFrame:
    out = df.copy()
    counts = [
        "visits",
        "warnings",
        *(f"dtc_{s}_raised" for s in SEVERITIES),
        "visits_to_date",
        "accessory_visits_to_date",
        "amount_n",
        "after_warning_n",
        "maint_days",
        "active_dtcs",
    ]
    for col in counts:
        out[col] = out[col].fillna(0).astype("int64")
    out["spend_cny"] = out["spend_cny"].astype("float64").fillna(0.0)
    end = period_end(pd.to_datetime(out["period_start"]), period)
    reg = pd.to_datetime(out["registration_date"])
    if getattr(reg.dt, "tz", None) is not None:
        reg = reg.dt.tz_convert("UTC").dt.tz_localize(None)
    out["vehicle_age_years"] = (end - reg).dt.total_seconds() / (365.25 * 86400.0)
    n = out["maint_days"]
    span = (out["maint_last"] - out["maint_first"]).astype("float64") / DAY_S
    out["maintenance_interval_days"] = span / (n - 1).where(n >= 2)
    amount_n = out["amount_n"].astype("float64")
    out["spend_per_visit_cny"] = out["spend_to_date"].astype("float64") / amount_n.where(
        amount_n > 0
    )
    vtd = out["visits_to_date"].astype("float64")
    out["after_warning_share"] = out["after_warning_n"] / vtd.where(vtd > 0)
    out["warning_delay_days"] = out["warning_delay_s"].astype("float64") / DAY_S
    years = out["vehicle_age_years"].clip(lower=MIN_AGE_YEARS)
    out["accessory_visits_per_year"] = out["accessory_visits_to_date"] / years
    cols = [
        "vin",
        "period_start",
        "vehicle_age_years",
        "visits",
        "spend_cny",
        "warnings",
        "visits_to_date",
        "maintenance_interval_days",
        "spend_per_visit_cny",
        "after_warning_share",
        "warning_delay_days",
        "accessory_visits_to_date",
        "accessory_visits_per_year",
        *(f"dtc_{s}_raised" for s in SEVERITIES),
        "active_dtcs",
    ]
    return out[cols]
