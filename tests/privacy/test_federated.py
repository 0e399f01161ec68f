"""Vertical federated training: PSI alignment, AUC against central training, no raw row leaves."""

from __future__ import annotations

import copy
import gc
import json
import pickle
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autopersona.privacy.federated import (
    LABEL_FILE,
    PARTIES,
    PARTY_ORDER,
    Coordinator,
    PartyData,
    PartyNode,
    RawDataExport,
    audit_record,
    central_baseline,
    make_parties,
    run_in_process,
    scan_audit,
    simulate_flower,
)

with warnings.catch_warnings():
    # Flower imports typer, which imports helpers click 8.5 deprecates (at import only)
    warnings.filterwarnings(
        "ignore", message=r"'click\.utils\.get_\w+' is deprecated", category=DeprecationWarning
    )
    import flwr.server
    import flwr.simulation  # noqa: F401
    import typer.testing  # noqa: F401

N = 1500
ROUNDS = 6


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_parties(tmp_path_factory.mktemp("fl") / "parties", n=N, seed=4)


def _true_intersection(folder: Path) -> set[str]:
    sets = [set(pd.read_parquet(folder / p / "rows.parquet")["id"]) for p in PARTY_ORDER]
    labelled = set(pd.read_parquet(folder / LABEL_FILE)["id"])
    return labelled.intersection(*sets)


def test_party_data_refuses_to_leave(parties: Path) -> None:
    data = PartyData.load(parties, "carmaker")
    for move in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(RawDataExport, match="never leave"):
            move(data)
    assert "LSV" not in repr(data) and "rows" in repr(data)


def test_in_process_matches_central_and_psi_finds_the_intersection(
    parties: Path, tmp_path: Path
) -> None:
    audit = tmp_path / "audit"
    fed = run_in_process(parties, audit=audit, newton_rounds=ROUNDS)
    truth = _true_intersection(parties)
    assert fed.intersection == len(truth)
    assert set(fed.train_ids) | set(fed.test_ids) == truth
    assert not set(fed.train_ids) & set(fed.test_ids)
    central = central_baseline(parties, fed.train_ids, fed.test_ids)
    assert abs(fed.auc_test - central["pooled"]) < 0.02
    # the federation is worth it: every party alone does worse than the pooled features
    assert all(central[p] < central["pooled"] - 0.01 for p in PARTY_ORDER)
    assert fed.loss_history == sorted(fed.loss_history, reverse=True)
    assert scan_audit(audit, parties) == []


class _LeakyNode(PartyNode):
    """A party that (wrongly) ships its raw rows: the referee must catch it."""

    def handle(self, msg):  # type: ignore[no-untyped-def]
        arrays, meta = super().handle(msg)
        raw = self.data._PartyData__features  # type: ignore[attr-defined]
        return [*arrays, raw[:5]], meta


def test_scan_catches_leaks(parties: Path, tmp_path: Path) -> None:
    coord = Coordinator.from_folder(parties, newton_rounds=1)
    node = _LeakyNode(PartyData.load(parties, "ecommerce"), {})
    for p, msg in coord.requests().items():
        if p == "ecommerce":
            audit_record(tmp_path / "a", p, "out", node.handle(msg))
    found = scan_audit(tmp_path / "a", parties)
    assert any("matrix-shaped payload" in v for v in found)
    assert any("raw feature value" in v for v in found)
    assert any("a raw feature row" in v for v in found)
    # ids in clear and unblinded id points are caught too
    ids = pd.read_parquet(parties / "charging" / "rows.parquet")["id"].tolist()[:3]
    from autopersona.privacy.psi import hash_points, points_to_array

    audit_record(tmp_path / "b", "charging", "out", ([points_to_array(hash_points(ids))], {}))
    audit_record(tmp_path / "b", "charging", "out", ([], {"note": ids[0]}))
    found = scan_audit(tmp_path / "b", parties)
    assert any("travels unblinded" in v for v in found)
    assert any("raw id(s) in the message config" in v for v in found)
    assert scan_audit(tmp_path / "empty", parties) != []


@pytest.mark.slow
# Ray (under Flower's simulation) opens /dev/null for its daemons' output and never closes
# it, and drops the Popen objects of daemons that ray.shutdown() stopped without reaping them
@pytest.mark.filterwarnings(
    r"ignore:unclosed file <_io\.\w+ name='/dev/null':ResourceWarning",
    r"ignore:subprocess \d+ is still running:ResourceWarning",
    # the same leftovers when they reach pytest's unraisable-exception hook instead
    r"ignore:Exception ignored in. <_io\.FileIO name='/dev/null':pytest.PytestUnraisableExceptionWarning",
)
def test_flower_simulation(parties: Path, tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    fed = simulate_flower(parties, audit=audit, newton_rounds=ROUNDS)
    gc.collect()  # collect Ray's leftovers while the filters above apply
    central = central_baseline(parties, fed.train_ids, fed.test_ids)
    print(f"simulation: federated AUC {fed.auc_test:.4f}, central {central['pooled']:.4f}")
    assert abs(fed.auc_test - central["pooled"]) < 0.02
    assert fed.intersection == len(_true_intersection(parties))
    files = list(audit.glob("*.npz"))
    # every party received and answered every round
    assert len(files) == 2 * len(PARTIES) * (3 + ROUNDS)
    assert scan_audit(audit, parties) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.integration
def test_flower_loopback_server_and_four_client_processes(parties: Path, tmp_path: Path) -> None:
    port, out, audit = _free_port(), tmp_path / "result.json", tmp_path / "audit"
    mod = [sys.executable, "-m", "autopersona.privacy.federated"]
    common = ["--data", str(parties), "--port", str(port)]
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("server", *PARTY_ORDER)}
    procs = {
        "server": subprocess.Popen(
            [*mod, "server", *common, "--out", str(out), "--rounds", str(ROUNDS)],
            stdout=logs["server"],
            stderr=subprocess.STDOUT,
        )
    }
    try:
        time.sleep(0.5)
        for p in PARTY_ORDER:
            procs[p] = subprocess.Popen(
                [*mod, p, *common, "--audit", str(audit)],
                stdout=logs[p],
                stderr=subprocess.STDOUT,
            )
        rc = procs["server"].wait(timeout=240)
        for p in PARTY_ORDER:
            procs[p].wait(timeout=60)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for fh in logs.values():
            fh.close()
    log = (tmp_path / "server.log").read_text()
    assert rc == 0, log[-3000:]
    assert f"127.0.0.1:{port}" in log or "gRPC server running" in log
    fed = json.loads(out.read_text())
    central = central_baseline(parties, fed["train_ids"], fed["test_ids"])
    print(f"loopback: federated AUC {fed['auc_test']:.4f}, central {central['pooled']:.4f}")
    assert abs(fed["auc_test"] - central["pooled"]) < 0.02
    assert all(procs[p].returncode == 0 for p in PARTY_ORDER)
    assert scan_audit(audit, parties) == []
    assert np.isfinite(fed["loss_history"]).all()


def test_cli_federated_reports_both_aucs() -> None:
    from typer.testing import CliRunner

    from autopersona.cli import app

    r = CliRunner().invoke(
        app, ["privacy", "federated", "--people", "700", "--rounds", "5", "--json"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert abs(out["auc_gap"]) < 0.02 and out["auc_federated"] > 0.6
    assert set(out["auc_single_party"]) == set(PARTY_ORDER)
    r = CliRunner().invoke(app, ["privacy", "federated", "--mode", "magic"])
    assert r.exit_code == 2


def _received_gradients(audit: Path, party: str) -> list[np.ndarray]:
    out = []
    for f in sorted(audit.glob(f"{party}-*-in-*.npz")):
        with np.load(f, allow_pickle=False) as z:
            if json.loads(str(z["config"]))["op"] == "newton":
                out.append(z["a0"].astype(np.float64))
    return out


def test_noisy_gradients_and_masked_scores_keep_the_model_close_to_central(
    parties: Path, tmp_path: Path
) -> None:
    """Gaussian noise (sigma 1) on the gradients the parties receive, pairwise masks on the
    scores they return: label inference from the gradients falls from certainty, every
    party's reply alone is noise of the mask's scale while their sum is the exact score
    change, and the model's AUC stays within 0.02 of central training."""
    from sklearn.metrics import roc_auc_score

    from autopersona.privacy.federated import MASK_SCALE

    audits = {s: tmp_path / f"audit-{s}" for s in (0.0, 1.0)}
    fed = {
        s: run_in_process(parties, audit=a, newton_rounds=ROUNDS, gradient_noise=s, noise_seed=1)
        for s, a in audits.items()
    }
    assert fed[0.0].train_ids == fed[1.0].train_ids
    central = central_baseline(parties, fed[1.0].train_ids, fed[1.0].test_ids)["pooled"]
    print(
        f"federated AUC: exact gradients {fed[0.0].auc_test:.4f}, noisy (sigma 1) "
        f"{fed[1.0].auc_test:.4f}; central {central:.4f}"
    )
    assert abs(fed[1.0].auc_test - central) < 0.02
    assert abs(fed[0.0].auc_test - central) < 0.02
    # label inference from what a party receives: exact per-row gradients give every label
    y = pd.read_parquet(parties / LABEL_FILE).set_index("id")["claim"].loc[fed[1.0].train_ids]
    infer = {
        s: [float(roc_auc_score(y, -g)) for g in _received_gradients(a, "carmaker")]
        for s, a in audits.items()
    }
    pooled = float(roc_auc_score(y, -np.mean(_received_gradients(audits[1.0], "carmaker"), 0)))
    print(
        f"label inference AUC from one round's gradients: exact {max(infer[0.0]):.3f}, noisy "
        f"{min(infer[1.0]):.3f}-{max(infer[1.0]):.3f}; from the mean of {ROUNDS} noisy rounds "
        f"{pooled:.3f}"
    )
    assert len(infer[1.0]) == ROUNDS and min(infer[0.0]) == 1.0
    assert max(infer[1.0]) < 0.85 and pooled < 0.95
    # masked replies: each party's score change is hidden, the sum over parties is not
    replies: dict[str, list[np.ndarray]] = {}
    for p in PARTY_ORDER:
        for f in sorted(audits[0.0].glob(f"{p}-*-out-*.npz")):
            with np.load(f, allow_pickle=False) as z:
                if json.loads(str(z["config"]))["op"] == "newton":
                    replies.setdefault(p, []).append(z["a0"])
    for step in range(ROUNDS):
        each = [replies[p][step] for p in PARTY_ORDER]
        assert all(np.std(v) > MASK_SCALE / 2 for v in each)
        assert np.std(np.sum(each, axis=0)) < 10  # unmasked: a change of the logit
