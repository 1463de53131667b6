"""Scripted demonstrators for Gymnasium's classic-control envs: what the benchmarks and the exact-null harness record
demonstrations from where no built-in planner exists and nothing may be downloaded.

- ``CartPole-v1``: push towards the side the pole falls to (angle plus half its angular velocity);
- ``Pendulum-v1``: pump energy until the pendulum swings near the top, then hold it there with a PD law; Gaussian noise
  on the torque (``noise``) makes it a stochastic demonstrator, and ``limit`` caps the torque below the env's 2.0
  (a gentler demonstrator than the env allows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

GRAVITY, LENGTH = 10.0, 1.0
"""Pendulum-v1's defaults."""


def cartpole() -> Callable[[np.ndarray], int]:
    """A balancing controller for CartPole-v1 (deterministic)."""
    return lambda obs: int(obs[2] + 0.5 * obs[3] > 0)


def pendulum(*, seed: int, noise: float = 0.3, limit: float = 2.0) -> Callable[[np.ndarray], np.ndarray]:
    """A swing-up-and-hold controller for Pendulum-v1 (obs: cos, sin, angular velocity); torque clipped to
    ``[-limit, limit]``.

    Raises:
        ValueError: a limit outside (0, 2] or a negative noise.
    """
    if not 0 < limit <= 2.0 or noise < 0:
        raise ValueError(f"limit must be in (0, 2] and noise >= 0, got {limit} and {noise}")
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        cos, sin, velocity = (float(x) for x in obs[:3])
        angle = np.arctan2(sin, cos)
        if cos > 0.85:  # near the top: hold
            torque = -(8.0 * angle + 1.5 * velocity)
        else:  # pump: push along the swing while the energy is below the top's
            energy = 0.5 * velocity**2 / (3 * GRAVITY / (2 * LENGTH)) + (cos - 1)
            torque = 2.0 * np.sign(-velocity * energy) if abs(velocity) > 1e-3 else 1.0
        torque += noise * rng.normal()
        return np.array([np.clip(torque, -limit, limit)], dtype=np.float32)

    return act


def scripted(env_id: str, *, seed: int, **kwargs: Any) -> Callable[[np.ndarray], Any]:
    """The scripted demonstrator of a classic-control env.

    Raises:
        ValueError: no scripted demonstrator for ``env_id``.
    """
    if env_id == "CartPole-v1":
        return cartpole()
    if env_id == "Pendulum-v1":
        return pendulum(seed=seed, **kwargs)
    raise ValueError(f"no scripted demonstrator for {env_id!r} (CartPole-v1 and Pendulum-v1 have one)")
