r"""Model tags: LightGBM propensity models trained on later behaviour in the warehouse.

A tag with ``method: model`` predicts its ``label``: an entity is positive at a snapshot
when one of the label's ``events`` (rows of a warehouse table, filtered by ``where``)
happens within ``horizon_days`` after it (``positive: no_event`` flips this, for churn).
Labels come from the data only.

Training as of ``T``
--------------------
* Snapshots ``s_j = T - horizon - j * snapshot_every_days`` (``j < snapshots``): every
  label window ends by ``T``, so a model as of ``T`` reads nothing after ``T``.
* At each snapshot the features are those a profile as of ``s_j`` would read (latest
  complete period at or before ``s_j``; tag inputs computed as of ``s_j``; see
  :mod:`autopersona.tags.build`).  Entities with none of the non-tag features are left out.
* Past behaviour: with ``history_days`` set, two features are added — the number of label
  events in the ``history_days`` before the snapshot (``_label_events_past``) and the days
  since the latest one (``_label_days_since``), read from the same rows as the label and
  only from before the snapshot.
* Time-based, purged split: the latest ``valid_snapshots`` snapshots validate; earlier
  snapshots train only when their label window has closed by the first validation
  snapshot (overlapping windows would share events with validation rows and inflate the
  validation AUC).
* LightGBM (binary, fixed rounds, seeded, one thread); tag inputs and text columns are
  categorical (codes over the tag's values, or the categories seen in training).
* Calibration: centred isotonic regression of the label on the booster's validation
  predictions (the booster never saw the validation fold): isotonic regression's constant
  blocks become knots at their mean prediction, joined linearly, so the calibrated
  probability is strictly increasing between the first and last knot.  Plain isotonic
  steps tie every score of a block (a few hundred validation rows give a handful of
  distinct probabilities) and throw away the booster's ranking inside them.  The reported
  ``brier`` is cross-fitted (calibrator fitted on one half of the validation rows, scored
  on the other, both ways); ``auc`` is the booster's validation AUC (the calibration is
  monotone).
* Too few rows (``min_rows``), too few positives (``min_positives``) or a single class in
  either fold: no model, and the reason is reported (:class:`NotTrainable`).

Regression tags
---------------
With ``task: regression`` the label is the **sum of the events' ``amount``** in
``(s_j, s_j + horizon]`` (0 without events; e.g. net spend over the next 365 days).  The
same snapshots, purged split and features; LightGBM with a Tweedie objective (spend is
zero for many entities and right-skewed otherwise; power 1.5, log link), no calibration.
Metrics on the later fold: MAE, RMSE, R² against the validation mean, the Spearman rank
correlation, and the MAE and RMSE of the *naive* forecast — each entity's spend in the
equally long window before the snapshot — the baseline the model's RMSE must beat (the model
predicts means, so RMSE is its yardstick; MAE favours medians, often 0 here).  ``min_positives`` counts training
rows with a non-zero label.  The value is the prediction (or a grade by ``grades`` cut-offs
on it); reasons hold the prediction and the top TreeSHAP contributions (log scale).

Scoring and storage
-------------------
Calibrated probability → grade by the declared cut-offs; ``reasons`` hold the probability,
the grade, and the top three TreeSHAP contributions (LightGBM ``pred_contrib``, log-odds)
with the feature values.  Models live in the warehouse table ``_models`` (booster text,
calibrator, metrics, training window) under a version that hashes the tag declaration, the
parameters, the snapshot dates and the training data; a stored model is reused until its
``retrain`` cadence has passed (models trained after the as-of time are never used).

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> def frame(n):
...     x = rng.normal(size=n)
...     y = (rng.random(n) < 1 / (1 + np.exp(-2 * x))).astype(int)
...     return pd.DataFrame({"x": x, "noise": rng.normal(size=n)}), pd.Series(y)
>>> (xt, yt), (xv, yv) = frame(600), frame(300)
>>> fit = fit_classifier(xt, yt, xv, yv, categories={})
>>> p = fit.predict(xv)
>>> fit.metrics["auc"] > 0.75, bool(0 <= p.min() <= p.max() <= 1)
(True, True)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from autopersona.tags.expr import parse
from autopersona.tags.spec import CADENCE_DAYS, TagSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    import lightgbm as lgb

    from autopersona.store.warehouse import Warehouse

__all__ = [
    "MODELS_TABLE",
    "PARAMS",
    "REGRESSION_PARAMS",
    "FittedClassifier",
    "NotTrainable",
    "StoredModel",
    "amounts_at",
    "fit_classifier",
    "fit_regressor",
    "label_events",
    "label_history",
    "labels_at",
    "latest_model",
    "list_models",
    "model_due",
    "save_model",
    "score_entities",
    "snapshot_dates",
    "train_tag_model",
]

MODELS_TABLE = "_models"

#: LightGBM parameters of every model tag: small trees, seeded, single-threaded.  Training
#: sets are hundreds to thousands of entity-snapshots with noisy labels; on the simulated
#: fleet (200 vehicles) 4 leaves / 100 rounds scored a later window better than 15 / 150
#: (aftermarket AUC 0.54 vs 0.52 when the true propensity reached 0.58; since the simulator
#: drives discretionary purchases by it, 100 / 200 / 300 rounds and 2 or 8 leaves all land
#: within 0.02 of each other).
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.03,
    "num_leaves": 4,
    "min_data_in_leaf": 30,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "seed": 0,
    "deterministic": True,
    "force_col_wise": True,
    "num_threads": 1,
    "verbose": -1,
}
ROUNDS = 100


class NotTrainable(ValueError):
    """Why a model tag cannot be trained (too few labelled rows, one class, …)."""


# ----------------------------------------------------------------------------- encoding
def _encode(
    frame: pd.DataFrame, features: list[str], categories: dict[str, list[str]]
) -> np.ndarray[Any, Any]:
    cols = []
    for f in features:
        s = frame[f] if f in frame else pd.Series([None] * len(frame), index=frame.index)
        if f in categories:
            codes = {v: float(i) for i, v in enumerate(categories[f])}
            cols.append(np.array([codes.get(str(v), np.nan) if _ok(v) else np.nan for v in s]))
        else:
            cols.append(pd.to_numeric(s.astype(object), errors="coerce").to_numpy(dtype=float))
    if not cols:
        return np.zeros((len(frame), 0))
    return np.column_stack(cols)


def _ok(v: Any) -> bool:
    return v is not None and v is not pd.NA and not (isinstance(v, float) and np.isnan(v))


def _display(v: Any) -> Any:
    if not _ok(v):
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, bool | int | str):
        return v
    return str(v)


def infer_categories(
    frame: pd.DataFrame, features: list[str], known: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Categorical features: ``known`` ones (tag values) plus text columns of ``frame``.

    >>> infer_categories(pd.DataFrame({"a": [1.0], "b": ["x"]}), ["a", "b"], {})
    {'b': ['x']}
    """
    out = {k: list(v) for k, v in known.items() if k in features}
    for f in features:
        if f in out or f not in frame:
            continue
        s = frame[f]
        if s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype | pd.StringDtype):
            vals = [v for v in s.dropna().unique().tolist() if not isinstance(v, bool)]
            if vals and all(isinstance(v, str) for v in vals):
                out[f] = sorted(str(v) for v in vals)
    return out


# ----------------------------------------------------------------------------- fitting
@dataclass
class FittedClassifier:
    """A trained booster with its isotonic calibrator and validation metrics."""

    booster_text: str
    features: list[str]
    categories: dict[str, list[str]]
    calibrator: dict[str, list[float]]
    metrics: dict[str, float]

    @cached_property
    def booster(self) -> lgb.Booster:
        """The LightGBM booster (loaded from its text once)."""
        import lightgbm as lgb

        return lgb.Booster(model_str=self.booster_text)

    def raw(self, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
        """The booster's (uncalibrated) probabilities."""
        x = _encode(frame, self.features, self.categories)
        return np.asarray(self.booster.predict(x), dtype=float)

    def predict(self, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
        """Calibrated probabilities."""
        return _apply_iso(self.calibrator, self.raw(frame))

    def contributions(self, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
        """TreeSHAP contributions (log-odds), one column per feature plus the bias."""
        x = _encode(frame, self.features, self.categories)
        return np.asarray(self.booster.predict(x, pred_contrib=True), dtype=float)


def _fit_iso(p: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> dict[str, list[float]]:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    xs = np.sort(np.asarray(p, dtype=float), kind="stable")
    fs = np.asarray(iso.predict(xs), dtype=float)
    # centred: one knot per constant block, at the block's mean score (see the module doc)
    starts = np.flatnonzero(np.r_[True, fs[1:] != fs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    return {
        "x": [float(xs[a:b].mean()) for a, b in zip(starts, ends, strict=True)],
        "y": [float(fs[a]) for a in starts],
    }


def _apply_iso(cal: dict[str, list[float]], p: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if not cal.get("x"):
        return p
    out: np.ndarray[Any, Any] = np.interp(p, np.asarray(cal["x"]), np.asarray(cal["y"]))
    return out


def _train_booster(
    x_train: pd.DataFrame,
    y_train: np.ndarray[Any, Any],
    x_valid: pd.DataFrame,
    *,
    features: list[str],
    categories: dict[str, list[str]],
    params: dict[str, Any],
) -> tuple[lgb.Booster, np.ndarray[Any, Any]]:
    """Train LightGBM on the training fold; return it and its validation predictions.

    ``params`` for :data:`ROUNDS` rounds; leaves hold at least 5 rows and at most the
    declared minimum, so small training sets still split.
    """
    import lightgbm as lgb

    xt = _encode(x_train, features, categories)
    xv = _encode(x_valid, features, categories)
    cat_idx = [i for i, f in enumerate(features) if f in categories]
    p = dict(params)
    p["min_data_in_leaf"] = int(min(params["min_data_in_leaf"], max(5, len(y_train) // 20)))
    ds = lgb.Dataset(
        xt,
        label=y_train,
        feature_name=features,
        categorical_feature=cat_idx,
        params={"verbose": -1},
        free_raw_data=False,
    )
    booster = lgb.train(p, ds, num_boost_round=ROUNDS)
    return booster, np.asarray(booster.predict(xv), dtype=float)


def fit_classifier(
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_valid: pd.DataFrame,
    y_valid: pd.Series,
    *,
    categories: dict[str, list[str]],
    min_positives: int = 2,
) -> FittedClassifier:
    """Train on the earlier fold, calibrate and measure on the later one.

    Raises
    ------
    NotTrainable
        When a fold has a single class or training has fewer than ``min_positives``.
    """
    from sklearn.metrics import brier_score_loss, roc_auc_score

    features = list(x_train.columns)
    yt = np.asarray(y_train, dtype=int)
    yv = np.asarray(y_valid, dtype=int)
    for name, y in (("training", yt), ("validation", yv)):
        if len(set(y.tolist())) < 2:
            raise NotTrainable(f"the {name} fold has a single class ({len(y)} rows)")
    if int(yt.sum()) < min_positives:
        raise NotTrainable(f"{int(yt.sum())} positives in training (needs {min_positives})")
    booster, pv = _train_booster(
        x_train, yt, x_valid, features=features, categories=categories, params=PARAMS
    )
    cal = _fit_iso(pv, yv)
    # cross-fitted calibrated Brier: isotonic on one half, scored on the other
    rng = np.random.default_rng(0)
    half = rng.permutation(len(yv)) % 2 == 0
    cross = np.empty(len(yv))
    for part in (half, ~half):
        other = ~part
        if len(set(yv[other].tolist())) < 2 or not part.any():
            cross[part] = pv[part]
            continue
        cross[part] = _apply_iso(_fit_iso(pv[other], yv[other]), pv[part])
    metrics = {
        "auc": float(roc_auc_score(yv, pv)),
        "brier": float(brier_score_loss(yv, cross)),
        "brier_raw": float(brier_score_loss(yv, pv)),
        "n_train": float(len(yt)),
        "n_valid": float(len(yv)),
        "label_rate_train": float(yt.mean()),
        "label_rate_valid": float(yv.mean()),
    }
    return FittedClassifier(
        booster_text=booster.model_to_string(),
        features=features,
        categories=categories,
        calibrator=cal,
        metrics=metrics,
    )


#: LightGBM parameters of regression tags: :data:`PARAMS` with a Tweedie objective.
REGRESSION_PARAMS: dict[str, Any] = {
    **PARAMS,
    "objective": "tweedie",
    "tweedie_variance_power": 1.5,
}


def fit_regressor(
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_valid: pd.DataFrame,
    y_valid: pd.Series,
    *,
    categories: dict[str, list[str]],
    naive_valid: pd.Series | None = None,
    min_positives: int = 2,
) -> FittedClassifier:
    """Train a Tweedie booster on the earlier fold and measure it on the later one.

    ``naive_valid`` (each validation row's amount in the window before its snapshot) gives
    the naive baseline's MAE.  The result has no calibrator (predictions are amounts).

    Raises
    ------
    NotTrainable
        Fewer than ``min_positives`` non-zero training labels, or a negative label.
    """
    from scipy.stats import spearmanr

    features = list(x_train.columns)
    yt = np.asarray(y_train, dtype=float)
    yv = np.asarray(y_valid, dtype=float)
    if (yt < 0).any() or (yv < 0).any():
        raise NotTrainable("negative label amounts (a Tweedie model needs amounts >= 0)")
    if int((yt > 0).sum()) < min_positives:
        raise NotTrainable(
            f"{int((yt > 0).sum())} non-zero labels in training (needs {min_positives})"
        )
    booster, pv = _train_booster(
        x_train, yt, x_valid, features=features, categories=categories, params=REGRESSION_PARAMS
    )
    err = pv - yv
    sst = float(((yv - yv.mean()) ** 2).sum())
    rho = spearmanr(pv, yv).statistic if len(set(yv.tolist())) > 1 else float("nan")
    metrics = {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": float(1.0 - (err**2).sum() / sst) if sst > 0 else float("nan"),
        "spearman": float(rho),
        "n_train": float(len(yt)),
        "n_valid": float(len(yv)),
        "label_mean_train": float(yt.mean()),
        "label_mean_valid": float(yv.mean()),
        "nonzero_rate_valid": float((yv > 0).mean()),
    }
    if naive_valid is not None:
        naive_err = np.asarray(naive_valid, dtype=float) - yv
        metrics["mae_naive"] = float(np.abs(naive_err).mean())
        metrics["rmse_naive"] = float(np.sqrt((naive_err**2).mean()))
    return FittedClassifier(
        booster_text=booster.model_to_string(),
        features=features,
        categories=categories,
        calibrator={},
        metrics=metrics,
    )


# ----------------------------------------------------------------------------- labels
def label_events(wh: Warehouse, tag: TagSpec) -> pd.DataFrame:
    """Every event row of the tag's label: ``entity``, ``time`` (UTC) and ``amount``.

    For a per-VIN tag, an event whose ``entity`` column is not ``vin`` (a ``person_id`` of
    ``marketing_feedback``, an account id) is resolved to the person's VINs through the
    identity tables (:func:`autopersona.identity.resolve.to_vins`); unknown persons drop out.
    """
    assert tag.model is not None
    frames = []
    for ev in tag.model.label.events:
        exists = wh.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [ev.table]
        ).fetchall()
        if not exists or not exists[0][0]:
            continue
        cols = {ev.entity, ev.time}
        exprs = [parse(s) for s in (ev.where, ev.amount) if s is not None]
        for e in exprs:
            cols |= e.names()
        sel = ", ".join(f'"{c}"' for c in sorted(cols))
        df = wh.con.execute(
            f'SELECT {sel} FROM "{ev.table}" WHERE "{ev.entity}" IS NOT NULL '
            f'AND "{ev.time}" IS NOT NULL'
        ).df()
        keep = np.ones(len(df), dtype=bool)
        if ev.where is not None and len(df):
            keep = parse(ev.where).evaluate(df).fillna(False).to_numpy(dtype=bool)
        amount = (
            pd.to_numeric(parse(ev.amount).evaluate(df), errors="coerce").to_numpy(dtype=float)
            if ev.amount is not None and len(df)
            else np.ones(len(df))
        )
        rows = pd.DataFrame(
            {
                "entity": df[ev.entity].astype(str).to_numpy()[keep],
                "time": pd.to_datetime(df[ev.time], utc=True).to_numpy()[keep],
                "amount": amount[keep],
            }
        )
        if tag.entity == "vin" and ev.entity != "vin":
            # rows naming persons (e.g. feedback) count for each of the person's vehicles
            from autopersona.identity.resolve import to_vins

            rows = to_vins(wh, rows)
        frames.append(rows)
    if not frames:
        return pd.DataFrame(
            {
                "entity": pd.Series(dtype=object),
                "time": pd.Series(dtype="datetime64[ns, UTC]"),
                "amount": pd.Series(dtype=float),
            }
        )
    out = pd.concat(frames, ignore_index=True)
    out["time"] = pd.to_datetime(out["time"], utc=True)
    return out


def labels_at(
    events: pd.DataFrame,
    entities: pd.Index,
    snapshot: datetime,
    horizon_days: int,
    positive: str = "event",
) -> pd.Series:
    """1/0 per entity: an event in ``(snapshot, snapshot + horizon]`` (or none, for churn).

    >>> ev = pd.DataFrame({"entity": ["A", "B"], "time": pd.to_datetime(
    ...     ["2026-01-10", "2026-05-01"], utc=True), "amount": [1.0, 1.0]})
    >>> labels_at(ev, pd.Index(["A", "B", "C"]), datetime(2026, 1, 1, tzinfo=UTC), 90).tolist()
    [1, 0, 0]
    """
    t0 = pd.Timestamp(snapshot).tz_convert("UTC")
    t1 = t0 + pd.Timedelta(days=horizon_days)
    hit = events[(events["time"] > t0) & (events["time"] <= t1)]
    has = entities.isin(set(hit["entity"]))
    y = has if positive == "event" else ~has
    return pd.Series(y.astype(int), index=entities)


def amounts_at(
    events: pd.DataFrame, entities: pd.Index, snapshot: datetime, horizon_days: int
) -> pd.Series:
    """Sum of ``amount`` per entity over ``(snapshot, snapshot + horizon]``, at least 0.

    No events give 0, and so does a negative net sum (more returned than bought).

    >>> ev = pd.DataFrame({"entity": ["A", "A", "B"], "time": pd.to_datetime(
    ...     ["2026-01-10", "2026-02-01", "2026-09-01"], utc=True), "amount": [10.0, 5.0, 7.0]})
    >>> amounts_at(ev, pd.Index(["A", "B", "C"]), datetime(2026, 1, 1, tzinfo=UTC), 90).tolist()
    [15.0, 0.0, 0.0]
    """
    t0 = pd.Timestamp(snapshot).tz_convert("UTC")
    t1 = t0 + pd.Timedelta(days=horizon_days)
    hit = events[(events["time"] > t0) & (events["time"] <= t1)]
    sums = hit.groupby("entity")["amount"].sum()
    return pd.Series(
        sums.reindex(entities).fillna(0.0).clip(lower=0.0).astype(float).to_numpy(),
        index=entities,
        dtype=float,
    )


HISTORY_FEATURES = ("_label_events_past", "_label_days_since")


def label_history(
    events: pd.DataFrame, entities: pd.Index, snapshot: datetime, history_days: int
) -> pd.DataFrame:
    """Past label events per entity as of ``snapshot`` (see :data:`HISTORY_FEATURES`).

    >>> ev = pd.DataFrame({"entity": ["A", "A", "B"], "time": pd.to_datetime(
    ...     ["2025-12-01", "2025-12-21", "2026-02-01"], utc=True), "amount": 1.0})
    >>> h = label_history(ev, pd.Index(["A", "B"]), datetime(2026, 1, 1, tzinfo=UTC), 365)
    >>> h["_label_events_past"].tolist(), h["_label_days_since"].tolist()
    ([2.0, 0.0], [11.0, nan])
    """
    t0 = pd.Timestamp(snapshot).tz_convert("UTC")
    past = events[events["time"] <= t0]
    recent = past[past["time"] > t0 - pd.Timedelta(days=history_days)]
    counts = recent.groupby("entity").size()
    last = past.groupby("entity")["time"].max()
    since = (t0 - last).dt.total_seconds() / 86400.0
    return pd.DataFrame(
        {
            "_label_events_past": counts.reindex(entities).fillna(0).astype(float).to_numpy(),
            "_label_days_since": since.reindex(entities).astype(float).to_numpy(),
        },
        index=entities,
    )


def _with_history(
    tag: TagSpec, x: pd.DataFrame, events: pd.DataFrame, snapshot: datetime
) -> pd.DataFrame:
    assert tag.model is not None
    if tag.model.history_days is None:
        return x
    h = label_history(events, x.index, snapshot, tag.model.history_days)
    return pd.concat([x, h], axis=1)


def snapshot_dates(tag: TagSpec, as_of: datetime) -> list[datetime]:
    """Training snapshots of a model tag as of ``as_of``, oldest first.

    >>> from autopersona.tags.spec import load_catalogue
    >>> t = load_catalogue().tags["l4_aftermarket_propensity"]
    >>> [d.date().isoformat() for d in snapshot_dates(t, datetime(2026, 4, 1, tzinfo=UTC))][-2:]
    ['2025-12-02', '2026-01-01']
    """
    assert tag.model is not None
    cfg = tag.model
    last = as_of - timedelta(days=cfg.label.horizon_days)
    return [
        last - timedelta(days=j * cfg.snapshot_every_days) for j in reversed(range(cfg.snapshots))
    ]


# ----------------------------------------------------------------------------- training
@dataclass
class StoredModel:
    """A model of a tag as stored in ``_models``."""

    tag_id: str
    version: str
    as_of: datetime
    trained_at: datetime
    tag_digest: str
    catalogue_version: str
    fit: FittedClassifier
    snapshots: list[str] = field(default_factory=list)
    algorithm: str = "lightgbm"
    task: str = "classification"


def _present(env: pd.DataFrame, names: list[str]) -> pd.Series:
    cols = [n for n in names if n in env]
    if not cols:
        return pd.Series(False, index=env.index)
    return env[cols].notna().any(axis=1)


def train_tag_model(
    tag: TagSpec,
    env_at: Callable[[datetime], pd.DataFrame],
    events: pd.DataFrame,
    as_of: datetime,
    *,
    tag_values: dict[str, list[str]],
    catalogue_version: str = "",
) -> StoredModel:
    """Train ``tag``'s model as of ``as_of`` from snapshot frames and label events.

    ``env_at(snapshot)`` returns the tag's features per entity as of the snapshot;
    ``tag_values`` maps tag inputs to their values (categorical codes).

    Raises
    ------
    NotTrainable
        Task not supported, no LightGBM in ``algorithms``, or too little data.
    """
    cfg = tag.model
    assert cfg is not None
    regression = cfg.task == "regression"
    if "lightgbm" not in cfg.algorithms:
        raise NotTrainable(f"no supported algorithm in {cfg.algorithms} (supported: lightgbm)")
    if not (events["time"] <= pd.Timestamp(as_of)).any():
        # a cheap check before reading any snapshot: every label would be the same
        tables = ", ".join(sorted({e.table for e in cfg.label.events}))
        raise NotTrainable(f"no label events in {tables} before {as_of.date().isoformat()}")
    feats = list(cfg.features)
    own = [f for f in feats if f not in tag_values]
    snaps = snapshot_dates(tag, as_of)
    parts = []
    for j, s in enumerate(snaps):
        env = env_at(s)
        env = env[_present(env, own)]
        if env.empty:
            continue
        horizon_days = cfg.label.horizon_days
        if regression:
            y = amounts_at(events, env.index, s, horizon_days)
        else:
            y = labels_at(events, env.index, s, horizon_days, cfg.label.positive)
        x = _with_history(tag, env.reindex(columns=feats), events, s)
        parts.append((j, s, x, y))
    n = sum(len(p[2]) for p in parts)
    if n < cfg.min_rows:
        raise NotTrainable(f"{n} labelled rows over {len(snaps)} snapshots (needs {cfg.min_rows})")
    cut = len(snaps) - cfg.valid_snapshots
    first_valid = snaps[cut]
    horizon = timedelta(days=cfg.label.horizon_days)
    train = [p for p in parts if p[0] < cut and p[1] + horizon <= first_valid]
    purged = sum(1 for p in parts if p[0] < cut and p[1] + horizon > first_valid)
    valid = [p for p in parts if p[0] >= cut]
    if not train or not valid:
        raise NotTrainable(
            "no rows in the training or the validation snapshots "
            f"({purged} training snapshot(s) purged: their label window overlaps validation)"
        )
    xt = pd.concat([p[2] for p in train])
    yt = pd.concat([p[3] for p in train])
    xv = pd.concat([p[2] for p in valid])
    yv = pd.concat([p[3] for p in valid])
    cats = infer_categories(pd.concat([xt, xv]), feats, tag_values)
    if regression:
        before = timedelta(days=cfg.label.horizon_days)
        naive = pd.concat(
            [amounts_at(events, p[2].index, p[1] - before, cfg.label.horizon_days) for p in valid]
        )
        fit = fit_regressor(
            xt, yt, xv, yv, categories=cats, naive_valid=naive, min_positives=cfg.min_positives
        )
    else:
        fit = fit_classifier(xt, yt, xv, yv, categories=cats, min_positives=cfg.min_positives)
    h = hashlib.sha256()
    h.update(tag.digest().encode())
    h.update(
        json.dumps([REGRESSION_PARAMS if regression else PARAMS, ROUNDS], sort_keys=True).encode()
    )
    h.update(json.dumps([s.isoformat() for s in snaps]).encode())
    for x, y in ((xt, yt), (xv, yv)):
        h.update(pd.util.hash_pandas_object(x.astype(str), index=True).to_numpy().tobytes())
        h.update(np.asarray(y, dtype=np.float64 if regression else np.int8).tobytes())
    fit.metrics["train_snapshots"] = float(len(train))
    fit.metrics["valid_snapshots"] = float(len(valid))
    fit.metrics["purged_snapshots"] = float(purged)
    return StoredModel(
        tag_id=tag.id,
        version="m-" + h.hexdigest()[:12],
        as_of=as_of,
        trained_at=datetime.now(UTC),
        tag_digest=tag.digest(),
        catalogue_version=catalogue_version,
        fit=fit,
        snapshots=[s.isoformat() for s in snaps],
        task=cfg.task,
    )


def model_due(model: StoredModel | None, tag: TagSpec, as_of: datetime) -> bool:
    """Whether ``tag`` needs a new model at ``as_of``: none, redefined, or past ``retrain``."""
    assert tag.model is not None
    if model is None or model.tag_digest != tag.digest():
        return True
    days = CADENCE_DAYS[tag.model.retrain]
    return days is not None and as_of - model.as_of >= timedelta(days=days)


def score_entities(
    tag: TagSpec,
    model: StoredModel,
    env: pd.DataFrame,
    *,
    tag_values: dict[str, list[str]],
    events: pd.DataFrame | None = None,
    as_of: datetime | None = None,
) -> pd.DataFrame:
    """``entity, value, score, reasons`` for the entities with any non-tag feature.

    ``events`` and ``as_of`` give the label history features when the model uses them.
    """
    cfg = tag.model
    assert cfg is not None
    own = [f for f in cfg.features if f not in tag_values]
    env = env[_present(env, own)]
    cols = ["entity", "value", "score", "reasons"]
    if env.empty:
        return pd.DataFrame(columns=cols)
    fit = model.fit
    x = env.reindex(columns=[f for f in fit.features if f not in HISTORY_FEATURES])
    if any(f in HISTORY_FEATURES for f in fit.features):
        if events is None or as_of is None or cfg.history_days is None:
            raise ValueError(f"{tag.id}: the model reads label history; pass events and as_of")
        x = pd.concat([x, label_history(events, x.index, as_of, cfg.history_days)], axis=1)
    x = x.reindex(columns=fit.features)
    p = fit.predict(x)
    contrib = fit.contributions(x)
    kind = "prediction" if cfg.task == "regression" else "probability"
    rows = []
    for i, ent in enumerate(env.index):
        grade, rule = None, "else"
        for g in cfg.grades:
            if p[i] >= g.min:
                grade, rule = g.value, f">= {g.min:g}"
                break
        if grade is None:
            grade = cfg.else_ if cfg.grades else f"{p[i]:.6g}"
            rule = "else" if cfg.grades else kind
        if grade is None:
            continue
        c = contrib[i, :-1]
        top = np.argsort(-np.abs(c), kind="stable")[:3]
        reasons = {
            kind: round(float(p[i]), 6),
            "grade": rule,
            "model": model.version,
            "algorithm": model.algorithm,
            "top_reasons": [
                {
                    "feature": fit.features[j],
                    "contribution": round(float(c[j]), 6),
                    "value": _display(x.iloc[i, j]),
                }
                for j in top.tolist()
            ],
        }
        rows.append(
            {
                "entity": str(ent),
                "value": grade,
                "score": float(p[i]),
                "reasons": json.dumps(reasons, sort_keys=True),
            }
        )
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------------------- storage
_DDL = f"""CREATE TABLE IF NOT EXISTS {MODELS_TABLE} (
    tag_id VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    algorithm VARCHAR NOT NULL,
    as_of TIMESTAMPTZ NOT NULL,
    trained_at TIMESTAMPTZ NOT NULL,
    tag_digest VARCHAR NOT NULL,
    catalogue_version VARCHAR,
    metrics JSON,
    params JSON,
    meta JSON,
    artifact VARCHAR
)"""


def _ensure(wh: Warehouse) -> None:
    wh.con.execute(_DDL)


def _have_table(wh: Warehouse) -> bool:
    n = wh.con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [MODELS_TABLE]
    ).fetchall()
    return bool(n and n[0][0])


def save_model(wh: Warehouse, model: StoredModel) -> None:
    """Store a trained model tag (booster text, calibrator, metrics) in ``_models``."""
    _ensure(wh)
    meta = {
        "features": model.fit.features,
        "categories": model.fit.categories,
        "calibrator": model.fit.calibrator,
        "snapshots": model.snapshots,
    }
    wh.con.execute(
        f"INSERT INTO {MODELS_TABLE} VALUES (?, ?, 'model', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            model.tag_id,
            model.version,
            model.algorithm,
            model.as_of,
            model.trained_at,
            model.tag_digest,
            model.catalogue_version,
            json.dumps(model.fit.metrics, sort_keys=True),
            json.dumps(
                {
                    "params": REGRESSION_PARAMS if model.task == "regression" else PARAMS,
                    "rounds": ROUNDS,
                },
                sort_keys=True,
            ),
            json.dumps(meta, sort_keys=True),
            model.fit.booster_text,
        ],
    )


def save_fit_record(
    wh: Warehouse,
    *,
    tag_id: str,
    version: str,
    method: str,
    algorithm: str,
    as_of: datetime,
    tag_digest: str,
    catalogue_version: str,
    metrics: dict[str, Any],
    artifact: dict[str, Any],
) -> None:
    """Record a non-LightGBM fit (a cluster tag's segmentation) unless already stored."""
    _ensure(wh)
    have = wh.con.execute(
        f"SELECT count(*) FROM {MODELS_TABLE} WHERE tag_id = ? AND version = ?", [tag_id, version]
    ).fetchall()
    if have and have[0][0]:
        return
    wh.con.execute(
        f"INSERT INTO {MODELS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{{}}', '{{}}', ?)",
        [
            tag_id,
            version,
            method,
            algorithm,
            as_of,
            datetime.now(UTC),
            tag_digest,
            catalogue_version,
            json.dumps(metrics, sort_keys=True),
            json.dumps(artifact, sort_keys=True),
        ],
    )


def latest_model(wh: Warehouse, tag: TagSpec, as_of: datetime | None = None) -> StoredModel | None:
    """The newest stored model of ``tag`` trained as of ``as_of`` or earlier (same digest)."""
    if not _have_table(wh):  # nothing stored yet (the warehouse may be read-only)
        return None
    sql = (
        f"SELECT version, as_of, trained_at, catalogue_version, metrics, meta, artifact, "
        f"algorithm FROM {MODELS_TABLE} WHERE tag_id = ? AND method = 'model' "
        "AND tag_digest = ?"
    )
    params: list[Any] = [tag.id, tag.digest()]
    if as_of is not None:
        sql += " AND as_of <= ?"
        params.append(as_of)
    rows = wh.con.execute(sql + " ORDER BY as_of DESC, trained_at DESC LIMIT 1", params).fetchall()
    row = rows[0] if rows else None
    if row is None:
        return None
    meta = json.loads(row[5])
    fit = FittedClassifier(
        booster_text=str(row[6]),
        features=list(meta["features"]),
        categories={k: list(v) for k, v in meta["categories"].items()},
        calibrator=meta["calibrator"],
        metrics=json.loads(row[4]),
    )
    return StoredModel(
        tag_id=tag.id,
        version=str(row[0]),
        as_of=_utc(row[1]),
        trained_at=_utc(row[2]),
        tag_digest=tag.digest(),
        catalogue_version=str(row[3] or ""),
        fit=fit,
        snapshots=list(meta.get("snapshots", [])),
        algorithm=str(row[7]),
    )


def _utc(t: Any) -> datetime:
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def list_models(wh: Warehouse) -> pd.DataFrame:
    """Every stored model and cluster fit: tag, version, method, algorithm, as-of, metrics.

    >>> from autopersona.store.warehouse import Warehouse
    >>> with Warehouse(":memory:") as wh:
    ...     list(list_models(wh).columns)[:4]
    ['tag_id', 'version', 'method', 'algorithm']
    """
    if not _have_table(wh):
        return pd.DataFrame(
            columns=["tag_id", "version", "method", "algorithm", "as_of", "trained_at", "metrics"]
        )
    return wh.con.execute(
        f"SELECT tag_id, version, method, algorithm, as_of, trained_at, metrics "
        f"FROM {MODELS_TABLE} ORDER BY tag_id, as_of, trained_at"
    ).df()
