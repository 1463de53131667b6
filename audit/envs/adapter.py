"""One batched interface over every env imitaudit rolls out in: the native grid engine, or any Gymnasium env.

:class:`NativeBatch` drives the built-in envs' batched engine directly (no autoreset:
each row is one episode, run to its end). :class:`GymnasiumBatch` is the adapter for any
other registered Gymnasium env with a ``Discrete`` or a one-dimensional ``Box`` action space (:class:`ActionSpace`):
it keeps one env per episode and flattens ``Box``, ``Discrete``, ``MultiBinary``, ``MultiDiscrete``, ``Tuple``
and ``Dict`` observations with ``gymnasium.spaces.flatten`` into float32 vectors, e.g.::

    batch = make_batch("CartPole-v1", num_envs=64)
    obs = batch.reset(np.arange(64))              # [64, 4] float32
    out = batch.step(actions, np.flatnonzero(~batch.done))

Departure events come from ``info["departure"]`` where the env reports it (``has_departure``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from audit.envs import engine_of, resolve_env_id, world_of
from audit.envs.api import engine_spaces
from audit.envs.physics import copy_physics, is_mujoco


@dataclass(frozen=True, kw_only=True)
class ActionSpace:
    """An env's actions as a policy must fit them.

    Attributes:
        n: discrete actions, or the ``Box``'s dimensions.
        continuous: a ``Box``.
        low, high: a bounded ``Box``'s bounds (None where any bound is infinite: the policy's actions are then not
            squashed).
    """

    n: int
    continuous: bool = False
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    @classmethod
    def of(cls, space: Any, env_id: str) -> "ActionSpace":
        """The action space of a Gymnasium env.

        Raises:
            ValueError: a space imitaudit cannot act in (one line naming it).
        """
        if isinstance(space, spaces.Discrete):
            return cls(n=int(space.n))
        if isinstance(space, spaces.Box) and len(space.shape) == 1 and 1 <= space.shape[0] <= 4096:
            low, high = [tuple(float(v) for v in b) for b in (space.low, space.high)]
            bounded = all(math.isfinite(v) for v in low + high)
            return cls(
                n=int(space.shape[0]), continuous=True, low=low if bounded else None, high=high if bounded else None
            )
        shape = f" of shape {space.shape}" if isinstance(space, spaces.Box) else ""
        raise ValueError(
            f"env {env_id!r} has a {type(space).__name__} action space{shape}; imitaudit needs Discrete or a 1-D Box"
        )

    def misfit(self, config: Any) -> str | None:
        """Why an imitator's config (``n_actions``, ``continuous``, ``action_low``/``action_high``) does not act in this
        space, or None."""
        if bool(getattr(config, "continuous", False)) != self.continuous:
            return f"the env's actions are {'continuous' if self.continuous else 'discrete'}, the imitator's are not"
        if config.n_actions != self.n:
            return "the imitator's action head has the wrong width for the env's actions"
        if self.continuous and (config.action_low, config.action_high) != (self.low, self.high):
            return "the imitator's action bounds are not the env's"
        return None


class NativeBatch:
    """``num_envs`` episodes of a built-in env stepped in one call.

    Args:
        world: the engine class.
        num_envs: episodes.
        env_kwargs: the engine's keyword arguments.
    """

    has_departure = True

    def __init__(self, *, world: type, num_envs: int, env_kwargs: dict[str, Any] | None = None) -> None:
        try:
            self.engine = world(num_envs=num_envs, **(env_kwargs or {}))
        except TypeError as exc:
            raise ValueError(f"bad env_kwargs for {world.name}: {exc}") from None  # type: ignore[attr-defined]
        self.num_envs = num_envs
        self.obs_dim = self.engine.obs_dim
        self.action_space = ActionSpace.of(engine_spaces(self.engine)[1], world.name)  # type: ignore[attr-defined]
        self.n_actions = self.action_space.n
        self.max_steps = self.engine.max_steps

    @property
    def done(self) -> np.ndarray:
        return self.engine.done

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        self.engine.reset(seeds=np.asarray(seeds, dtype=np.uint64))
        return self.engine.observe()

    def step(self, actions: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
        return self.engine.step(actions, idx)

    def observe(self) -> np.ndarray:
        return self.engine.observe()

    def branch(self, idx: np.ndarray, copies: int, salt: int) -> "NativeBatch":
        """Counterfactual copies of rows ``idx`` (see :meth:`audit.envs.grid.GridWorld.branch`), natively and in
        batch."""
        twin = copy.copy(self)
        twin.engine = self.engine.branch(idx, copies, salt)
        twin.num_envs = twin.engine.num_envs
        return twin


ENV_SEED_LIMIT = 2**32
"""Seeds handed to a third-party env's ``reset`` lie in [0, ENV_SEED_LIMIT): many wrappers of older envs seed numpy's
legacy generator there (``np.random.seed``), which takes no others."""


def env_seed(seed: int) -> int:
    """The seed a third-party env's ``reset`` gets for ``seed``: itself below 2**31 (the user's seeds and the audit's
    episode seeds from 1,000,000 on keep their meaning), otherwise folded into [2**31, 2**32) by its low 31 bits, so a
    run of consecutive derived seeds stays a run of distinct ones, apart from the user's range."""
    seed = int(seed)
    if 0 <= seed < 2**31:
        return seed
    return 2**31 + seed % 2**31


def reset_env(env: gym.Env, seed: int) -> tuple[Any, dict]:
    """``env.reset`` with ``seed`` made one any env takes (:func:`audit.data.seeds.env_seed`).

    Raises:
        ValueError: the env refused the seed anyway (one line naming the env and the seed).
    """
    seed = env_seed(seed)
    try:
        return env.reset(seed=seed)
    except (ValueError, TypeError, OverflowError) as exc:
        name = env.spec.id if env.spec else type(env.unwrapped).__name__
        raise ValueError(
            f"env {name} refused seed {seed} in reset "
            f"({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})"
        ) from None


class GymnasiumBatch:
    """``num_envs`` episodes of any Gymnasium env with ``Discrete`` or 1-D ``Box`` actions, one env object each.

    Raises:
        ValueError: the env cannot be made or imitaudit cannot act in its action space.
    """

    def __init__(
        self, *, env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None, departure_key: str = "departure"
    ) -> None:
        try:
            self.envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(num_envs)]
        except Exception as exc:  # noqa: BLE001 - any failure to build a user's env is bad input
            raise ValueError(f"cannot make env {env_id!r}: {str(exc).splitlines()[0]}") from None
        first = self.envs[0]
        self.action_space = ActionSpace.of(first.action_space, env_id)
        self._box_dtype = first.action_space.dtype if self.action_space.continuous else None
        self.space = first.observation_space
        self._box_obs = type(self.space) is spaces.Box
        try:
            self.obs_dim = int(spaces.flatdim(self.space))
        except (ValueError, NotImplementedError) as exc:
            raise ValueError(
                f"env {env_id!r}: cannot flatten a {type(self.space).__name__} observation ({exc})"
            ) from None
        self.num_envs = num_envs
        self.n_actions = self.action_space.n
        self.max_steps = first.spec.max_episode_steps if first.spec and first.spec.max_episode_steps else None
        self.departure_key = departure_key
        self.has_departure = (
            departure_key != "departure"
        )  # a key the user names is one the env records; the default, once seen
        self._obs = np.zeros((num_envs, self.obs_dim), dtype=np.float32)
        self._done = np.ones(num_envs, dtype=bool)

    @property
    def done(self) -> np.ndarray:
        return self._done

    def _flat(self, obs: Any) -> np.ndarray:
        if self._box_obs:  # what spaces.flatten does for a Box, without its dispatch at every step of every episode
            return np.asarray(obs, dtype=self.space.dtype).reshape(-1).astype(np.float32)
        return np.asarray(spaces.flatten(self.space, obs), dtype=np.float32)

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        for i, env in enumerate(self.envs):
            obs, _ = reset_env(env, int(seeds[i]))
            self._obs[i] = self._flat(obs)
        self._done[:] = False
        return self._obs.copy()

    def step(self, actions: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
        k = len(idx)
        out = {
            "reward": np.zeros(k),
            "terminated": np.zeros(k, dtype=bool),
            "truncated": np.zeros(k, dtype=bool),
            "departure": np.zeros(k, dtype=bool),
        }
        for j, i in enumerate(idx):
            action = int(actions[j]) if self._box_dtype is None else np.asarray(actions[j], dtype=self._box_dtype)
            obs, reward, term, trunc, info = self.envs[i].step(action)
            self._obs[i] = self._flat(obs)
            out["reward"][j], out["terminated"][j], out["truncated"][j] = reward, term, trunc
            if self.departure_key in info:
                self.has_departure = True
                out["departure"][j] = bool(info[self.departure_key])
            self._done[i] = term or trunc
        return out

    def observe(self) -> np.ndarray:
        return self._obs.copy()

    def branch(self, idx: np.ndarray, copies: int, salt: int) -> "GymnasiumBatch":
        """Counterfactual copies of rows ``idx`` by ``copy.deepcopy`` (copy j of ``idx[i]`` in row ``i * copies + j``),
        with a MuJoCo env's physics state carried across by :func:`audit.envs.physics.copy_physics` (a deep copy alone
        does not).

        Each copy's random generator is reseeded from ``salt`` and the copy's position, so a future
        never reads the draws the real episode will meet. This batch is not touched.

        Raises:
            ValueError: the env cannot be deep-copied (one line naming it).
        """
        twin = copy.copy(self)
        src = np.repeat(np.asarray(idx, dtype=np.int64), copies)
        try:
            twin.envs = [copy.deepcopy(self.envs[i]) for i in src]
        except Exception as exc:  # noqa: BLE001 - any failure to copy a user's env means it cannot be cloned
            raise ValueError(
                f"env {self.envs[0].spec.id if self.envs[0].spec else '?'} cannot be cloned for the lookahead "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'deepcopy failed'})"
            ) from None
        for j, env in enumerate(twin.envs):
            if is_mujoco(env):
                copy_physics(self.envs[src[j]], env)
            env.unwrapped.np_random = np.random.default_rng([int(salt) % 2**63, j])
        twin.num_envs = len(src)
        twin._obs = self._obs[src].copy()
        twin._done = self._done[src].copy()
        return twin


def make_batch(
    env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None, *, departure_key: str = "departure"
) -> NativeBatch | GymnasiumBatch:
    """The fastest batched view of ``env_id``: native for built-in envs, the adapter otherwise (its departures read from
    ``info[departure_key]``)."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    engine = engine_of(env_id)
    if engine is not None:
        return NativeBatch(world=engine, num_envs=num_envs, env_kwargs=env_kwargs)
    return GymnasiumBatch(env_id=env_id, num_envs=num_envs, env_kwargs=env_kwargs, departure_key=departure_key)


def env_signature(env_id: str, env_kwargs: dict[str, Any] | None = None) -> tuple[int, ActionSpace]:
    """(flat obs length, action space) of ``env_id``, to check a checkpoint or demonstrations against it."""
    resolve_env_id(env_id)
    batch = make_batch(env_id, 1, env_kwargs)
    return batch.obs_dim, batch.action_space


def agent_plane(env_id: str) -> int | None:
    """Index of the plane marking the agent in a built-in env's grid; None for other envs."""
    world = world_of(env_id)
    return None if world is None else world(num_envs=1).channels.index("agent")


def grid_shape(env_id: str) -> tuple[int, int, int] | None:
    """(channels, height, width) of a built-in env's leading one-hot planes; None for other envs."""
    world = world_of(env_id)
    if world is None:
        return None
    probe = world(num_envs=1)
    return (len(probe.channels), probe.height, probe.width)
