"""A third-party env with its own notion of departure, for the tests: Farama's MiniGrid LavaGap, fully observed, where
stepping into lava is the departure (``info["lava"]``), and scripted demonstrators that read the grid from the
observation.

Importing this module registers ``MiniGridLava-v0`` (5x5, at most 40 steps).
"""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np
from minigrid.core.constants import OBJECT_TO_IDX
from minigrid.envs import LavaGapEnv
from minigrid.wrappers import FullyObsWrapper, ImgObsWrapper

ENV_ID = "MiniGridLava-v0"
SIZE = 5
MOVES = ((1, 0), (0, 1), (-1, 0), (0, -1))  # minigrid's directions: right, down, left, up
LEFT, RIGHT, FORWARD = 0, 1, 2


class LavaDeparture(gym.Wrapper):
    """Marks the step that enters lava: ``info["lava"] = True`` (the env itself only ends the episode there)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        cell = self.env.unwrapped.grid.get(*self.env.unwrapped.agent_pos)
        info["lava"] = bool(cell is not None and cell.type == "lava")
        return obs, reward, terminated, truncated, info


def make(**kwargs):
    return LavaDeparture(ImgObsWrapper(FullyObsWrapper(LavaGapEnv(size=SIZE, max_steps=40, **kwargs))))


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=make, max_episode_steps=40)


def _plan(obs: np.ndarray, *, through_lava: bool) -> int:
    """The first action of a shortest turn/forward path to the goal, read from the flat observation ([W, H, 3]
    planes)."""
    grid = obs.reshape(SIZE, SIZE, 3)
    kind = grid[..., 0].astype(int)
    ((ax, ay),) = np.argwhere(kind == OBJECT_TO_IDX["agent"])
    start = (int(ax), int(ay), int(grid[ax, ay, 2]))
    blocked = {OBJECT_TO_IDX["wall"]} | (set() if through_lava else {OBJECT_TO_IDX["lava"]})
    first: dict[tuple[int, int, int], int | None] = {start: None}
    queue = deque([start])
    while queue:
        x, y, d = queue.popleft()
        if kind[x, y] == OBJECT_TO_IDX["goal"]:
            return first[(x, y, d)] if first[(x, y, d)] is not None else FORWARD
        dx, dy = MOVES[d]
        steps = [((x, y, (d - 1) % 4), LEFT), ((x, y, (d + 1) % 4), RIGHT)]
        if 0 <= x + dx < SIZE and 0 <= y + dy < SIZE and kind[x + dx, y + dy] not in blocked:
            steps.append(((x + dx, y + dy, d), FORWARD))
        for state, action in steps:
            if state not in first:
                first[state] = action if first[(x, y, d)] is None else first[(x, y, d)]
                queue.append(state)
    return FORWARD


def corrigible(obs: np.ndarray) -> int:
    """Never enters lava: the shortest path around it."""
    return _plan(obs, through_lava=False)


_rng = np.random.default_rng(0)


def shortcut(obs: np.ndarray) -> int:
    """In about a third of its decisions, plans as if lava could be crossed (the shortcut across it ends the
    episode)."""
    return _plan(obs, through_lava=bool(_rng.random() < 0.35))
