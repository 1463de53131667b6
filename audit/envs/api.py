"""The Gymnasium faces of the batched engines: a single ``gymnasium.Env`` and the native batched ``VectorEnv``.

Both wrap the same engine (a :class:`~audit.envs.grid.GridWorld`, or the continuous
:class:`~audit.envs.point_switch.PointOffSwitch`), so a native batch of N
episodes seeded ``s`` steps exactly like ``SyncVectorEnv`` over N single envs seeded
``s, s+1, ...`` (same layouts, same interruption draws), only without the Python loop.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from audit.envs.grid import N_ACTIONS, GridWorld

_RENDER_MODES = ["ansi", "rgb_array"]


def engine_spaces(engine: Any) -> tuple[spaces.Box, spaces.Space]:
    """One episode's observation and action spaces: the grid's unit box and five moves, or the engine's own."""
    if isinstance(engine, GridWorld):
        return spaces.Box(0.0, 1.0, (engine.obs_dim,), dtype=np.float32), spaces.Discrete(N_ACTIONS)
    return engine.observation_space, engine.action_space


def _actions(engine: Any, actions: Any, n: int) -> np.ndarray:
    """``n`` episodes' actions as the engine takes them: [n] int64 moves, or [n, d] floats."""
    if isinstance(engine, GridWorld):
        return np.asarray(actions, dtype=np.int64).reshape(-1)
    flat = np.asarray(actions, dtype=np.float64).reshape(-1)
    width = engine.action_space.shape[0]
    if flat.shape[0] != n * width:
        raise ValueError(f"got {flat.shape[0]} action numbers for {n} episodes of {width}")
    return flat.reshape(n, width)


def _info_at(result: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    return {k: v[i].item() for k, v in result.items() if k not in ("reward", "terminated", "truncated")}


def _render(engine: Any, mode: str | None):
    """Episode 0 of ``engine`` as text or an RGB array (None without a render mode)."""
    if mode == "ansi":
        return engine.render_ansi(0)
    if mode == "rgb_array":
        return engine.render_rgb(0)
    return None


def _blank_info(engine: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"departure": False, "safety": 0.0}
    info.update({k: False for k in engine.info_keys})
    return info


class GridEnv(gym.Env):
    """One episode at a time of a built-in environment (``gymnasium.make``).

    Args:
        world: the engine class (``OffSwitch``, ``AbsentSupervisor``, ``PowerSeeking``, ``PointOffSwitch``, ...).
        render_mode: ``"ansi"``, ``"rgb_array"`` or None.
        **kwargs: the engine's own keyword arguments (``max_steps``, probabilities, ...).
    """

    metadata = {"render_modes": _RENDER_MODES, "render_fps": 4}

    def __init__(self, *, world: type, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in _RENDER_MODES:
            raise ValueError(f"render_mode must be one of {_RENDER_MODES}, got {render_mode!r}")
        self.engine = world(num_envs=1, **kwargs)
        self.render_mode = render_mode
        self.observation_space, self.action_space = engine_spaces(self.engine)
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            first = seed if seed is not None else int(self.np_random.integers(0, 2**63 - 1))
            self.engine.reset(seeds=np.array([first], dtype=np.uint64))
            self._seeded = True
        else:
            self.engine.reset()
        return self.engine.observe()[0], _blank_info(self.engine)

    def step(self, action):
        if self.engine.done[0]:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        result = self.engine.step(_actions(self.engine, action, 1))
        return (
            self.engine.observe()[0],
            float(result["reward"][0]),
            bool(result["terminated"][0]),
            bool(result["truncated"][0]),
            _info_at(result, 0),
        )

    def render(self):
        return _render(self.engine, self.render_mode)


class GridVectorEnv(VectorEnv):
    """``num_envs`` episodes stepped in one call (``gymnasium.make_vec``), next-step autoreset.

    Infos are a dict of [num_envs] arrays (``departure``, ``safety`` and the env's own
    keys), each with its ``_key`` mask, as ``SyncVectorEnv`` produces them.

    Args:
        world: the engine class.
        num_envs: number of sub-environments.
        render_mode: ``"ansi"``, ``"rgb_array"`` or None (renders sub-environment 0..k).
        **kwargs: the engine's own keyword arguments.
    """

    metadata = {"render_modes": _RENDER_MODES, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, *, world: type, num_envs: int, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in _RENDER_MODES:
            raise ValueError(f"render_mode must be one of {_RENDER_MODES}, got {render_mode!r}")
        self.engine = world(num_envs=num_envs, **kwargs)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space, self.single_action_space = engine_spaces(self.engine)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._seeded = False

    def _infos(self, result: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        n = self.num_envs
        if result is None:
            result = {"departure": np.zeros(n, dtype=bool), "safety": np.zeros(n)}
            result.update({k: np.zeros(n, dtype=bool) for k in self.engine.info_keys})
        infos: dict[str, np.ndarray] = {}
        for k, v in result.items():
            if k in ("reward", "terminated", "truncated"):
                continue
            infos[k] = v
            infos["_" + k] = np.ones(n, dtype=bool)
        return infos

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        n = self.num_envs
        if seed is None and not self._seeded:
            seed = int(np.random.SeedSequence().entropy % (2**62))  # type: ignore[operator]
        if isinstance(seed, int):
            seed = [seed + i for i in range(n)]
        mask = np.ones(n, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
            if mask.shape != (n,):
                raise ValueError(f"reset_mask must have shape ({n},), got {mask.shape}")
        if seed is not None and len(seed) != n:
            raise ValueError(f"got {len(seed)} seeds for num_envs={n}")
        if seed is not None and any(s is None for s in seed):
            entropy = np.random.SeedSequence().generate_state(n, dtype=np.uint64)
            seed = [int(entropy[i] >> np.uint64(2)) if s is None else s for i, s in enumerate(seed)]
        if not self._seeded:
            if not mask.all():
                raise RuntimeError("the first reset must reset every sub-environment")
            self.engine.reset(seeds=np.array(seed, dtype=np.uint64))
            self._seeded = True
        else:
            idx = np.flatnonzero(mask)
            if seed is None:
                self.engine.reset(idx)
            else:
                self.engine.reset(idx, seeds=np.array([seed[i] for i in idx], dtype=np.uint64))
        self._autoreset[mask] = False
        return self.engine.observe(), self._infos(None)

    def step(self, actions):
        if not self._seeded:
            raise RuntimeError("step() called before reset()")
        actions = _actions(self.engine, actions, self.num_envs)
        if actions.shape[0] != self.num_envs:
            raise ValueError(f"got {actions.shape[0]} actions for num_envs={self.num_envs}")
        restart = np.flatnonzero(self._autoreset)
        live = np.flatnonzero(~self._autoreset)
        result = self.engine.step(actions[live], live)
        full = {k: np.zeros(self.num_envs, dtype=v.dtype) for k, v in result.items()}
        for k, v in result.items():
            full[k][live] = v
        if restart.size:
            self.engine.reset(restart)
        self._autoreset = full["terminated"] | full["truncated"]
        return (
            self.engine.observe(),
            full["reward"],
            full["terminated"],
            full["truncated"],
            self._infos(full),
        )

    def render(self):
        return _render(self.engine, self.render_mode)
