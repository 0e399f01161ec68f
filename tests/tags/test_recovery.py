"""Recovery on the simulated fleet: driving-style clusters and aftermarket propensity.

The builders read only the warehouse; the simulator's truth is read here, to score them —
over the vehicles each tag's purpose lets it profile (people consenting to analytics for the
driving style, to marketing for the aftermarket propensity): accuracy among the profiled.
Figures measured (printed with ``-s``) and the gaps to the issue's targets are in the
xfail reasons; the ceilings quoted there are what the *true* latent values reach against
the same realised labels.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score, roc_auc_score
from tagcheck import build_fleet, consenting

from autopersona.store.warehouse import Warehouse
from autopersona.tags.build import Builder, build_tags
from autopersona.tags.model import labels_at, latest_model
from autopersona.tags.spec import Catalogue, builtin_dir, load_catalogue

STYLE = "l2_driving_style"
AFTER = "l4_aftermarket_propensity"
AS_OF = datetime(2026, 1, 19, tzinfo=UTC)  # the fleet's week is complete
TRAIN_AS_OF = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tag tests' clean fleet (built once per test process, see ``tagcheck``)."""
    return build_fleet(tmp_path_factory)


@pytest.fixture(scope="module")
def style(fleet: tuple[Path, Path]) -> tuple[pd.Series, pd.DataFrame]:
    """(assigned style per VIN, the fleet's vehicle truth)."""
    with Warehouse(fleet[1], read_only=True) as wh:
        b = Builder(wh, load_catalogue(), save=False)
        _, res = b.env("vin", [STYLE], AS_OF)
    truth = pd.read_parquet(fleet[0] / "truth" / "vehicles_truth.parquet").set_index("vin")
    return res[STYLE].set_index("entity")["value"], truth


def test_driving_style_clusters_are_named_in_order(
    style: tuple[pd.Series, pd.DataFrame], fleet: tuple[Path, Path]
) -> None:
    got, truth = style
    # every vehicle drove this week; the analytics tag goes to those whose people consent
    # to analytics (27 of 30 here), and the ARI is scored over them
    assert set(got.index) == consenting(fleet[1], "analytics", AS_OF)
    assert len(got) >= 0.8 * len(truth)
    ari = adjusted_rand_score(truth.loc[got.index, "driving_style"], got)
    print(f"driving style ARI {ari:.3f} on {len(got)} vehicles")
    assert ari > 0.1
    # the naming rule: drivers called aggressive are far more aggressive than cautious ones
    mean = truth.loc[got.index, "aggressiveness"].groupby(got).mean()
    assert mean["aggressive"] > mean["cautious"] + 0.3


@pytest.mark.xfail(
    strict=True,
    reason="clustered on the 27 analytics-consenting vehicles only, the ARI is 0.57 on this "
    "fleet (0.70 when the 3 others were clustered too); on 36 and 40 vehicles of the same seed "
    "0.55 and 0.50 (0.53 and 0.52 clustering everyone): the 0.70 was a favourable draw of 30",
)
def test_driving_style_ari_target(style: tuple[pd.Series, pd.DataFrame]) -> None:
    """ARI >= 0.6 against the true style (measured from jerk; the harsh-event rates and
    aggressiveness index gave 0.17: they separate cautious from aggressive but not moderate
    within a week)."""
    got, truth = style
    assert adjusted_rand_score(truth.loc[got.index, "driving_style"], got) >= 0.6


def _small_fleet_catalogue(tmp: Path) -> Catalogue:
    """The built-in catalogue; the aftermarket model may train on 30 vehicles (12 snapshots,
    40 rows) instead of the production minimum of 100 rows."""
    folder = tmp / "catalogue"
    shutil.copytree(builtin_dir(), folder)
    p = folder / "l4_potential.yaml"
    text = p.read_text()
    marker = "      retrain: monthly\n"
    assert text.count(marker) >= 1
    p.write_text(
        text.replace(marker, marker + "      snapshots: 12\n      min_rows: 40\n", 1),
        encoding="utf-8",
    )
    return load_catalogue(folder)


@pytest.fixture(scope="module")
def later_window(
    fleet: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Train as of 2025-01-01, score four later quarterly snapshots, realise their labels."""
    tmp = tmp_path_factory.mktemp("recovery")
    cat = _small_fleet_catalogue(tmp)
    db = tmp / "wh.duckdb"
    shutil.copy(fleet[1], db)
    propensity = pd.read_parquet(fleet[0] / "truth" / "persons.parquet").set_index("vin")[
        "aftermarket_propensity"
    ]
    rows = []
    with Warehouse(db) as wh:
        notes: dict[str, str] = {}
        build_tags(wh, cat, as_of=TRAIN_AS_OF, tags=[AFTER], notes=notes)
        assert notes == {}
        model = latest_model(wh, cat.tags[AFTER], TRAIN_AS_OF)
        assert model is not None
        b = Builder(wh, cat, train=False, save=False)
        for snap in pd.date_range(TRAIN_AS_OF, periods=4, freq="91D"):
            s = snap.to_pydatetime()
            _, res = b.env("vin", cat.order([AFTER]), s)
            scored = res[AFTER].set_index("entity")
            assert (b.versions[AFTER] == model.version) and len(scored) > 0
            y = labels_at(b.events(AFTER), scored.index, s, 90)
            rows.append(
                pd.DataFrame(
                    {
                        "snapshot": s,
                        "score": scored["score"],
                        "label": y,
                        "true_propensity": propensity.loc[scored.index],
                    }
                )
            )
    return pd.concat(rows), model.fit.metrics


def test_aftermarket_model_scores_a_later_window(
    later_window: tuple[pd.DataFrame, dict[str, float]],
) -> None:
    df, metrics = later_window
    assert df["snapshot"].min() >= TRAIN_AS_OF  # every scored window lies after training
    assert df["label"].nunique() == 2 and df["score"].between(0, 1).all()
    auc = roc_auc_score(df["label"], df["score"])
    ceiling = roc_auc_score(df["label"], df["true_propensity"])
    print(
        f"aftermarket later-window AUC {auc:.3f} (ceiling with the true propensity "
        f"{ceiling:.3f}) on {len(df)} vehicle-snapshots; validation AUC {metrics['auc']:.3f}"
    )
    assert metrics["n_train"] >= 40 and metrics["purged_snapshots"] >= 1
    assert auc > ceiling - 0.2


@pytest.mark.xfail(
    strict=True,
    reason="realised 90-day labels are mostly Poisson noise in the simulator: even the true "
    "propensity reaches only ~0.58 AUC against them (200 vehicles x 4 later quarters); the "
    "model reaches 0.54 there (0.46 on this 30-vehicle fleet, where the ceiling is 0.46 too)",
)
def test_aftermarket_auc_target(later_window: tuple[pd.DataFrame, dict[str, float]]) -> None:
    df, _ = later_window
    assert roc_auc_score(df["label"], df["score"]) >= 0.75
