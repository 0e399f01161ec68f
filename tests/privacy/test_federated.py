"""Vertical federated training: PSI alignment, AUC against central training, no raw row leaves."""

from __future__ import annotations

import copy
import gc
import json
import pickle
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import autopersona.privacy.federated as federated
from autopersona.privacy.federated import (
    CONSENT_COLUMN,
    FIXED_POINT_BITS,
    LABEL_FILE,
    PARTIES,
    PARTY_ORDER,
    Coordinator,
    PartyData,
    PartyNode,
    RawDataExport,
    audit_record,
    central_baseline,
    decode_fixed,
    encode_fixed,
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


def _consenting(path: Path) -> set[str]:
    df = pd.read_parquet(path)
    return set(df.loc[df[CONSENT_COLUMN], "id"])


def _true_intersection(folder: Path) -> set[str]:
    """People every party holds *and* who consented to partner sharing at every party."""
    sets = [_consenting(folder / p / "rows.parquet") for p in PARTY_ORDER]
    return _consenting(folder / LABEL_FILE).intersection(*sets)


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

    def handle(
        self, msg: tuple[list[np.ndarray], dict[str, Any]]
    ) -> tuple[list[np.ndarray], dict[str, Any]]:
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
    party's reply alone is a uniform 64-bit integer while their sum modulo 2^64 is the
    exact score change, and the model's AUC stays within 0.02 of central training."""
    from sklearn.metrics import roc_auc_score

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
        assert all(v.dtype == np.uint64 for v in each)
        # alone, a reply read as a signed fixed-point number is of the order of 2^31
        assert all(np.std(decode_fixed(v)) > 2.0 ** (61 - FIXED_POINT_BITS) for v in each)
        total = decode_fixed(np.asarray(np.sum(np.stack(each), axis=0, dtype=np.uint64)))
        assert np.std(total) < 10  # unmasked: a change of the logit


# ----------------------------------------------------------------------------- consent
def test_only_consenting_people_take_part(parties: Path, tmp_path: Path) -> None:
    """Each party loads, hence enters into the PSI, only its consenting people; a person
    who did not consent at some party never reaches training: changing every
    non-consenting row leaves the model bit for bit the same.  AUC federated vs central
    training on the same consenting population: within 0.02."""
    for p in PARTY_ORDER:
        rows = pd.read_parquet(parties / p / "rows.parquet")
        assert 0 < len(PartyData.load(parties, p)) == int(rows[CONSENT_COLUMN].sum()) < len(rows)
    fed = run_in_process(parties, newton_rounds=ROUNDS)
    truth = _true_intersection(parties)
    everyone = set(pd.read_parquet(parties / LABEL_FILE)["id"]).intersection(
        *(set(pd.read_parquet(parties / p / "rows.parquet")["id"]) for p in PARTY_ORDER)
    )
    assert set(fed.train_ids) | set(fed.test_ids) == truth
    refused = everyone - truth
    assert len(refused) > 0.1 * len(everyone)  # the consent filter has work to do
    central = central_baseline(parties, fed.train_ids, fed.test_ids)["pooled"]
    print(
        f"consenting population {len(truth)} of {len(everyone)} shared people: "
        f"federated AUC {fed.auc_test:.4f}, central {central:.4f}"
    )
    assert abs(fed.auc_test - central) < 0.02
    # scramble every non-consenting row of every party (and flip their labels): nothing moves
    other = tmp_path / "scrambled"
    shutil.copytree(parties, other)
    rng = np.random.default_rng(0)
    for p in PARTY_ORDER:
        path = other / p / "rows.parquet"
        df = pd.read_parquet(path)
        off = ~df[CONSENT_COLUMN]
        for c in PARTIES[p]:
            df.loc[off, c] = rng.normal(1e3, 1e3, int(off.sum()))
        df.to_parquet(path, index=False)
    lab = pd.read_parquet(other / LABEL_FILE)
    lab.loc[~lab[CONSENT_COLUMN], "claim"] = 1 - lab.loc[~lab[CONSENT_COLUMN], "claim"]
    lab.to_parquet(other / LABEL_FILE, index=False)
    again = run_in_process(other, newton_rounds=ROUNDS)
    assert again.train_ids == fed.train_ids and again.test_ids == fed.test_ids
    assert again.test_scores == fed.test_scores and again.loss_history == fed.loss_history


def test_parties_without_consent_flags_are_refused(parties: Path, tmp_path: Path) -> None:
    other = tmp_path / "old"
    shutil.copytree(parties, other)
    path = other / "charging" / "rows.parquet"
    pd.read_parquet(path).drop(columns=[CONSENT_COLUMN]).to_parquet(path, index=False)
    with pytest.raises(ValueError, match=CONSENT_COLUMN):
        PartyData.load(other, "charging")


# ----------------------------------------------------------------------------- secure aggregation
def _newton_replies(audit: Path) -> dict[str, list[list[np.ndarray]]]:
    out: dict[str, list[list[np.ndarray]]] = {}
    for p in PARTY_ORDER:
        for f in sorted(audit.glob(f"{p}-*-out-*.npz")):
            with np.load(f, allow_pickle=False) as z:
                if json.loads(str(z["config"]))["op"] == "newton":
                    out.setdefault(p, []).append([z[k] for k in ("a0", "a1", "a2")])
    return out


def test_fixed_point_encoding_round_trips_and_refuses_overflow() -> None:
    v = np.array([0.0, 1.0, -1.0, 1e-9, -123.456789, 2.0**28])
    assert np.allclose(decode_fixed(encode_fixed(v)), v, rtol=0, atol=2.0**-FIXED_POINT_BITS)
    four = [encode_fixed(np.full(3, 2.0**28)) for _ in range(4)]
    total = np.asarray(np.sum(np.stack(four), axis=0, dtype=np.uint64))
    assert np.all(decode_fixed(total) == 2.0**30)
    with pytest.raises(ValueError, match="cannot encode"):
        encode_fixed(np.array([2.0**30]))
    with pytest.raises(ValueError, match="cannot encode"):
        encode_fixed(np.array([np.nan]))


def test_secure_aggregation_is_exact_and_each_reply_is_uniform(
    parties: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Masks cancel exactly (the sums, hence the model, are bit for bit those of the same run
    without masks); a single masked reply is uniform over 64-bit integers, whatever its data
    (each of its 64 bits is a fair coin and uncorrelated with the value it hides; without
    the mask the high bits are constant); and the model matches the previous protocol's
    (float sums, no masks) to fixed-point rounding."""
    from scipy.stats import chisquare, pearsonr

    masked = run_in_process(parties, audit=tmp_path / "m", newton_rounds=ROUNDS)
    with monkeypatch.context() as mp:
        mp.setattr(PartyNode, "_mask", lambda self, n, step: np.zeros(n, dtype=np.uint64))
        plain = run_in_process(parties, audit=tmp_path / "p", newton_rounds=ROUNDS)
    assert masked.test_scores == plain.test_scores  # exact cancellation
    assert masked.loss_history == plain.loss_history
    rm, rp = _newton_replies(tmp_path / "m"), _newton_replies(tmp_path / "p")
    for step in range(ROUNDS):
        for i in range(3):
            sm = np.sum(np.stack([rm[p][step][i] for p in PARTY_ORDER]), axis=0, dtype=np.uint64)
            sp = np.sum(np.stack([rp[p][step][i] for p in PARTY_ORDER]), axis=0, dtype=np.uint64)
            assert np.array_equal(sm, sp)
    # one party's masked replies over every round: uniform bits, independent of the data
    reply = np.concatenate([r[0] for r in rm["carmaker"]])
    data = np.concatenate([r[0] for r in rp["carmaker"]])  # the same values, unmasked
    n = len(reply)
    bits = (reply[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    freq = bits.mean(axis=0)
    assert np.all(np.abs(freq - 0.5) < 5 * 0.5 / np.sqrt(n)), freq
    plain_bits = (data[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    # the control: unmasked, the high bits all repeat the sign (values far below 2^30)
    assert np.all(plain_bits[:, 62] == plain_bits[:, 63])
    assert abs(np.mean(bits[:, 62] == bits[:, 63]) - 0.5) < 5 * 0.5 / np.sqrt(n)
    top = (reply >> np.uint64(56)).astype(np.int64)
    assert chisquare(np.bincount(top, minlength=256)).pvalue > 1e-3
    value = decode_fixed(data)
    as_unit = reply.astype(np.float64) / 2.0**64
    assert abs(pearsonr(as_unit, value).statistic) < 5 / np.sqrt(n)
    assert abs(pearsonr(bits[:, 63].astype(float), value < 0).statistic) < 5 / np.sqrt(n)
    print(
        f"{n} masked values of one party: bit frequencies {freq.min():.3f}-{freq.max():.3f}; "
        f"bits 62 and 63 agree in {np.mean(bits[:, 62] == bits[:, 63]):.3f} (unmasked: "
        f"{np.mean(plain_bits[:, 62] == plain_bits[:, 63]):.3f})"
    )
    # the previous protocol: float replies summed as floats, without masks
    with monkeypatch.context() as mp:
        mp.setattr(PartyNode, "_mask", lambda self, n, step: np.zeros(n))
        mp.setattr(federated, "encode_fixed", lambda v: np.asarray(v, dtype=np.float64))
        mp.setattr(federated, "decode_fixed", lambda t: np.asarray(t, dtype=np.float64))
        floats = run_in_process(parties, newton_rounds=ROUNDS)
    assert floats.train_ids == masked.train_ids
    gap = np.max(np.abs(np.array(floats.test_scores) - np.array(masked.test_scores)))
    print(
        f"fixed point vs float aggregation: max test score difference {gap:.2e}, AUC "
        f"{masked.auc_test:.6f} vs {floats.auc_test:.6f}"
    )
    assert gap < 1e-6 and abs(floats.auc_test - masked.auc_test) < 1e-9
