"""Cluster tags: candidate selection, naming over centroids, noise, versions, inputs."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from autopersona.store.warehouse import Warehouse
from autopersona.tags.cluster import (
    Candidate,
    ClusterTooSmall,
    fit_cluster_tag,
    load_window_means,
    select_candidate,
)
from autopersona.tags.spec import ClusterConfig, TagSpec, builtin_dir, load_catalogue

FEATS = [
    "aggressiveness_index",
    "harsh_accel_per_100km",
    "harsh_brake_per_100km",
    "harsh_corner_per_100km",
    "speed_volatility",
]
LEVEL = {"cautious": 0.1, "moderate": 0.45, "aggressive": 0.8}


def _blobs(n_per: int, sd: float, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for style, c in LEVEL.items():
        for _ in range(n_per):
            rows.append(
                {
                    "aggressiveness_index": 100 * c + rng.normal(0, 100 * sd),
                    "harsh_accel_per_100km": 60 * c + rng.normal(0, 60 * sd),
                    "harsh_brake_per_100km": 50 * c + rng.normal(0, 50 * sd),
                    "harsh_corner_per_100km": 20 * c + rng.normal(0, 20 * sd),
                    "speed_volatility": 0.5 + rng.normal(0, 0.05),
                }
            )
            truth.append(style)
    idx = pd.Index([f"V{i:03d}" for i in range(len(rows))], name="entity")
    return pd.DataFrame(rows, index=idx), pd.Series(truth, index=idx)


def _tag(**cluster: object) -> TagSpec:
    """The catalogue's driving-style tag, clustering the synthetic FEATS of these tests."""
    base = load_catalogue().tags["l2_driving_style"]
    assert base.cluster is not None
    data = base.cluster.model_dump(by_alias=True)
    data.update({"features": FEATS, "naming": {"rank_by": "aggressiveness_index"}})
    data.update(cluster)
    return base.model_copy(update={"inputs": FEATS, "cluster": ClusterConfig.model_validate(data)})


@pytest.mark.parametrize("algorithms", [["kmeans"], ["gmm"], ["kmeans", "dbscan", "gmm"]])
def test_separated_styles_are_recovered_and_named(algorithms: list[str]) -> None:
    env, truth = _blobs(20, 0.04)
    fit = fit_cluster_tag(_tag(algorithms=algorithms), env)
    got = fit.values.loc[env.index]
    assert adjusted_rand_score(truth, got) == pytest.approx(1.0)
    assert (got == truth).all()  # names follow the centroid ranking of aggressiveness
    assert fit.chosen.algorithm in algorithms
    r = json.loads(fit.assignments["reasons"].iloc[0])
    assert r["algorithm"] == fit.chosen.algorithm and r["k"] == fit.chosen.k
    assert set(r["inputs"]) == set(FEATS)
    assert len(r["candidates"]) == len(fit.candidates) >= 1
    assert {"silhouette", "calinski_harabasz"} <= set(r["metrics"])
    assert r["centroid_rank_value"] == pytest.approx(
        fit.centroids.loc[r["cluster"], "aggressiveness_index"], abs=1e-5
    )
    assert fit.assignments["score"].between(0, 1).all()


def test_fit_is_deterministic_and_versioned() -> None:
    env, _ = _blobs(15, 0.08, seed=1)
    tag = _tag(algorithms=["kmeans", "gmm"], k={"min": 3, "max": 4})
    a = fit_cluster_tag(tag, env)
    b = fit_cluster_tag(tag, env)
    assert a.version == b.version and a.version.startswith("cl-")
    assert a.assignments.equals(b.assignments)
    moved = env.copy()
    moved.iloc[0, 0] += 30
    assert fit_cluster_tag(tag, moved).version != a.version


def test_more_clusters_than_values_split_at_the_largest_gaps() -> None:
    """K = 5 clusters over 3 values: sub-clusters of a level share its name."""
    rng = np.random.default_rng(2)
    levels = [0.05, 0.12, 0.45, 0.78, 0.85]
    rows = [{f: 100 * c + rng.normal(0, 1.0) for f in FEATS} for c in levels for _ in range(12)]
    env = pd.DataFrame(rows, index=pd.Index([f"E{i}" for i in range(60)], name="entity"))
    fit = fit_cluster_tag(_tag(algorithms=["kmeans"], k={"min": 5, "max": 5}), env)
    assert fit.chosen.k == 5
    by_level = [fit.values.iloc[i * 12] for i in range(5)]
    assert by_level == ["cautious", "cautious", "moderate", "aggressive", "aggressive"]


def test_ascending_naming_reverses() -> None:
    env, truth = _blobs(15, 0.04)
    tag = _tag(algorithms=["kmeans"], naming={"rank_by": "aggressiveness_index", "ascending": True})
    flipped = {"cautious": "aggressive", "aggressive": "cautious", "moderate": "moderate"}
    assert (fit_cluster_tag(tag, env).values.loc[env.index] == truth.map(flipped)).all()


def test_too_few_rows_and_partial_nulls() -> None:
    env, _ = _blobs(5, 0.04)
    with pytest.raises(ClusterTooSmall, match="15 entities"):
        fit_cluster_tag(_tag(), env)
    env, _ = _blobs(15, 0.04)
    env.iloc[0, 1:] = np.nan  # only the index: the rest take the medians
    env.loc["NONE"] = np.nan  # nothing: left out
    fit = fit_cluster_tag(_tag(algorithms=["kmeans"]), env)
    assert "NONE" not in fit.values.index and "V000" in fit.values.index
    assert (
        json.loads(fit.assignments.set_index("entity").loc["V000", "reasons"])["inputs"][
            "harsh_accel_per_100km"
        ]
        is None
    )


def test_dbscan_noise_joins_the_nearest_cluster() -> None:
    env, _ = _blobs(20, 0.03)
    env.loc["FAR"] = [300.0, 300.0, 300.0, 100.0, 0.5]
    fit = fit_cluster_tag(_tag(algorithms=["dbscan"]), env)
    assert fit.chosen.algorithm == "dbscan" and 0 < fit.chosen.noise_share <= 0.25
    far = fit.assignments.set_index("entity").loc["FAR"]
    assert far["value"] == "aggressive" and json.loads(far["reasons"])["noise"] is True


def test_select_by_rank_sum_with_davies_bouldin() -> None:
    z = np.zeros(1)
    cands = [
        Candidate(
            "kmeans", 3, {}, z, {"silhouette": 0.5, "calinski_harabasz": 80, "davies_bouldin": 0.9}
        ),
        Candidate(
            "gmm", 3, {}, z, {"silhouette": 0.45, "calinski_harabasz": 90, "davies_bouldin": 0.5}
        ),
        Candidate(
            "kmeans", 4, {}, z, {"silhouette": 0.4, "calinski_harabasz": 85, "davies_bouldin": 0.7}
        ),
    ]
    sel = ["silhouette", "calinski_harabasz", "davies_bouldin"]
    # ranks: kmeans3 1+3+3=7, gmm3 2+1+1=4, kmeans4 3+2+2=7
    assert select_candidate(cands, sel, ["kmeans", "gmm"]).algorithm == "gmm"
    assert select_candidate(cands, ["silhouette"], ["kmeans", "gmm"]).k == 3
    with pytest.raises(ClusterTooSmall):
        select_candidate([], sel, ["kmeans"])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 1),
            st.floats(0, 1000),
            st.integers(2, 9),
            st.sampled_from(["kmeans", "gmm"]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_selected_candidate_is_never_dominated(rows: list[tuple[float, float, int, str]]) -> None:
    """No other candidate is strictly better on both metrics than the one chosen."""
    cands = [
        Candidate(a, k, {}, np.zeros(1), {"silhouette": s, "calinski_harabasz": c})
        for s, c, k, a in rows
    ]
    best = select_candidate(cands, ["silhouette", "calinski_harabasz"], ["kmeans", "gmm"])
    for c in cands:
        assert not (
            c.metrics["silhouette"] > best.metrics["silhouette"]
            and c.metrics["calinski_harabasz"] > best.metrics["calinski_harabasz"]
        )


def test_window_means_read_only_complete_periods(tmp_path: Path) -> None:
    with Warehouse(":memory:") as wh:
        df = pd.DataFrame(
            {
                "vin": ["A"] * 6,
                "period_start": pd.date_range("2026-01-05", periods=6, freq="7D"),
                "period": "week",
                "aggressiveness_index": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
            }
        )
        wh.con.register("_df", df)
        wh.con.execute("CREATE TABLE features_driving AS SELECT * FROM _df")
        # as of 2026-02-09 the weeks starting 01-05 .. 02-02 are complete: last 4 = 20..50
        got = load_window_means(
            wh,
            "vin",
            ["aggressiveness_index", "speed_volatility"],
            datetime(2026, 2, 9, tzinfo=UTC),
            window=4,
        )
        assert got.loc["A", "aggressiveness_index"] == pytest.approx(35.0)
        assert np.isnan(got.loc["A", "speed_volatility"])
        one = load_window_means(
            wh, "vin", ["aggressiveness_index"], datetime(2026, 2, 9, tzinfo=UTC), window=1
        )
        assert one.loc["A", "aggressiveness_index"] == 50.0


def test_window_is_declared_in_yaml(tmp_path: Path) -> None:
    folder = tmp_path / "cat"
    shutil.copytree(builtin_dir(), folder)
    p = folder / "l2_behaviour.yaml"
    p.write_text(p.read_text().replace("min_rows: 20", "min_rows: 20\n      window: 2"))
    spec = load_catalogue(folder).tags["l2_driving_style"]
    assert spec.cluster is not None and spec.cluster.window == 2
