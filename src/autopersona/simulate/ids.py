"""Deterministic identifiers and random streams.

Every vehicle ``k`` gets its own :class:`numpy.random.SeedSequence`, equal to
``SeedSequence(seed).spawn(2)[0].spawn(n)[k]`` for any fleet size ``n > k``, so a vehicle's
data never depends on how many vehicles are simulated. Shared things (weather, product
catalogue, POI pools) use the second child ``SeedSequence(seed).spawn(2)[1]``.

Examples
--------
>>> a = vehicle_seed(7, 3).generate_state(2)
>>> b = np.random.SeedSequence(7).spawn(2)[0].spawn(10)[3].generate_state(2)
>>> bool((a == b).all())
True
>>> make_id("ACC", 7, "x") == make_id("ACC", 7, "x")
True
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = [
    "STREAMS",
    "make_id",
    "shared_rng",
    "vehicle_rngs",
    "vehicle_seed",
]

#: Named random streams of one vehicle (independent, so changing one module's draws never
#: shifts another module's).
STREAMS = (
    "person",
    "vehicle",
    "plan",
    "drive",
    "cabin",
    "business",
    "commerce",
    "identity",
    "mess",
    "energy",
)

#: Shared (fleet-independent) streams.
SHARED = {"weather": 0, "catalogue": 1, "pois": 2}


def vehicle_seed(seed: int, k: int) -> np.random.SeedSequence:
    """The seed sequence of vehicle ``k`` (independent of the fleet size)."""
    return np.random.SeedSequence(seed, spawn_key=(0, k))


def vehicle_rngs(seed: int, k: int) -> dict[str, np.random.Generator]:
    """One generator per named stream of vehicle ``k``."""
    children = vehicle_seed(seed, k).spawn(len(STREAMS))
    return {name: np.random.default_rng(ss) for name, ss in zip(STREAMS, children, strict=True)}


def shared_rng(seed: int, name: str, *sub: int) -> np.random.Generator:
    """A shared generator, e.g. ``shared_rng(seed, "weather", city_index)``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, SHARED[name], *sub)))


def make_id(prefix: str, *parts: object, size: int = 6) -> str:
    """A short, stable, opaque identifier such as ``"ACC-3F9A0C12B7E4"``.

    The identifier is a BLAKE2b hash of the parts, so it reveals nothing about them (an
    app account id does not give away the owner account it belongs to).
    """
    h = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=size)
    return f"{prefix}-{h.hexdigest().upper()}"
