"""Demonstration datasets: record, validate, save and load their ``.safetensors`` format (:mod:`models.formats`).

A dataset is one safetensors file. Tensors: ``obs`` [T, ...] float32, ``actions`` [T] int64 (a ``Discrete`` env) or
[T, d] float32 (a ``Box`` env of d dimensions), ``rewards`` [T] float32, ``episode`` [T] int64 (each episode's steps
contiguous, ids non-decreasing), optional ``departure`` [T] bool (ground truth, for benchmarks only), optional
``last_obs`` [E, ...] float32 and ``terminated`` [E] bool together (each episode's end: the observation after its last
action, and whether the env terminated it rather than truncating it; what a Minari dataset needs, recorded by
:func:`record`).
Metadata: ``imitaudit.schema`` = ``imitaudit.demonstrations/2`` (``/1`` files, discrete only, are still read),
``env_id``,
``env_kwargs`` (JSON object), ``source``; optional ``feature_names`` and ``action_names`` (JSON lists of
strings: what the dashboard and reports call the flattened observation's features and the actions). Files are read by
the safetensors parser only:
nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from audit.data.demonstrator import Demonstrator
from audit.envs import resolve_env_id, world_of
from audit.envs.adapter import ActionSpace, env_signature, reset_env
from models.formats import DEMONSTRATIONS_SCHEMA, DEMONSTRATIONS_SCHEMA_V1, IMITATOR_SCHEMA
from models.safetensors_io import read_safetensors, strict_json, write_safetensors

SCHEMA = DEMONSTRATIONS_SCHEMA
"""An imitator's schema (:mod:`models.checkpoint`), named to say what a swapped file is."""
_REQUIRED = ("obs", "actions", "rewards", "episode")
_DTYPES = {"obs": np.float32, "actions": np.int64, "rewards": np.float32, "episode": np.int64, "departure": np.bool_}
_ENDS = {"last_obs": np.float32, "terminated": np.bool_}
"""Optional per-episode tensors (checked by ``Demonstrations._check_ends``)."""

MAX_NAME_CHARS = 64
MAX_ACTION_NAMES = 1024

Progress = Callable[[int], None]
"""Called with the number of episodes just finished."""


@dataclass(frozen=True, kw_only=True)
class Demonstrations:
    """T recorded steps of E episodes in one environment.

    Attributes:
        obs: [T, *obs_shape] float32 observation before each action.
        actions: [T] int64 action taken, or [T, d] float32 in a ``Box`` env.
        rewards: [T] float32 reward received.
        episode: [T] int64 episode id; each episode's steps are contiguous, ids non-decreasing.
        env_id: the Gymnasium env id the steps were recorded in.
        env_kwargs: keyword arguments the env was made with.
        source: who demonstrated (free text).
        departure: [T] bool ground-truth departure events, or None where the env records none.
        feature_names: one name per feature of the flattened observation (prod(obs_shape)), or empty.
        action_names: one name per action, or empty.
        departure_key: the env info key ``departure`` was read from (rollouts of imitators read the same).
        last_obs: [E, *obs_shape] float32 observation after each episode's last action, or None (not recorded).
        terminated: [E] bool: the env terminated the episode (False: truncated), or None; given with ``last_obs``.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    episode: np.ndarray
    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = "unknown"
    departure: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()
    departure_key: str = "departure"
    last_obs: np.ndarray | None = None
    terminated: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._check_tensors()
        self._check_values()
        self._check_ends()
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ValueError("env_id must be a non-empty string")
        if not isinstance(self.env_kwargs, dict):
            raise ValueError(f"env_kwargs must be a JSON object, got {type(self.env_kwargs).__name__}")
        _check_names("feature_names", self.feature_names, exactly=int(np.prod(self.obs.shape[1:])))
        _check_names("action_names", self.action_names, exactly=None)
        key = self.departure_key
        if not isinstance(key, str) or not 1 <= len(key) <= 64 or not key.isprintable():
            raise ValueError(f"departure_key must be 1-64 printable characters, got {str(key)[:80]!r}")
        if self.action_names and self.continuous and len(self.action_names) != self.actions.shape[1]:
            raise ValueError(
                f"action_names names {len(self.action_names)} dimensions but the actions have {self.actions.shape[1]}"
            )
        if self.action_names and not self.continuous and int(self.actions.max()) >= len(self.action_names):
            raise ValueError(
                f"action_names names {len(self.action_names)} actions but action {int(self.actions.max())} was taken"
            )

    def _check_tensors(self) -> int:
        """Types, dtypes and shapes of every tensor; the step count T."""
        tensors = {"obs": self.obs, "actions": self.actions, "rewards": self.rewards, "episode": self.episode}
        if self.departure is not None:
            tensors["departure"] = self.departure
        for name, arr in tensors.items():
            if not isinstance(arr, np.ndarray):
                raise ValueError(f"{name} must be a numpy array, got {type(arr).__name__}")
            if name == "actions" and not (arr.ndim == 1 and arr.dtype == np.int64):
                if arr.ndim != 2 or arr.dtype != np.float32 or not 1 <= arr.shape[1] <= 4096:
                    raise ValueError(
                        "actions must be [T] int64 (discrete) or [T, d] float32 with 1 <= d <= 4096 (continuous), "
                        f"got {arr.ndim} dims of {arr.dtype}"
                    )
            elif arr.dtype != _DTYPES[name]:
                raise ValueError(f"{name} must be {np.dtype(_DTYPES[name]).name}, got {arr.dtype}")
        if self.obs.ndim < 2:
            raise ValueError(f"obs must be [T, ...] with at least 2 dims, got shape {self.obs.shape}")
        t = self.obs.shape[0]
        if t == 0:
            raise ValueError("demonstrations are empty (0 steps)")
        for name, arr in tensors.items():
            continuous_actions = name == "actions" and arr.ndim == 2
            if name != "obs" and (arr.ndim != (2 if continuous_actions else 1) or arr.shape[0] != t):
                raise ValueError(f"{name} has shape {arr.shape} but obs has {t} steps: every tensor needs [T] = [{t}]")
        return int(t)

    def _check_values(self) -> None:
        """Finite observations and rewards, non-negative actions, contiguous episodes."""
        if not np.isfinite(self.obs).all():
            raise ValueError("obs contains NaN or infinite values")
        if not np.isfinite(self.rewards).all():
            raise ValueError("rewards contain NaN or infinite values")
        if self.continuous and not np.isfinite(self.actions).all():
            raise ValueError("actions contain NaN or infinite values")
        if not self.continuous and (self.actions < 0).any():
            raise ValueError(f"actions must be >= 0, found {int(self.actions.min())}")
        if (self.episode < 0).any():
            raise ValueError("episode ids must be >= 0")
        if (np.diff(self.episode) < 0).any():
            raise ValueError("episode ids must be non-decreasing (each episode's steps contiguous)")

    def _check_ends(self) -> None:
        """``last_obs`` and ``terminated`` given together, one per episode, of the right shape, type and values."""
        if (self.last_obs is None) != (self.terminated is None):
            raise ValueError("last_obs and terminated go together: give both or neither")
        if self.last_obs is None or self.terminated is None:
            return
        e = self.n_episodes
        if not isinstance(self.last_obs, np.ndarray) or self.last_obs.dtype != np.float32:
            raise ValueError("last_obs must be a float32 numpy array")
        if self.last_obs.shape != (e, *self.obs_shape):
            raise ValueError(f"last_obs has shape {self.last_obs.shape}, needs one observation per episode")
        if not isinstance(self.terminated, np.ndarray) or self.terminated.dtype != np.bool_:
            raise ValueError("terminated must be a bool numpy array")
        if self.terminated.shape != (e,):
            raise ValueError(f"terminated has shape {self.terminated.shape}, needs one entry per episode ({e})")
        if not np.isfinite(self.last_obs).all():
            raise ValueError("last_obs contains NaN or infinite values")

    # ----- views ------------------------------------------------------------------------

    @property
    def continuous(self) -> bool:
        """Whether the actions are ``Box`` vectors ([T, d] float32) rather than discrete indices."""
        return self.actions.ndim == 2

    @property
    def n_steps(self) -> int:
        return int(self.obs.shape[0])

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self.obs.shape[1:])

    def episode_bounds(self) -> np.ndarray:
        """[E, 2] int64 (start, stop) step indices of each episode, in order."""
        starts = np.flatnonzero(np.r_[True, self.episode[1:] != self.episode[:-1]])
        stops = np.r_[starts[1:], self.n_steps]
        return np.stack([starts, stops], axis=1)

    @property
    def n_episodes(self) -> int:
        return int(self.episode_bounds().shape[0])

    def episode_returns(self) -> np.ndarray:
        """[E] float64 undiscounted return of each episode."""
        starts = self.episode_bounds()[:, 0]
        return np.add.reduceat(self.rewards.astype(np.float64), starts)

    def episode_lengths(self) -> np.ndarray:
        """[E] int64 steps in each episode."""
        b = self.episode_bounds()
        return b[:, 1] - b[:, 0]

    def episode_departed(self) -> np.ndarray | None:
        """[E] bool: the episode holds a departure event (None where none are recorded)."""
        if self.departure is None:
            return None
        return np.logical_or.reduceat(self.departure, self.episode_bounds()[:, 0])

    def select(self, episodes: np.ndarray) -> "Demonstrations":
        """The dataset restricted to the episodes at positions ``episodes`` (in 0..E-1)."""
        chosen = np.asarray(episodes, dtype=np.int64)
        bounds = self.episode_bounds()[chosen]
        steps = np.concatenate([np.arange(a, b) for a, b in bounds]) if len(bounds) else np.zeros(0, dtype=np.int64)
        return Demonstrations(
            obs=self.obs[steps],
            actions=self.actions[steps],
            rewards=self.rewards[steps],
            episode=self.episode[steps],
            env_id=self.env_id,
            env_kwargs=self.env_kwargs,
            source=self.source,
            departure=None if self.departure is None else self.departure[steps],
            feature_names=self.feature_names,
            action_names=self.action_names,
            departure_key=self.departure_key,
            last_obs=None if self.last_obs is None else self.last_obs[chosen],
            terminated=None if self.terminated is None else self.terminated[chosen],
        )

    def check_fits_env(self) -> tuple[int, int]:
        """The env's (obs features, actions), after checking these demonstrations fit them.

        Raises:
            ValueError: obs of another size, an action the env does not have, or names of the wrong count.
        """
        obs_dim, space = env_signature(self.env_id, self.env_kwargs)
        flat = int(np.prod(self.obs_shape))
        if flat != obs_dim:
            raise ValueError(f"the demonstrations' obs have {flat} features, {self.env_id} gives {obs_dim}")
        if self.continuous != space.continuous:
            kind = "continuous" if self.continuous else "discrete"
            raise ValueError(f"the demonstrations' actions are {kind}, {self.env_id}'s are not")
        if self.continuous:
            if self.actions.shape[1] != space.n:
                raise ValueError(
                    f"the demonstrations' actions have {self.actions.shape[1]} dimensions, {self.env_id}'s {space.n}"
                )
            if space.low is not None and space.high is not None:
                lo, hi = np.asarray(space.low), np.asarray(space.high)
                if ((self.actions < lo) | (self.actions > hi)).any():
                    raise ValueError(f"the demonstrations hold actions outside {self.env_id}'s action bounds")
        elif self.n_steps and int(self.actions.max()) >= space.n:
            raise ValueError(f"the demonstrations hold action {int(self.actions.max())}, {self.env_id} has {space.n}")
        check_names(self.env_id, self.env_kwargs, feature_names=self.feature_names, action_names=self.action_names)
        return obs_dim, space.n

    def summary(self) -> dict[str, Any]:
        """Plain figures for ``imitaudit inspect`` and reports."""
        returns = self.episode_returns()
        departed = self.episode_departed()
        return {
            "kind": "demonstrations",
            "schema": SCHEMA,
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "source": self.source,
            "episodes": self.n_episodes,
            "steps": self.n_steps,
            "obs_shape": list(self.obs_shape),
            "mean_return": float(returns.mean()),
            "mean_length": float(self.episode_lengths().mean()),
            "departure_rate": None if departed is None else float(departed.mean()),
        }

    # ----- files ------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the dataset to ``path`` atomically (temp file + rename); returns the path."""
        tensors = {"obs": self.obs, "actions": self.actions, "rewards": self.rewards, "episode": self.episode}
        if self.departure is not None:
            tensors["departure"] = self.departure
        if self.last_obs is not None and self.terminated is not None:
            tensors["last_obs"], tensors["terminated"] = self.last_obs, self.terminated
        metadata = {
            "imitaudit.schema": SCHEMA,
            "env_id": self.env_id,
            "env_kwargs": json.dumps(self.env_kwargs, sort_keys=True),
            "source": self.source,
        }
        for key in ("feature_names", "action_names"):
            if getattr(self, key):
                metadata[key] = json.dumps(list(getattr(self, key)))
        if self.departure_key != "departure":
            metadata["departure_key"] = self.departure_key
        return write_safetensors(path, tensors, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, *, require_env: bool = True) -> "Demonstrations":
        """Read and validate a dataset.

        Args:
            path: a ``.safetensors`` file in this module's format.
            require_env: also check that the dataset's env id is installed.

        Raises:
            ValueError: with one line naming the problem (missing file, not safetensors,
                a pickle or zip, missing tensors or metadata, wrong dtypes or lengths,
                unknown schema, env not installed).
        """
        tensors, metadata = read_safetensors(path)
        schema = metadata.get("imitaudit.schema")
        if schema is None:
            raise ValueError(f"{path}: metadata has no 'imitaudit.schema': not an imitaudit demonstrations file")
        if schema == IMITATOR_SCHEMA:
            raise ValueError(
                f"{path}: this is an imitator checkpoint, not demonstrations (--imitator and --demos swapped?)"
            )
        if schema not in (SCHEMA, DEMONSTRATIONS_SCHEMA_V1):
            raise ValueError(f"{path}: unknown schema version {schema[:80]!r}; this imitaudit reads {SCHEMA!r}")
        if schema == DEMONSTRATIONS_SCHEMA_V1 and getattr(tensors.get("actions"), "ndim", 1) != 1:
            raise ValueError(f"{path}: a {DEMONSTRATIONS_SCHEMA_V1} file holds discrete actions only")
        missing = [name for name in _REQUIRED if name not in tensors]
        if missing:
            raise ValueError(f"{path}: missing tensor(s) {', '.join(missing)}")
        unknown = sorted(set(tensors) - set(_DTYPES) - set(_ENDS))
        if unknown:
            raise ValueError(f"{path}: unexpected tensor(s) {', '.join(unknown)}")
        for key in ("env_id", "source"):
            if key not in metadata:
                raise ValueError(f"{path}: metadata has no {key!r}")
        try:
            env_kwargs = strict_json(metadata.get("env_kwargs", "{}"))
        except ValueError as exc:
            raise ValueError(
                f"{path}: metadata 'env_kwargs' is not valid JSON ({str(exc).splitlines()[0][:200]})"
            ) from None
        if not isinstance(env_kwargs, dict):
            raise ValueError(f"{path}: metadata 'env_kwargs' must be a JSON object")
        if require_env:
            resolve_env_id(metadata["env_id"])
        names = {key: _names_from(path, metadata, key) for key in ("feature_names", "action_names")}
        try:
            return cls(
                obs=tensors["obs"],
                actions=tensors["actions"],
                rewards=tensors["rewards"],
                episode=tensors["episode"],
                departure=tensors.get("departure"),
                env_id=metadata["env_id"],
                env_kwargs=env_kwargs,
                source=metadata["source"],
                departure_key=metadata.get("departure_key", "departure"),
                last_obs=tensors.get("last_obs"),
                terminated=tensors.get("terminated"),
                **names,
            )
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def _check_names(key: str, names: Any, *, exactly: int | None) -> None:
    """``names`` is a tuple of short printable strings, ``exactly`` long if given (or empty)."""
    if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{key} must be a tuple of strings")
    if not names:
        return
    if exactly is not None and len(names) != exactly:
        raise ValueError(f"{key} has {len(names)} names but the flattened observation has {exactly} features")
    if exactly is None and len(names) > MAX_ACTION_NAMES:
        raise ValueError(f"{key} has {len(names)} names; at most {MAX_ACTION_NAMES}")
    bad = next((n for n in names if not n or len(n) > MAX_NAME_CHARS or not n.isprintable()), None)
    if bad is not None:
        raise ValueError(f"{key}: each name must be 1-{MAX_NAME_CHARS} printable characters, got {bad[:80]!r}")


def _names_from(path: Any, metadata: dict[str, str], key: str) -> tuple[str, ...]:
    if key not in metadata:
        return ()
    try:
        names = strict_json(metadata[key])
    except ValueError as exc:
        raise ValueError(f"{path}: metadata {key!r} is not valid JSON ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: metadata {key!r} must be a JSON list of strings")
    return tuple(names)


# ----- recording --------------------------------------------------------------------------


def record(
    env_id: str,
    policy: Demonstrator | str | Callable[[np.ndarray], int],
    *,
    episodes: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    source: str | None = None,
    progress: Progress | None = None,
    batch: int = 512,
    feature_names: tuple[str, ...] = (),
    action_names: tuple[str, ...] = (),
    departure_key: str = "departure",
) -> Demonstrations:
    """Record ``episodes`` episodes of ``policy`` in ``env_id``; episode ``e`` is seeded ``seed + e``.

    Args:
        env_id: any registered Gymnasium env id with discrete actions (``module:Env-v0`` too).
        policy: a :class:`Demonstrator`, a preset name (built-in envs, batched), or any
            callable from one (flattened) observation to an action.
        episodes: how many episodes.
        seed: seed of the first episode.
        env_kwargs: keyword arguments for the env.
        source: description stored with the data (defaults to the policy's).
        progress: called with the number of episodes finished since the last call.
        batch: episodes planned and stepped at once (built-in envs only).
        departure_key: the info key whose truthiness marks a departure step (other envs; stored with the data, and
            the audit's rollouts read the same key).
        feature_names, action_names: names stored with the data for reports and the dashboard (see
            :class:`Demonstrations`); checked before any episode is recorded.

    Raises:
        ValueError: unknown env, non-discrete action space, bad arguments.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    feature_names, action_names = tuple(feature_names), tuple(action_names)
    env_kwargs = dict(env_kwargs or {})
    check_names(env_id, env_kwargs, feature_names=feature_names, action_names=action_names)
    plain_id = resolve_env_id(env_id)
    if isinstance(policy, str):
        policy = Demonstrator(preset=policy)
    if isinstance(policy, Demonstrator):
        world = world_of(plain_id)
        if world is None:
            raise ValueError(f"the planning demonstrator needs a built-in imitaudit env, not {env_id!r}")
        check_env_kwargs(world, env_kwargs)
        job = _Recording(
            env_id=plain_id, episodes=episodes, seed=seed, env_kwargs=env_kwargs, source=source, progress=progress
        )
        recorded = _record_planner(job, world, policy, batch=batch)
    elif callable(policy):
        job = _Recording(
            env_id=env_id, episodes=episodes, seed=seed, env_kwargs=env_kwargs, source=source, progress=progress
        )
        recorded = _record_callable(job, policy, departure_key=departure_key)
    else:
        raise ValueError(f"policy must be a Demonstrator, a preset name or a callable, got {type(policy).__name__}")
    if feature_names or action_names:
        recorded = dataclasses.replace(recorded, feature_names=feature_names, action_names=action_names)
    return recorded


def check_names(
    env_id: str, env_kwargs: dict[str, Any], *, feature_names: tuple[str, ...], action_names: tuple[str, ...]
) -> None:
    """Names for ``env_id``'s flattened observation features and actions fit it (empty: nothing to check).

    Raises:
        ValueError: a count that does not match the env, or a name that is empty, long or unprintable.
    """
    if not feature_names and not action_names:
        return
    obs_dim, space = env_signature(env_id, env_kwargs)
    n_actions = space.n
    _check_names("feature_names", tuple(feature_names), exactly=obs_dim)
    _check_names("action_names", tuple(action_names), exactly=None)
    if action_names and len(action_names) != n_actions:
        raise ValueError(f"action_names has {len(action_names)} names but {env_id} has {n_actions} actions")


def check_env_kwargs(world: type, env_kwargs: dict[str, Any]) -> None:
    """Build one episode's engine with ``env_kwargs`` so bad arguments fail before any work starts."""
    try:
        world(num_envs=1, **env_kwargs)
    except TypeError as exc:
        raise ValueError(f"bad env_kwargs for {world.name}: {exc}") from None  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True)
class _Recording:
    """One recording: in which env (with which arguments), how many episodes from which seed, described how, and who
    hears of finished episodes."""

    env_id: str
    episodes: int
    seed: int
    env_kwargs: dict[str, Any]
    source: str | None
    progress: Progress | None


def _record_planner(job: _Recording, world_cls: Any, demonstrator: Demonstrator, *, batch: int) -> Demonstrations:
    """Episodes of a planning demonstrator in a built-in world, ``batch`` at a time."""
    env_id, episodes, seed, env_kwargs, progress = job.env_id, job.episodes, job.seed, job.env_kwargs, job.progress
    chunks: list[dict[str, np.ndarray]] = []
    for first in range(0, episodes, batch):
        k = min(batch, episodes - first)
        world = world_cls(num_envs=k, **env_kwargs)
        world.reset(seeds=np.arange(seed + first, seed + first + k, dtype=np.uint64))
        demonstrator.start(world)
        steps: dict[str, list[np.ndarray]] = {n: [] for n in ("obs", "actions", "rewards", "episode", "departure", "t")}
        last_obs = np.zeros((k, *world.observe(np.arange(1)).shape[1:]), dtype=np.float32)
        terminated = np.zeros(k, dtype=bool)
        while not world.done.all():
            live = np.flatnonzero(~world.done)
            steps["obs"].append(world.observe(live))
            steps["t"].append(world.t[live].copy())
            actions = demonstrator.act(live)
            result = world.step(actions, live)
            steps["actions"].append(actions)
            steps["rewards"].append(result["reward"].astype(np.float32))
            steps["episode"].append(live + first)
            steps["departure"].append(result["departure"])
            ended = result["terminated"] | result["truncated"]
            if ended.any():
                last_obs[live[ended]] = world.observe(live[ended])
                terminated[live[ended]] = result["terminated"][ended]
            if progress and ended.any():
                progress(int(ended.sum()))
        cat = {n: np.concatenate(v) for n, v in steps.items()}
        order = np.lexsort((cat["t"], cat["episode"]))
        chunks.append({**{n: v[order] for n, v in cat.items()}, "last_obs": last_obs, "terminated": terminated})
    merged = {n: np.concatenate([c[n] for c in chunks]) for n in chunks[0]}
    return Demonstrations(
        obs=merged["obs"],
        actions=merged["actions"].astype(np.int64),
        rewards=merged["rewards"],
        episode=merged["episode"].astype(np.int64),
        departure=merged["departure"].astype(bool),
        env_id=env_id,
        env_kwargs=env_kwargs,
        source=job.source or demonstrator.describe(),
        last_obs=merged["last_obs"],
        terminated=merged["terminated"],
    )


def _record_callable(
    job: _Recording, policy: Callable[[np.ndarray], int], *, departure_key: str = "departure"
) -> Demonstrations:
    """Episodes of a policy callable in any Gymnasium env with discrete or 1-D ``Box`` actions, one at a time."""
    env_id, episodes, seed, env_kwargs, progress, source = (
        job.env_id,
        job.episodes,
        job.seed,
        job.env_kwargs,
        job.progress,
        job.source,
    )
    try:
        env = gym.make(env_id, **env_kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure to build the user's env is bad input
        raise ValueError(f"cannot make env {env_id!r}: {exc}") from None
    try:
        space = ActionSpace.of(env.action_space, env_id)
    except ValueError:
        env.close()
        raise
    obs_space = env.observation_space
    rows: dict[str, list] = {
        n: [] for n in ("obs", "actions", "rewards", "episode", "departure", "last_obs", "terminated")
    }
    saw_departure = departure_key != "departure"  # a key the user names is one the env records
    try:
        for e in range(episodes):
            obs, _ = reset_env(env, seed + e)
            done = False
            while not done:
                flat = np.asarray(spaces.flatten(obs_space, obs), dtype=np.float32)
                chosen = _ask(policy, flat)
                action = box_action(chosen, space) if space.continuous else policy_action(chosen, space.n)
                obs, reward, terminated, truncated, info = env.step(
                    np.asarray(action, dtype=env.action_space.dtype) if space.continuous else action
                )
                rows["obs"].append(flat)
                rows["actions"].append(action)
                rows["rewards"].append(float(reward))
                rows["episode"].append(e)
                saw_departure |= departure_key in info
                rows["departure"].append(bool(info.get(departure_key, False)))
                done = terminated or truncated
            rows["last_obs"].append(np.asarray(spaces.flatten(obs_space, obs), dtype=np.float32))
            rows["terminated"].append(bool(terminated))
            if progress:
                progress(1)
    finally:
        env.close()
    return Demonstrations(
        obs=np.stack(rows["obs"]).astype(np.float32),
        actions=np.stack(rows["actions"]) if space.continuous else np.asarray(rows["actions"], dtype=np.int64),
        rewards=np.asarray(rows["rewards"], dtype=np.float32),
        episode=np.asarray(rows["episode"], dtype=np.int64),
        departure=np.asarray(rows["departure"], dtype=bool) if saw_departure else None,
        env_id=env_id,
        env_kwargs=env_kwargs,
        departure_key=departure_key,
        source=source or f"callable {getattr(policy, '__qualname__', type(policy).__name__)}",
        last_obs=np.stack(rows["last_obs"]).astype(np.float32),
        terminated=np.asarray(rows["terminated"], dtype=bool),
    )


def _ask(policy: Callable[[np.ndarray], Any], obs: np.ndarray) -> Any:
    """The user's policy's answer to one observation; its failure as one line (its own code, run on its own machine).

    Raises:
        ValueError: the policy raised.
    """
    try:
        return policy(obs)
    except Exception as exc:  # noqa: BLE001 - whatever the user's function raises is reported, not a traceback
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ValueError(f"the policy raised {type(exc).__name__}{': ' + detail if detail else ''}") from None


def box_action(value: Any, space: ActionSpace) -> np.ndarray:
    """The ``Box`` action a user's policy returned, as float32 [d]: any array, tensor or sequence of d finite numbers
    within the space's bounds; anything else is refused, never clipped.

    Raises:
        ValueError: one line naming what is wrong (never the values).
    """
    try:
        action = np.asarray(value.detach() if hasattr(value, "detach") else value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"policy returned a {type(value).__name__}; return {space.n} numbers") from None
    if action.shape != (space.n,):
        raise ValueError(f"policy returned {action.size} numbers; the env's actions have {space.n} dimensions")
    if not np.isfinite(action).all():
        raise ValueError("policy returned a NaN or infinite action")
    if space.low is not None and space.high is not None:
        if ((action < np.asarray(space.low)) | (action > np.asarray(space.high))).any():
            raise ValueError("policy returned an action outside the env's bounds; clip it to the action space")
    return action


def policy_action(value: Any, n: int) -> int:
    """The action a user's policy returned, as an int in [0, n): a Python or numpy integer, or a one-element array or
    tensor of one, or an integral float; anything else is refused, never truncated.

    Raises:
        ValueError: one line naming what came back.
    """
    item = value
    if hasattr(value, "shape") and hasattr(value, "reshape"):  # numpy arrays, torch tensors
        if int(np.prod(value.shape)) != 1:
            raise ValueError(f"policy returned an array of shape {tuple(value.shape)}; return one integer action")
        item = value.reshape(-1)[0].item() if hasattr(value.reshape(-1)[0], "item") else value.reshape(-1)[0]
    if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer, float, np.floating)):
        raise ValueError(f"policy returned a {type(value).__name__}; return one integer action in 0..{n - 1}")
    if isinstance(item, (float, np.floating)) and not float(item).is_integer():
        raise ValueError(f"policy returned a non-integer number; return one integer action in 0..{n - 1}")
    action = int(item)
    if not 0 <= action < n:
        raise ValueError(f"policy returned action {action}, outside 0..{n - 1}")
    return action


def from_arrays(
    *,
    obs: Any,
    actions: Any,
    rewards: Any,
    episode: Any,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    source: str = "user arrays",
    departure: Any = None,
    check_env: bool = True,
) -> Demonstrations:
    """Build a validated dataset from arrays a user already has (converted to the format's dtypes).

    Raises:
        ValueError: shapes, dtypes or the env id do not fit.
    """
    if check_env:
        resolve_env_id(env_id)

    def conv(x: Any, name: str) -> np.ndarray:
        arr = np.asarray(x)
        if name == "actions" and arr.ndim == 2:  # a Box env's action vectors
            return arr.astype(np.float32)
        if name in ("actions", "episode") and arr.size and not np.issubdtype(arr.dtype, np.integer):
            if not np.array_equal(arr, np.round(arr)):
                raise ValueError(f"{name} must hold whole numbers")
        return arr.astype(_DTYPES[name])

    return Demonstrations(
        obs=conv(obs, "obs"),
        actions=conv(actions, "actions"),
        rewards=conv(rewards, "rewards"),
        episode=conv(episode, "episode"),
        departure=None if departure is None else conv(departure, "departure"),
        env_id=env_id,
        env_kwargs=dict(env_kwargs or {}),
        source=source,
    )
