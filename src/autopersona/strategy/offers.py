"""Offer and coupon arms of a strategy chosen by Thompson sampling on the feedback.

A strategy may declare ``offer_arms`` (:class:`autopersona.strategy.spec.OfferArm`).  In the
batch run (``autopersona strategy run``) every message of such a strategy that is sent or
held gets one arm:

* **posterior**: per arm a ``Beta(1 + conversions, 1 + messages - conversions)`` from the
  feedback — messages are the strategy's logged decisions whose offer names the arm
  (``offer_arm``) and that have a ``sent`` event in ``marketing_feedback``; conversions are
  those of them with a ``converted`` event (joined by ``decision_id``);
* **choice**: one draw per arm and message, the largest wins
  (:class:`autopersona.evaluation.bandit.BetaThompson`), so arms that convert take more of
  the sends as the evidence grows while the others keep being explored;
* the decision's offer becomes the strategy's offer merged with the arm's, plus
  ``offer_arm`` and ``offer_propensity`` (the Monte Carlo probability that Thompson
  sampling picks that arm, for off-policy evaluation of logged data); an arm with its own
  title and body replaces the rendered content.

Control-arm decisions (held out, never sent) keep the strategy's offer.  The draws are
seeded by (seed, strategy, as-of time), so a rerun of the same batch picks the same arms.

The live engine (:class:`LiveOfferArms`, used by
:meth:`autopersona.strategy.engine.StrategyEngine.on_events`) applies the same rules to each
message as it is decided: the posterior of a strategy is read from the feedback when first
needed and again every ``refresh_s`` seconds (conversions arrive hours or days after a send,
so a minute-old posterior loses nothing), the arm probabilities are estimated once per
refresh, and each message gets one draw per arm, seeded by its idempotency key (the same
message always gets the same arm).

Examples
--------
>>> import pandas as pd
>>> counts = pd.DataFrame({"arm": ["a", "b"], "messages": [100, 100], "conversions": [5, 30]})
>>> p = posterior(["a", "b", "c"], counts, seed=1)
>>> {k: round(v, 3) for k, v in p.posterior_mean().items()}
{'a': 0.059, 'b': 0.304, 'c': 0.5}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import string
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from autopersona.evaluation.bandit import BetaThompson

if TYPE_CHECKING:
    from autopersona.strategy.decision import Decision
    from autopersona.strategy.spec import StrategyCatalogue, StrategySpec

__all__ = ["LiveOfferArms", "arm_counts", "assign_offer_arms", "posterior"]


def arm_counts(con: Any, strategy_id: str) -> pd.DataFrame:
    """``arm, messages, conversions`` of a strategy's offer arms from the feedback."""
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    empty = pd.DataFrame({"arm": [], "messages": [], "conversions": []})
    if not {"strategy_decisions", "marketing_feedback"} <= tables:
        return empty
    rows = con.execute(
        """WITH d AS (
               SELECT decision_id, json_extract_string(offer, '$.offer_arm') AS arm
               FROM strategy_decisions WHERE strategy_id = ? AND offer IS NOT NULL
           ), f AS (
               SELECT decision_id,
                      bool_or(event_type = 'sent') AS sent,
                      bool_or(event_type = 'converted') AS converted
               FROM marketing_feedback WHERE decision_id IN (SELECT decision_id FROM d)
               GROUP BY 1
           )
           SELECT d.arm, count(*) AS messages, count(*) FILTER (WHERE f.converted)
           FROM d JOIN f USING (decision_id)
           WHERE d.arm IS NOT NULL AND f.sent GROUP BY 1 ORDER BY 1""",
        [strategy_id],
    ).fetchall()
    if not rows:
        return empty
    return pd.DataFrame(rows, columns=["arm", "messages", "conversions"])


def posterior(arms: Sequence[str], counts: pd.DataFrame, *, seed: int | None) -> BetaThompson:
    """A Beta-Thompson policy over ``arms`` with the observed ``counts`` (unknown arms: none)."""
    ts = BetaThompson(list(arms), seed=seed, n_mc=2000)
    for arm, n, k in zip(counts["arm"], counts["messages"], counts["conversions"], strict=True):
        if str(arm) in ts.arms:
            i = ts.arms.index(str(arm))
            ts.successes[i] += float(k)
            ts.failures[i] += float(n) - float(k)
    return ts


def _seed(seed: int, strategy_id: str, as_of: datetime | None) -> int:
    text = f"{seed}|{strategy_id}|{as_of.isoformat() if as_of else ''}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _render(text: str, fields: dict[str, Any]) -> str:
    mapping = {k: "" if v is None else str(v) for k, v in fields.items()}
    return string.Template(text).safe_substitute(mapping)


def _apply(d: Decision, spec: StrategySpec, arm_id: str, propensity: float) -> Decision:
    arm = next(a for a in spec.offer_arms if a.id == arm_id)
    offer = {**spec.offer, **arm.offer, "offer_arm": arm.id}
    offer["offer_propensity"] = round(propensity, 6)
    fields: dict[str, Any] = {f"offer_{k}": v for k, v in {**spec.offer, **arm.offer}.items()}
    fields.update(person_id=d.person_id, vin=d.vin, strategy_id=d.strategy_id,
                  trigger_key=d.trigger_key)  # fmt: skip
    title = _render(arm.title, fields) if arm.title is not None else d.title
    body = _render(arm.body, fields) if arm.body is not None else d.body
    return dataclasses.replace(d, offer=offer, title=title, body=body)


def assign_offer_arms(
    con: Any,
    catalogue: StrategyCatalogue,
    decisions: Sequence[Decision],
    *,
    as_of: datetime | None = None,
    seed: int = 0,
) -> tuple[list[Decision], dict[str, dict[str, Any]]]:
    """Give every sent or held message of a strategy with offer arms its arm (module doc).

    Returns the decisions (others unchanged, same order) and, per strategy with arms, the
    posterior means, the evidence and how many messages each arm got in this batch.
    """
    out = list(decisions)
    summary: dict[str, dict[str, Any]] = {}
    by_strategy: dict[str, list[int]] = {}
    for i, d in enumerate(out):
        if _eligible(catalogue, d) is not None:
            by_strategy.setdefault(d.strategy_id, []).append(i)
    for sid, idx in by_strategy.items():
        spec = catalogue.strategies[sid]
        counts = arm_counts(con, sid)
        ts = posterior([a.id for a in spec.offer_arms], counts, seed=_seed(seed, sid, as_of))
        given = dict.fromkeys(ts.arms, 0)
        for i in sorted(idx, key=lambda j: out[j].idempotency_key):
            pick = ts.select()
            given[pick.arm] += 1
            out[i] = _apply(out[i], spec, pick.arm, pick.propensity)
        summary[sid] = {
            "posterior_mean": ts.posterior_mean(),
            "evidence": json.loads(counts.to_json(orient="records")),
            "assigned": given,
        }
    return out, summary


def _eligible(catalogue: StrategyCatalogue, d: Decision) -> StrategySpec | None:
    """The strategy of ``d`` when the message gets an offer arm (sent or held, not control)."""
    spec = catalogue.strategies.get(d.strategy_id)
    if spec is None or not spec.offer_arms or d.status not in ("send", "held"):
        return None
    if d.arm == "control" or "offer_arm" in d.offer:
        return None
    return spec


@dataclasses.dataclass
class _LivePolicy:
    read_at: float
    arms: list[str]
    alpha: npt.NDArray[np.float64]
    beta: npt.NDArray[np.float64]
    wins: npt.NDArray[np.float64]  # Monte Carlo wins of each arm under the posterior
    n_mc: int


class LiveOfferArms:
    """Offer arms for messages decided one event at a time (the live engine).

    Parameters
    ----------
    catalogue
        The strategies (only those with ``offer_arms`` are touched).
    refresh_s
        How long a strategy's posterior is used before the feedback is read again.
    seed
        Mixed into each message's seed with its strategy and idempotency key.
    n_mc
        Draws for the arm probabilities (the logged ``offer_propensity``).
    clock
        Monotonic seconds (tests pass their own).

    Examples
    --------
    >>> from autopersona.store.warehouse import Warehouse
    >>> from autopersona.strategy import load_strategies
    >>> with Warehouse(":memory:") as wh:
    ...     live = LiveOfferArms(load_strategies())
    ...     live.assign(wh.con, [])  # nothing decided: nothing read
    []
    """

    def __init__(
        self,
        catalogue: StrategyCatalogue,
        *,
        refresh_s: float = 60.0,
        seed: int = 0,
        n_mc: int = 4000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalogue = catalogue
        self.refresh_s = refresh_s
        self.seed = seed
        self.n_mc = n_mc
        self.clock = clock
        self._policies: dict[str, _LivePolicy] = {}

    def invalidate(self) -> None:
        """Read every posterior again at its next use."""
        self._policies.clear()

    def policy(self, con: Any, strategy_id: str) -> _LivePolicy:
        """The strategy's posterior and arm probabilities (read again after ``refresh_s``)."""
        now = self.clock()
        got = self._policies.get(strategy_id)
        if got is not None and now - got.read_at < self.refresh_s:
            return got
        spec = self.catalogue.strategies[strategy_id]
        ts = posterior([a.id for a in spec.offer_arms], arm_counts(con, strategy_id), seed=None)
        a = ts.alpha + ts.successes
        b = ts.beta + ts.failures
        rng = np.random.default_rng(_seed(self.seed, strategy_id, None))
        draws = rng.beta(a, b, size=(self.n_mc, len(ts.arms)))
        wins = np.bincount(np.argmax(draws, axis=1), minlength=len(ts.arms)).astype(np.float64)
        got = _LivePolicy(now, list(ts.arms), a, b, wins, self.n_mc)
        self._policies[strategy_id] = got
        return got

    def assign(self, con: Any, decisions: Sequence[Decision]) -> list[Decision]:
        """``decisions`` with an offer arm on every message that gets one (module doc).

        The posterior is read through ``con`` only for strategies that have such a message.
        """
        out = list(decisions)
        for i, d in enumerate(out):
            spec = _eligible(self.catalogue, d)
            if spec is None:
                continue
            pol = self.policy(con, d.strategy_id)
            rng = np.random.default_rng(
                _seed(self.seed, f"{d.strategy_id}|{d.idempotency_key}", None)
            )
            chosen = int(np.argmax(rng.beta(pol.alpha, pol.beta)))
            # the deciding draw counts with the estimate, as in the batch run
            propensity = (pol.wins[chosen] + 1.0) / (pol.n_mc + 1)
            out[i] = _apply(d, spec, pol.arms[chosen], float(propensity))
        return out
