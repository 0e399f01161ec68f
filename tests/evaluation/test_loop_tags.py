"""Closed loop into the tag models: feedback labels l4_marketing_responsiveness through the
identity tables, and each loop iteration's feedback reaches the model at its retrain cadence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from autopersona.evaluation.loop import LoopConfig, run_loop
from autopersona.features.build import build_features
from autopersona.identity.link import link_identities
from autopersona.ingest.engine import ingest
from autopersona.simulate import MessConfig, simulate
from autopersona.simulate.response import load_truth
from autopersona.store.warehouse import Warehouse
from autopersona.tags.build import build_tags
from autopersona.tags.model import label_events, labels_at, latest_model, list_models
from autopersona.tags.spec import load_catalogue

TAG = "l4_marketing_responsiveness"
START = datetime(2026, 3, 2, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fleet")
    simulate(vehicles=120, days=1, seed=5, out=out, mess=MessConfig.clean(), workers=1)
    return out


@pytest.fixture
def wh(fleet: Path) -> Iterator[Warehouse]:
    """Vehicles, accounts, consents and cabin features ingested; identities linked."""
    with Warehouse(":memory:") as w:
        tables = ("vehicles", "accounts", "consents", "cabin_events")
        ingest([fleet / "tables" / f"{t}.parquet" for t in tables], w, progress=False)
        build_features(w, only=["cabin"])
        link_identities(w)
        yield w


def _iteration(wh: Warehouse, persons: pd.DataFrame, i: int) -> None:
    cfg = LoopConfig(
        start=START + timedelta(days=14 * i), experiment_id=f"loop-{i}", waves=4, interval_days=3
    )
    run_loop(wh, persons, cfg, seed=i)


def test_feedback_labels_reach_vehicles_through_identity(wh: Warehouse, fleet: Path) -> None:
    persons = load_truth(fleet / "truth")
    for i in range(2):
        _iteration(wh, persons, i)
    fb = wh.frame("SELECT person_id, ts, channel, event_type FROM marketing_feedback")
    # feedback names the warehouse's identity persons, never the simulator's hidden ids
    linked = wh.frame("SELECT person_id, unnest(vins) AS vin FROM persons")
    assert fb["person_id"].isin(linked["person_id"]).all()
    assert not fb["person_id"].isin(persons["person_id"]).any()
    # the label: conversions answering a message, on every VIN of the converting person
    conv = fb[(fb["event_type"] == "converted") & (fb["channel"] != "none")]
    want = conv.merge(linked, on="person_id")[["vin", "ts"]]
    tag = load_catalogue().tags[TAG]
    got = label_events(wh, tag)
    assert len(want) > 10
    pd.testing.assert_frame_equal(
        got[["entity", "time"]].sort_values(["entity", "time"]).reset_index(drop=True),
        want.rename(columns={"vin": "entity", "ts": "time"})
        .sort_values(["entity", "time"])
        .reset_index(drop=True),
        check_dtype=False,
    )
    organic = fb[(fb["event_type"] == "converted") & (fb["channel"] == "none")]
    assert len(organic) > 0  # present in the feedback, not in the label


def test_loop_feedback_retrains_the_tag_model_on_its_cadence(wh: Warehouse, fleet: Path) -> None:
    persons = load_truth(fleet / "truth")
    cat = load_catalogue()
    tag = cat.tags[TAG]
    for i in range(6):
        _iteration(wh, persons, i)
    first_as_of = START + timedelta(days=14 * 6)
    notes: dict[str, str] = {}
    v1 = build_tags(wh, cat, tags=[TAG], as_of=first_as_of, notes=notes)
    assert TAG not in notes, notes
    m1 = latest_model(wh, tag, first_as_of)
    assert m1 is not None and m1.fit.metrics["label_rate_train"] > 0
    # one more iteration: within the monthly cadence the stored model keeps scoring
    _iteration(wh, persons, 6)
    build_tags(wh, cat, tags=[TAG], as_of=first_as_of + timedelta(days=14))
    assert len(list_models(wh).query("tag_id == @TAG")) == 1
    # another iteration, and the cadence has passed: retrained with the new feedback
    _iteration(wh, persons, 7)
    second_as_of = first_as_of + timedelta(days=30)
    v2 = build_tags(wh, cat, tags=[TAG], as_of=second_as_of, notes=notes)
    assert TAG not in notes, notes
    m2 = latest_model(wh, tag, second_as_of)
    assert m2 is not None and m2.version != m1.version
    assert m2.as_of == second_as_of
    assert len(list_models(wh).query("tag_id == @TAG")) == 2
    # its latest validation snapshot labels come from feedback of iterations 6 and 7 only,
    # which did not exist when the first model was trained
    events = label_events(wh, tag)
    newest = datetime.fromisoformat(m2.snapshots[-1])
    assert newest >= first_as_of
    new_labels = labels_at(events, pd.Index(sorted(set(events["entity"]))), newest, 30)
    assert new_labels.sum() > 0
    assert (events["time"] > pd.Timestamp(first_as_of)).sum() > 0
    assert m2.fit.metrics["label_rate_valid"] > 0
    # the profile values come from the new model: its version, other scores
    assert set(v1["model_version"]) == {m1.version}
    assert set(v2["model_version"]) == {m2.version}
    s1, s2 = v1.set_index("entity")["score"], v2.set_index("entity")["score"]
    common = s1.index.intersection(s2.index)
    assert len(common) > 50 and (s1[common] != s2[common]).any()
    assert set(v2["value"]) <= {"high", "mid", "low"}
