"""Private set intersection by commutative blinding on Curve25519 (Diffie–Hellman PSI).

Two parties, each with a set of identifiers, learn which identifiers they share without
showing each other the rest.  An identifier ``x`` is hashed to a curve point ``H(x)``
(SHA-256 with a domain tag, read as an X25519 u-coordinate); a party with secret scalar
``a`` *blinds* a point ``P`` to ``a·P`` (X25519 scalar multiplication).  Blinding commutes:
``a·(b·P) = b·(a·P)``, so ``H(x)`` blinded by both keys is the same whoever blinds first,
while a point blinded only by the other side's key cannot be tested against guessed
identifiers (that would need the key: the computational Diffie–Hellman problem).

The protocol used for vertical federated training (:mod:`autopersona.privacy.federated`)
between the coordinator S (set L) and each party P (set X):

1. S sends ``A = [s·H(l) for l in L]`` in its own order.
2. P replies with ``A' = [p·a for a in A]`` (same order) and ``B = [p·H(x) for x in X]`` in
   a secret random order ``π``.
3. S computes ``B' = [s·b for b in B]``; ``l`` is in ``X`` exactly when ``A'[i]`` is in
   ``B'``, and then S knows the *position in B* of the match.  S intersects over all parties
   and sends P only positions in ``B`` (in training order); P maps them through ``π`` to its
   own rows.

Threat model (semi-honest parties, no collusion): S learns the size of X and which of its
*own* identifiers every party holds — the alignment vertical training needs — but nothing
about P's other identifiers (it sees them only blinded by P's key).  P learns the size of L
and which of its own rows are in the final intersection, nothing about the rest of L.  It
does not protect against a malicious party that blinds identifiers it does not hold (a
party can always claim members), nor against S colluding with P (S could then unblind).
Hashing to a u-coordinate may land on the curve's twist; X25519's twist is secure and
blinding still commutes there.

Examples
--------
>>> s, p = BlindingKey(), BlindingKey()
>>> ours, theirs = ["VIN1", "VIN2", "VIN3"], ["VIN3", "VIN9", "VIN1"]
>>> a2 = p.blind(s.blind(hash_points(ours)))
>>> b2 = s.blind(p.blind(hash_points(theirs)))
>>> sorted(ours[i] for i, pt in enumerate(a2) if pt in set(b2))
['VIN1', 'VIN3']
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

__all__ = ["POINT_BYTES", "BlindingKey", "hash_points", "points_from_array", "points_to_array"]

POINT_BYTES = 32
_DOMAIN = b"autopersona/psi/v1|"


def hash_points(identifiers: Sequence[str]) -> list[bytes]:
    """Each identifier hashed to a Curve25519 u-coordinate (32 bytes, top bit clear)."""
    out = []
    for x in identifiers:
        h = bytearray(hashlib.sha256(_DOMAIN + x.encode("utf-8")).digest())
        h[31] &= 0x7F
        out.append(bytes(h))
    return out


class BlindingKey:
    """A secret X25519 scalar; :meth:`blind` multiplies points by it."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._key = X25519PrivateKey.from_private_bytes(secret or os.urandom(32))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a blinding key never leaves its party")

    def blind(self, points: Sequence[bytes]) -> list[bytes]:
        """``k·P`` for every point (32-byte u-coordinates)."""
        return [self._key.exchange(X25519PublicKey.from_public_bytes(p)) for p in points]


def points_to_array(points: Sequence[bytes]) -> np.ndarray:
    """Points as an ``(n, 32)`` uint8 array (for messages)."""
    if not points:
        return np.zeros((0, POINT_BYTES), dtype=np.uint8)
    return np.frombuffer(b"".join(points), dtype=np.uint8).reshape(-1, POINT_BYTES).copy()


def points_from_array(arr: np.ndarray) -> list[bytes]:
    """Inverse of :func:`points_to_array`; refuses arrays of the wrong shape or type."""
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != POINT_BYTES:
        raise ValueError(f"expected an (n, {POINT_BYTES}) uint8 array, got {arr.dtype} {arr.shape}")
    return [bytes(row) for row in arr]
