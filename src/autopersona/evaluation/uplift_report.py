"""Report provider: held-out Qini curves of an uplift model per randomised campaign.

A campaign of ``marketing_feedback`` qualifies when it has a control arm — the one arm none
of whose persons was sent anything — and at least one messaged arm. Person features come
from ``accounts`` rows whose ``account_id`` is the person id (their ``attributes`` JSON and
the declared fields: birth year, gender, city, occupation), which is how campaign files
such as Hillstrom arrive. A T-learner (LightGBM) is fitted on 70 % of the persons
(stratified by arm, seed 0) for each outcome with enough events (``converted``, and
``visited`` when present) and scored on the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from autopersona.evaluation.uplift import ArmScore

if TYPE_CHECKING:
    from autopersona.evaluation.report import Report
    from autopersona.store.warehouse import Warehouse

__all__ = ["CampaignUplift", "add_figures", "campaign_uplift", "person_features"]

MIN_UNITS = 500
MIN_EVENTS = 30
COVERAGE = 0.9
DECLARED = ("birth_year", "gender", "city", "occupation")


def person_features(wh: Warehouse, persons: pd.Series) -> pd.DataFrame:
    """Features of ``persons`` from ``accounts`` (``account_id`` = person id).

    Parameters
    ----------
    wh
        The warehouse.
    persons
        Person ids.

    Returns
    -------
    pandas.DataFrame
        Indexed by person id: the attributes' scalar fields and the declared fields that
        are not all missing; persons without an account are absent.
    """
    acc = wh.frame("SELECT account_id, attributes, " + ", ".join(DECLARED) + " FROM accounts")
    acc = acc[acc["account_id"].isin(set(persons.astype(str)))]
    if acc.empty:
        return pd.DataFrame(index=pd.Index([], name="person_id"))

    def parse(text: Any) -> dict[str, Any]:
        if not isinstance(text, str):
            return {}
        value = json.loads(text)
        return (
            {k: v for k, v in value.items() if isinstance(v, (int, float, str, bool))}
            if isinstance(value, dict)
            else {}
        )

    attrs = pd.DataFrame([parse(t) for t in acc["attributes"]], index=acc["account_id"])
    declared = acc.set_index("account_id")[list(DECLARED)]
    out = pd.concat([attrs, declared], axis=1)
    out = out.loc[:, out.notna().any(axis=0)]
    out.index.name = "person_id"
    return out[~out.index.duplicated()]


@dataclass(frozen=True)
class CampaignUplift:
    """Held-out uplift scores of one campaign and outcome."""

    campaign: str
    outcome: str
    control: str
    n_test: int
    features: list[str]
    scores: list[ArmScore]


def campaign_uplift(wh: Warehouse) -> tuple[list[CampaignUplift], list[str]]:
    """Fit and score a T-learner for every qualifying campaign and outcome.

    Parameters
    ----------
    wh
        The warehouse.

    Returns
    -------
    tuple
        The results, and notes on campaigns with a control arm that were skipped (why).
    """
    from sklearn.model_selection import train_test_split

    from autopersona.evaluation.bandit_report import campaign_units
    from autopersona.evaluation.uplift import TLearner, evaluate_uplift

    units = campaign_units(wh)
    results: list[CampaignUplift] = []
    notes: list[str] = []
    for camp, u in units.groupby("campaign_id", sort=True):
        arm = u["arm"].astype(str)
        sent_by_arm = u.groupby(arm)["sent"].any()
        controls = list(sent_by_arm[~sent_by_arm].index)
        if len(controls) != 1 or len(sent_by_arm) < 2:
            continue
        control = str(controls[0])
        if len(u) < MIN_UNITS:
            notes.append(f"{camp}: {len(u):,} persons, fewer than {MIN_UNITS}")
            continue
        feats = person_features(wh, u["person_id"])
        covered = u["person_id"].astype(str).isin(feats.index)
        if covered.mean() < COVERAGE or feats.shape[1] == 0:
            notes.append(
                f"{camp}: person features (accounts with the person id) cover "
                f"{covered.mean():.0%} of persons"
            )
            continue
        X = feats.reindex(u["person_id"].astype(str)).reset_index(drop=True)
        arms = arm.to_numpy()
        idx_tr, idx_te = train_test_split(
            np.arange(len(u)), test_size=0.3, random_state=0, stratify=arms
        )
        for outcome in ("converted", "visited"):
            y = u[outcome].astype(float).to_numpy()
            if y[arms == control].sum() < MIN_EVENTS or y[arms != control].sum() < MIN_EVENTS:
                continue
            model = TLearner(control=control, seed=0, params={"n_estimators": 100})
            model.fit(X.iloc[idx_tr], arms[idx_tr], y[idx_tr])
            scores = evaluate_uplift(
                y[idx_te], model.predict(X.iloc[idx_te]), arms[idx_te], control, model.treatments_
            )
            results.append(
                CampaignUplift(
                    str(camp), outcome, control, len(idx_te), [str(c) for c in X.columns], scores
                )
            )
    return results, notes


def add_figures(report: Report, wh: Warehouse) -> None:
    """Add held-out Qini curves and scores per qualifying campaign (section ``Uplift``).

    Parameters
    ----------
    report
        The report being built.
    wh
        The warehouse.
    """
    from autopersona.evaluation.uplift import qini_figure

    results, notes = campaign_uplift(wh)
    for r in results:
        report.add_figure(
            "Uplift",
            qini_figure(r.scores, title=f"{r.campaign}: {r.outcome} uplift vs {r.control}"),
            f"{r.campaign}: Qini curves of a T-learner on {r.n_test:,} held-out persons; "
            f"features {', '.join(r.features)}.",
        )
        report.add_table(
            "Uplift",
            pd.DataFrame([s.to_dict() for s in r.scores]),
            f"{r.campaign}: held-out {r.outcome} Qini coefficient and AUUC per treatment.",
        )
    if notes:
        report.add_text("Uplift", "No uplift model for " + "; ".join(notes) + ".")
