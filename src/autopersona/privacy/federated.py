r"""Vertical federated training of the L4 UBI-risk model across four parties, with Flower.

Four organisations hold different features of the same people:

=============  ============================================  ===========================
party          features (its own rows, on its own premises)  role
=============  ============================================  ===========================
``carmaker``   driving: harsh braking, night and highway      passive party
               shares, monthly distance
``insurer``    claims history: prior claims, policy years,    passive party (features);
               driver age                                     its coordinator holds the
                                                              label and the top model
``charging``   charging: fast-charge and night-charge share,  passive party
               sessions per week
``ecommerce``  orders: performance and safety accessories,    passive party
               spend
=============  ============================================  ===========================

The label — a claim in the following year — belongs to the insurer, whose **coordinator**
(the Flower server) holds it together with the top model.  Each party's **bottom model** is
linear (``f_k = X_k w_k`` on its locally standardised features); the top model adds the
parties' scores and a bias and applies the logistic function, so the whole is a logistic
regression over every party's features (the "hetero-LR" of vertical federated learning), fit
with an L2 penalty ``lam/2 · |w|²``.

Consent: only people who consented to ``partner_sharing`` take part.  Each party's rows
carry its own consent flag (a ``partner_sharing`` column, read from the party's consent
registry; :func:`make_parties` simulates it); :meth:`PartyData.load` keeps only the
consenting rows, so each party enters only its consenting people into the PSI, and the
coordinator likewise enters only its consenting policyholders.  The intersection, hence
training and evaluation, holds people who consented at every party; a non-consenting
person's rows never leave their party's loader, let alone reach a message.  A folder
without the flag is refused (opt-in: no decision, no consent).

Protocol (one Flower round per step; :class:`Coordinator` and :class:`PartyNode` are
transport-free, :func:`flower_strategy` / :func:`flower_client_app` carry them over Flower):

1. ``psi`` — private set intersection on pseudonymous ids (:mod:`autopersona.privacy.psi`):
   parties return blinded points only (of their consenting people);
2. ``align`` — the coordinator sends each party positions in its own blinded list for the
   training and test rows; parties standardise their columns on their training rows;
3. ``newton`` (repeated) — the coordinator sends per-row gradient ``g = p - y`` and curvature
   ``h = p(1 - p)`` of the log-loss with respect to the score; each party solves its own
   block Newton step ``d_k = -(X_kᵀ H X_k + lam I)⁻¹ (X_kᵀ g + lam w_k)`` and returns only
   ``X_k d_k`` on the aligned rows (its score change) and three scalars for the penalty,
   securely aggregated (below);
   the coordinator line-searches a common step ``alpha`` on its labels and sends it with the
   next gradient; parties then apply ``w_k += alpha d_k``;
4. ``finish`` — parties apply the last step (their bottom models stay with them).

Raw rows never leave a party: :class:`PartyData` refuses to be pickled or copied out, and
the messages carry blinded points, positions, per-row scores and gradients only.  Two
protections cover what those would still reveal:

* **Exact secure aggregation of the scores.**  A party's score change ``X_k d_k`` is a
  projection of its rows; the coordinator needs only the sum over parties.  In the ``psi``
  round every party also returns an X25519 public key; the coordinator relays all keys with
  ``align``; each pair of parties derives a shared seed (Diffie–Hellman, which the
  coordinator cannot compute).  Every round, each party encodes its reply in fixed point —
  ``round(v · 2^FIXED_POINT_BITS)`` as an integer modulo 2^64 (:data:`FIXED_POINT_BITS` =
  32 fractional bits; values up to 2^29 in magnitude, far above any score change, keep the
  sum over four parties clear of wrap-around; a larger value is refused) — and adds, modulo
  2^64, one uniform 64-bit mask per other party, drawn from ChaCha20 keyed by the pair's
  seed and the round (the lower-ordered party of a pair adds it, the other subtracts it).
  The masks cancel **exactly** in the coordinator's modular sum, which it decodes back to
  floats (rounding error at most 2^-33 per party and value); and since every reply carries
  at least one uniform mask unknown to the coordinator, each reply on its own is uniformly
  distributed over the 2^64 integers whatever the data (perfect hiding, given the seeds stay
  secret).  A dropped party stops the round (no mask recovery).
* **Noisy gradients.**  Per-row gradients ``p - y`` tell a party the sign of each training
  label (label leakage, a known property of split learning).  With ``gradient_noise = σ``
  the coordinator adds Gaussian noise N(0, σ²) to every row's gradient before sending it
  (the same noisy vector to every party); its own line search uses the exact labels.
  A row's label moves its gradient by exactly 1, so each round is a Gaussian mechanism with
  sensitivity 1 on that row's label; the test reports how far label inference from the
  gradients falls and how close the model stays to central training.

The comparison baseline, :func:`central_baseline`, pools the parties' raw rows in one
place — which the federation exists to avoid — and fits scikit-learn's logistic regression
with the same penalty on the same split.  The federated model should match it.

Data: :func:`make_parties` simulates the four parties' tables for a population (each
party covers a different subset, plus people only it knows) with a known claim model and
each party's ``partner_sharing`` consent flags; it writes each party's rows to its own
folder and the labels (with the insurer's flags) to the coordinator's.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autopersona.privacy.psi import BlindingKey, hash_points, points_from_array, points_to_array

__all__ = [
    "CONSENT_COLUMN",
    "FIXED_POINT_BITS",
    "LABEL_FILE",
    "PARTIES",
    "Coordinator",
    "FederatedResult",
    "PartyData",
    "PartyNode",
    "RawDataExport",
    "central_baseline",
    "decode_fixed",
    "encode_fixed",
    "flower_client_app",
    "flower_strategy",
    "make_parties",
    "run_in_process",
    "scan_audit",
    "simulate_flower",
]

#: Each party's features, in column order.
PARTIES: dict[str, tuple[str, ...]] = {
    "carmaker": ("harsh_brake_per_100km", "night_share", "highway_share", "monthly_km"),
    "insurer": ("prior_claims", "policy_years", "driver_age"),
    "charging": ("fast_charge_share", "night_charge_share", "sessions_per_week"),
    "ecommerce": ("performance_parts_orders", "safety_accessory_orders", "spend_cny"),
}
PARTY_ORDER = tuple(PARTIES)
#: The coordinator's label file (under the data folder; read only by the coordinator).
LABEL_FILE = "_coordinator/claims_label.parquet"
#: Fractional bits of the fixed-point encoding of the securely aggregated replies.
FIXED_POINT_BITS = 32
#: Largest magnitude a party may encode: four parties' values sum without wrapping modulo
#: 2^64 (two's complement: |sum| < 2^63).
FIXED_POINT_LIMIT = float(2 ** (63 - FIXED_POINT_BITS - 2))
#: The consent column of every party's rows (and of the coordinator's labels).
CONSENT_COLUMN = "partner_sharing"
Msg = tuple[list[np.ndarray], dict[str, Any]]


class RawDataExport(RuntimeError):
    """Something tried to move a party's raw rows out of the party."""


# ============================================================================ party data
class PartyData:
    """One party's rows (ids and features). They stay inside the party's process.

    Only computations on the rows are offered (blinded ids, standardised products); the
    object refuses pickling, copying and ``repr`` of its contents, so it cannot be put into
    a message or sent to another process by mistake.
    """

    __slots__ = ("__features", "__ids", "columns", "party")

    def __init__(self, party: str, ids: Sequence[str], features: np.ndarray) -> None:
        if party not in PARTIES:
            raise ValueError(f"unknown party {party!r}; expected one of {list(PARTIES)}")
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape != (len(ids), len(PARTIES[party])):
            raise ValueError(f"{party}: features must be (rows, {len(PARTIES[party])})")
        self.party = party
        self.columns = PARTIES[party]
        self.__ids = list(ids)
        self.__features = x

    def __reduce__(self) -> tuple[object, ...]:
        raise RawDataExport(f"{self.party}: raw rows never leave the party")

    def __copy__(self) -> PartyData:
        raise RawDataExport(f"{self.party}: raw rows never leave the party")

    def __deepcopy__(self, memo: dict[int, object]) -> PartyData:
        raise RawDataExport(f"{self.party}: raw rows never leave the party")

    def __repr__(self) -> str:
        return f"PartyData({self.party!r}, {len(self)} rows, columns={list(self.columns)})"

    def __len__(self) -> int:
        return len(self.__ids)

    @classmethod
    def load(cls, folder: Path, party: str) -> PartyData:
        """Read the party's consenting rows from its own folder (``<folder>/<party>/rows.parquet``).

        Only rows whose :data:`CONSENT_COLUMN` is true are kept: the others are not part of
        the party's data for partner sharing at all.
        """
        df = pd.read_parquet(folder / party / "rows.parquet")
        missing = [c for c in ("id", CONSENT_COLUMN, *PARTIES[party]) if c not in df.columns]
        if missing:
            raise ValueError(f"{folder / party / 'rows.parquet'}: missing column(s) {missing}")
        df = df[df[CONSENT_COLUMN].fillna(False).astype(bool)]
        return cls(party, df["id"].astype(str).tolist(), df[list(PARTIES[party])].to_numpy())

    def blinded_ids(self, key: BlindingKey, order: np.ndarray) -> list[bytes]:
        """The party's ids hashed to points and blinded, in ``order`` (a permutation)."""
        return key.blind(hash_points([self.__ids[i] for i in order]))

    def standardised(self, rows: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """Standardised features of ``rows`` (kept inside the party)."""
        out: np.ndarray = (self.__features[rows] - mean) / std
        return out

    def column_stats(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (1 for constant columns) over ``rows``."""
        x = self.__features[rows]
        std = x.std(axis=0)
        return x.mean(axis=0), np.where(std > 0, std, 1.0)


# ============================================================================ secure aggregation
def encode_fixed(values: np.ndarray) -> np.ndarray:
    """Fixed-point encoding modulo 2^64: ``round(v · 2^FIXED_POINT_BITS)`` as ``uint64``.

    Negative values wrap (two's complement).  Values beyond :data:`FIXED_POINT_LIMIT` are
    refused: the sum of four parties' values must not wrap.

    >>> decode_fixed(encode_fixed(np.array([1.5, -2.25])) + encode_fixed(np.array([0.5, 0.25])))
    array([ 2., -2.])
    """
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)) or np.any(np.abs(v) > FIXED_POINT_LIMIT):
        raise ValueError(
            f"cannot encode values beyond +-{FIXED_POINT_LIMIT:g} (or non-finite) in fixed point"
        )
    out: np.ndarray = np.rint(v * 2.0**FIXED_POINT_BITS).astype(np.int64).view(np.uint64)
    return out


def decode_fixed(total: np.ndarray) -> np.ndarray:
    """Floats from a fixed-point sum modulo 2^64 (read as a signed 64-bit integer).

    Raises
    ------
    ValueError
        For anything but ``uint64`` (e.g. a party's unencoded float reply).
    """
    a = np.asarray(total)
    if a.dtype != np.uint64:
        raise ValueError(f"a fixed-point sum is uint64, not {a.dtype}")
    out: np.ndarray = a.view(np.int64) / 2.0**FIXED_POINT_BITS
    return out


def _keystream(seed: bytes, step: int, n: int) -> np.ndarray:
    """``n`` uniform 64-bit words: ChaCha20 keyed by ``seed`` with nonce ``step``.

    The cipher's 16-byte IV is a 4-byte block counter (from 0) and a 12-byte nonce: the round
    goes in the nonce, so no two rounds share key stream (in the counter they would overlap).
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    nonce = bytes(4) + int(step).to_bytes(12, "little")
    enc = Cipher(algorithms.ChaCha20(seed, nonce), mode=None).encryptor()
    stream = enc.update(bytes(8 * n))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64)


def _modular_sum(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The element-wise sum of the parties' replies (modulo 2^64 for ``uint64``)."""
    total = np.array(parts[0], copy=True)
    for a in parts[1:]:
        total = total + a
    return total


# ============================================================================ party side
class PartyNode:
    """A party's side of the protocol: answers the coordinator's requests.

    ``state`` holds what must survive between rounds (permutation, aligned rows, bottom
    model, pending step) as numpy arrays, so a Flower client can keep it in its context.
    """

    def __init__(self, data: PartyData, state: dict[str, np.ndarray], lam: float = 1.0) -> None:
        self.data = data
        self.state = state
        self.lam = lam

    def handle(self, msg: Msg) -> Msg:
        """Answer one request; the reply's config always names the party."""
        arrays, config = msg
        op = str(config.get("op"))
        handler: dict[str, Callable[[list[np.ndarray], dict[str, Any]], list[np.ndarray]]] = {
            "psi": self._psi,
            "align": self._align,
            "newton": self._newton,
            "finish": self._finish,
        }
        if op not in handler:
            raise ValueError(f"{self.data.party}: unknown request {op!r}")
        return handler[op](arrays, config), {"party": self.data.party, "op": op}

    def _psi(self, arrays: list[np.ndarray], config: dict[str, Any]) -> list[np.ndarray]:
        key = BlindingKey()  # used for this exchange only
        perm = np.random.default_rng().permutation(len(self.data))
        self.state["perm"] = perm.astype(np.int64)
        theirs = key.blind(points_from_array(arrays[0]))
        ours = self.data.blinded_ids(key, perm)
        return [points_to_array(theirs), points_to_array(ours), self._mask_key()]

    def _mask_key(self) -> np.ndarray:
        """A fresh X25519 key pair for the masks; the private half stays in the state."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
            PublicFormat,
        )

        sk = X25519PrivateKey.generate()
        raw = sk.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        self.state["mask_sk"] = np.frombuffer(raw, dtype=np.uint8).copy()
        pub = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return np.frombuffer(pub, dtype=np.uint8).copy()

    def _mask_seeds(self, keys: np.ndarray, order: list[str]) -> None:
        """Shared seeds with every other party (+1: this party adds the mask, -1: subtracts)."""
        import hashlib

        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey,
            X25519PublicKey,
        )

        sk = X25519PrivateKey.from_private_bytes(bytes(self.state.pop("mask_sk")))
        me = order.index(self.data.party)
        seeds, signs = [], []
        for j, other in enumerate(order):
            if j == me:
                continue
            shared = sk.exchange(X25519PublicKey.from_public_bytes(bytes(keys[j])))
            pair = "|".join(sorted((self.data.party, other)))
            digest = hashlib.sha256(b"autopersona/fl-mask|" + pair.encode() + shared).digest()
            seeds.append(np.frombuffer(digest, dtype=np.uint8))
            signs.append(1 if me < j else -1)
        self.state["mask_seeds"] = np.array(seeds, dtype=np.uint8).reshape(-1, 32)
        self.state["mask_signs"] = np.array(signs, dtype=np.int64)

    def _mask(self, n: int, step: int) -> np.ndarray:
        """The party's share of the round's masks modulo 2^64 (they sum to 0 over the parties).

        One uniform 64-bit mask per other party: the ChaCha20 key stream of the pair's seed,
        with the round as nonce, added by one party of the pair and subtracted by the other.
        """
        out = np.zeros(n, dtype=np.uint64)
        seeds = self.state.get("mask_seeds")
        if seeds is None:
            return out
        for seed, sign in zip(seeds, self.state["mask_signs"], strict=True):
            m = _keystream(bytes(seed), int(step), n)
            out = out + m if int(sign) > 0 else out - m  # modulo 2^64 (uint64 wraps)
        return out

    def _align(self, arrays: list[np.ndarray], config: dict[str, Any]) -> list[np.ndarray]:
        perm = self.state["perm"]
        train, test = perm[arrays[0].astype(np.int64)], perm[arrays[1].astype(np.int64)]
        mean, std = self.data.column_stats(train)
        self.state.update(
            train=train,
            test=test,
            mean=mean,
            std=std,
            w=np.zeros(len(self.data.columns)),
            d=np.zeros(len(self.data.columns)),
        )
        if len(arrays) > 2 and "mask_sk" in self.state:
            self._mask_seeds(arrays[2], str(config["parties"]).split(","))
        return [np.array([len(train), len(test)], dtype=np.int64)]

    def _apply(self, config: dict[str, Any]) -> None:
        self.state["w"] = self.state["w"] + float(config.get("alpha", 0.0)) * self.state["d"]

    def _newton(self, arrays: list[np.ndarray], config: dict[str, Any]) -> list[np.ndarray]:
        self._apply(config)
        g, h = arrays[0].astype(np.float64), arrays[1].astype(np.float64)
        s = self.state
        x = self.data.standardised(s["train"], s["mean"], s["std"])
        if len(g) != len(x) or len(h) != len(x):
            raise ValueError(f"{self.data.party}: gradient for {len(g)} rows, aligned {len(x)}")
        w = s["w"]
        hess = x.T @ (x * h[:, None]) + self.lam * np.eye(len(w))
        d = -np.linalg.solve(hess, x.T @ g + self.lam * w)
        s["d"] = d
        xt = self.data.standardised(s["test"], s["mean"], s["std"])
        norms = np.array([w @ w, w @ d, d @ d])
        out = encode_fixed(np.concatenate([x @ d, xt @ d, norms]))
        out = out + self._mask(len(out), int(config.get("step", 0)))
        return [out[: len(x)], out[len(x) : len(x) + len(xt)], out[len(x) + len(xt) :]]

    def _finish(self, arrays: list[np.ndarray], config: dict[str, Any]) -> list[np.ndarray]:
        self._apply(config)
        self.state["d"] = np.zeros_like(self.state["w"])
        return [np.array([float(np.linalg.norm(self.state["w"]))])]


# ============================================================================ coordinator
@dataclass
class FederatedResult:
    """Outcome of a federated training run (held by the coordinator)."""

    parties: list[str]
    intersection: int
    train_rows: int
    test_rows: int
    rounds: int
    auc_test: float
    loss_history: list[float] = field(default_factory=list)
    bias: float = 0.0
    train_ids: list[str] = field(default_factory=list, repr=False)
    test_ids: list[str] = field(default_factory=list, repr=False)
    test_scores: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def _logloss(z: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.logaddexp(0.0, z) - y * z))


class Coordinator:
    """The label holder's side: PSI, alignment, top model, line search, evaluation.

    Parameters
    ----------
    ids, labels
        The coordinator's own people (the insurer's policyholders) and their claim label.
    newton_rounds
        Block-Newton steps (each one Flower round).
    lam
        L2 penalty of every party's weights (scikit-learn's ``C = 1 / lam``).
    test_share, seed
        Held-out share of the intersection and the split's seed.
    gradient_noise, noise_seed
        Standard deviation of the Gaussian noise on the per-row gradients sent to the
        parties (0: exact gradients), and its random seed (default: fresh entropy).
    """

    def __init__(
        self,
        ids: Sequence[str],
        labels: Sequence[int],
        *,
        parties: Sequence[str] = PARTY_ORDER,
        newton_rounds: int = 8,
        lam: float = 1.0,
        test_share: float = 0.3,
        seed: int = 0,
        gradient_noise: float = 0.0,
        noise_seed: int | None = None,
    ) -> None:
        if len(ids) != len(labels):
            raise ValueError("ids and labels differ in length")
        if gradient_noise < 0:
            raise ValueError("gradient_noise must be >= 0")
        self.gradient_noise = gradient_noise
        self._noise = np.random.default_rng(noise_seed)
        self.ids = list(ids)
        self.y_all = np.asarray(labels, dtype=np.float64)
        self.parties = list(parties)
        self.newton_rounds = newton_rounds
        self.lam = lam
        self.test_share = test_share
        self.seed = seed
        self._key = BlindingKey()
        self._blinded_own = self._key.blind(hash_points(self.ids))
        self.round = 0
        self.alpha = 0.0
        self.losses: list[float] = []
        self.result: FederatedResult | None = None

    @property
    def total_rounds(self) -> int:
        """Rounds the protocol takes: psi, align, newton steps, finish."""
        return 3 + self.newton_rounds

    @classmethod
    def from_folder(cls, folder: Path, **kwargs: Any) -> Coordinator:
        """Coordinator reading the label file of ``folder`` (its consenting people only)."""
        df = pd.read_parquet(folder / LABEL_FILE)
        if CONSENT_COLUMN not in df.columns:
            raise ValueError(f"{folder / LABEL_FILE}: missing column {CONSENT_COLUMN!r}")
        df = df[df[CONSENT_COLUMN].fillna(False).astype(bool)]
        return cls(df["id"].astype(str).tolist(), df["claim"].astype(int).tolist(), **kwargs)

    # -------------------------------------------------------------- requests
    def requests(self) -> dict[str, Msg]:
        """What to send to each party in the next round (advances the round)."""
        self.round += 1
        r = self.round
        if r == 1:
            a = points_to_array(self._blinded_own)
            return {p: ([a], {"op": "psi"}) for p in self.parties}
        if r == 2:
            cfg: dict[str, Any] = {"op": "align", "parties": ",".join(self.parties)}
            return {
                p: ([self._pos_train[p], self._pos_test[p], self._mask_keys], dict(cfg))
                for p in self.parties
            }
        if r < self.total_rounds:
            g = _sigmoid(self.z_train) - self.y_train
            h = _sigmoid(self.z_train) * (1.0 - _sigmoid(self.z_train))
            if self.gradient_noise > 0:
                g = g + self._noise.normal(0.0, self.gradient_noise, len(g))
            cfg = {"op": "newton", "alpha": self.alpha, "step": r}
            return {p: ([g, h], dict(cfg)) for p in self.parties}
        if r == self.total_rounds:
            return {p: ([], {"op": "finish", "alpha": self.alpha}) for p in self.parties}
        raise RuntimeError("the protocol is over")

    def receive(self, replies: Mapping[str, Msg]) -> None:
        """Take the parties' replies to the current round."""
        missing = set(self.parties) - set(replies)
        if missing:
            raise RuntimeError(f"round {self.round}: no reply from {sorted(missing)}")
        r = self.round
        if r == 1:
            self._intersect(replies)
        elif r == 2:
            self.z_train = np.zeros(len(self.y_train))
            self.z_test = np.zeros(len(self.y_test))
            self.bias = 0.0
        elif r < self.total_rounds:
            self._line_search(replies)
        else:
            self._finish()

    def _intersect(self, replies: Mapping[str, Msg]) -> None:
        member = np.ones(len(self.ids), dtype=bool)
        where: dict[str, dict[bytes, int]] = {}
        mine: dict[str, list[bytes]] = {}
        for p in self.parties:
            arrays, _ = replies[p]
            a2 = points_from_array(arrays[0])
            if len(a2) != len(self.ids):
                raise RuntimeError(f"{p}: returned {len(a2)} points for {len(self.ids)}")
            b2 = self._key.blind(points_from_array(arrays[1]))
            where[p] = {pt: j for j, pt in enumerate(b2)}
            mine[p] = a2
            member &= np.array([pt in where[p] for pt in a2])
        keys = [replies[p][0][2] if len(replies[p][0]) > 2 else None for p in self.parties]
        if any(k is None or np.asarray(k).shape != (32,) for k in keys):
            raise RuntimeError("every party must send a 32-byte mask key with its psi reply")
        self._mask_keys = np.stack([np.asarray(k, dtype=np.uint8) for k in keys])
        idx = np.flatnonzero(member)
        if len(idx) < 20:
            raise RuntimeError(f"the parties share only {len(idx)} people: too few to train")
        rng = np.random.default_rng(self.seed)
        idx = rng.permutation(idx)
        n_test = round(len(idx) * self.test_share)
        self.test_idx, self.train_idx = np.sort(idx[:n_test]), np.sort(idx[n_test:])
        self.y_train, self.y_test = self.y_all[self.train_idx], self.y_all[self.test_idx]
        self._pos_train = {
            p: np.array([where[p][mine[p][i]] for i in self.train_idx], dtype=np.int64)
            for p in self.parties
        }
        self._pos_test = {
            p: np.array([where[p][mine[p][i]] for i in self.test_idx], dtype=np.int64)
            for p in self.parties
        }
        self.intersection = len(idx)

    def _line_search(self, replies: Mapping[str, Msg]) -> None:
        from scipy.optimize import minimize_scalar

        # the masked replies sum (modulo 2^64) to the parties' fixed-point total
        sums = [
            decode_fixed(_modular_sum([np.asarray(replies[p][0][i]) for p in self.parties]))
            for i in range(3)
        ]
        dz, dz_test = sums[0], sums[1]
        if len(dz) != len(self.z_train) or len(dz_test) != len(self.z_test):
            raise RuntimeError("a party replied with scores for the wrong number of rows")
        ww, wd, dd = (float(v) for v in sums[2])
        p_now = _sigmoid(self.z_train)
        g, h = p_now - self.y_train, p_now * (1 - p_now)
        db = -float(g.sum()) / max(float(h.sum()), 1e-12)
        y, z, lam = self.y_train, self.z_train, self.lam

        def objective(a: float) -> float:
            return _logloss(z + a * (dz + db), y) + 0.5 * lam * (ww + 2 * a * wd + a * a * dd)

        best = minimize_scalar(objective, bounds=(0.0, 2.0), method="bounded")
        self.alpha = float(best.x)
        self.z_train = z + self.alpha * (dz + db)
        self.z_test = self.z_test + self.alpha * (dz_test + db)
        self.bias += self.alpha * db
        self.losses.append(float(best.fun) / len(y))

    def _finish(self) -> None:
        from sklearn.metrics import roc_auc_score

        self.result = FederatedResult(
            parties=self.parties,
            intersection=self.intersection,
            train_rows=len(self.y_train),
            test_rows=len(self.y_test),
            rounds=self.round,
            auc_test=float(roc_auc_score(self.y_test, self.z_test)),
            loss_history=self.losses,
            bias=self.bias,
            train_ids=[self.ids[i] for i in self.train_idx],
            test_ids=[self.ids[i] for i in self.test_idx],
            test_scores=[float(v) for v in self.z_test],
        )


# ============================================================================ audit
def audit_record(folder: Path, who: str, direction: str, msg: Msg) -> None:
    """Write one exchanged message (arrays and config) to ``folder`` for later inspection."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays, config = msg
    payload: dict[str, np.ndarray] = {f"a{i}": np.asarray(a) for i, a in enumerate(arrays)}
    payload["config"] = np.array(json.dumps(config, sort_keys=True, default=str))
    n = len(list(folder.glob(f"{who}-*.npz")))
    name = f"{who}-{n:05d}-{direction}-{os.getpid()}-{os.urandom(3).hex()}.npz"
    np.savez(folder / name, **payload)  # type: ignore[arg-type]


def run_in_process(
    folder: Path,
    *,
    audit: Path | None = None,
    newton_rounds: int = 8,
    lam: float = 1.0,
    gradient_noise: float = 0.0,
    noise_seed: int | None = None,
) -> FederatedResult:
    """Run the protocol without Flower (each party still only sees its own folder)."""
    coord = Coordinator.from_folder(
        folder,
        newton_rounds=newton_rounds,
        lam=lam,
        gradient_noise=gradient_noise,
        noise_seed=noise_seed,
    )
    nodes = {p: PartyNode(PartyData.load(folder, p), {}, lam) for p in PARTY_ORDER}
    for _ in range(coord.total_rounds):
        replies = {}
        for p, msg in coord.requests().items():
            if audit is not None:
                audit_record(audit, p, "in", msg)
            replies[p] = nodes[p].handle(msg)
            if audit is not None:
                audit_record(audit, p, "out", replies[p])
        coord.receive(replies)
    assert coord.result is not None
    return coord.result


def scan_audit(audit: Path, folder: Path) -> list[str]:
    """Referee check over every recorded message: no raw row or id may cross a party boundary.

    The referee (a test harness, which may read every party's folder) checks each recorded
    message against the parties' raw data:

    * **shape whitelist** — only blinded points ``(n, 32)`` uint8, 1-D position arrays and
      1-D float vectors may be exchanged; any other 2-D array (a feature matrix) is a leak;
    * **values** — no exchanged float equals a raw value of a continuous feature column
      (an exact float64 match cannot happen by chance);
    * **rows** — no exchanged vector equals a raw feature row;
    * **ids** — no raw identifier (VIN) appears in any array's bytes or any config value,
      and no *unblinded* id point ``H(id)`` appears (ids only travel blinded).

    Returns the violations found (empty when clean).
    """
    import re

    raw = {p: pd.read_parquet(folder / p / "rows.parquet") for p in PARTY_ORDER}
    ids = {str(i) for df in raw.values() for i in df["id"]}
    plain_points = set(hash_points(sorted(ids)))
    continuous: set[float] = set()
    rows: set[tuple[float, ...]] = set()
    for party, df in raw.items():
        x = df[list(PARTIES[party])].to_numpy(dtype=np.float64)
        rows |= {tuple(r) for r in x}
        for j in range(x.shape[1]):
            col = x[:, j]
            if len(np.unique(col)) > 50 and np.any(col != np.round(col)):
                continuous |= set(col[col != np.round(col)].tolist())
    widths = {len(c) for c in PARTIES.values()}
    id_re = re.compile(r"[A-Z][A-Z0-9]{8,}")
    files = sorted(audit.glob("*.npz"))
    if not files:
        return [f"{audit}: no recorded messages to check"]
    out: list[str] = []
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            config = str(z["config"])
            arrays = [z[k] for k in z.files if k != "config"]
        found = set(id_re.findall(config)) & ids
        if found:
            out.append(f"{f.name}: raw id(s) in the message config, e.g. {sorted(found)[0]}")
        for i, a in enumerate(arrays):
            where = f"{f.name}[{i}] {a.dtype}{a.shape}"
            text = a.tobytes().decode("latin-1")
            hit = set(id_re.findall(text)) & ids
            if hit:
                out.append(f"{where}: raw id(s) in the bytes, e.g. {sorted(hit)[0]}")
            if a.dtype == np.uint8 and a.ndim == 2 and a.shape[1] == 32:
                if any(bytes(r) in plain_points for r in a):
                    out.append(f"{where}: an id point travels unblinded")
                continue
            if a.ndim > 1:
                out.append(f"{where}: matrix-shaped payload (only vectors may be exchanged)")
            if a.dtype.kind == "f":
                flat = a.astype(np.float64).ravel()
                same = int(np.isin(flat, list(continuous)).sum()) if continuous else 0
                if same:
                    out.append(f"{where}: {same} raw feature value(s)")
            vectors = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)
            if vectors.shape[1] in widths and any(tuple(map(float, v)) in rows for v in vectors):
                out.append(f"{where}: a raw feature row")
    return out


# ============================================================================ Flower
def flower_strategy(coordinator: Coordinator) -> Any:
    """A Flower strategy that runs ``coordinator`` (one fit round per protocol round)."""
    from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.strategy import Strategy

    class VerticalStrategy(Strategy):
        """Vertical federated training: per-party instructions, no weight averaging."""

        def __init__(self) -> None:
            self.cid_party: dict[str, str] = {}

        def initialize_parameters(self, client_manager: Any) -> Any:
            return ndarrays_to_parameters([])

        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            n = len(coordinator.parties)
            client_manager.wait_for(n, timeout=120)
            clients = list(client_manager.all().values())
            reqs = coordinator.requests()
            out = []
            for c in clients:
                party = self.cid_party.get(c.cid)
                if server_round == 1:
                    arrays, cfg = next(iter(reqs.values()))  # the same request to all
                elif party is None:
                    continue
                else:
                    arrays, cfg = reqs[party]
                out.append((c, FitIns(ndarrays_to_parameters(arrays), cfg)))
            return out

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            if failures:
                first = failures[0]
                why = first if isinstance(first, BaseException) else first[1].status
                raise RuntimeError(f"round {server_round}: {len(failures)} party failure(s): {why}")
            replies: dict[str, Msg] = {}
            for proxy, res in results:
                party = str(res.metrics["party"])
                if server_round == 1:
                    if party in replies or party not in coordinator.parties:
                        raise RuntimeError(f"unexpected or duplicate party {party!r}")
                    self.cid_party[proxy.cid] = party
                replies[party] = (parameters_to_ndarrays(res.parameters), dict(res.metrics))
            coordinator.receive(replies)
            return None, {}

        def configure_evaluate(
            self, server_round: int, parameters: Any, client_manager: Any
        ) -> Any:
            return []

        def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
            return None, {}

        def evaluate(self, server_round: int, parameters: Any) -> Any:
            return None

    return VerticalStrategy()


def _party_of(node_config: Mapping[str, Any], party: str | None = None) -> str:
    if party is not None:
        return party
    if "party" in node_config:
        return str(node_config["party"])
    return PARTY_ORDER[int(node_config["partition-id"])]


def _state_key() -> str:
    return "vertical_party"


def flower_client_app(
    folder: Path | None = None,
    audit: Path | None = None,
    lam: float = 1.0,
    party: str | None = None,
) -> Any:
    """A Flower ``ClientApp``: each node answers as the party named by its node config.

    A node's party is ``party`` when given (a deployed node), else ``node_config["party"]``
    or its partition id (simulation); its rows from ``folder`` (default: ``$AUTOPERSONA_FL_DATA``).  With
    ``audit`` (default: ``$AUTOPERSONA_FL_AUDIT`` when set) a Flower *mod* — below the
    client code, at the message layer — writes every message in and out to that folder.
    """
    from flwr.app import Array, ArrayRecord
    from flwr.client import ClientApp, NumPyClient

    def data_dir() -> Path:
        if folder is not None:
            return folder
        env = os.environ.get("AUTOPERSONA_FL_DATA")
        if not env:
            raise RuntimeError("no party data folder: pass folder= or set AUTOPERSONA_FL_DATA")
        return Path(env)

    class Party(NumPyClient):
        def __init__(self, context: Any) -> None:
            self.context = context
            self.party = _party_of(context.node_config, party)

        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return []

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            key = _state_key()
            store = self.context.state
            state: dict[str, np.ndarray] = {}
            if key in store:
                state = {k: v.numpy() for k, v in store[key].items()}
            node = PartyNode(PartyData.load(data_dir(), self.party), state, lam)
            arrays, meta = node.handle((parameters, dict(config)))
            store[key] = ArrayRecord({k: Array(np.asarray(v)) for k, v in node.state.items()})
            return arrays, 1, meta

    def client_fn(context: Any) -> Any:
        return Party(context).to_client()

    mods = []
    audit_dir = audit or (
        Path(os.environ["AUTOPERSONA_FL_AUDIT"]) if os.environ.get("AUTOPERSONA_FL_AUDIT") else None
    )
    if audit_dir is not None:
        mods.append(_audit_mod(audit_dir, party))
    return ClientApp(client_fn=client_fn, mods=mods)


def _message_arrays(content: Any) -> Msg:
    arrays: list[np.ndarray] = []
    config: dict[str, Any] = {}
    for name, rec in content.items():
        if hasattr(rec, "to_numpy_ndarrays"):
            for a in rec.values():
                try:
                    arrays.append(np.asarray(a.numpy()))
                except (EOFError, ValueError, TypeError):  # not a numpy payload: keep the bytes
                    arrays.append(np.frombuffer(bytes(a.data), dtype=np.uint8))
        else:
            for k, v in rec.items():
                config[f"{name}.{k}"] = v.hex() if isinstance(v, bytes) else v
    return arrays, config


def _audit_mod(folder: Path, party: str | None) -> Callable[..., Any]:
    def audit(msg: Any, context: Any, call_next: Callable[..., Any]) -> Any:
        who = _party_of(context.node_config, party)
        if msg.has_content():
            audit_record(folder, who, "in", _message_arrays(msg.content))
        reply = call_next(msg, context)
        if reply.has_content():
            audit_record(folder, who, "out", _message_arrays(reply.content))
        return reply

    return audit


def simulate_flower(
    folder: Path,
    *,
    audit: Path | None = None,
    newton_rounds: int = 8,
    lam: float = 1.0,
    gradient_noise: float = 0.0,
    noise_seed: int | None = None,
) -> FederatedResult:
    """Run the protocol in Flower's simulation engine (Ray, loopback only, 4 virtual nodes)."""
    from flwr.server import ServerApp, ServerConfig

    os.environ["AUTOPERSONA_FL_DATA"] = str(folder)
    # Ray replaces 127.0.0.1 by the host's address unless "clusters" are off, and then binds
    # its GCS, raylet and worker servers to that address; keep every one on loopback.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray._private.ray_constants as ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:  # imported before the variable was set
        ray_constants.ENABLE_RAY_CLUSTER = False
    # Ray otherwise warns (FutureWarning) that it will stop overriding accelerator env vars.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    coord = Coordinator.from_folder(
        folder,
        newton_rounds=newton_rounds,
        lam=lam,
        gradient_noise=gradient_noise,
        noise_seed=noise_seed,
    )
    server = ServerApp(
        config=ServerConfig(num_rounds=coord.total_rounds), strategy=flower_strategy(coord)
    )
    try:
        _run_simulation(server, folder, audit, lam)
    finally:
        import ray

        if ray.is_initialized():  # Flower leaves Ray's local cluster up; stop what we started
            ray.shutdown()
    if coord.result is None:
        raise RuntimeError(f"the simulation stopped in round {coord.round}")
    return coord.result


def _run_simulation(server: Any, folder: Path, audit: Path | None, lam: float) -> None:
    from flwr.simulation import run_simulation

    run_simulation(
        server_app=server,
        client_app=flower_client_app(folder, audit, lam),
        num_supernodes=len(PARTY_ORDER),
        backend_config={
            "client_resources": {"num_cpus": 1},
            "init_args": {
                "num_cpus": 2,
                "include_dashboard": False,
                "log_to_driver": False,
                "_node_ip_address": "127.0.0.1",  # Ray on loopback only
            },
        },
    )


# ============================================================================ data + baseline
def make_parties(
    folder: Path,
    n: int = 2000,
    seed: int = 0,
    coverage: float = 0.9,
    consent: float = 0.8,
    declined: float = 0.05,
) -> Path:
    """Simulate the four parties' tables and the insurer's labels under ``folder``.

    Each party holds a random ``coverage`` share of the population plus 10% people only it
    knows; ids are VIN-like.  The claim probability is a logistic function of latent driving
    aggressiveness, night exposure, mileage and risk taste that every party sees a noisy
    part of.  Consent: a person agrees to partner sharing with probability ``consent``; each
    party records it in its :data:`CONSENT_COLUMN`, except that a consenting person declined
    it at a given party with probability ``declined`` (so some people consent at some
    parties only).  The coordinator's labels carry the insurer's flags.  Returns ``folder``.
    """
    rng = np.random.default_rng(seed)
    agrees = np.random.default_rng([seed, 1]).random(n) < consent
    aggr, night, expo, taste = rng.normal(size=(4, n))
    age = np.clip(45 - 8 * aggr + rng.normal(0, 10, n), 18, 85)
    ids = np.array([f"LSV{seed:02d}{i:012d}" for i in range(n)])

    def noise(s: float) -> np.ndarray:
        return rng.normal(0, s, n)

    def sig(z: np.ndarray) -> np.ndarray:
        out: np.ndarray = 1 / (1 + np.exp(-z))
        return out

    cols: dict[str, np.ndarray] = {
        "harsh_brake_per_100km": np.clip(2 + 0.9 * aggr + noise(0.8), 0, None),
        "night_share": sig(-1.2 + 0.9 * night + noise(0.5)),
        "highway_share": sig(0.3 * expo + noise(0.8)),
        "monthly_km": 1500 * np.exp(0.35 * expo + noise(0.3)),
        "prior_claims": rng.poisson(np.exp(-1.2 + 0.4 * aggr + 0.3 * expo)).astype(float),
        "policy_years": rng.integers(0, 16, n).astype(float),
        "driver_age": np.round(age),
        "fast_charge_share": sig(0.7 * aggr + 0.3 * expo + noise(0.7)),
        "night_charge_share": sig(0.8 * night + noise(0.8)),
        "sessions_per_week": rng.poisson(np.exp(0.8 + 0.3 * expo)).astype(float),
        "performance_parts_orders": rng.poisson(np.exp(-0.8 + 0.8 * taste)).astype(float),
        "safety_accessory_orders": rng.poisson(np.exp(-0.6 - 0.5 * taste)).astype(float),
        "spend_cny": 800 * np.exp(0.4 * taste + noise(0.6)),
    }
    logit = -1.6 + 0.8 * aggr + 0.5 * night + 0.45 * expo + 0.55 * taste - 0.01 * (age - 45)
    claim = (rng.random(n) < sig(logit)).astype(int)
    if folder.exists():
        shutil.rmtree(folder)
    flags_rng = np.random.default_rng([seed, 2])
    for k, (party, feats) in enumerate(PARTIES.items()):
        take = rng.random(n) < coverage
        extra = int(0.1 * n)
        xs = np.column_stack([cols[c][take] for c in feats])
        fake = np.column_stack([rng.permutation(cols[c])[:extra] for c in feats])
        party_ids = np.concatenate([ids[take], [f"X{k}{seed:02d}{i:011d}" for i in range(extra)]])
        here = agrees & (flags_rng.random(n) >= declined)
        flags = np.concatenate([here[take], flags_rng.random(extra) < consent])
        df = pd.DataFrame(np.vstack([xs, fake]), columns=list(feats))
        df.insert(0, "id", party_ids)
        df.insert(1, CONSENT_COLUMN, flags)
        df = df.sample(frac=1.0, random_state=seed + k).reset_index(drop=True)
        (folder / party).mkdir(parents=True)
        df.to_parquet(folder / party / "rows.parquet", index=False)
        if party == "insurer":
            lab = pd.DataFrame({"id": ids[take], "claim": claim[take], CONSENT_COLUMN: here[take]})
            (folder / LABEL_FILE).parent.mkdir(parents=True)
            lab.to_parquet(folder / LABEL_FILE, index=False)
    return folder


def central_baseline(
    folder: Path, train_ids: Sequence[str], test_ids: Sequence[str], lam: float = 1.0
) -> dict[str, float]:
    """Pool every party's raw rows (what federation avoids) and fit the same model centrally.

    scikit-learn's L2 logistic regression with ``C = 1 / lam`` on the same rows, features
    standardised per column on the training rows, as in the federation.  Also reports each
    party's features alone (what a party could do without the others).  Only consenting
    rows are pooled (as :meth:`PartyData.load` reads them), so the population is the
    federation's.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    frames = []
    for p in PARTY_ORDER:
        df = pd.read_parquet(folder / p / "rows.parquet")
        df = df[df[CONSENT_COLUMN].fillna(False).astype(bool)]
        frames.append(df.drop(columns=[CONSENT_COLUMN]).set_index("id"))
    pooled = pd.concat(frames, axis=1, join="inner")
    y = pd.read_parquet(folder / LABEL_FILE).set_index("id")["claim"]
    xtr, xte = pooled.loc[list(train_ids)], pooled.loc[list(test_ids)]
    mean, std = xtr.mean(), xtr.std(ddof=0).replace(0, 1)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    ytr, yte = y.loc[list(train_ids)].to_numpy(), y.loc[list(test_ids)].to_numpy()
    out: dict[str, float] = {}
    for name, cols in [("pooled", list(pooled.columns))] + [
        (p, list(PARTIES[p])) for p in PARTY_ORDER
    ]:
        model = LogisticRegression(C=1.0 / lam, max_iter=1000, tol=1e-10)
        model.fit(xtr[cols].to_numpy(), ytr)
        out[name] = float(roc_auc_score(yte, model.decision_function(xte[cols].to_numpy())))
    return out


# ============================================================================ loopback nodes
def serve(folder: Path, port: int, out: Path, newton_rounds: int = 8, lam: float = 1.0) -> None:
    """Run the coordinator as a real Flower server (gRPC on 127.0.0.1:``port``).

    Writes the :class:`FederatedResult` as JSON to ``out`` when training is over.
    """
    from flwr.server import ServerConfig, start_server

    coord = Coordinator.from_folder(folder, newton_rounds=newton_rounds, lam=lam)
    start_server(
        server_address=f"127.0.0.1:{port}",
        config=ServerConfig(num_rounds=coord.total_rounds),
        strategy=flower_strategy(coord),
    )
    if coord.result is None:
        raise RuntimeError(f"training stopped in round {coord.round}")
    out.write_text(json.dumps(coord.result.to_dict()))


def join(party: str, folder: Path, port: int, audit: Path | None = None, lam: float = 1.0) -> None:
    """Run one party as a real Flower client node connecting to 127.0.0.1:``port``."""
    from flwr.compat.client.app import start_client_internal

    app = flower_client_app(folder, audit, lam, party)
    start_client_internal(
        server_address=f"127.0.0.1:{port}",
        node_config={"party": party},
        load_client_app_fn=lambda *_: app,
        insecure=True,
        max_retries=30,
        max_wait_time=60.0,
    )


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="A node of the vertical federation (loopback).")
    ap.add_argument("role", choices=["server", *PARTY_ORDER])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--audit", type=Path)
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args(argv)
    if args.role == "server":
        serve(args.data, args.port, args.out or Path("federated-result.json"), args.rounds)
    else:
        join(args.role, args.data, args.port, args.audit)


if __name__ == "__main__":
    _main()
