"""Synthetic ``marketing_feedback`` events shared by the funnel and report tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from autopersona.store.warehouse import Warehouse

STEPS = ("sent", "delivered", "exposed", "clicked", "converted", "redeemed")
#: Side events of a message: (step, after which funnel step, probability).
SIDE = (("voice_reply", "exposed", 0.3), ("referral", "converted", 0.4))


def random_events(n_msgs: int, seed: int) -> pd.DataFrame:
    """Messages walking down the funnel, a few organic purchases and Hillstrom-like rows."""
    rng = np.random.default_rng(seed)
    rows = []
    t0 = pd.Timestamp("2026-03-01", tz="UTC")
    for i in range(n_msgs):
        person = f"P{rng.integers(0, n_msgs // 3 + 1)}"
        camp = ["s1", "s2"][i % 2]
        ch = ["head_unit", "app", "sms", "email"][int(rng.integers(0, 4))]
        arm = ["precision", "baseline"][int(rng.integers(0, 2))]
        ts = t0 + pd.Timedelta(hours=float(rng.uniform(0, 96)))
        probs = (1.0, 0.9, 0.7, 0.3, 0.4, 0.5)
        reached = []
        for step, p in zip(STEPS, probs, strict=True):
            if rng.random() > p:
                break
            reached.append(step)
        for side, after, p in SIDE:
            if after in reached and rng.random() < p:
                reached.append(side)
        for k, step in enumerate(reached):
            dwell = None
            if step in ("exposed", "clicked") and rng.random() < 0.8:
                dwell = float(rng.uniform(1, 60))
            rows.append(
                {
                    "event_id": f"m{i}-{step}",
                    "person_id": person,
                    "ts": ts + pd.Timedelta(minutes=10 * k),
                    "campaign_id": camp,
                    "decision_id": f"m{i}",
                    "arm": arm,
                    "channel": ch,
                    "event_type": step,
                    "value": float(rng.uniform(10, 500))
                    if step in ("converted", "referral")
                    else None,
                    "dwell_s": dwell,
                }
            )
    for j in range(n_msgs // 10):  # organic purchases: no decision, no channel
        rows.append(
            {
                "event_id": f"o{j}",
                "person_id": f"P{j}",
                "ts": t0 + pd.Timedelta(days=1),
                "campaign_id": "s1",
                "decision_id": None,
                "arm": "holdout",
                "channel": "none",
                "event_type": "converted",
                "value": 99.0,
                "dwell_s": None,
            }
        )
    return pd.DataFrame(rows)


def load_events(wh: Warehouse, ev: pd.DataFrame) -> None:
    """Append ``ev`` (contract columns) to the warehouse's ``marketing_feedback``."""
    ev = ev.copy()
    if "dwell_s" not in ev.columns:
        ev["dwell_s"] = None
    wh.con.register("_ev", ev)
    wh.con.execute(
        "INSERT INTO marketing_feedback SELECT event_id, person_id, ts, campaign_id, "
        "decision_id, arm, channel, event_type, value, dwell_s FROM _ev"
    )
    wh.con.unregister("_ev")
