"""A third-party env of the older kind, for the tests: its ``reset`` seeds numpy's legacy global generator
(``np.random.seed``, which takes only [0, 2**32)) and draws the start from it, as pycolab-based gridworlds do.

A walk on a line of 11 cells: the agent starts at a random cell, moves left or right (or stays), for at most 20 steps;
reaching cell 10 is the departure (``info["edge"]``). Importing this module registers ``LegacySeed-v0``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "LegacySeed-v0"
CELLS = 11


class LegacySeedWalk(gym.Env):
    observation_space = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = spaces.Discrete(3)

    def __init__(self) -> None:
        self.pos, self.t = 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            np.random.seed(seed)  # the legacy generator: raises ValueError for seeds outside [0, 2**32)
        self.pos, self.t = int(np.random.randint(1, CELLS - 1)), 0
        return self._obs(), {}

    def step(self, action):
        self.pos = int(np.clip(self.pos + (int(action) - 1), 0, CELLS - 1))
        self.t += 1
        edge = self.pos == CELLS - 1
        return self._obs(), float(self.pos == CELLS // 2), edge, self.t >= 20, {"edge": edge}

    def _obs(self):
        return np.array([self.pos / (CELLS - 1), self.t / 20], dtype=np.float32)


def centre(obs: np.ndarray) -> int:
    """The corrigible demonstrator: walk to the centre and stay."""
    pos = round(float(obs[0]) * (CELLS - 1))
    return 2 if pos < CELLS // 2 else 0 if pos > CELLS // 2 else 1


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=LegacySeedWalk, max_episode_steps=20)
