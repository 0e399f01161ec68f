r"""Build every kind of tag — rule, score, cluster and model — in dependency order.

:func:`build_tags` is what ``autopersona profile refresh`` runs.  For each entity type it
loads the inputs as of the as-of time (see :func:`autopersona.tags.rules.load_inputs`),
then walks the requested tags and their dependencies, dependencies first: rule and score
tags are evaluated (:mod:`autopersona.tags.rules`), cluster tags fitted
(:mod:`autopersona.tags.cluster`), model tags scored with their stored model, trained first
when none is stored or the model's ``retrain`` cadence has passed
(:mod:`autopersona.tags.model`).  Each tag's values become a column the later tags read.

Training a model reads its features at past snapshots: the same walk as of each snapshot
(cluster inputs refitted there; model inputs scored with a model stored as of that time,
null when there is none).  A tag that cannot be built (too few entities to cluster, too
few labels to train) gets no assignment and the reason is returned in ``notes``.

Examples
--------
>>> from autopersona.store.warehouse import Warehouse
>>> from autopersona.tags.spec import load_catalogue
>>> from autopersona.privacy.consent import record_consent
>>> with Warehouse(":memory:") as wh:
...     _ = wh.con.execute("INSERT INTO vehicles (vin, msrp_cny, energy_type) "
...                        "VALUES ('V1', 520000, 'BEV'), ('V2', 90000, 'ICE')")
...     _ = wh.con.execute("INSERT INTO accounts (account_id, source, vin) "
...                        "VALUES ('A1', 'owner', 'V1'), ('A2', 'owner', 'V2')")
...     record_consent(wh, "A1", "analytics", "any", True, datetime(2026, 1, 1, tzinfo=UTC))
...     notes = {}
...     out = build_tags(wh, load_catalogue(), tags=["l1_vehicle_tier", "l2_driving_style"],
...                      as_of=datetime(2026, 2, 1, tzinfo=UTC), notes=notes)
>>> out["value"].tolist(), notes["l2_driving_style"].split(";")[-1]
(['luxury'], ' needs 20')

V2's owner gave no analytics consent, so V2 gets no analytics tag (L1 to L3 are analytics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd

from autopersona.store.warehouse import Warehouse
from autopersona.tags.rules import ASSIGNMENT_COLUMNS, evaluate_tag, load_inputs
from autopersona.tags.spec import Catalogue, load_catalogue

__all__ = ["BUILDABLE", "Builder", "build_tags"]

#: Methods built by :func:`build_tags` (every method of the catalogue).
BUILDABLE = ("rule", "score", "cluster", "model")


@dataclass
class Builder:
    """State of one build: warehouse, catalogue, notes and the model versions used.

    ``train`` is false while computing the inputs of a training snapshot (no nested
    training); ``save`` stores trained models and cluster fits in ``_models``.
    ``consent_at`` is the time whose consent decides who is processed (default: each
    build's as-of time): a model trained now reads past snapshots of the people who
    consent now.
    """

    wh: Warehouse
    cat: Catalogue
    period: str = "week"
    train: bool = True
    save: bool = True
    notes: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    _events: dict[str, pd.DataFrame] = field(default_factory=dict)
    consent_at: datetime | None = None
    _consent: dict[tuple[str, str, datetime], set[str]] = field(default_factory=dict)

    def tag_values(self, tag_id: str) -> dict[str, list[str]]:
        """Values of the tags a tag reads (categorical codes of a model)."""
        out: dict[str, list[str]] = {}
        for d in self.cat.dependencies(tag_id):
            vals = self.cat.tags[d].values
            if vals is not None:
                out[d] = list(vals)
        return out

    def _names(self, order: list[str]) -> tuple[set[str], set[str]]:
        names: set[str] = set()
        prevs: set[str] = set()
        for t in order:
            for e in self.cat.parsed.get(t, {}).values():
                names |= {n for n in e.names() if n not in self.cat.tags}
                prevs |= e.prev_names()
            spec = self.cat.tags[t]
            if spec.model is not None:
                names |= {n for n in spec.model.features if n not in self.cat.tags}
        return names, prevs

    def env(
        self,
        entity: str,
        order: list[str],
        as_of: datetime,
        extra: set[str] | None = None,
        readers: list[str] | None = None,
    ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        """Inputs as of ``as_of`` plus one column per tag of ``order`` (computed in order).

        ``extra`` names more inputs to load (the features of a model being trained);
        ``readers`` more tags that will read these columns (that model), whose purpose's
        consenters get the columns' values too.
        """
        names, prevs = self._names(order)
        names |= {n for n in extra or set() if n not in self.cat.tags}
        env = load_inputs(self.wh, entity, names, prevs, as_of, self.period)
        results: dict[str, pd.DataFrame] = {}
        for t in order:
            # computed for the entities consenting to the purpose of the tag or of any tag of
            # ``order`` that reads it (an input of a marketing tag is marketing processing),
            # published (``results``) only for those consenting to the tag's own purpose
            needed = self._needed(t, [*order, *(readers or [])], as_of)
            rows = env if needed is None else env[env.index.astype(str).isin(needed)]
            res = self._one(t, rows, as_of)
            col = pd.Series([None] * len(env), index=env.index, dtype=object)
            if len(res):
                res = res[res["entity"].isin(env.index)]
                if needed is not None:
                    res = res[res["entity"].astype(str).isin(needed)]
                col.loc[res["entity"].to_numpy()] = res["value"].to_numpy()
            env[t] = col
            allowed = self.consented(t, as_of)
            if allowed is not None and len(res):
                res = res[res["entity"].astype(str).isin(allowed)]
            results[t] = res.reset_index(drop=True)
        return env, results

    def _needed(self, t: str, order: list[str], as_of: datetime) -> set[str] | None:
        """Entities tag ``t`` is computed for (None: no restriction).

        Those consenting to its purpose or to the purpose of a tag of ``order`` that reads
        it, directly or not.
        """
        readers = [u for u in order if u != t and t in self.cat.order([u])]
        out: set[str] = set()
        for u in [t, *readers]:
            ok = self.consented(u, as_of)
            if ok is None:
                return None
            out |= ok
        return out

    def consented(self, t: str, as_of: datetime) -> set[str] | None:
        """Entities consented for tag ``t``'s purpose at ``as_of`` (None: the tag has none).

        Consent is per person (:mod:`autopersona.privacy.consent`): a VIN needs every person
        linked to it, a customer id its own account's consent; no decision means no consent.
        """
        purpose = self.cat.tags[t].purpose
        if purpose is None:
            return None
        from autopersona.privacy.consent import consented

        kind: Literal["vin", "account"] = "vin" if self.cat.tags[t].entity == "vin" else "account"
        at = self.consent_at or as_of
        key = (purpose, kind, at)
        if key not in self._consent:
            self._consent[key] = consented(self.wh, purpose, "any", at, kind)
        return self._consent[key]

    def _one(self, t: str, env: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
        spec = self.cat.tags[t]
        empty = pd.DataFrame(columns=["entity", "value", "score", "reasons"])
        if spec.method in ("rule", "score"):
            return evaluate_tag(self.cat, t, env) if len(env) else empty
        if spec.method == "cluster":
            return self._cluster(t, as_of, self.consented(t, as_of))
        return self._model(t, env, as_of)

    def _cluster(self, t: str, as_of: datetime, allowed: set[str] | None) -> pd.DataFrame:
        from autopersona.tags.cluster import ClusterTooSmall, fit_cluster_tag, load_window_means
        from autopersona.tags.model import save_fit_record

        spec = self.cat.tags[t]
        assert spec.cluster is not None
        feats = load_window_means(
            self.wh,
            spec.entity,
            list(spec.cluster.features),
            as_of,
            self.period,
            spec.cluster.window,
        )
        if allowed is not None:  # the clusters are fitted on consented entities only
            feats = feats[feats.index.astype(str).isin(allowed)]
        try:
            fit = fit_cluster_tag(spec, feats)
        except ClusterTooSmall as exc:
            self.notes[t] = str(exc)
            return pd.DataFrame(columns=["entity", "value", "score", "reasons"])
        self.versions[t] = fit.version
        if self.save:
            save_fit_record(
                self.wh,
                tag_id=t,
                version=fit.version,
                method="cluster",
                algorithm=fit.chosen.algorithm,
                as_of=as_of,
                tag_digest=spec.digest(),
                catalogue_version=self.cat.version,
                metrics={
                    "k": fit.chosen.k,
                    **fit.chosen.metrics,
                    "entities": len(fit.assignments),
                    "candidates": [c.summary() for c in fit.candidates],
                },
                artifact={
                    "centroids": fit.centroids.round(6).to_dict(orient="index"),
                    "names": {str(k): v for k, v in fit.names.items()},
                    "scale": fit.scale,
                },
            )
        return fit.assignments

    def events(self, t: str) -> pd.DataFrame:
        """The label events of model tag ``t`` (read once per build)."""
        from autopersona.tags.model import label_events

        if t not in self._events:
            self._events[t] = label_events(self.wh, self.cat.tags[t])
        return self._events[t]

    def _model(self, t: str, env: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
        from autopersona.tags.model import (
            NotTrainable,
            latest_model,
            model_due,
            save_model,
            score_entities,
            train_tag_model,
        )

        spec = self.cat.tags[t]
        assert spec.model is not None
        empty = pd.DataFrame(columns=["entity", "value", "score", "reasons"])
        model = latest_model(self.wh, spec, as_of)
        if self.train and model_due(model, spec, as_of):
            deps = [d for d in self.cat.order([t]) if d != t]
            feats = list(spec.model.features)
            sub = Builder(self.wh, self.cat, self.period, train=False, save=False, consent_at=as_of)

            allowed = self.consented(t, as_of)  # consent now governs training now

            def env_at(snapshot: datetime) -> pd.DataFrame:
                e, _ = sub.env(spec.entity, deps, snapshot, set(feats), readers=[t])
                if allowed is not None:
                    e = e[e.index.astype(str).isin(allowed)]
                return e.reindex(columns=feats)

            try:
                model = train_tag_model(
                    spec,
                    env_at,
                    self.events(t),
                    as_of,
                    tag_values=self.tag_values(t),
                    catalogue_version=self.cat.version,
                )
            except NotTrainable as exc:
                self.notes[t] = f"{t}: no model: {exc}"
                return empty
            if self.save:
                save_model(self.wh, model)
        if model is None:
            self.notes[t] = f"{t}: no model stored as of {as_of.date().isoformat()}"
            return empty
        self.versions[t] = model.version
        return score_entities(
            spec, model, env, tag_values=self.tag_values(t), events=self.events(t), as_of=as_of
        )


def build_tags(
    wh: Warehouse,
    catalogue: Catalogue | None = None,
    *,
    as_of: datetime | None = None,
    tags: list[str] | None = None,
    period: str = "week",
    notes: dict[str, str] | None = None,
    train: bool = True,
) -> pd.DataFrame:
    """Compute tags of every method; columns as :func:`autopersona.tags.rules.build_rule_tags`.

    Parameters
    ----------
    wh
        Warehouse with features, master data and the tables model labels read.
    catalogue
        Tag catalogue (default: built-in).
    as_of
        Point in time (default: now, UTC).
    tags
        Tag ids to return (default: all); their dependencies are computed too.
    period
        Feature period to read.
    notes
        Filled with the reason of every tag that could not be built.
    train
        Train model tags that are due (else only stored models score).
    """
    cat = catalogue or load_catalogue()
    when = as_of or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    wanted = tags if tags is not None else sorted(cat.tags)
    for t in wanted:
        if t not in cat.tags:
            raise KeyError(f"unknown tag {t!r}")
    order = cat.order(sorted(wanted))
    b = Builder(wh, cat, period, train=train)
    out: list[pd.DataFrame] = []
    for entity in ("vin", "customer_id"):
        ids = [t for t in order if cat.tags[t].entity == entity]
        if not ids:
            continue
        _, results = b.env(entity, ids, when)
        for t in ids:
            res = results[t]
            if t in wanted and len(res):
                out.append(
                    res.assign(
                        entity_type=entity,
                        tag_id=t,
                        model_version=b.versions.get(t),
                    )
                )
    if notes is not None:
        notes.update(b.notes)
    if not out:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ASSIGNMENT_COLUMNS})
    df = pd.concat(out, ignore_index=True)
    df["as_of"] = pd.Timestamp(when)
    df["catalogue_version"] = cat.version
    df["score"] = pd.to_numeric(df["score"]).astype("float64")
    cols: list[Any] = ASSIGNMENT_COLUMNS
    return df[cols]
