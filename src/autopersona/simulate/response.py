"""The simulator's response model: how each simulated person answers a marketing message.

Given messages (vin or person, strategy, offer kind, discount, channel, send time) it draws
the funnel events of ``marketing_feedback`` — ``sent``, ``delivered``, ``exposed``,
``clicked``, ``converted`` (with the order value) and ``redeemed`` (a coupon was used) —
— and ``voice_reply`` (head unit), ``referral`` and the dwell time of exposures and clicks —
from each person's hidden truth in ``truth/persons.parquet`` and
``truth/vehicles_truth.parquet``.  This module and the scoring tests are the only readers
of the truth outside the simulator itself.

Per message (all probabilities independent given the person)
------------------------------------------------------------
* **delivered**: head_unit 0.92, app 0.97, sms 0.99, email 0.98.
* **exposed | delivered**: head_unit 0.80, app 0.55, sms 0.90, email 0.35; halved for the
  head unit between 22:00 and 07:00 local time (nobody in the car).
* **clicked | exposed**: ``clip(4 r_c, 0.01, 0.9)`` with ``r_c`` the person's
  responsiveness on channel ``c`` (``resp_head_unit`` …).
* **converted | clicked**: 0 if the person is not eligible for the offer kind (e.g. the
  ADAS pilot on a car without ADAS), else
  ``clip(a (1 - 0.6 s) (1 + 3 s d), 0, 0.95)`` with ``a`` the kind's affinity (below),
  ``s`` the price sensitivity and ``d`` the discount (0–1).  A person converts at most once
  per strategy: later messages of the same strategy can be exposed and clicked, not bought.
* **value**: the kind's list price for the vehicle tier (economy / mid / luxury), times
  ``1 - d`` and a log-normal(0, 0.1) factor; a conversion with a discount is also
  ``redeemed``.
* **dwell** (``dwell_s``): an exposure stays on screen ``b_c (0.5 + 10 r_c)`` seconds times a
  log-normal(0, 0.5) factor (``b_c``: head_unit 6, app 8, sms 5, email 12); a click reads
  the offer ``30 (0.5 + a)`` seconds times a log-normal(0, 0.5) factor.
* **voice_reply | exposed** (head unit only): ``clip(2 r_head_unit, 0.005, 0.5)``, ten
  seconds after the exposure.
* **referral | converted**: ``0.3 max(satisfaction, 0)`` (the hidden satisfaction in
  [-1, 1]); the referred customer's first order is worth the ``shop`` list price for the
  tier times a log-normal(0, 0.3) factor, one to fourteen days after the conversion.
* **organic** conversions (no message, e.g. the holdout) over a campaign of ``days``:
  ``1 - (1 - 0.004 a)^days`` for eligible persons, without discount.

Offer kinds (eligibility; affinity ``a``; list price in CNY)
-----------------------------------------------------------
``adas_pilot`` (ADAS car; vas_sensitivity; 3800/6800/12800), ``remote_parking`` (ADAS car;
0.7 vas; 1200/1800/2800), ``battery_care`` (battery car; 0.5 vas + 0.3 range anxiety;
399/599/899), ``charging`` (battery car; range anxiety; 60/80/120), ``connectivity``
(all; 0.6 vas; 199/299/399), ``maintenance`` (all; aftermarket propensity; 600/1200/2700),
``accessory`` (all; 0.8 aftermarket; 300/500/900), ``shop`` (all; ``1 - churn`` scaled by
shopping sessions; 150/250/400).

Every draw is a hash of ``(seed, message_id, step)``, so a message's answer does not depend
on which other messages are answered with it, and a seed reproduces everything.

Examples
--------
>>> import pandas as pd
>>> persons = pd.DataFrame({"person_id": ["P1"], "vin": ["V1"], "timezone": ["UTC"],
...     "resp_head_unit": [0.2], "resp_app": [0.1], "resp_sms": [0.05], "resp_email": [0.02],
...     "vas_sensitivity": [0.9], "aftermarket_propensity": [0.5], "price_sensitivity": [0.3],
...     "range_anxiety": [0.5], "churn_propensity": [0.2], "shop_sessions_per_week": [1.0],
...     "satisfaction": [0.5], "vehicle_tier": ["luxury"], "adas_equipped": [True],
...     "energy_type": ["BEV"]})
>>> msgs = pd.DataFrame({"message_id": [f"m{i}" for i in range(200)], "vin": "V1",
...     "strategy_id": "s", "offer_kind": "adas_pilot", "discount": 0.1, "channel": "head_unit",
...     "send_ts": pd.Timestamp("2026-03-02 10:00", tz="UTC")})
>>> ev = respond(msgs, persons, seed=1)
>>> ev.event_type.value_counts()["sent"], (ev.event_type == "converted").sum()
(np.int64(200), np.int64(1))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CHANNELS",
    "OFFER_KINDS",
    "TruthError",
    "load_truth",
    "offer_kind_for",
    "organic_conversions",
    "respond",
]

CHANNELS = ("head_unit", "app", "sms", "email")
DELIVERED = {"head_unit": 0.92, "app": 0.97, "sms": 0.99, "email": 0.98}
EXPOSED = {"head_unit": 0.80, "app": 0.55, "sms": 0.90, "email": 0.35}
DWELL_BASE_S = {"head_unit": 6.0, "app": 8.0, "sms": 5.0, "email": 12.0}
ORGANIC_DAILY = 0.004

Frame = pd.DataFrame
_Aff = Callable[[Frame], "np.ndarray[Any, np.dtype[np.float64]]"]
_Elig = Callable[[Frame], "np.ndarray[Any, np.dtype[np.bool_]]"]


def _all(p: Frame) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.ones(len(p), dtype=bool)


def _adas(p: Frame) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return p["adas_equipped"].fillna(False).to_numpy(dtype=bool)


def _battery(p: Frame) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return p["energy_type"].isin(["BEV", "PHEV", "EREV"]).to_numpy()


def _col(name: str, factor: float = 1.0) -> _Aff:
    def f(p: Frame) -> np.ndarray[Any, np.dtype[np.float64]]:
        return factor * p[name].to_numpy(dtype=float)

    return f


def _battery_care(p: Frame) -> np.ndarray[Any, np.dtype[np.float64]]:
    return 0.5 * p["vas_sensitivity"].to_numpy(float) + 0.3 * p["range_anxiety"].to_numpy(float)


def _shop(p: Frame) -> np.ndarray[Any, np.dtype[np.float64]]:
    s = np.clip(p["shop_sessions_per_week"].to_numpy(float) / 2.0, 0.1, 1.0)
    return (1 - p["churn_propensity"].to_numpy(float)) * s


#: kind -> (eligible, affinity, (economy, mid, luxury) list price in CNY)
OFFER_KINDS: dict[str, tuple[_Elig, _Aff, tuple[float, float, float]]] = {
    "adas_pilot": (_adas, _col("vas_sensitivity"), (3800.0, 6800.0, 12800.0)),
    "remote_parking": (_adas, _col("vas_sensitivity", 0.7), (1200.0, 1800.0, 2800.0)),
    "battery_care": (_battery, _battery_care, (399.0, 599.0, 899.0)),
    "charging": (_battery, _col("range_anxiety"), (60.0, 80.0, 120.0)),
    "connectivity": (_all, _col("vas_sensitivity", 0.6), (199.0, 299.0, 399.0)),
    "maintenance": (_all, _col("aftermarket_propensity"), (600.0, 1200.0, 2700.0)),
    "accessory": (_all, _col("aftermarket_propensity", 0.8), (300.0, 500.0, 900.0)),
    "shop": (_all, _shop, (150.0, 250.0, 400.0)),
}

_KIND_WORDS = (
    ("adas", "adas_pilot"),
    ("parking", "remote_parking"),
    ("battery", "battery_care"),
    ("charg", "charging"),
    ("bev", "charging"),
    ("connect", "connectivity"),
    ("brake", "maintenance"),
    ("service", "maintenance"),
    ("mainten", "maintenance"),
    ("tyre", "maintenance"),
    ("accessor", "accessory"),
)


def offer_kind_for(strategy_id: str) -> str:
    """The offer kind a strategy sells, from words in its id (``shop`` otherwise).

    >>> offer_kind_for("t2_adas_trial_end"), offer_kind_for("t2_brake_wear_commute")
    ('adas_pilot', 'maintenance')
    >>> offer_kind_for("lc_winback")
    'shop'
    """
    s = strategy_id.lower()
    for word, kind in _KIND_WORDS:
        if word in s:
            return kind
    return "shop"


class TruthError(ValueError):
    """The truth folder or a message cannot be used; names the file, column or row."""


_PERSON_COLS = [
    "person_id",
    "vin",
    "timezone",
    "resp_head_unit",
    "resp_app",
    "resp_sms",
    "resp_email",
    "vas_sensitivity",
    "aftermarket_propensity",
    "price_sensitivity",
    "range_anxiety",
    "churn_propensity",
    "shop_sessions_per_week",
    "satisfaction",
    "vehicle_tier",
]


def load_truth(truth_dir: str | Path) -> pd.DataFrame:
    """One row per simulated person: the propensities the response model needs."""
    d = Path(truth_dir)
    persons, vehicles = d / "persons.parquet", d / "vehicles_truth.parquet"
    for f in (persons, vehicles):
        if not f.is_file():
            raise TruthError(f"{f}: no such file (is {d} the truth/ folder of a simulation?)")
    p = pd.read_parquet(persons, columns=_PERSON_COLS)
    v = pd.read_parquet(vehicles, columns=["vin", "adas_equipped", "energy_type"])
    return p.merge(v, on="vin", how="left", validate="one_to_one")


def _uniform(seed: int, keys: pd.Series, step: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Deterministic U(0, 1) per key: a 64-bit hash of (seed, key, step)."""
    h = pd.util.hash_array(
        (keys.astype(str) + "|" + step).to_numpy(dtype=object),
        hash_key=f"{seed % 10**16:016d}",
    )
    out: np.ndarray[Any, np.dtype[np.float64]] = (h >> np.uint64(11)).astype(np.float64)
    return out / float(2**53)


def _lognormal(u1: np.ndarray[Any, Any], u2: np.ndarray[Any, Any], sd: float) -> Any:
    z = np.sqrt(-2 * np.log(np.maximum(u1, 1e-300))) * np.cos(2 * np.pi * u2)
    return np.exp(sd * z)


def _price(kind: str, tier: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]]:
    eco, mid, lux = OFFER_KINDS[kind][2]
    prices = tier.map({"economy": eco, "mid": mid, "luxury": lux}).fillna(mid)
    return np.asarray(prices, dtype=np.float64)


def _local_hour(ts: pd.Series, tz: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]]:
    out = np.empty(len(ts))
    for zone, idx in tz.fillna("UTC").groupby(tz.fillna("UTC")).groups.items():
        local = ts.loc[idx].dt.tz_convert(str(zone))
        out[ts.index.get_indexer(idx)] = (local.dt.hour + local.dt.minute / 60).to_numpy()
    return out


def respond(messages: pd.DataFrame, persons: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Feedback events for ``messages`` (``marketing_feedback`` columns).

    Parameters
    ----------
    messages
        ``message_id`` (unique; becomes ``decision_id``), ``vin`` or ``person_id``,
        ``strategy_id``, ``offer_kind`` (see :data:`OFFER_KINDS`; default from the strategy
        id), ``discount`` (0–1, default 0), ``channel`` and ``send_ts`` (UTC); optional ``arm``.
    persons
        :func:`load_truth`.
    seed
        Same seed and message, same answer.

    Raises
    ------
    TruthError
        A message for an unknown person, an unknown channel or offer kind, a missing column.
    """
    m = messages.reset_index(drop=True).copy()
    for col in ("message_id", "strategy_id", "channel", "send_ts"):
        if col not in m.columns:
            raise TruthError(f"messages: column {col!r} missing")
    if m["message_id"].duplicated().any():
        dup = m.loc[m["message_id"].duplicated(), "message_id"].iloc[0]
        raise TruthError(f"messages: message_id {dup!r} is not unique")
    key = "vin" if "vin" in m.columns else "person_id"
    if key not in m.columns:
        raise TruthError("messages: need a vin or person_id column")
    if "offer_kind" not in m.columns:
        m["offer_kind"] = m["strategy_id"].map(offer_kind_for)
    if "discount" not in m.columns:
        m["discount"] = 0.0
    if "arm" not in m.columns:
        m["arm"] = None
    bad_ch = ~m["channel"].isin(CHANNELS)
    if bad_ch.any():
        i = int(np.flatnonzero(bad_ch.to_numpy())[0])
        raise TruthError(f"messages row {i + 1}: unknown channel {m['channel'].iloc[i]!r}")
    bad_kind = ~m["offer_kind"].isin(list(OFFER_KINDS))
    if bad_kind.any():
        i = int(np.flatnonzero(bad_kind.to_numpy())[0])
        raise TruthError(f"messages row {i + 1}: unknown offer kind {m['offer_kind'].iloc[i]!r}")
    p = persons.set_index(key)
    missing = ~m[key].isin(p.index)
    if missing.any():
        i = int(np.flatnonzero(missing.to_numpy())[0])
        raise TruthError(f"messages row {i + 1}: {key} {m[key].iloc[i]!r} is not a known person")
    pp = p.loc[m[key]].reset_index()
    m["send_ts"] = pd.to_datetime(m["send_ts"], utc=True)
    mid = m["message_id"]
    steps_u = ("dlv", "exp", "clk", "cnv", "val1", "val2", "lag", "dw1", "dw2", "cd1", "cd2",
               "vr", "ref", "rv1", "rv2", "rlag")  # fmt: skip
    u = {s: _uniform(seed, mid, s) for s in steps_u}
    ch = m["channel"]
    p_dlv = ch.map(DELIVERED).to_numpy(float)
    p_exp = ch.map(EXPOSED).to_numpy(float)
    night = _local_hour(m["send_ts"], pp["timezone"])
    off_hours = (night >= 22) | (night < 7)
    p_exp = np.where((ch == "head_unit").to_numpy() & off_hours, p_exp / 2, p_exp)
    resp = np.choose(
        ch.map({c: i for i, c in enumerate(CHANNELS)}).to_numpy(int),
        [pp[f"resp_{c}"].to_numpy(float) for c in CHANNELS],
    )
    p_clk = np.clip(4 * resp, 0.01, 0.9)
    disc = m["discount"].fillna(0.0).to_numpy(float)
    sens = pp["price_sensitivity"].to_numpy(float)
    p_cnv = np.zeros(len(m))
    value = np.zeros(len(m))
    aff = np.zeros(len(m))
    for kind, idx in m.groupby("offer_kind").groups.items():
        rows = m.index.get_indexer(idx)
        elig_f, aff_f, _ = OFFER_KINDS[str(kind)]
        sub = pp.iloc[rows]
        a = aff_f(sub)
        aff[rows] = a
        pc = np.clip(a * (1 - 0.6 * sens[rows]) * (1 + 3 * sens[rows] * disc[rows]), 0, 0.95)
        p_cnv[rows] = np.where(elig_f(sub), pc, 0.0)
        value[rows] = _price(str(kind), sub["vehicle_tier"]) * (1 - disc[rows])
    value = value * _lognormal(u["val1"], u["val2"], 0.1)
    delivered = u["dlv"] < p_dlv
    exposed = delivered & (u["exp"] < p_exp)
    clicked = exposed & (u["clk"] < p_clk)
    converted = clicked & (u["cnv"] < p_cnv)
    # at most one purchase per person and strategy: keep the earliest converting message
    conv = m.loc[converted, [key, "strategy_id", "send_ts", "message_id"]]
    first = conv.sort_values(["send_ts", "message_id"]).drop_duplicates([key, "strategy_id"])
    converted &= m["message_id"].isin(first["message_id"]).to_numpy()
    lag_h = 0.5 + 47.5 * u["lag"]  # conversion within two days of the click
    is_hu = (ch == "head_unit").to_numpy()
    voice = exposed & is_hu & (u["vr"] < np.clip(2 * pp["resp_head_unit"].to_numpy(float),
                                                   0.005, 0.5))  # fmt: skip
    sat = np.clip(pp["satisfaction"].to_numpy(float), 0.0, 1.0)
    referral = converted & (u["ref"] < 0.3 * sat)
    exp_dwell = ch.map(DWELL_BASE_S).to_numpy(float) * (0.5 + 10 * resp)
    exp_dwell = np.minimum(exp_dwell * _lognormal(u["dw1"], u["dw2"], 0.5), 3600.0)
    clk_dwell = np.minimum(30 * (0.5 + aff) * _lognormal(u["cd1"], u["cd2"], 0.5), 3600.0)
    ref_value = _price("shop", pp["vehicle_tier"]) * _lognormal(u["rv1"], u["rv2"], 0.3)
    conv_s = 660 + lag_h * 3600
    ref_s = conv_s + (1 + 13 * u["rlag"]) * 86400  # one to fourteen days later
    nan = np.full(len(m), np.nan)

    def at(secs: float) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.full(len(m), secs)

    # (event type, which messages, seconds after the send, value, dwell) per step
    steps: list[tuple[str, np.ndarray[Any, Any], np.ndarray[Any, Any], Any, Any]] = [
        ("sent", np.ones(len(m), dtype=bool), at(0.0), nan, nan),
        ("delivered", delivered, at(5.0), nan, nan),
        ("exposed", exposed, at(600.0), nan, exp_dwell),
        ("voice_reply", voice, at(610.0), nan, nan),
        ("clicked", clicked, at(660.0), nan, clk_dwell),
        ("converted", converted, conv_s, value, nan),
        ("redeemed", converted & (disc > 0), conv_s, nan, nan),
        ("referral", referral, ref_s, ref_value, nan),
    ]
    out = []
    for name, mask, secs, val, dwell in steps:
        if not mask.any():
            continue
        sel = m.loc[mask]
        ts = sel["send_ts"] + pd.to_timedelta(secs[mask], unit="s")
        out.append(
            pd.DataFrame(
                {
                    "event_id": sel["message_id"].astype(str) + "-" + name,
                    "person_id": pp.loc[mask, "person_id"].to_numpy()
                    if key == "vin"
                    else sel["person_id"].to_numpy(),
                    "ts": ts.dt.floor("us").to_numpy(),
                    "campaign_id": sel["strategy_id"].to_numpy(),
                    "decision_id": sel["message_id"].astype(str).to_numpy(),
                    "arm": sel["arm"].to_numpy(),
                    "channel": sel["channel"].to_numpy(),
                    "event_type": name,
                    "value": val[mask],
                    "dwell_s": np.round(dwell[mask], 1),
                }
            )
        )
    ev = pd.concat(out, ignore_index=True)
    ev["ts"] = pd.to_datetime(ev["ts"], utc=True)
    return ev


def organic_conversions(
    units: pd.DataFrame,
    persons: pd.DataFrame,
    *,
    strategy_id: str,
    start: pd.Timestamp,
    days: int,
    seed: int,
    offer_kind: str | None = None,
) -> pd.DataFrame:
    """Conversions without any message over ``days`` from ``start`` (e.g. of a holdout).

    ``units`` has ``vin`` (or ``person_id``) and optionally ``arm``; returns ``converted``
    events (``channel`` ``none``, no ``decision_id``).
    """
    kind = offer_kind or offer_kind_for(strategy_id)
    if kind not in OFFER_KINDS:
        raise TruthError(f"unknown offer kind {kind!r}")
    key = "vin" if "vin" in units.columns else "person_id"
    u_df = units.reset_index(drop=True)
    pp = persons.set_index(key).loc[u_df[key]].reset_index()
    elig_f, aff_f, _ = OFFER_KINDS[kind]
    p_conv = np.where(elig_f(pp), 1 - (1 - ORGANIC_DAILY * aff_f(pp)) ** days, 0.0)
    ids = strategy_id + "|" + u_df[key].astype(str)
    hit = _uniform(seed, ids, "organic") < p_conv
    lag = _uniform(seed, ids, "organic_t") * days * 86400
    value = _price(kind, pp["vehicle_tier"]) * _lognormal(
        _uniform(seed, ids, "ov1"), _uniform(seed, ids, "ov2"), 0.1
    )
    start = pd.Timestamp(start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    sel = u_df.loc[hit]
    return pd.DataFrame(
        {
            "event_id": (ids[hit] + "|organic").to_numpy(),
            "person_id": pp.loc[hit, "person_id"].to_numpy(),
            "ts": (start + pd.to_timedelta(lag[hit], unit="s")).floor("us"),
            "campaign_id": strategy_id,
            "decision_id": None,
            "arm": sel["arm"].to_numpy() if "arm" in sel.columns else None,
            "channel": "none",
            "event_type": "converted",
            "value": value[hit],
            "dwell_s": np.nan,
        }
    )
