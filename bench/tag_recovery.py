"""Recovery of cluster and model tags on a simulated fleet, with the ceilings the truth sets.

Simulates a clean fleet, ingests it and builds the features, then (truth read only to score):

* ``l2_driving_style`` (cluster tag) as of the end of the window: adjusted Rand index
  against the true style, and the ARI that K-means on the *true* aggressiveness reaches;
* ``l4_aftermarket_propensity`` (model tag) trained as of ``--train-as-of`` (labels from the
  warehouse only), then scored at four quarterly snapshots from that date; AUC of the
  pooled scores against the realised 90-day labels, and the AUC the *true* propensity
  reaches against the same labels (the ceiling the label noise allows); training time.

Service history runs from each vehicle's registration, so a short window (``--days``)
still gives years of labelled snapshots; driving features exist only inside the window.
Usage::

    python bench/tag_recovery.py [--vehicles 200] [--days 2] [--seed 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--train-as-of", default="2025-01-01")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))

    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, roc_auc_score

    from autopersona.features.build import build_features
    from autopersona.ingest.engine import ingest
    from autopersona.simulate import MessConfig, simulate
    from autopersona.simulate.config import DEFAULT_START
    from autopersona.store.warehouse import Warehouse
    from autopersona.tags.build import Builder, build_tags
    from autopersona.tags.model import labels_at, latest_model
    from autopersona.tags.spec import load_catalogue

    out: dict[str, Any] = {"vehicles": args.vehicles, "days": args.days, "seed": args.seed}
    cat = load_catalogue()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        simulate(
            vehicles=args.vehicles,
            days=args.days,
            seed=args.seed,
            out=base / "sim",
            mess=MessConfig.clean(),
            workers=args.workers,
        )
        with Warehouse(base / "wh.duckdb") as wh:
            ingest([base / "sim" / "tables"], wh)
            build_features(wh)
        out["prepare_seconds"] = round(time.perf_counter() - t0, 1)
        vt = pd.read_parquet(base / "sim" / "truth" / "vehicles_truth.parquet").set_index("vin")
        persons = pd.read_parquet(base / "sim" / "truth" / "persons.parquet").set_index("vin")
        end = datetime(DEFAULT_START.year, DEFAULT_START.month, DEFAULT_START.day, tzinfo=UTC)
        end += timedelta(days=args.days + 7)
        with Warehouse(base / "wh.duckdb") as wh:
            t0 = time.perf_counter()
            b = Builder(wh, cat, save=False)
            _, res = b.env("vin", ["l2_driving_style"], end)
            out["cluster_seconds"] = round(time.perf_counter() - t0, 2)
            style = res["l2_driving_style"].set_index("entity")["value"]
            truth = vt.loc[style.index, "driving_style"]
            out["style_vehicles"] = len(style)
            out["style_ari"] = round(float(adjusted_rand_score(truth, style)), 3)
            km = KMeans(3, n_init=4, random_state=0).fit_predict(
                vt.loc[style.index, ["aggressiveness"]]
            )
            out["style_ari_true_aggressiveness"] = round(float(adjusted_rand_score(truth, km)), 3)
            if len(style):
                r = json.loads(res["l2_driving_style"]["reasons"].iloc[0])
                out["style_fit"] = {"algorithm": r["algorithm"], "k": r["k"], **r["metrics"]}

            tag = "l4_aftermarket_propensity"
            t_as_of = datetime.fromisoformat(args.train_as_of).replace(tzinfo=UTC)
            t0 = time.perf_counter()
            notes: dict[str, str] = {}
            build_tags(wh, cat, as_of=t_as_of, tags=[tag], notes=notes)
            out["model_train_seconds"] = round(time.perf_counter() - t0, 2)
            model = latest_model(wh, cat.tags[tag], t_as_of)
            if model is None:
                out["model"] = notes.get(tag, "not trained")
            else:
                out["model"] = {"version": model.version, **model.fit.metrics}
                scorer = Builder(wh, cat, train=False, save=False)
                frames = []
                for snap in pd.date_range(t_as_of, periods=4, freq="91D"):
                    s = snap.to_pydatetime()
                    _, r2 = scorer.env("vin", cat.order([tag]), s)
                    sc = r2[tag].set_index("entity")["score"]
                    y = labels_at(scorer.events(tag), sc.index, s, 90)
                    frames.append(
                        pd.DataFrame(
                            {
                                "score": sc,
                                "y": y,
                                "p": persons.loc[sc.index, "aftermarket_propensity"],
                            }
                        )
                    )
                df = pd.concat(frames)
                out["later_rows"] = len(df)
                out["later_label_rate"] = round(float(df["y"].mean()), 3)
                out["later_auc"] = round(float(roc_auc_score(df["y"], df["score"])), 3)
                out["later_auc_true_propensity"] = round(float(roc_auc_score(df["y"], df["p"])), 3)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:32s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
