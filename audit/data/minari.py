"""Minari datasets (the offline-RL and imitation data format) read into demonstrations, and written from them.

A local Minari dataset is a folder holding ``data/metadata.json`` (its ``env_spec`` names the Gymnasium env and its
keyword arguments) and ``data/main_data.hdf5``, one group ``episode_{i}`` per episode with ``observations`` (one more
than its steps: the last is the observation after the last action), ``actions``, ``rewards``, ``terminations``,
``truncations`` and an optional ``infos`` group. Demonstrations keep the observation *before* each action, so the last
one is dropped; a departure is read from ``infos/<departure_key>`` where the dataset has it.

The file is read by h5py, never unpickled, and nothing in it may name another file: external links, external storage
and virtual datasets are refused before any data is read. Only flat observation spaces (``Box``, ``Discrete``) are
read; nested ones (``Dict``, ``Tuple``) are refused in one line. ``infos/<key>`` may hold one entry per step or, as
Minari's ``DataCollector`` writes it, one more (the reset's info first).

:func:`write_minari` writes the same layout (Minari 0.5's ``hdf5`` format, checked by reading it back with ``minari``
itself in the tests) from demonstrations that hold each episode's end (``last_obs``, ``terminated``), which
:func:`audit.data.demonstrations.record` and :func:`read_minari` keep; the departure goes to ``infos/<departure_key>``
with the reset's entry (False) first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
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


def _flatten(obs_space: Any, obs: np.ndarray) -> np.ndarray:
    """[k, ...] observations of a Box or Discrete space as [k, features] float32."""
    if isinstance(obs_space, spaces.Box):
        return np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
    return np.stack([np.asarray(spaces.flatten(obs_space, o)) for o in obs]).astype(np.float32)


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
    flat = _flatten(obs_space, obs[:n])
    infos = group.get("infos")
    departure = None
    if isinstance(infos, h5py.Group) and isinstance(infos.get(departure_key), h5py.Dataset):
        departure = np.asarray(infos[departure_key][()]).astype(bool).reshape(-1)
        if len(departure) == n + 1:  # DataCollector's layout: the reset's info first
            departure = departure[1:]
        if len(departure) != n:
            raise ValueError(f"{key}: infos/{departure_key} does not have one entry per step")
    last = _flatten(obs_space, obs[n : n + 1])[0]
    return {
        "obs": flat,
        "departure": departure,
        "last_obs": last,
        "terminated": bool(steps["terminations"][-1]),
        **steps,
    }


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
    demos = dataclasses.replace(
        demos,
        last_obs=np.stack([e["last_obs"] for e in episodes]),
        terminated=np.asarray([e["terminated"] for e in episodes], dtype=bool),
    )
    if departure_key != "departure":
        demos = dataclasses.replace(demos, departure_key=departure_key)
    demos.check_fits_env()
    return demos


DATASET_ID = re.compile(r"^(?:[A-Za-z0-9_.-]+/)?[A-Za-z0-9_.-]+-v\d+$")
"""Minari's dataset ids: ``[namespace/]name-vN``."""


def dataset_id_of(folder: Path) -> str:
    """The id a dataset in ``folder`` carries: its path below the Minari root, ``namespace/name-vN`` where the last two
    parts fit, else ``name-vN``, else the folder's name with ``-v0``, so ``minari.load_dataset`` finds it when
    ``MINARI_DATASETS_PATH`` is the folder's root."""
    two = "/".join(folder.resolve().parts[-2:])
    for candidate in (two, folder.name, f"{folder.name}-v0"):
        if DATASET_ID.match(candidate):
            return candidate
    raise ValueError(f"{folder.name!r} cannot name a Minari dataset (letters, digits, '_', '.', '-')")


def _space_json(space: Any) -> str:
    """A Box or Discrete space as Minari serializes it."""
    if isinstance(space, spaces.Box):
        body = {"type": "Box", "dtype": str(space.dtype), "shape": list(space.shape)}
        return json.dumps({**body, "low": space.low.tolist(), "high": space.high.tolist()})
    if isinstance(space, spaces.Discrete):
        return json.dumps({"type": "Discrete", "dtype": "int64", "start": int(space.start), "n": int(space.n)})
    raise ValueError(f"a Minari dataset is written for Box or Discrete spaces, not {type(space).__name__}")


def _env_spec_json(env: gym.Env, env_id: str, env_kwargs: dict[str, Any]) -> str:
    """The env's spec as Minari stores it (a callable entry point, as the built-in envs have, is named by its path)."""
    spec = env.spec
    entry = spec.entry_point if spec else None
    if entry is not None and not isinstance(entry, str):
        target = getattr(entry, "func", entry)
        entry = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', '?')}"
    return json.dumps(
        {
            "id": env_id,
            "entry_point": entry,
            "reward_threshold": spec.reward_threshold if spec else None,
            "nondeterministic": bool(spec.nondeterministic) if spec else False,
            "max_episode_steps": spec.max_episode_steps if spec else None,
            "order_enforce": bool(spec.order_enforce) if spec else True,
            "disable_env_checker": bool(spec.disable_env_checker) if spec else False,
            "kwargs": env_kwargs,
            "additional_wrappers": [],
            "vector_entry_point": None,
        }
    )


def _unflatten(space: Any, flat: np.ndarray) -> np.ndarray:
    """[k, features] float32 back to the space's own layout: Box's shape and dtype, Discrete's integers."""
    if isinstance(space, spaces.Box):
        return flat.reshape(len(flat), *space.shape).astype(space.dtype)
    return (np.argmax(flat, axis=1) + int(space.start)).astype(np.int64)


def write_minari(demos: Demonstrations, path: str | os.PathLike, *, algorithm_name: str = "imitaudit") -> Path:
    """Write ``demos`` as a local Minari dataset in the folder ``path`` (created; it must not exist); returns it.

    Raises:
        ValueError: demonstrations without their episodes' ends, an existing folder, an env imitaudit cannot make, or
            a space Minari's format is not written for here (nested observations).
    """
    import h5py

    if demos.last_obs is None or demos.terminated is None:
        raise ValueError(
            "these demonstrations do not hold each episode's last observation (imitator recordings and files written "
            "before imitaudit kept it do not): record them again to write a Minari dataset"
        )
    root = Path(path)
    if root.exists():
        raise ValueError(f"{root} exists; --to-minari writes a new dataset folder")
    dataset_id = dataset_id_of(root)
    try:
        env = gym.make(demos.env_id, **demos.env_kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure to build the env is bad input
        raise ValueError(f"cannot make env {demos.env_id!r}: {str(exc).splitlines()[0][:200]}") from None
    obs_space, action_space = env.observation_space, env.action_space
    metadata = {
        "total_episodes": demos.n_episodes,
        "total_steps": demos.n_steps,
        "data_format": "hdf5",
        "observation_space": _space_json(obs_space),
        "action_space": _space_json(action_space),
        "env_spec": _env_spec_json(env, demos.env_id, demos.env_kwargs),
        "dataset_id": dataset_id,
        "algorithm_name": algorithm_name,
        "minari_version": "0.5.3",
        "dataset_size": 0.0,
    }
    env.close()
    # written beside the target and renamed into place, so a failure leaves no half-written dataset
    partial = root.parent / f".{root.name}.partial-{os.getpid()}"
    try:
        (partial / "data").mkdir(parents=True)
        with h5py.File(partial / "data" / "main_data.hdf5", "w") as h5:
            for i, (a, b) in enumerate(demos.episode_bounds()):
                _write_episode(h5.create_group(f"episode_{i}"), demos, i, int(a), int(b), obs_space)
        (partial / "data" / "metadata.json").write_text(json.dumps(metadata))
        partial.rename(root)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return root


def _write_episode(group: Any, demos: Demonstrations, i: int, a: int, b: int, obs_space: Any) -> None:
    """Episode ``i`` (steps ``a:b``) in Minari's layout."""
    assert demos.last_obs is not None and demos.terminated is not None  # checked by write_minari
    n = b - a
    group.attrs["id"], group.attrs["total_steps"] = i, n
    flat = np.concatenate([demos.obs[a:b].reshape(n, -1), demos.last_obs[i].reshape(1, -1)])
    group.create_dataset("observations", data=_unflatten(obs_space, flat))
    group.create_dataset("actions", data=demos.actions[a:b])
    group.create_dataset("rewards", data=demos.rewards[a:b].astype(np.float64))
    ends = np.zeros(n, dtype=bool)
    ends[-1] = True
    group.create_dataset("terminations", data=ends & bool(demos.terminated[i]))
    group.create_dataset("truncations", data=ends & (not bool(demos.terminated[i])))
    if demos.departure is not None:
        infos = group.create_group("infos")
        infos.create_dataset(demos.departure_key, data=np.r_[False, demos.departure[a:b]])
