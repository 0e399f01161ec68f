"""The closed loop on a simulated fleet: target, send, answer, measure — and alert.

One experiment, three arms, assigned by a hash of ``(seed, experiment, vin)``:

* **precision**: the vehicles of this arm whose profile matches the audience expression
  (tag expression language over master data and current profile tags) get the campaign;
* **baseline** (untargeted): the same number of messages per arm member, sent to randomly
  chosen (hash-ranked) members of this arm, with no targeting;
* **holdout**: nothing is sent.

Each recipient gets ``waves`` messages of the strategy; the simulator's response model
(:mod:`autopersona.simulate.response`) answers them from the hidden truth, and every unit
may also buy without a message (organic conversions).  Every unit gets an ``assigned``
event with its arm, so the holdout is visible in the feedback table too.  The decisions go to the decision log
``strategy_decisions`` and the answers to ``marketing_feedback``, so the funnel metrics read
them like any real campaign.

Measured (unit = vehicle, outcome = converted during the campaign):

* **headline**: conversion of the precision recipients minus that of the baseline
  recipients (same send volume), difference in proportions with a Wald interval;
* **incrementality**: each messaged arm against the holdout (every member, intent to
  treat), with the sample-ratio check, through :func:`autopersona.evaluation.analyze.analyze`.

Power: the headline compares a few dozen recipients per arm on a fleet of a few hundred
vehicles, so its interval excludes 0 for most seeds, not all — over 30 loop seeds, 70 % on
160 simulated vehicles and 87 % on 250 (default settings; mean lift about +0.27 to +0.29).
:meth:`LoopResult.mde` gives the smallest lift the comparison detects with 80 % power.

:func:`conversion_alerts` raises an alert for a strategy whose conversion per message is
significantly below its expected rate (one-sided exact binomial test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from autopersona.evaluation import experiment as ex

if TYPE_CHECKING:
    from rich.console import Console

    from autopersona.store.warehouse import Warehouse

__all__ = [
    "Alert",
    "LoopConfig",
    "LoopResult",
    "assign_arms",
    "conversion_alerts",
    "demo_stage",
    "expected_rates",
    "profile_frame",
    "run_loop",
    "truth_as_stored",
]

ARMS = ("precision", "baseline", "holdout")


@dataclass(frozen=True)
class LoopConfig:
    """What the closed-loop experiment sends, to whom, and how it is split."""

    strategy_id: str = "t2_adas_trial_end"
    offer_kind: str = "adas_pilot"
    audience: str = "adas_equipped and msrp_cny >= 200000"
    channel: str = "head_unit"
    discount: float = 0.1
    waves: int = 8
    interval_days: int = 2
    shares: tuple[float, float, float] = (0.45, 0.45, 0.1)
    start: datetime = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    experiment_id: str = "closed-loop"
    alpha: float = 0.05


@dataclass
class LoopResult:
    """The experiment's data and its analysis."""

    config: LoopConfig
    seed: int
    units: pd.DataFrame  # vin, arm, recipient, converted, value, person_id
    messages: pd.DataFrame
    events: pd.DataFrame
    headline: ex.PropDiff  # precision recipients - baseline recipients
    analysis: dict[str, Any]  # arms vs holdout (intent to treat), SRM
    audience_share: float
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-able headline figures."""
        h = self.headline
        return {
            "seed": self.seed,
            "strategy_id": self.config.strategy_id,
            "audience": self.config.audience,
            "units": {a: int((self.units["arm"] == a).sum()) for a in ARMS},
            "recipients": {
                a: int(self.units.loc[self.units["arm"] == a, "recipient"].sum()) for a in ARMS
            },
            "messages": len(self.messages),
            "precision_rate": h.rate_t,
            "baseline_rate": h.rate_c,
            "lift": h.diff,
            "lift_ci": [h.ci_low, h.ci_high],
            "lift_p_value": h.p_value,
            "relative_lift": h.relative if math.isfinite(h.relative) else None,
            "srm_p_value": self.analysis["srm"]["p_value"],
            "mde": self.mde(),
        }

    def mde(self, target_power: float = 0.8) -> float | None:
        """Smallest lift the headline comparison detects with ``target_power`` (normal approx.)."""
        h = self.headline
        if not 0 < h.rate_c < 1:
            return None
        return ex.mde_proportion(h.rate_c, h.n_t, h.alpha, target_power, h.n_c / h.n_t)


def profile_frame(wh: Warehouse) -> pd.DataFrame:
    """One row per vehicle: master data (``vehicles``) and current vin-level profile tags."""
    df = wh.frame("SELECT * FROM vehicles ORDER BY vin")
    tables = {r[0] for r in wh.sql("SELECT table_name FROM information_schema.tables")}
    if "tag_assignments" in tables:
        tags = wh.frame(
            "SELECT entity AS vin, tag_id, value FROM tag_assignments "
            "WHERE valid_to IS NULL AND entity_type = 'vin'"
        )
        if not tags.empty:
            wide = tags.pivot_table(index="vin", columns="tag_id", values="value", aggfunc="first")
            wide = wide.drop(columns=[c for c in wide.columns if c in df.columns])
            df = df.merge(wide.reset_index(), on="vin", how="left")
    return df


def _hash_u(seed: int, salt: str, keys: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]]:
    h = pd.util.hash_array(
        (salt + "|" + keys.astype(str)).to_numpy(dtype=object), hash_key=f"{seed % 10**16:016d}"
    )
    out: np.ndarray[Any, np.dtype[np.float64]] = (h >> np.uint64(11)).astype(np.float64)
    return out / float(2**53)


def assign_arms(
    vins: pd.Series, *, seed: int, experiment_id: str, shares: tuple[float, ...]
) -> pd.Series:
    """Deterministic hashed assignment to :data:`ARMS` in proportion to ``shares``.

    >>> a = assign_arms(pd.Series([f"V{i}" for i in range(3000)]), seed=1,
    ...                 experiment_id="x", shares=(0.4, 0.4, 0.2))
    >>> a.value_counts(normalize=True).round(1).sort_index().to_dict()
    {'baseline': 0.4, 'holdout': 0.2, 'precision': 0.4}
    """
    s = np.asarray(shares, dtype=float)
    if s.shape != (len(ARMS),) or (s <= 0).any():
        raise ValueError(f"shares: one positive share per arm {ARMS}")
    edges = np.cumsum(s / s.sum())
    u = _hash_u(seed, experiment_id, vins)
    idx = np.minimum(np.searchsorted(edges, u, side="right"), len(ARMS) - 1)
    return pd.Series(np.asarray(ARMS, dtype=object)[idx], index=vins.index, name="arm")


def _decisions(msgs: pd.DataFrame, cfg: LoopConfig) -> list[Any]:
    from autopersona.strategy.decision import Decision, idempotency_key

    out = []
    for r in msgs.to_dict("records"):
        key = f"{cfg.experiment_id}:{r['wave']}"
        out.append(
            Decision(
                decision_id=str(r["message_id"]),
                idempotency_key=idempotency_key(cfg.strategy_id, str(r["vin"]), key),
                person_id=str(r["person_id"]),
                vin=str(r["vin"]),
                strategy_id=cfg.strategy_id,
                trigger="schedule",
                trigger_key=key,
                channel=cfg.channel,
                status="send",
                guard=None,
                reason=f"closed-loop experiment {cfg.experiment_id}, arm {r['arm']}",
                arm="treatment" if r["arm"] == "precision" else "baseline",
                priority=50,
                expected_value=0.0,
                title=cfg.strategy_id,
                body="",
                offer={"kind": cfg.offer_kind, "discount_pct": round(100 * cfg.discount)},
                created_at=pd.Timestamp(r["send_ts"]).to_pydatetime(),
            )
        )
    return out


def truth_as_stored(persons: pd.DataFrame, stored_vins: pd.Series) -> pd.DataFrame:
    """The simulator's truth with its VINs as the warehouse names vehicles.

    With pseudonymisation on (the default) the warehouse holds keyed-HMAC pseudonyms; the
    response model plays the customers' side, so, like a scoring harness, it holds the key
    and pseudonymises the truth's VINs with it.  A warehouse in clear leaves them as they are.

    >>> from autopersona.privacy.pseudo import Pseudonymiser
    >>> from autopersona.settings import Settings
    >>> t = pd.DataFrame({"vin": ["LSVAA4182E2123456"], "person_id": ["p1"]})
    >>> truth_as_stored(t, pd.Series(["LSVAA4182E2123456"]))["vin"].tolist()
    ['LSVAA4182E2123456']
    >>> pv = Pseudonymiser(Settings().pseudonym_key.get_secret_value()).pseudonym("vin", t.vin[0])
    >>> truth_as_stored(t, pd.Series([pv]))["vin"].tolist() == [pv]
    True
    """
    from autopersona.privacy.pseudo import from_settings, is_pseudonym

    stored = stored_vins.dropna().astype(str)
    if stored.empty or not stored.map(is_pseudonym).any():
        return persons
    if persons["vin"].dropna().astype(str).map(is_pseudonym).all():
        return persons
    p = from_settings()
    out = persons.copy()
    out["vin"] = [p.pseudonym("vin", v) if isinstance(v, str) else v for v in out["vin"]]
    return out


def run_loop(
    wh: Warehouse,
    persons: pd.DataFrame,
    config: LoopConfig | None = None,
    *,
    seed: int = 0,
    write: bool = True,
) -> LoopResult:
    """Run the three-arm experiment on the fleet in ``wh``; see the module doc.

    Parameters
    ----------
    wh
        Warehouse with the ``vehicles`` table (and optionally profile tags).
    persons
        The simulator's truth (:func:`autopersona.simulate.response.load_truth`); only the
        response model reads it.
    config, seed
        Experiment settings; the same seed gives the same assignment, answers and result.
    write
        Append the decisions to ``strategy_decisions`` and the events to
        ``marketing_feedback``; rerunning the same experiment and seed adds nothing twice.

    Persons are named as the warehouse knows them, never by the simulator's hidden ids: the
    decisions and feedback of a vehicle carry its identity-linked person
    (:func:`autopersona.identity.resolve.vin_person`; the VIN when linkage has not run),
    so feedback joins the profiles and the vehicle tags' labels through the identity tables.
    """
    from autopersona.simulate.response import organic_conversions, respond
    from autopersona.tags.expr import parse

    cfg = config or LoopConfig()
    prof = profile_frame(wh)
    persons = truth_as_stored(persons, prof["vin"])
    prof = prof[prof["vin"].isin(persons["vin"])].reset_index(drop=True)
    if len(prof) < 10:
        raise ValueError(f"the warehouse has {len(prof)} simulated vehicles; need at least 10")
    expr = parse(cfg.audience)
    missing = sorted(set(expr.names()) - set(prof.columns))
    if missing:
        raise ValueError(
            f"audience {cfg.audience!r}: unknown name(s) {', '.join(missing)} "
            f"(profile columns: {', '.join(map(str, prof.columns))})"
        )
    match = expr.evaluate(prof).fillna(False).to_numpy(dtype=bool)
    units = pd.DataFrame({"vin": prof["vin"], "match": match})
    units["arm"] = assign_arms(
        units["vin"], seed=seed, experiment_id=cfg.experiment_id, shares=cfg.shares
    )
    units["recipient"] = (units["arm"] == "precision") & units["match"]
    n_p = int(units["recipient"].sum())
    sizes = units["arm"].value_counts()
    n_b = min(
        round(n_p * int(sizes.get("baseline", 0)) / max(int(sizes.get("precision", 1)), 1)),
        int(sizes.get("baseline", 0)),
    )
    rank = pd.Series(_hash_u(seed, cfg.experiment_id + "|baseline", units["vin"]))
    base_idx = rank[units["arm"] == "baseline"].sort_values().index[:n_b]
    units.loc[base_idx, "recipient"] = True
    rec = units[units["recipient"]]
    start = pd.Timestamp(cfg.start)
    msgs = pd.concat(
        [
            pd.DataFrame(
                {
                    "message_id": cfg.experiment_id + "-" + rec["vin"] + f"-w{w}",
                    "vin": rec["vin"],
                    "arm": rec["arm"],
                    "wave": w,
                    "strategy_id": cfg.strategy_id,
                    "offer_kind": cfg.offer_kind,
                    "discount": cfg.discount,
                    "channel": cfg.channel,
                    "send_ts": start + pd.Timedelta(days=w * cfg.interval_days),
                }
            )
            for w in range(cfg.waves)
        ],
        ignore_index=True,
    )
    days = cfg.waves * cfg.interval_days
    answered = respond(msgs, persons, seed=seed)
    organic = organic_conversions(
        units[["vin", "arm"]].merge(persons[["vin", "person_id"]], on="vin")[["vin", "arm"]],
        persons,
        strategy_id=cfg.strategy_id,
        start=start,
        days=days,
        seed=seed,
        offer_kind=cfg.offer_kind,
    )
    pid = units["vin"].map(persons.set_index("vin")["person_id"])
    assigned = pd.DataFrame(
        {
            "event_id": cfg.experiment_id + "-" + units["vin"] + "-assigned",
            "person_id": pid,
            "ts": pd.Series(start, index=units.index).dt.floor("us"),
            "campaign_id": cfg.strategy_id,
            "decision_id": None,
            "arm": units["arm"],
            "channel": "none",
            "event_type": "assigned",
            "value": np.nan,
        }
    )
    events = pd.concat([assigned, answered, organic], ignore_index=True)
    vin_of = persons.set_index("person_id")["vin"]
    events["vin"] = events["person_id"].map(vin_of)
    conv = events[events["event_type"] == "converted"]
    per_vin = conv.groupby("vin")["value"].agg(["size", "sum"])
    units["converted"] = units["vin"].map(per_vin["size"]).fillna(0).gt(0).astype(int)
    units["value"] = units["vin"].map(per_vin["sum"]).fillna(0.0)
    # from here on persons are the warehouse's (identity-linked), not the simulator's
    from autopersona.identity.resolve import vin_person

    units["person_id"] = vin_person(wh, units["vin"]).to_numpy()
    events["person_id"] = events["vin"].map(units.set_index("vin")["person_id"])
    events = events.drop(columns="vin")
    msgs = msgs.merge(units[["vin", "person_id"]], on="vin", how="left")
    r_p = units[(units["arm"] == "precision") & units["recipient"]]
    r_b = units[(units["arm"] == "baseline") & units["recipient"]]
    if len(r_p) == 0 or len(r_b) == 0:
        raise ValueError(
            f"audience {cfg.audience!r} selects no recipient in one arm "
            f"(precision {len(r_p)}, baseline {len(r_b)}); use a larger fleet or audience"
        )
    headline = ex.diff_proportions(
        int(r_p["converted"].sum()),
        len(r_p),
        int(r_b["converted"].sum()),
        len(r_b),
        alpha=cfg.alpha,
    )
    from autopersona.evaluation.analyze import analyze

    analysis = analyze(
        units,
        arm="arm",
        control="holdout",
        outcomes=[("converted", "rate"), ("value", "mean")],
        alpha=cfg.alpha,
        planned=[cfg.shares[2], cfg.shares[1], cfg.shares[0]],  # holdout, baseline, precision
        source="closed loop",
    )
    if write:
        from autopersona.strategy.decision import (
            DECISIONS_TABLE,
            create_decision_table,
            write_decisions,
        )

        create_decision_table(wh.con)
        known = {
            r[0]
            for r in wh.sql(
                f"SELECT decision_id FROM {DECISIONS_TABLE} WHERE strategy_id = ?",
                [cfg.strategy_id],
            )
        }
        write_decisions(wh.con, _decisions(msgs[~msgs["message_id"].isin(known)], cfg))
        _append_feedback(wh, events)
    return LoopResult(
        cfg, seed, units, msgs, events, headline, analysis, float(units["match"].mean())
    )


def _append_feedback(wh: Warehouse, events: pd.DataFrame) -> None:
    cols = [c.name for c in wh.contracts["marketing_feedback"].columns]
    ev = events[cols].copy()
    wh.con.register("_loop_feedback", ev)
    try:
        names = ", ".join(f'"{c}"' for c in cols)
        # a rerun of the same experiment and seed gives the same events: add only new ones
        wh.con.execute(
            f"INSERT INTO marketing_feedback ({names}) SELECT {names} FROM _loop_feedback "
            "WHERE event_id NOT IN (SELECT event_id FROM marketing_feedback)"
        ).fetchall()
    finally:
        wh.con.unregister("_loop_feedback")


@dataclass(frozen=True)
class Alert:
    """A strategy converting significantly below its expected rate."""

    strategy_id: str
    sent: int
    converted: int
    rate: float
    expected: float
    p_value: float
    message: str


def expected_rates() -> dict[str, float]:
    """Expected conversion per message of every catalogued strategy (its ``response_rate``)."""
    from autopersona.strategy import load_strategies

    return {sid: float(s.response_rate) for sid, s in load_strategies().strategies.items()}


def conversion_alerts(
    observed: pd.DataFrame | Warehouse,
    expected: dict[str, float] | None = None,
    *,
    alpha: float = 0.01,
    min_sent: int = 30,
) -> list[Alert]:
    """Strategies whose conversions per message fall significantly below ``expected``.

    ``expected`` defaults to the strategy catalogue's ``response_rate``s
    (:func:`expected_rates`).  ``observed`` is a frame with ``strategy_id``, ``sent``,
    ``converted`` or a warehouse
    (counted from ``marketing_feedback``: ``sent`` and ``converted`` events with a
    ``decision_id`` per ``campaign_id``).  A strategy alerts when the one-sided exact
    binomial test of ``converted`` out of ``sent`` against its expected rate gives a p-value
    below ``alpha`` (strategies with fewer than ``min_sent`` messages are not judged).

    >>> obs = pd.DataFrame({"strategy_id": ["a", "b"], "sent": [500, 500], "converted": [10, 30]})
    >>> [a.strategy_id for a in conversion_alerts(obs, {"a": 0.06, "b": 0.06})]
    ['a']
    """
    from scipy import stats

    if expected is None:
        expected = expected_rates()
    if isinstance(observed, pd.DataFrame):
        obs = observed
    else:
        obs = observed.frame(
            """SELECT campaign_id AS strategy_id,
                      count(DISTINCT decision_id) FILTER (WHERE event_type = 'sent') AS sent,
                      count(DISTINCT decision_id) FILTER (WHERE event_type = 'converted')
                        AS converted
               FROM marketing_feedback WHERE decision_id IS NOT NULL GROUP BY 1 ORDER BY 1"""
        )
    alerts = []
    for r in obs.to_dict("records"):
        sid = str(r["strategy_id"])
        if sid not in expected or int(r["sent"]) < min_sent:
            continue
        n, k, p0 = int(r["sent"]), int(r["converted"]), float(expected[sid])
        p = float(stats.binomtest(k, n, p0, alternative="less").pvalue)
        if p < alpha:
            alerts.append(
                Alert(
                    sid,
                    n,
                    k,
                    k / n,
                    p0,
                    p,
                    f"{sid}: conversion {k / n:.2%} of {n:,} messages is below the expected "
                    f"{p0:.2%} (one-sided binomial p = {p:.2g})",
                )
            )
    return alerts


def _pct(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.1%}"


def _truth_beside(wh: Warehouse) -> Path | None:
    if wh.path == ":memory:":
        return None
    base = Path(wh.path).parent
    for cand in (base / "fleet" / "truth", base / "truth"):
        if (cand / "persons.parquet").is_file():
            return cand
    return None


def demo_stage(
    console: Console, wh: Warehouse, truth_dir: Path | None = None, seed: int = 42
) -> LoopResult | None:
    """Run the closed loop on the demo fleet and print the headline (lift with its CI).

    The truth folder defaults to ``fleet/truth`` beside the warehouse file (the demo's
    layout); without one the stage says so and returns None.
    """
    from rich.table import Table

    from autopersona.evaluation.funnel import funnel_metrics
    from autopersona.simulate.response import load_truth

    console.rule("[bold]Feedback[/] · precision vs untargeted baseline vs holdout")
    truth = truth_dir or _truth_beside(wh)
    if truth is None:
        console.print("no simulator truth beside the warehouse: closed loop skipped")
        return None
    res = run_loop(wh, load_truth(truth), seed=seed)
    s = res.summary()
    f = funnel_metrics(wh, by=("strategy", "arm"), strategies=[res.config.strategy_id])
    t = Table(title=f"Funnel of {res.config.strategy_id} ({s['messages']:,} messages)")
    for col in ("arm", "sent", "delivered", "exposed", "clicked", "converted", "CTR", "CVR"):
        t.add_column(col, justify="left" if col == "arm" else "right")
    for r in f.itertuples(index=False):
        t.add_row(
            str(r.arm),
            f"{r.sent:,}",
            f"{r.delivered:,}",
            f"{r.exposed:,}",
            f"{r.clicked:,}",
            f"{r.converted:,}",
            _pct(r.ctr),
            _pct(r.cvr),
        )
    console.print(t)
    h = res.headline
    console.print(
        f"audience [bold]{res.config.audience}[/] ({res.audience_share:.0%} of the fleet); "
        f"units precision {s['units']['precision']}, baseline {s['units']['baseline']}, "
        f"holdout {s['units']['holdout']}; recipients {s['recipients']['precision']} vs "
        f"{s['recipients']['baseline']}"
    )
    console.print(
        f"[bold]headline[/]: precision converts {h.rate_t:.1%} of its recipients, the "
        f"untargeted baseline {h.rate_c:.1%} — lift {h.diff:+.1%} "
        f"(95% CI {h.ci_low:+.1%} to {h.ci_high:+.1%}, p = {h.p_value:.2g})"
    )
    conv = next(o for o in res.analysis["outcomes"] if o["outcome"] == "converted")
    for c in conv["comparisons"]:
        console.print(
            f"  {c['arm']} arm vs holdout (every member): {c['diff']:+.1%} "
            f"[{c['ci_low']:+.1%}, {c['ci_high']:+.1%}], Holm p = {c['p_adjusted']:.2g}"
        )
    for alert in conversion_alerts(wh):
        console.print(f"[yellow]alert[/] {alert.message}")
    return res
