r"""Cluster tags: segment entities on standardised features and name the segments.

For a tag with ``method: cluster`` the builder

1. reads the tag's ``features`` per entity: the mean of each feature over the latest
   ``window`` complete periods at or before the as-of time (one week of driving is noisy;
   a few weeks show the style).  Entities without any of the features are left out; a
   missing feature of an entity that has others takes the feature's median;
2. scales them (``standard``: z-scores, ``robust``: median/IQR, ``none``);
3. fits every declared algorithm: K-means and a Gaussian mixture (full covariance) for every
   K in ``k``; DBSCAN with ``min_samples = max(3, min(2 d, n / 10))`` and ``eps`` on a grid
   of quantiles (50 %–95 %) of the distance to the ``min_samples``-th neighbour (the
   k-distance heuristic).  A DBSCAN candidate counts only with a cluster count inside ``k``
   and at most 25 % noise; its metrics are computed on the clustered points and its noise
   points join the nearest cluster centroid (``"noise": true`` in their reasons);
4. scores each candidate with the declared ``selection`` metrics (silhouette — on a seeded
   sample of 3,000 entities when there are more — and
   Calinski-Harabasz: higher is better; Davies-Bouldin: lower is better), ranks the
   candidates on each metric and keeps the lowest rank sum (ties: higher silhouette, then
   fewer clusters, then the declared algorithm order);
5. names clusters: centroids (means of the members' unscaled features) are sorted by the
   ``rank_by`` expression (descending unless ``ascending``) and split into ``len(values)``
   contiguous groups that take the values in order; with more clusters than values the
   cuts go at the largest gaps between consecutive centroids' ``rank_by`` values (natural
   breaks: sub-clusters of one level stay together).

Each entity's ``score`` is its membership confidence: the Gaussian mixture's posterior of
its component, else ``d2 / (d1 + d2)`` from its distances to the nearest and second
nearest centroid in scaled space (0.5 on a boundary, 1 at the centroid).  ``reasons`` hold
the algorithm, K, the chosen candidate's metrics, every candidate's scores, the centroid's
``rank_by`` value and the entity's inputs.  Fits are seeded (``random_state=0``) and the
model version is a hash of the algorithm, K, scaler and centroids.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from autopersona.tags.spec import load_catalogue
>>> rng = np.random.default_rng(0)
>>> centres = {"cautious": 0.1, "moderate": 0.45, "aggressive": 0.8}
>>> rows = [{"jerk_abs_mean_mps3": 0.08 + 0.1 * c + rng.normal(0, 0.003),
...          "high_jerk_share": 0.05 * c + rng.normal(0, 0.002)}
...         for c in centres.values() for _ in range(15)]
>>> env = pd.DataFrame(rows, index=pd.Index([f"V{i:02d}" for i in range(45)], name="entity"))
>>> fit = fit_cluster_tag(load_catalogue().tags["l2_driving_style"], env)
>>> fit.values.value_counts().sort_index().to_dict()
{'aggressive': 15, 'cautious': 15, 'moderate': 15}
>>> fit.values["V00"], fit.values["V44"]
('cautious', 'aggressive')
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from autopersona.store.warehouse import Warehouse
from autopersona.tags.expr import parse
from autopersona.tags.spec import TagSpec, known_names

__all__ = [
    "Candidate",
    "ClusterFit",
    "ClusterTooSmall",
    "fit_cluster_tag",
    "load_window_means",
    "select_candidate",
]

_LENGTH = {"day": "1 DAY", "week": "7 DAY", "month": "1 MONTH"}
MAX_NOISE = 0.25
#: Above this many entities the silhouette (quadratic in n) is computed on a seeded sample.
SILHOUETTE_SAMPLE = 3000
_HIGHER = {"silhouette": True, "calinski_harabasz": True, "davies_bouldin": False}


class ClusterTooSmall(ValueError):
    """Too few entities (or no valid candidate) to fit a cluster tag."""


@dataclass
class Candidate:
    """One fitted clustering: algorithm, cluster count, parameters, labels and metrics."""

    algorithm: str
    k: int
    params: dict[str, float]
    labels: np.ndarray[Any, Any]
    metrics: dict[str, float]
    noise_share: float = 0.0
    proba: np.ndarray[Any, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """The candidate's scores as JSON-ready numbers."""
        return {
            "algorithm": self.algorithm,
            "k": self.k,
            **{k: round(float(v), 4) for k, v in self.params.items()},
            **{k: round(float(v), 4) for k, v in self.metrics.items()},
            "noise_share": round(self.noise_share, 4),
        }


@dataclass
class ClusterFit:
    """The chosen segmentation and the per-entity assignments."""

    tag_id: str
    chosen: Candidate
    candidates: list[Candidate]
    centroids: pd.DataFrame  # unscaled, one row per cluster label
    names: dict[int, str]
    rank_values: dict[int, float]
    version: str
    assignments: pd.DataFrame  # entity, value, score, reasons
    scale: dict[str, list[float]] = field(default_factory=dict)

    @property
    def values(self) -> pd.Series:
        """Value per entity (index: entity)."""
        return self.assignments.set_index("entity")["value"]


def load_window_means(
    wh: Warehouse,
    entity: str,
    names: list[str],
    as_of: datetime,
    period: str = "week",
    window: int = 4,
) -> pd.DataFrame:
    """Per entity, the mean of each feature over the latest ``window`` complete periods.

    Only periods that ended at or before ``as_of`` are read.  Names that are not features
    (or whose table or column does not exist yet) are null columns.

    >>> from autopersona.store.warehouse import Warehouse
    >>> with Warehouse(":memory:") as wh:
    ...     load_window_means(wh, "vin", ["aggressiveness_index"], datetime.now(UTC)).shape
    (0, 1)
    """
    if period not in _LENGTH:
        raise ValueError(f"unknown period {period!r}: use day, week or month")
    where = known_names(entity)
    key = "vin" if entity == "vin" else "customer_id"
    cutoff = as_of.astimezone(UTC).replace(tzinfo=None)
    length = _LENGTH[period]
    by_table: dict[str, list[str]] = {}
    for n in names:
        t = where.get(n, "")
        if t.startswith("features_"):
            by_table.setdefault(t, []).append(n)
    frames = []
    for table, cols in by_table.items():
        exists = wh.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
        ).fetchall()
        if not exists or not exists[0][0]:
            continue
        have = {r[0] for r in wh.con.execute(f'DESCRIBE "{table}"').fetchall()}
        cols = [c for c in cols if c in have]
        if not cols:
            continue
        means = ", ".join(f'avg("{c}") AS "{c}"' for c in cols)
        df = wh.con.execute(
            f'SELECT "{key}" AS entity, {means} FROM ('
            f'SELECT *, row_number() OVER (PARTITION BY "{key}" ORDER BY period_start DESC) AS _rn '
            f'FROM "{table}" WHERE period = ? AND period_start + INTERVAL {length} <= ? '
            f'AND "{key}" IS NOT NULL) WHERE _rn <= ? GROUP BY 1',
            [period, cutoff, int(window)],
        ).df()
        frames.append(df.set_index("entity"))
    index = sorted({str(i) for f in frames for i in f.index})
    env = pd.DataFrame(index=pd.Index(index, name="entity"))
    for f in frames:
        env = env.join(f, how="left")
    for n in names:
        if n not in env:
            env[n] = np.nan
    return env[names].astype("float64")


def _scaler(kind: str) -> Any:
    from sklearn.preprocessing import RobustScaler, StandardScaler

    if kind == "standard":
        return StandardScaler()
    if kind == "robust":
        return RobustScaler()
    return None


def _metrics(x: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> dict[str, float]:
    from sklearn.metrics import (
        calinski_harabasz_score,
        davies_bouldin_score,
        silhouette_score,
    )

    sample = SILHOUETTE_SAMPLE if len(x) > SILHOUETTE_SAMPLE else None
    return {
        "silhouette": float(silhouette_score(x, labels, sample_size=sample, random_state=0)),
        "calinski_harabasz": float(calinski_harabasz_score(x, labels)),
        "davies_bouldin": float(davies_bouldin_score(x, labels)),
    }


def _candidates(
    x: np.ndarray[Any, Any], algorithms: list[str], k_min: int, k_max: int
) -> list[Candidate]:
    from sklearn.cluster import DBSCAN, KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    out: list[Candidate] = []
    for alg in algorithms:
        if alg in ("kmeans", "gmm"):
            for k in range(k_min, min(k_max, n - 1) + 1):
                proba = None
                with warnings.catch_warnings():
                    # a mixture that stops at max_iter is still a candidate; its scores judge it
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    if alg == "kmeans":
                        labels = KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(x)
                    else:
                        gm = GaussianMixture(
                            n_components=k, covariance_type="full", n_init=2, random_state=0
                        ).fit(x)
                        labels = gm.predict(x)
                        proba = gm.predict_proba(x)
                if len(set(labels.tolist())) < 2:
                    continue
                out.append(
                    Candidate(
                        alg,
                        len(set(labels.tolist())),
                        {},
                        labels,
                        _metrics(x, labels),
                        proba=proba,
                    )
                )
        elif alg == "dbscan":
            m = int(max(3, min(2 * x.shape[1], n // 10)))
            dist, _ = NearestNeighbors(n_neighbors=m).fit(x).kneighbors(x)
            kdist = dist[:, -1]
            seen: set[tuple[int, ...]] = set()
            for q in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
                eps = float(np.quantile(kdist, q))
                if eps <= 0:
                    continue
                labels = DBSCAN(eps=eps, min_samples=m).fit_predict(x)
                key = tuple(labels.tolist())
                if key in seen:
                    continue
                seen.add(key)
                core = labels >= 0
                k = len(set(labels[core].tolist()))
                noise = float((~core).mean())
                if k < max(2, k_min) or k > k_max or noise > MAX_NOISE:
                    continue
                out.append(
                    Candidate(
                        "dbscan",
                        k,
                        {"eps": eps, "min_samples": float(m)},
                        labels,
                        _metrics(x[core], labels[core]),
                        noise_share=noise,
                    )
                )
        else:  # pragma: no cover - the catalogue schema allows only the three
            raise ValueError(f"unknown clustering algorithm {alg!r}")
    return out


def select_candidate(
    candidates: list[Candidate], selection: list[str], algorithms: list[str]
) -> Candidate:
    """The candidate with the lowest sum of ranks over the ``selection`` metrics.

    Rank 1 is the best value of a metric (ties share the lowest rank); ties of the sum go
    to the higher silhouette, then fewer clusters, then the earlier declared algorithm.

    >>> a = Candidate("kmeans", 3, {}, np.zeros(1), {"silhouette": .6, "calinski_harabasz": 90})
    >>> b = Candidate("kmeans", 4, {}, np.zeros(1), {"silhouette": .5, "calinski_harabasz": 99})
    >>> c = Candidate("gmm", 3, {}, np.zeros(1), {"silhouette": .55, "calinski_harabasz": 95})
    >>> sel = select_candidate([a, b, c], ["silhouette", "calinski_harabasz"], ["kmeans", "gmm"])
    >>> (sel.algorithm, sel.k)
    ('kmeans', 3)
    """
    if not candidates:
        raise ClusterTooSmall("no clustering candidate")
    ranks = np.zeros(len(candidates))
    for m in selection:
        v = np.array([c.metrics[m] for c in candidates], dtype=float)
        key = -v if _HIGHER[m] else v
        ranks += pd.Series(key).rank(method="min").to_numpy()
    order = sorted(
        range(len(candidates)),
        key=lambda i: (
            ranks[i],
            -candidates[i].metrics.get("silhouette", 0.0),
            candidates[i].k,
            algorithms.index(candidates[i].algorithm),
        ),
    )
    return candidates[order[0]]


def _name_clusters(
    tag: TagSpec, centroids: pd.DataFrame
) -> tuple[dict[int, str], dict[int, float]]:
    assert tag.cluster is not None
    assert tag.values is not None
    rank = parse(tag.cluster.naming.rank_by).evaluate(centroids)
    vals = pd.to_numeric(rank, errors="coerce").astype("float64")
    ranked = vals.sort_values(ascending=tag.cluster.naming.ascending, kind="stable")
    order = np.asarray(ranked.index)
    n_groups = len(tag.values)
    gaps = np.abs(np.diff(np.nan_to_num(ranked.to_numpy(dtype=float))))
    # cut at the n_groups - 1 largest gaps (ties: the earlier gap)
    cuts = sorted(np.argsort(-gaps, kind="stable")[: n_groups - 1].tolist())
    groups = np.split(order, [c + 1 for c in cuts])
    names: dict[int, str] = {}
    for value, group in zip(tag.values, groups, strict=True):
        for lab in group.tolist():
            names[int(lab)] = value
    return names, {int(str(k)): float(v) for k, v in vals.items()}


def fit_cluster_tag(tag: TagSpec, env: pd.DataFrame) -> ClusterFit:
    """Fit, select and name the segmentation of ``tag`` over ``env`` (index: entity).

    Raises
    ------
    ClusterTooSmall
        With fewer than ``min_rows`` entities having the features, or no valid candidate.
    """
    cfg = tag.cluster
    if cfg is None or tag.values is None:
        raise ValueError(f"{tag.id} is not a cluster tag with values")
    feats = list(cfg.features)
    raw = env.reindex(columns=feats).apply(pd.to_numeric, errors="coerce").astype("float64")
    raw = raw[raw.notna().any(axis=1)]
    if len(raw) < cfg.min_rows:
        raise ClusterTooSmall(
            f"{tag.id}: {len(raw)} entities with {', '.join(feats)}; needs {cfg.min_rows}"
        )
    filled = raw.fillna(raw.median())
    filled = filled.fillna(0.0)  # a feature null for everyone carries no information
    scaler = _scaler(cfg.scale)
    x = (
        scaler.fit_transform(filled.to_numpy())
        if scaler is not None
        else filled.to_numpy(dtype=float)
    )
    x = np.nan_to_num(np.asarray(x, dtype=float))
    cands = _candidates(x, list(cfg.algorithms), max(cfg.k.min, len(tag.values)), cfg.k.max)
    if not cands:
        raise ClusterTooSmall(f"{tag.id}: no algorithm gave a valid clustering")
    chosen = select_candidate(cands, list(cfg.selection), list(cfg.algorithms))
    labels = chosen.labels.copy()
    core = labels >= 0
    clusters = sorted(set(labels[core].tolist()))
    cent_scaled = np.vstack([x[labels == c].mean(axis=0) for c in clusters])
    # noise points (DBSCAN) join the nearest cluster
    d = np.linalg.norm(x[:, None, :] - cent_scaled[None, :, :], axis=2)
    nearest = np.asarray(clusters)[d.argmin(axis=1)]
    noise = ~core
    labels[noise] = nearest[noise]
    centroids = pd.DataFrame(
        [filled.to_numpy()[labels == c].mean(axis=0) for c in clusters],
        index=pd.Index(clusters, name="cluster"),
        columns=feats,
    )
    names, rank_values = _name_clusters(tag, centroids)
    ds = np.sort(d, axis=1)
    if chosen.proba is not None:
        score = chosen.proba.max(axis=1)
    elif ds.shape[1] > 1:
        score = ds[:, 1] / np.maximum(ds[:, 0] + ds[:, 1], 1e-12)
    else:  # pragma: no cover - at least two clusters
        score = np.ones(len(x))
    scale_info: dict[str, list[float]] = {}
    if scaler is not None:
        for attr in ("mean_", "scale_", "center_"):
            if hasattr(scaler, attr):
                scale_info[attr.rstrip("_")] = [round(float(v), 6) for v in getattr(scaler, attr)]
    blob = json.dumps(
        {
            "algorithm": chosen.algorithm,
            "k": chosen.k,
            "params": chosen.params,
            "scale": scale_info,
            "centroids": np.round(centroids.to_numpy(), 6).tolist(),
            "names": {str(k): v for k, v in sorted(names.items())},
        },
        sort_keys=True,
    )
    version = "cl-" + hashlib.sha256(blob.encode()).hexdigest()[:12]
    summary = [c.summary() for c in cands]
    chosen_metrics = {k: round(float(v), 4) for k, v in chosen.metrics.items()}
    rows = []
    raw_np = raw.to_numpy()
    for i, ent in enumerate(raw.index):
        lab = int(labels[i])
        inputs = {
            f: (None if np.isnan(raw_np[i, j]) else round(float(raw_np[i, j]), 6))
            for j, f in enumerate(feats)
        }
        reason: dict[str, Any] = {
            "algorithm": chosen.algorithm,
            "k": chosen.k,
            "cluster": lab,
            "metrics": chosen_metrics,
            "rank_by": cfg.naming.rank_by,
            "centroid_rank_value": round(rank_values[lab], 6),
            "inputs": inputs,
            "candidates": summary,
        }
        if noise[i]:
            reason["noise"] = True
        rows.append(
            {
                "entity": str(ent),
                "value": names[lab],
                "score": float(score[i]),
                "reasons": json.dumps(reason, sort_keys=True),
            }
        )
    return ClusterFit(
        tag_id=tag.id,
        chosen=chosen,
        candidates=cands,
        centroids=centroids,
        names=names,
        rank_values=rank_values,
        version=version,
        assignments=pd.DataFrame(rows, columns=["entity", "value", "score", "reasons"]),
        scale=scale_info,
    )
