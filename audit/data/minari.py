"""Minari datasets (the offline-RL and imitation data format) read into demonstrations.

A local Minari dataset is a folder holding ``data/metadata.json`` (its ``env_spec`` names the Gymnasium env and its
keyword arguments) and ``data/main_data.hdf5``, one group ``episode_{i}`` per episode with ``observations`` (one more
than its steps: the last is the observation after the last action), ``actions``, ``rewards``, ``terminations``,
``truncations`` and an optional ``infos`` group. Demonstrations keep the observation *before* each action, so the last
one is dropped; a departure is read from ``infos/<departure_key>`` where the dataset has it.

The file is read by h5py, never unpickled, and nothing in it may name another file: external links, external storage
and virtual datasets are refused before any data is read. Only flat observation spaces (``Box``, ``Discrete``) are
read; nested ones (``Dict``, ``Tuple``) are refused in one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from audit.data.demonstrations import Demonstrations, from_arrays
from audit.envs import resolve_env_id

MAX_EPISODES = 1_000_000
"""More episode groups than this in one file is not a dataset imitaudit reads in memory."""
_STEP_KEYS = ("actions", "rewards", "terminations", "truncations")


def _data_folder(path: str | os.PathLike) -> Path:
    """The folder holding ``metadata.json`` and ``main_data.hdf5``: ``path/data`` or ``path`` itself."""
    root = Path(path)
    for folder in (root / "data", root):
        if (folder / "metadata.json").is_file() and (folder / "main_data.hdf5").is_file():
            return folder
    raise ValueError(f"{root}: not a Minari dataset (no data/metadata.json and data/main_data.hdf5)")


def _env_of(folder: Path) -> tuple[str, dict[str, Any], str]:
    """(env id, env kwargs, dataset id) from ``metadata.json``."""
    try:
        metadata = json.loads((folder / "metadata.json").read_text())
        spec = json.loads(metadata["env_spec"]) if isinstance(metadata.get("env_spec"), str) else None
    except (ValueError, KeyError, UnicodeDecodeError):
        raise ValueError(f"{folder}/metadata.json is not a Minari dataset's metadata") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("id"), str):
        raise ValueError(f"{folder}/metadata.json names no env (env_spec with an id): imitaudit needs the env")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"{folder}/metadata.json: env_spec kwargs must be a JSON object")
    kwargs = {k: v for k, v in kwargs.items() if k != "render_mode"}
    return spec["id"], kwargs, str(metadata.get("dataset_id", folder.parent.name))


def _refuse_links(h5: Any, name: str) -> None:
    """Refuse anything in the file that points outside it (checked on every member before any data is read)."""
    import h5py

    def visit(group: Any, prefix: str) -> None:
        for key in group:
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise ValueError(f"{name}: {prefix}{key} links to another file; imitaudit reads self-contained files")
            member = group[key]
            if isinstance(member, h5py.Dataset) and (member.is_virtual or member.external):
                raise ValueError(f"{name}: {prefix}{key} keeps its data in other files; imitaudit reads self-contained")
            if isinstance(member, h5py.Group):
                visit(member, f"{prefix}{key}/")

    visit(h5, "")


def _episode(group: Any, key: str, obs_space: Any, departure_key: str) -> dict[str, np.ndarray]:
    """One episode's arrays, checked for matching lengths; observations flattened and the last one dropped."""
    import h5py

    missing = [k for k in ("observations", *_STEP_KEYS) if not isinstance(group.get(k), h5py.Dataset)]
    if missing:
        raise ValueError(f"{key} lacks {', '.join(missing)} (nested observation spaces are not read)")
    steps = {k: group[k][()] for k in _STEP_KEYS}
    n = len(steps["rewards"])
    obs = group["observations"][()]
    if n == 0 or len(obs) != n + 1 or any(len(v) != n for v in steps.values()):
        raise ValueError(f"{key}: observations, actions, rewards, terminations and truncations do not line up")
    if isinstance(obs_space, spaces.Box):
        flat = np.asarray(obs[:n], dtype=np.float32).reshape(n, -1)
    else:
        flat = np.stack([np.asarray(spaces.flatten(obs_space, o)) for o in obs[:n]]).astype(np.float32)
    infos = group.get("infos")
    departure = None
    if isinstance(infos, h5py.Group) and isinstance(infos.get(departure_key), h5py.Dataset):
        departure = np.asarray(infos[departure_key][()]).astype(bool).reshape(-1)
        if len(departure) != n:
            raise ValueError(f"{key}: infos/{departure_key} does not have one entry per step")
    return {"obs": flat, "departure": departure, **steps}


def read_minari(path: str | os.PathLike, *, departure_key: str = "departure") -> Demonstrations:
    """A local Minari dataset as demonstrations (its env and kwargs from its ``env_spec``).

    Raises:
        ValueError: one line: not a Minari dataset, an env that is not installed or not flat, a missing or
            misaligned field, links to other files, or values the demonstrations format refuses.
    """
    import h5py

    folder = _data_folder(path)
    env_id, env_kwargs, dataset_id = _env_of(folder)
    resolve_env_id(env_id)
    try:
        env = gym.make(env_id, **env_kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure to build the dataset's env is bad input
        raise ValueError(f"cannot make the dataset's env {env_id!r}: {str(exc).splitlines()[0][:200]}") from None
    obs_space = env.observation_space
    env.close()
    if not isinstance(obs_space, (spaces.Box, spaces.Discrete)):
        raise ValueError(
            f"{env_id} has a {type(obs_space).__name__} observation space; imitaudit reads Box or Discrete"
        )
    name = str(folder / "main_data.hdf5")
    try:
        h5 = h5py.File(name, "r")
    except OSError:
        raise ValueError(f"{name}: not an HDF5 file") from None
    with h5:
        _refuse_links(h5, name)
        keys = sorted((k for k in h5 if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
        if not keys or len(keys) > MAX_EPISODES:
            raise ValueError(f"{name}: holds {len(keys)} episode groups (1 to {MAX_EPISODES:,} are read)")
        episodes = [_episode(h5[k], k, obs_space, departure_key) for k in keys]
    with_departure = all(e["departure"] is not None for e in episodes)
    demos = from_arrays(
        obs=np.concatenate([e["obs"] for e in episodes]),
        actions=np.concatenate([e["actions"] for e in episodes]),
        rewards=np.concatenate([e["rewards"] for e in episodes]),
        episode=np.concatenate([np.full(len(e["rewards"]), i) for i, e in enumerate(episodes)]),
        departure=np.concatenate([e["departure"] for e in episodes]) if with_departure else None,
        env_id=env_id,
        env_kwargs=env_kwargs,
        source=f"minari {dataset_id}"[:200],
    )
    if departure_key != "departure":
        demos = dataclasses.replace(demos, departure_key=departure_key)
    demos.check_fits_env()
    return demos
