"""What can be audited: one check each that an imitator fits its env, that demonstrations fit theirs, that the two
match, and that enough is held out.

Every caller (the CLI, the pipeline, the service's uploads and audit requests) uses these
functions, so an input is refused the same way, with the same one line, wherever it comes in.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from audit.data.batching import split_episodes
from audit.data.demonstrations import Demonstrations
from audit.detect.calibrate import min_calibration_episodes
from audit.envs import ENGINES
from audit.envs.adapter import env_signature
from models.formats import is_onnx
from models.load import load_imitator
from models.onnx_imitator import onnx_metadata
from models.safetensors_io import read_safetensors, strict_json


def imitator_fits_env(info: Any, env_kwargs: dict[str, Any] | None = None) -> int:
    """Refuse an imitator whose obs or action count does not fit its env (with ``env_kwargs`` if given); returns the
    obs size.

    Raises:
        ValueError: one line naming what does not fit.
    """
    obs_dim, space = env_signature(info.env_id, info.env_kwargs if env_kwargs is None else env_kwargs)
    if info.config.obs_dim != obs_dim:
        raise ValueError(f"the imitator expects obs of {info.config.obs_dim} features; {info.env_id} gives {obs_dim}")
    if not space.continuous and not getattr(info.config, "continuous", False) and info.config.n_actions != space.n:
        # an ONNX graph computes its logits' width: the message says which way it is wrong, never the width
        raise ValueError(f"the imitator's logits have the wrong width for {info.env_id}'s {space.n} actions")
    misfit = space.misfit(info.config)
    if misfit is not None:
        raise ValueError(f"{misfit} ({info.env_id})")
    return obs_dim


MAX_ENV_STEPS = 10_000
"""The longest episode an uploaded file may ask a built-in env for (``max_steps``)."""
MAX_ENV_NUMBER = 1e6


def _declared_env(path: str | Path) -> tuple[str, str]:
    """(env id, env_kwargs JSON) a file declares, read from its metadata alone: nothing is built or run."""
    with open(path, "rb") as f:
        head = f.read(16)
    if is_onnx(head):
        meta = onnx_metadata(Path(path).read_bytes(), str(path))
        return meta.get("imitaudit.env_id", ""), meta.get("imitaudit.env_kwargs", "{}")
    _, metadata = read_safetensors(path)
    return metadata.get("env_id", ""), metadata.get("env_kwargs", "{}")


def check_uploaded_env(path: str | Path, allowed_envs: tuple[str, ...] = ()) -> None:
    """Refuse an uploaded file whose env could run code or work without bound, before anything resolves or builds it.

    - an id naming a module (``module:Env-v0``): importing it runs its code;
    - an id that is neither built in nor enabled by the operator (``allowed_envs``, the
      service's ``IMITAUDIT_ENVS``): building an installed env with uploaded arguments can
      allocate without bound;
    - ``env_kwargs`` of a built-in env outside its constructor's arguments or bounds
      (``max_steps`` <= 10,000, finite numbers of magnitude <= 1e6); any for another env (an
      enabled env is made with its own defaults).

    Raises:
        ValueError: one line naming the problem.
    """
    env_id, raw_kwargs = _declared_env(path)
    if ":" in env_id:
        raise ValueError(
            f"env id {env_id[:200]!r} names a module to import; the service accepts registered env ids only"
        )
    world = ENGINES.get(env_id)  # a plain lookup: nothing is resolved, imported or made
    if world is None and env_id not in allowed_envs:
        enabled = ", ".join(allowed_envs) or "none"
        raise ValueError(
            f"env {env_id[:200]!r} is not enabled on this service (built-in envs, and those the operator enables "
            f"with IMITAUDIT_ENVS: {enabled})"
        )
    kwargs = strict_json(raw_kwargs)
    if not isinstance(kwargs, dict):
        raise ValueError("env_kwargs must be a JSON object")
    if world is None:
        if kwargs:
            raise ValueError(
                f"env_kwargs are not accepted for {env_id}: the service makes enabled envs with their defaults"
            )
        return
    known = set(inspect.signature(world.__init__).parameters) - {"self", "num_envs"}
    for key, value in kwargs.items():
        if key not in known:
            raise ValueError(
                f"env_kwargs: {world.name} has no argument {key[:100]!r} (it takes {', '.join(sorted(known))})"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or abs(value) > MAX_ENV_NUMBER
        ):
            raise ValueError(
                f"env_kwargs: {key} must be a finite number of magnitude <= {MAX_ENV_NUMBER:g}, got {str(value)[:50]}"
            )
    steps = kwargs.get("max_steps", 1)
    if not isinstance(steps, int) or not 1 <= steps <= MAX_ENV_STEPS:
        raise ValueError(f"env_kwargs: max_steps must be an integer in [1, {MAX_ENV_STEPS}], got {steps}")


def check_imitator(
    path: str | Path, *, allow_imports: bool = True, allowed_envs: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Load a checkpoint through the registry and check that it fits its env; returns its summary.

    Args:
        allow_imports: accept ``module:Env-v0`` env ids and any installed env (False for anything
            uploaded: then only built-in envs and ``allowed_envs``, see :func:`check_uploaded_env`).

    Raises:
        ValueError: one line naming the problem (malformed file, unknown arch, env not
            installed or not enabled, obs or action count that does not fit the env).
    """
    if not allow_imports:
        check_uploaded_env(path, allowed_envs)
    _, info = load_imitator(path)
    imitator_fits_env(info)
    return info.summary()


def check_demonstrations(
    path: str | Path, *, allow_imports: bool = True, allowed_envs: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Load a demonstrations file and check it against its env; returns its summary.

    Args:
        allow_imports: as for :func:`check_imitator`.

    Raises:
        ValueError: one line naming the problem.
    """
    if not allow_imports:
        check_uploaded_env(path, allowed_envs)
    demos = Demonstrations.load(path)
    demos.check_fits_env()
    return demos.summary()


def check_calibration_size(alpha: float, calibration_fraction: float, n_episodes: int) -> None:
    """Refuse demonstrations too few for ``alpha`` once ``calibration_fraction`` of them is held out.

    Raises:
        ValueError: one line with what is needed.
    """
    need = min_calibration_episodes(alpha)
    held = int(round(calibration_fraction * n_episodes))
    if held < need or n_episodes - held < 1:
        total = int(np.ceil(need / calibration_fraction)) + 1
        raise ValueError(
            f"alpha={alpha:g} needs at least {need} held-out demonstration episodes; these demonstrations have "
            f"{n_episodes} episodes, {held} held out: record at least {total} episodes or raise alpha"
        )


def check_pair(model: Any, info: Any, demos: Demonstrations, taps: tuple[str, ...]) -> None:
    """Refuse an imitator and demonstrations that cannot be audited together.

    Raises:
        ValueError: other envs, a misfit, or taps the architecture does not have.
    """
    if demos.env_id != info.env_id:
        raise ValueError(f"the imitator is for {info.env_id}, the demonstrations were recorded in {demos.env_id}")
    obs_dim = imitator_fits_env(info)
    flat = int(np.prod(demos.obs_shape))
    if flat != obs_dim:
        raise ValueError(f"the demonstrations' obs have {flat} features, {info.env_id} gives {obs_dim}")
    unknown = [t for t in taps if t not in model.taps]
    if unknown:
        raise ValueError(f"unknown tap(s) {', '.join(unknown)}; {info.arch} has {', '.join(model.taps)}")


def check_null_preconditions(
    imitator: dict[str, Any], demos: dict[str, Any], demos_sha256: str, *, allow_training_demos: bool
) -> None:
    """Refuse an audit whose calibration could not be exchangeable with the imitator's rollouts, from the two files'
    summaries (``provenance`` and ``env_kwargs`` of the imitator's, ``env_kwargs`` of the demonstrations').

    Raises:
        ValueError: the demonstrations are the imitator's recorded training data (unless allowed), or they were recorded
            with other env arguments than the imitator acts in.
    """
    trained_on = str((imitator.get("provenance") or {}).get("demos_sha256", ""))
    if trained_on and trained_on == demos_sha256 and not allow_training_demos:
        raise ValueError(
            "these are the demonstrations the imitator was trained on: audit against held-out ones "
            "(imitaudit demos ... --seed S), or pass --allow-training-demos to accept an anti-conservative audit"
        )
    theirs, ours = dict(demos.get("env_kwargs") or {}), dict(imitator.get("env_kwargs") or {})
    if theirs != ours:
        raise ValueError(
            f"the demonstrations were recorded with env arguments {json.dumps(theirs, sort_keys=True)[:200]}, "
            f"the imitator acts with {json.dumps(ours, sort_keys=True)[:200]}: record them in the imitator's env"
        )


def split_demonstrations(
    n_episodes: int, *, calibration_fraction: float, alpha: float, seed: int, max_fit: int, max_calibration: int
) -> tuple[np.ndarray, np.ndarray]:
    """(fit, calibration) episode positions: a seeded split, each capped.

    Raises:
        ValueError: too few episodes for ``alpha``.
    """
    check_calibration_size(alpha, calibration_fraction, n_episodes)
    return split_episodes(n_episodes, calibration_fraction, seed, max_rest=max_fit, max_apart=max_calibration)
