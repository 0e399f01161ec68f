"""Report provider: Thompson sampling replayed on each randomised campaign in the warehouse.

For every campaign of ``marketing_feedback`` with at least two arms, the persons (units) are
taken in the order they entered the campaign (ties in a fixed hashed order) with their arm
and whether they converted. A Beta-Bernoulli Thompson sampler choosing among the arms is
replayed on that log (:func:`autopersona.evaluation.bandit.replay`, rejection to equal arm
shares), and the report shows its allocation over the valid rounds — how a bandit would
have shifted sends towards the better arm — with its replayed conversion rate against each
arm's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from autopersona.evaluation.report import Report
    from autopersona.store.warehouse import Warehouse

__all__ = ["add_figures", "campaign_replays", "campaign_units"]

MIN_UNITS = 200
MAX_CAMPAIGNS = 3


def campaign_units(wh: Warehouse) -> pd.DataFrame:
    """One row per campaign and person: arm, whether sent, converted, visited, first time.

    Parameters
    ----------
    wh
        Warehouse with ``marketing_feedback``.

    Returns
    -------
    pandas.DataFrame
        ``campaign_id``, ``person_id``, ``arm`` (of the ``assigned`` event when there is
        one), ``sent``, ``converted``, ``visited`` (booleans) and ``first_ts``.
    """
    return wh.frame(
        """SELECT campaign_id, person_id,
                  coalesce(any_value(arm) FILTER (WHERE event_type = 'assigned'),
                           any_value(arm)) AS arm,
                  bool_or(event_type = 'sent') AS sent,
                  bool_or(event_type = 'converted') AS converted,
                  bool_or(event_type = 'visited') AS visited,
                  min(ts) AS first_ts
           FROM marketing_feedback WHERE arm IS NOT NULL
           GROUP BY ALL ORDER BY campaign_id, person_id"""
    )


def _order(units: pd.DataFrame) -> pd.DataFrame:
    key = pd.util.hash_array(units["person_id"].astype(str).to_numpy(dtype=object))
    return units.assign(_k=key).sort_values(["first_ts", "_k"], kind="mergesort")


def campaign_replays(wh: Warehouse) -> list[tuple[str, int, pd.DataFrame, pd.DataFrame]]:
    """Replay Thompson sampling on the largest randomised campaigns.

    Parameters
    ----------
    wh
        The warehouse.

    Returns
    -------
    list of tuples
        ``(campaign, persons, valid replay rounds, table)``; the table has each arm's
        conversion and share of replay rounds, and a last row for the replay itself.
    """
    from autopersona.evaluation.bandit import BetaThompson, replay

    units = campaign_units(wh)
    sizes = units.groupby("campaign_id").size().sort_values(ascending=False, kind="mergesort")
    out: list[tuple[str, int, pd.DataFrame, pd.DataFrame]] = []
    for camp in sizes.index:
        u = _order(units[units["campaign_id"] == camp])
        arm = u["arm"].astype(str)
        arms = sorted(arm.unique())
        if len(arms) < 2 or len(u) < MIN_UNITS or len(out) >= MAX_CAMPAIGNS:
            continue
        shares = arm.value_counts(normalize=True)
        valid = replay(
            BetaThompson(arms, seed=0, n_mc=0),
            arm.to_numpy(),
            u["converted"].astype(float).to_numpy(),
            shares={str(k): float(v) for k, v in shares.items()},
            seed=0,
        )
        if len(valid) < 20:
            continue
        rates = u.groupby(arm)["converted"].mean()
        table = pd.DataFrame(
            {
                "arm": [*rates.index, "Thompson replay"],
                "conversion": [*rates.to_numpy(dtype=float), float(valid["reward"].mean())],
                "share of replay rounds": [
                    *[float(np.mean(valid["arm"] == a)) for a in rates.index],
                    1.0,
                ],
            }
        )
        out.append((str(camp), len(u), valid, table))
    return out


def add_figures(report: Report, wh: Warehouse) -> None:
    """Add a Thompson-sampling replay allocation figure per randomised campaign.

    Parameters
    ----------
    report
        The report being built (section ``Bandits``).
    wh
        The warehouse.
    """
    from autopersona.evaluation.bandit import allocation_figure

    replays = campaign_replays(wh)
    for camp, n, valid, table in replays:
        report.add_figure(
            "Bandits",
            allocation_figure(valid, title=f"{camp}: Thompson sampling replayed on the log"),
            f"{camp}: cumulative share of each arm over {len(valid):,} valid replay rounds "
            f"(of {n:,} persons, randomised arms made equal by rejection).",
        )
        report.add_table("Bandits", table, f"{camp}: conversion per arm and of the replay.")
    if not replays:
        report.add_text(
            "Bandits",
            f"No campaign has two or more arms and at least {MIN_UNITS} persons to replay.",
        )
