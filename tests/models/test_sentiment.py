"""Sentiment: the packaged MiniLM model plus logistic regression, on hand-written and simulated reviews."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from autopersona.models import sentiment as st
from autopersona.models._input import InputError
from autopersona.store.warehouse import Warehouse

REASON = st.unavailable_reason()
needs_model = pytest.mark.skipif(REASON is not None, reason=f"sentiment model: {REASON}")
LABELLED = Path(__file__).resolve().parents[1] / "data" / "sentiment" / "reviews_labelled.csv"


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    return st.read_labelled(LABELLED)


def test_labelled_set_is_balanced_and_distinct(labelled: pd.DataFrame) -> None:
    assert len(labelled) == 100
    assert labelled["label"].value_counts().to_dict() == {1: 50, 0: 50}
    assert labelled["text"].nunique() == 100
    seed = st.seed_examples()
    assert not set(seed["text"]) & set(labelled["text"])  # evaluation never trains


def test_bad_labelled_file_names_row_and_field(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text('text,label\n"fine",positive\n"meh",maybe\n')
    with pytest.raises(InputError, match=r"bad\.csv:3: label: 'maybe'"):
        st.read_labelled(p)
    p.write_text("words,label\nx,1\n")
    with pytest.raises(InputError, match="column 'text' not found"):
        st.read_labelled(p)


@needs_model
def test_encoder_is_offline_cached_and_batched() -> None:
    import os

    a = st.encoder()
    assert a is st.encoder()  # one model per process
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    e = st.embed(["Great seat covers", "Broke after a day", "Great seat covers"])
    assert e.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(e[0], e[2])
    assert float(e[0] @ e[1]) < 0.9


@needs_model
def test_seed_model_generalises_to_hand_written_reviews(labelled: pd.DataFrame) -> None:
    seed = st.seed_examples()
    model = st.train(seed["text"].tolist(), seed["label"].to_numpy())
    m = st.evaluate(model, labelled["text"].tolist(), labelled["label"].to_numpy())
    assert m["accuracy"] >= 0.85 and m["auc"] >= 0.93, m


@needs_model
def test_cross_validated_on_the_labelled_set(labelled: pd.DataFrame) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    x = st.embed(labelled["text"].tolist())
    scores = cross_val_score(LogisticRegression(C=4.0, max_iter=2000), x, labelled["label"], cv=5)
    assert scores.mean() >= 0.85, scores


@needs_model
def test_features_from_simulated_reviews(commerce_wh: Warehouse, labelled: pd.DataFrame) -> None:
    rep = st.build_sentiment_features(commerce_wh)
    assert rep.messages == rep.reviews + rep.chats > 0
    assert rep.train_positive > 0 and rep.train_negative > 0
    f = commerce_wh.con.execute("SELECT * FROM features_sentiment").df()
    assert len(f) == rep.rows > 0
    assert set(f["period"]) == {"week"}
    assert f["scored_messages"].sum() == rep.messages
    v = f[["review_sentiment", "chat_sentiment", "satisfaction_index"]].to_numpy(dtype=float)
    v = v[~np.isnan(v)]
    assert len(v) and ((v >= 0) & (v <= 1)).all()
    # review sentiment (out of fold for training reviews) follows the stars
    per = commerce_wh.con.execute(
        """SELECT customer_id, CAST(date_trunc('week', ts AT TIME ZONE 'UTC') AS DATE) AS period_start,
                  avg(rating) AS stars
           FROM reviews WHERE kind = 'review' GROUP BY 1, 2"""
    ).df()
    j = per.merge(f, on=["customer_id", "period_start"])
    assert len(j) == len(per)
    rho = spearmanr(j["stars"], j["review_sentiment"]).statistic
    assert rho >= 0.5, rho
    # a model trained on the simulated reviews (plus seed where short) reads human reviews
    model, data = st.train_from_warehouse(commerce_wh)
    assert int(data["label"].sum()) == model.n_positive == rep.train_positive
    m = st.evaluate(model, labelled["text"].tolist(), labelled["label"].to_numpy())
    assert m["auc"] >= 0.85, m


def test_unavailable_reason_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real(n, *a)
    )
    reason = st.unavailable_reason()
    assert reason is not None and reason.startswith("torch is not importable")
    with pytest.raises(st.SentimentUnavailable, match="torch"):
        st._require()


@needs_model
def test_satisfaction_tag_grades_the_latest_sentiment_week(commerce_wh: Warehouse) -> None:
    from autopersona.privacy.consent import consented
    from autopersona.tags.rules import build_rule_tags

    have = commerce_wh.sql(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'features_sentiment'"
    )
    if not have[0][0]:  # run alone: the features test did not build the table
        st.build_sentiment_features(commerce_wh)
    tags = build_rule_tags(commerce_wh, tags=["cm_satisfaction"]).set_index("entity")
    latest = commerce_wh.con.execute(
        "SELECT customer_id, satisfaction_index FROM features_sentiment "
        "QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY period_start DESC) = 1"
    ).df()
    # an analytics tag: customers who consent to analytics get it
    ok = consented(commerce_wh, "analytics", entity="account")
    expect = {
        r.customer_id: "satisfied"
        if r.satisfaction_index >= 0.7
        else ("neutral" if r.satisfaction_index >= 0.25 else "dissatisfied")
        for r in latest.itertuples()
        if r.customer_id in ok
    }
    got = tags["value"].to_dict()
    assert {c: got.get(c) for c in expect} == expect
    assert "satisfied" in set(got.values()) and len(set(got.values())) >= 2


@needs_model
def test_no_messages_gives_an_empty_typed_table() -> None:
    from autopersona.tags.rules import build_rule_tags

    with Warehouse(":memory:") as wh:
        rep = st.build_sentiment_features(wh)  # trains on the seed set alone
        assert (rep.messages, rep.rows, rep.seed_examples) == (0, 0, 50)
        types = dict(
            wh.sql(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'features_sentiment'"
            )
        )
        assert types["period_start"] == "TIMESTAMP" and types["satisfaction_index"] == "DOUBLE"
        assert build_rule_tags(wh, tags=["cm_satisfaction"]).empty
