"""Model tags: labels from later rows, time split, calibration, SHAP reasons, versions, cadence."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit
from scipy.stats import spearmanr
from tagcheck import consent_everyone

from autopersona.catalog import CatalogError
from autopersona.store.warehouse import Warehouse
from autopersona.tags.build import build_tags
from autopersona.tags.model import (
    NotTrainable,
    amounts_at,
    fit_classifier,
    fit_regressor,
    label_events,
    labels_at,
    latest_model,
    list_models,
    model_due,
    score_entities,
    snapshot_dates,
    train_tag_model,
)
from autopersona.tags.spec import builtin_dir, load_catalogue

TAG = "l4_aftermarket_propensity"
T = datetime(2026, 1, 1, tzinfo=UTC)


def _synthetic(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    tier = rng.choice(["luxury", "mid", "economy"], size=n)
    z = 1.5 * x + np.where(tier == "luxury", 1.0, 0.0) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    frame = pd.DataFrame({"x": x, "noise": rng.normal(size=n), "tier": tier})
    return frame, pd.Series(y)


class TestFitClassifier:
    def test_learns_calibrates_and_explains(self) -> None:
        (xt, yt), (xv, yv) = _synthetic(800), _synthetic(400, seed=1)
        cats = {"tier": ["luxury", "mid", "economy"]}
        fit = fit_classifier(xt, yt, xv, yv, categories=cats)
        from sklearn.metrics import roc_auc_score

        oracle = roc_auc_score(yv, 1.5 * xv["x"] + (xv["tier"] == "luxury"))
        assert fit.metrics["auc"] == pytest.approx(roc_auc_score(yv, fit.raw(xv)))
        assert fit.metrics["auc"] > oracle - 0.05 and fit.metrics["auc"] > 0.7
        assert fit.metrics["n_train"] == 800 and fit.metrics["n_valid"] == 400
        assert fit.metrics["label_rate_valid"] == pytest.approx(yv.mean())
        p = fit.predict(xv)
        assert ((p >= 0) & (p <= 1)).all()
        # centred isotonic calibration is monotone in the booster's output, and strictly
        # increasing between its first and last knot: the booster's ranking survives
        raw = fit.raw(xv)
        o = np.argsort(raw)
        assert (np.diff(p[o]) >= -1e-12).all()
        knots = fit.calibrator["x"]
        inside = (raw > knots[0]) & (raw < knots[-1])
        r_in, p_in = raw[inside], p[inside]
        o_in = np.argsort(r_in)
        distinct = np.diff(r_in[o_in]) > 0
        assert inside.sum() > 200 and (np.diff(p_in[o_in])[distinct] > 0).all()
        # TreeSHAP: contributions plus bias add up to the raw log-odds
        c = fit.contributions(xv)
        assert c.shape == (400, 4)
        np.testing.assert_allclose(c.sum(axis=1), logit(np.clip(raw, 1e-12, 1 - 1e-12)), atol=1e-6)
        # the informative feature carries more weight than noise
        assert np.abs(c[:, 0]).mean() > np.abs(c[:, 1]).mean()

    def test_single_class_and_too_few_positives(self) -> None:
        x, y = _synthetic(200)
        with pytest.raises(NotTrainable, match="single class"):
            fit_classifier(x, pd.Series(np.zeros(200, dtype=int)), x, y, categories={})
        with pytest.raises(NotTrainable, match="validation fold has a single class"):
            fit_classifier(x, y, x, pd.Series(np.ones(200, dtype=int)), categories={})
        few = pd.Series(np.r_[np.ones(3, dtype=int), np.zeros(197, dtype=int)])
        with pytest.raises(NotTrainable, match="3 positives"):
            fit_classifier(x, few, x, y, categories={}, min_positives=10)


def test_labels_come_from_later_rows_only() -> None:
    ev = pd.DataFrame(
        {
            "entity": ["A", "A", "B", "C"],
            "time": pd.to_datetime(
                ["2025-12-31", "2026-03-31", "2026-04-02", "2026-01-01"], utc=True
            ),
            "amount": 1.0,
        }
    )
    ents = pd.Index(["A", "B", "C", "D"])
    y = labels_at(ev, ents, T, 90)
    assert y.to_dict() == {"A": 1, "B": 0, "C": 0, "D": 0}  # C: at the snapshot, not after
    churn = labels_at(ev, ents, T, 90, positive="no_event")
    assert churn.to_dict() == {"A": 0, "B": 1, "C": 1, "D": 1}


# ----------------------------------------------------------------------------- warehouse
def _warehouse(wh: Warehouse, n: int = 160, seed: int = 0) -> pd.Series:
    """Vehicles with a latent propensity p: spend per visit rises with p, and so does the
    rate of accessory visits (the label).  Returns p per VIN."""
    rng = np.random.default_rng(seed)
    vins = [f"V{i:04d}" for i in range(n)]
    p = pd.Series(rng.uniform(0, 1, n), index=vins)
    veh = pd.DataFrame(
        {
            "vin": vins,
            "msrp_cny": rng.choice([90000.0, 200000.0, 500000.0], n),
            "energy_type": "ICE",
        }
    )
    weeks = pd.date_range("2023-01-02", "2026-06-29", freq="28D")
    feats = []
    for v in vins:
        for w in weeks:
            feats.append(
                {
                    "vin": v,
                    "period_start": w,
                    "period": "week",
                    "spend_per_visit_cny": 400 + 1200 * p[v] + rng.normal(0, 150),
                    "visits_to_date": float(rng.integers(1, 20)),
                    "vehicle_age_years": 3.0,
                }
            )
    recs = []
    start, end = pd.Timestamp("2023-01-01"), pd.Timestamp("2027-01-01")
    for v in vins:
        t = start
        while True:
            t = t + pd.Timedelta(days=float(rng.exponential(365 / (0.2 + 10 * p[v]))))
            if t >= end:
                break
            recs.append(
                {"service_id": f"S{len(recs)}", "vin": v, "ts": t, "visit_type": "accessory"}
            )
            if rng.random() < 0.5:  # inspections never count
                recs.append(
                    {"service_id": f"S{len(recs)}", "vin": v, "ts": t, "visit_type": "inspection"}
                )
    for name, df in (("_veh", veh), ("_f", pd.DataFrame(feats)), ("_s", pd.DataFrame(recs))):
        wh.con.register(name, df)
    wh.con.execute("INSERT INTO vehicles (vin, msrp_cny, energy_type) SELECT * FROM _veh")
    consent_everyone(wh, vins, datetime(2022, 1, 1, tzinfo=UTC))
    wh.con.execute("CREATE TABLE features_service AS SELECT * FROM _f")
    wh.con.execute(
        "INSERT INTO service_records (service_id, vin, ts, visit_type) "
        "SELECT service_id, vin, ts AT TIME ZONE 'UTC', visit_type FROM _s"
    )
    return p


def test_train_score_store_and_reuse_until_retrain_is_due() -> None:
    cat = load_catalogue()
    spec = cat.tags[TAG]
    with Warehouse(":memory:") as wh:
        p = _warehouse(wh)
        ev = label_events(wh, spec)
        assert set(ev["entity"]) <= set(p.index) and len(ev) > 0
        notes: dict[str, str] = {}
        out = build_tags(wh, cat, as_of=T, tags=[TAG], notes=notes)
        assert notes == {}
        models = list_models(wh)
        assert len(models) == 1 and models["method"].iloc[0] == "model"
        m = latest_model(wh, spec, T)
        assert m is not None and (out["model_version"] == m.version).all()
        snaps = snapshot_dates(spec, T)
        assert m.snapshots == [s.isoformat() for s in snaps]
        assert snaps[-1] == T - timedelta(days=90)  # every label observed by T
        met = m.fit.metrics
        assert met["valid_snapshots"] == 2 and met["train_snapshots"] + met["purged_snapshots"] == 6
        assert met["purged_snapshots"] == 2  # 90-day windows overlapping the first valid snapshot
        assert met["auc"] > 0.6 and 0 < met["brier"] < 0.25
        # scores: calibrated probabilities, grades by the declared cut-offs, SHAP reasons
        assert out["score"].between(0, 1).all()
        grade = np.where(out["score"] >= 0.6, "high", np.where(out["score"] >= 0.3, "mid", "low"))
        assert (out["value"] == grade).all()
        r = json.loads(out["reasons"].iloc[0])
        assert len(r["top_reasons"]) == 3 and r["model"] == m.version
        assert {"feature", "contribution", "value"} <= set(r["top_reasons"][0])
        top = {t["feature"] for t in r["top_reasons"]}
        assert top <= set(m.fit.features)
        # a later score ranks vehicles as their later (realised) behaviour does
        got = out.set_index("entity")["score"]
        y = labels_at(ev, got.index, T, 90)
        from sklearn.metrics import roc_auc_score

        auc, oracle = roc_auc_score(y, got), roc_auc_score(y, p[got.index])
        print(f"later-window AUC {auc:.3f}, oracle (true p) {oracle:.3f}, valid {met['auc']:.3f}")
        assert auc > 0.7 and auc > oracle - 0.08
        # not due two weeks later: the stored model scores, nothing is trained
        assert not model_due(m, spec, T + timedelta(days=14))
        later = build_tags(wh, cat, as_of=T + timedelta(days=14), tags=[TAG])
        assert len(list_models(wh)) == 1
        assert (later["model_version"] == m.version).all()
        # due after the monthly retrain cadence: a new version is trained and stored
        assert model_due(m, spec, T + timedelta(days=30))
        build_tags(wh, cat, as_of=T + timedelta(days=30), tags=[TAG])
        assert len(list_models(wh)) == 2
        newest = latest_model(wh, spec, T + timedelta(days=30))
        assert newest is not None and newest.version != m.version
        # an as-of before any model never uses a later one
        assert latest_model(wh, spec, T - timedelta(days=1)) is None


def test_too_few_labels_gives_no_assignment_and_a_reason() -> None:
    cat = load_catalogue()
    with Warehouse(":memory:") as wh:
        _warehouse(wh, n=8)
        notes: dict[str, str] = {}
        out = build_tags(wh, cat, as_of=T, tags=[TAG, "l1_vehicle_tier"], notes=notes)
        assert set(out["tag_id"]) == {"l1_vehicle_tier"}
        assert "labelled rows" in notes[TAG] and "needs 100" in notes[TAG]
        assert list_models(wh).empty


def _spenders(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Features, next-year spend and previous-year spend of ``n`` synthetic customers."""
    rng = np.random.default_rng(seed)
    freq = rng.gamma(2.0, 1.5, size=n)
    aov = rng.lognormal(5.0, 0.4, size=n)
    buys = rng.poisson(freq)
    spend = np.array(
        [rng.gamma(4.0, a / 4.0, size=k).sum() for a, k in zip(aov, buys, strict=True)]
    )
    before = np.array(
        [rng.gamma(4.0, a / 4.0, size=k).sum() for a, k in zip(aov, rng.poisson(freq), strict=True)]
    )
    x = pd.DataFrame({"frequency": freq, "avg_order_value": aov, "noise": rng.normal(size=n)})
    return x, pd.Series(spend), pd.Series(before)


class TestFitRegressor:
    def test_learns_spend_and_beats_the_naive_baseline(self) -> None:
        from scipy.stats import spearmanr
        from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

        (xt, yt, _), (xv, yv, before) = _spenders(1500, 0), _spenders(600, 1)
        fit = fit_regressor(xt, yt, xv, yv, categories={}, naive_valid=before)
        pv = fit.predict(xv)
        assert (pv >= 0).all() and fit.calibrator == {}
        m = fit.metrics
        assert m["mae"] == pytest.approx(mean_absolute_error(yv, pv))
        assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(yv, pv)))
        assert m["r2"] == pytest.approx(r2_score(yv, pv))
        assert m["spearman"] == pytest.approx(spearmanr(pv, yv).statistic)
        assert m["mae_naive"] == pytest.approx(mean_absolute_error(yv, before))
        assert m["rmse_naive"] == pytest.approx(np.sqrt(mean_squared_error(yv, before)))
        oracle = xv["frequency"] * xv["avg_order_value"]  # the true expected spend
        assert m["spearman"] > spearmanr(oracle, yv).statistic - 0.05
        assert m["rmse"] < m["rmse_naive"] and m["r2"] > 0.3
        # the mean prediction is close to the mean spend (Tweedie's log link is unbiased)
        assert pv.mean() == pytest.approx(yv.mean(), rel=0.1)
        # SHAP contributions (log scale) sum to the log prediction
        c = fit.contributions(xv)
        np.testing.assert_allclose(np.exp(c.sum(axis=1)), pv, rtol=1e-6)

    def test_refuses_negative_or_all_zero_labels(self) -> None:
        x, y, _ = _spenders(200, 2)
        with pytest.raises(NotTrainable, match="negative"):
            fit_regressor(x, y - 1e6, x, y, categories={})
        with pytest.raises(NotTrainable, match="non-zero labels"):
            fit_regressor(x, y * 0, x, y, categories={})


def test_amounts_at_sums_the_window_and_floors_net_returns() -> None:
    ev = pd.DataFrame(
        {
            "entity": ["A", "A", "B", "B", "C"],
            "time": pd.to_datetime(
                ["2026-01-05", "2026-03-01", "2026-01-07", "2026-01-08", "2025-12-31"], utc=True
            ),
            "amount": [100.0, 50.0, 80.0, -200.0, 999.0],
        }
    )
    got = amounts_at(ev, pd.Index(["A", "B", "C", "D"]), T, 90)
    assert got.to_dict() == {"A": 150.0, "B": 0.0, "C": 0.0, "D": 0.0}


def test_ltv_regression_tag_trains_scores_and_explains() -> None:
    """cm_ltv end to end on synthetic customers: snapshots, purged split, scores, reasons."""
    cat = load_catalogue()
    spec = cat.tags["cm_ltv"]
    assert spec.model is not None and spec.model.task == "regression"
    rng = np.random.default_rng(7)
    n = 120
    ids = pd.Index([f"C{i:03d}" for i in range(n)])
    rate = rng.gamma(2.0, 2.0, size=n)  # orders a year: the customer's hidden habit
    aov = rng.lognormal(5.0, 0.3, size=n)
    start = T - timedelta(days=5 * 365)  # every snapshot has a full year behind it
    rows = []
    for i in range(n):
        k = rng.poisson(rate[i] * 5)
        for t in rng.uniform(0, 5 * 365, size=k):
            rows.append(
                (ids[i], start + timedelta(days=float(t)), float(aov[i] * rng.lognormal(0, 0.3)))
            )
    events = pd.DataFrame(rows, columns=["entity", "time", "amount"])
    events["time"] = pd.to_datetime(events["time"], utc=True)

    def env_at(s: datetime) -> pd.DataFrame:
        past = events[
            (events["time"] <= pd.Timestamp(s))
            & (events["time"] > pd.Timestamp(s) - pd.Timedelta(days=365))
        ]
        g = past.groupby("entity")["amount"]
        out = pd.DataFrame(index=ids)
        out["frequency"] = g.size().reindex(ids).fillna(0).astype(float)
        out["monetary"] = g.sum().reindex(ids).fillna(0.0)
        out["avg_order_value"] = g.mean().reindex(ids)
        out["orders_to_date"] = out["frequency"]
        out["recency_days"] = (
            (pd.Timestamp(s) - past.groupby("entity")["time"].max())
            .dt.days.reindex(ids)
            .astype(float)
        )
        out["repurchase_interval_days"] = 365.0 / out["frequency"].where(out["frequency"] > 0)
        out["cm_rfm_tier"] = np.where(out["monetary"] >= 1000, "high_value", "potential")
        return out

    tiers = {"cm_rfm_tier": ["high_value", "potential", "churn_warning"]}
    model = train_tag_model(spec, env_at, events, T, tag_values=tiers)
    assert model.task == "regression" and model.fit.calibrator == {}
    m = model.fit.metrics
    assert m["train_snapshots"] == 4 and m["valid_snapshots"] == 2
    # measured: Spearman 0.67 on the validation snapshots, where the hidden expected spend
    # reaches 0.74 against the same realised years (one year of orders is a noisy sample);
    # RMSE 341 against 383 for last year's spend as the forecast, R^2 0.48
    assert m["spearman"] > 0.55 and m["rmse"] < m["rmse_naive"] and m["r2"] > 0.3
    scored = score_entities(spec, model, env_at(T), tag_values=tiers, events=events, as_of=T)
    assert len(scored) == n
    truth = pd.Series(rate * aov, index=ids)  # expected spend next year
    rho = spearmanr(scored.set_index("entity")["score"], truth.loc[scored["entity"]]).statistic
    print(f"cm_ltv: validation {m}; Spearman of scores at T with the expected spend {rho:.3f}")
    assert rho > 0.7  # measured 0.815
    r = json.loads(scored["reasons"].iloc[0])
    assert r["grade"] == "prediction" and r["prediction"] == pytest.approx(
        scored["score"].iloc[0], rel=1e-5
    )
    assert float(scored["value"].iloc[0]) == pytest.approx(scored["score"].iloc[0], rel=1e-5)
    assert len(r["top_reasons"]) == 3


def test_train_tag_model_rejects_empty_data() -> None:
    cat = load_catalogue()
    empty = pd.DataFrame(columns=["entity", "time", "amount"])
    with pytest.raises(NotTrainable, match="no label events in orders"):
        train_tag_model(cat.tags["cm_ltv"], lambda s: pd.DataFrame(), empty, T, tag_values={})
    spec = cat.tags[TAG]
    assert spec.model is not None

    def nothing(s: datetime) -> pd.DataFrame:
        return pd.DataFrame(columns=list(spec.model.features))  # type: ignore[union-attr]

    with pytest.raises(NotTrainable, match="no label events in orders, service_records"):
        train_tag_model(spec, nothing, empty, T, tag_values={})
    one = pd.DataFrame({"entity": ["A"], "time": pd.to_datetime(["2025-06-01"], utc=True)})
    with pytest.raises(NotTrainable, match="0 labelled rows"):
        train_tag_model(spec, nothing, one.assign(amount=1.0), T, tag_values={})


# ----------------------------------------------------------------------------- catalogue
def _with_label(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "cat"
    shutil.copytree(builtin_dir(), folder)
    p = folder / "l4_potential.yaml"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))
    return folder


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'where: "visit_type in',
            'where: "visit_kind in',
            "service_records has no column 'visit_kind'",
        ),
        (
            "{table: orders, entity: vin",
            "{table: reviews, entity: vin",
            "not listed in label sources",
        ),
        ("{table: orders, entity: vin", "{table: nope, entity: vin", "unknown table 'nope'"),
        ('time: ts, where: "visit_type', 'time: when, where: "visit_type', "no column 'when'"),
        ('where: "visit_type in [', 'where: "visit_type in [[', "column"),
        ("horizon_days: 90\n", "horizon_days: 90\n        colour: red\n", "colour: unknown key"),
    ],
)
def test_bad_label_declarations_name_file_and_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    folder = _with_label(tmp_path, old, new)
    with pytest.raises(CatalogError) as err:
        load_catalogue(folder)
    text = str(err.value)
    assert "l4_potential.yaml:" in text and message in text
    line = int(text.split("l4_potential.yaml:")[1].split(":")[0])
    src = (folder / "l4_potential.yaml").read_text().splitlines()
    assert "events" in "\n".join(src[line - 3 : line + 1]) or "colour" in src[line - 1]


def test_cli_lists_stored_models(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from autopersona.cli import app
    from autopersona.tags.model import save_fit_record

    db = tmp_path / "wh.duckdb"
    with Warehouse(db) as wh:
        save_fit_record(
            wh,
            tag_id="l2_driving_style",
            version="cl-abc",
            method="cluster",
            algorithm="kmeans",
            as_of=T,
            tag_digest="d",
            catalogue_version="c",
            metrics={"k": 3, "silhouette": 0.5, "candidates": [{"k": 3}]},
            artifact={"centroids": {}},
        )
        save_fit_record(  # the same version again is not stored twice
            wh,
            tag_id="l2_driving_style",
            version="cl-abc",
            method="cluster",
            algorithm="kmeans",
            as_of=T,
            tag_digest="d",
            catalogue_version="c",
            metrics={},
            artifact={},
        )
    runner = CliRunner()
    res = runner.invoke(app, ["tags", "models", "-w", str(db), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [(r["version"], r["method"]) for r in rows] == [("cl-abc", "cluster")]
    assert rows[0]["metrics"] == {"k": 3, "silhouette": 0.5}  # candidates left out
    res = runner.invoke(app, ["tags", "models", "-w", str(db)])
    assert res.exit_code == 0 and "silhouette=0.5" in res.output
    res = runner.invoke(app, ["tags", "models", "-w", str(db), "--tag", "l4_ubi_risk"])
    assert res.exit_code == 0 and "no stored models" in res.output
