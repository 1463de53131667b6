"""Seed derivation: one named stream of randomness per purpose, from one user seed.

Like the grid engine's counter-based episode keys, a derived seed is a hash (splitmix64)
of the seed and the stream's name and counters, so streams never overlap by accident
(``seed * 1000 + k`` collides with ``(seed + 1) * 1000 + k - 1000``) and adding a stream
changes no other. Env episode seeds stay ranges (episode e is seeded ``seed + e``): that is
a documented contract with the user, not a derivation. A seed handed to a third-party env's
``reset`` passes through :func:`audit.envs.adapter.env_seed` (numpy's legacy range).
"""

from __future__ import annotations

import hashlib

import numpy as np

from audit.envs.grid import mix64


def derive_seed(seed: int, stream: str, *counters: int) -> int:
    """A seed in [0, 2**62) for ``stream`` (and its counters, e.g. fold, iteration) under ``seed``."""
    name = int.from_bytes(hashlib.blake2b(stream.encode(), digest_size=8).digest(), "little")
    key = mix64(np.array([int(seed) % 2**64], dtype=np.uint64) ^ np.uint64(name))
    with np.errstate(over="ignore"):
        for c in counters:
            key = mix64(key + np.uint64(int(c) % 2**64))
    return int(key[0]) >> 2
