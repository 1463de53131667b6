"""Imitator checkpoints: one safetensors file of the state dict plus JSON metadata; never a pickle.

Metadata (string -> string): ``imitaudit.schema`` = ``imitaudit.imitator/1``, ``arch`` (a
name in :mod:`models.registry`), ``config`` (JSON of :class:`ImitatorConfig`), ``env_id``,
``env_kwargs`` (JSON), ``obs_shape`` (JSON list), ``n_actions``, and optionally
``provenance`` (JSON: how it was trained). Loading rebuilds the architecture from the
registry and refuses any tensor that does not fit it. :mod:`models.load` loads any imitator file (this format or
ONNX) by what the file is.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.formats import IMITATOR_SCHEMA, CheckpointInfo, kind_of
from models.imitator import Imitator, ImitatorConfig
from models.registry import build
from models.safetensors_io import parse_safetensors, strict_json, write_safetensors

_REQUIRED = ("imitaudit.schema", "arch", "config", "env_id", "obs_shape", "n_actions")


def save_imitator(
    model: Imitator,
    path: str | os.PathLike,
    *,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    obs_shape: tuple[int, ...] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a checkpoint (atomically); returns the path."""
    config = model.config
    obs_shape = tuple(obs_shape) if obs_shape is not None else (config.obs_dim,)
    if math.prod(obs_shape) != config.obs_dim:
        raise ValueError(f"obs_shape {obs_shape} does not hold obs_dim={config.obs_dim} features")
    tensors = {k: v.detach().cpu().contiguous().numpy() for k, v in model.state_dict().items()}
    metadata = {
        "imitaudit.schema": IMITATOR_SCHEMA,
        "arch": model.arch,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "env_id": env_id,
        "env_kwargs": json.dumps(env_kwargs or {}, sort_keys=True),
        "obs_shape": json.dumps(list(obs_shape)),
        "n_actions": str(config.n_actions),
        "provenance": json.dumps(provenance or {}, sort_keys=True, default=str),
    }
    return write_safetensors(path, tensors, metadata)


MAX_WEIGHT = 1e6
"""Weights past this magnitude overflow float32 arithmetic within a few layers: refused at load."""


def _header(meta: dict[str, str], name: str) -> tuple[ImitatorConfig, dict[str, Any], list[int], Any]:
    """(config, env_kwargs, obs_shape, provenance) of a checkpoint's metadata, each checked against the others."""
    missing = [k for k in _REQUIRED if k not in meta]
    if "imitaudit.schema" in missing:
        raise ValueError(f"{name}: metadata has no 'imitaudit.schema': not an imitaudit checkpoint")
    kind = kind_of(meta, name)
    if kind == "demonstrations":
        raise ValueError(
            f"{name}: this is a demonstrations file, not an imitator checkpoint (--imitator and --demos swapped?)"
        )
    if kind != "imitator":
        raise ValueError(f"{name}: this is a {kind} file, not an imitator checkpoint")
    if missing:
        raise ValueError(f"{name}: metadata lacks {', '.join(missing)}")
    try:
        config_dict = strict_json(meta["config"])
        env_kwargs = strict_json(meta.get("env_kwargs", "{}"))
        obs_shape = strict_json(meta["obs_shape"])
        provenance = strict_json(meta.get("provenance", "{}"))
        n_actions = int(meta["n_actions"])
    except ValueError as exc:
        raise ValueError(f"{name}: malformed metadata ({str(exc).splitlines()[0]})") from None
    if not isinstance(obs_shape, list) or not obs_shape or not all(isinstance(d, int) and d > 0 for d in obs_shape):
        raise ValueError(f"{name}: obs_shape must be a list of positive integers, got {meta['obs_shape']!r}")
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"{name}: env_kwargs must be a JSON object")
    try:
        config = ImitatorConfig.from_dict(config_dict)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: bad config: {exc}") from None
    if math.prod(obs_shape) != config.obs_dim:
        raise ValueError(f"{name}: obs_shape {obs_shape} does not fit config obs_dim={config.obs_dim}")
    if n_actions != config.n_actions:
        raise ValueError(f"{name}: n_actions={n_actions} does not fit config n_actions={config.n_actions}")
    return config, env_kwargs, obs_shape, provenance


def _weights(tensors: dict[str, np.ndarray], arch: str, config: ImitatorConfig, name: str) -> dict[str, torch.Tensor]:
    """The state dict of ``arch`` under ``config`` from stored tensors that fit it exactly (names, shapes, finite floats
    of bounded magnitude); the network is shaped on the meta device, so a config of any size allocates nothing first."""
    try:
        with torch.device("meta"):
            skeleton = build(arch, config)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    expected = skeleton.state_dict()
    absent = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if absent:
        raise ValueError(f"{name}: missing tensor(s) for arch {arch!r}: {', '.join(absent[:4])}")
    if extra:
        raise ValueError(f"{name}: unexpected tensor(s) for arch {arch!r}: {', '.join(extra[:4])}")
    state = {}
    for key, ref in expected.items():
        arr = tensors[key]
        if tuple(arr.shape) != tuple(ref.shape):
            raise ValueError(f"{name}: tensor {key} has shape {tuple(arr.shape)}, the config needs {tuple(ref.shape)}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{name}: tensor {key} has dtype {arr.dtype}; weights must be floating point")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: tensor {key} holds NaN or infinite values")
        if arr.size and float(np.abs(arr).max()) > MAX_WEIGHT:
            raise ValueError(
                f"{name}: tensor {key} holds values of magnitude {float(np.abs(arr).max()):.3g}; weights past "
                f"{MAX_WEIGHT:g} are refused"
            )
        state[key] = torch.from_numpy(arr.astype(np.float32))
    return state


def load_checkpoint_bytes(data: bytes, name: str = "upload") -> tuple[Imitator, CheckpointInfo]:
    """Rebuild an imitator from a safetensors checkpoint's bytes (in eval mode); ``name`` labels the messages.

    Raises:
        ValueError: one line naming the problem: not safetensors (a pickle, a zip, truncated),
            missing or malformed metadata, another kind of imitaudit file, unknown architecture, a config that does
            not fit the obs shape, or tensors missing, unexpected or of the wrong shape.
    """
    tensors, meta = parse_safetensors(data, name)
    config, env_kwargs, obs_shape, provenance = _header(meta, name)
    state = _weights(tensors, meta["arch"], config, name)
    model = build(meta["arch"], config)
    model.load_state_dict(state)
    model.eval()
    info = CheckpointInfo(
        arch=meta["arch"],
        config=config,
        env_id=meta["env_id"],
        env_kwargs=env_kwargs,
        obs_shape=tuple(obs_shape),
        n_actions=config.n_actions,
        provenance=provenance if isinstance(provenance, dict) else {},
        n_params=sum(p.numel() for p in model.parameters()),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return model, info


def convert_lightning_checkpoint(ckpt: str | os.PathLike, out: str | os.PathLike, *, prefix: str = "imitator.") -> Path:
    """Convert a Lightning ``.ckpt`` written by ``audit.training.run`` into a safetensors checkpoint.

    Reads with ``torch.load(weights_only=True)`` only, which refuses arbitrary pickled
    objects; the architecture and env come from the checkpoint's ``hyper_parameters``.

    Raises:
        ValueError: unreadable file, or not a checkpoint of an imitaudit training run.
    """
    ckpt = Path(ckpt)
    if not ckpt.exists():
        raise ValueError(f"{ckpt}: no such file")
    try:
        blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - weights_only refusals come in many types
        raise ValueError(
            f"{ckpt}: cannot read as a weights-only Lightning checkpoint ({str(exc).splitlines()[0]})"
        ) from None
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ValueError(f"{ckpt}: not a Lightning checkpoint (no state_dict)")
    hp = dict(blob.get("hyper_parameters") or {})
    if "arch" not in hp and isinstance(hp.get("train_cfg"), dict):  # the modules save the whole TrainConfig
        hp["arch"] = hp["train_cfg"].get("arch")
    for key in ("arch", "imitator_config", "env_id"):
        if not hp.get(key):
            raise ValueError(f"{ckpt}: hyper_parameters lack {key!r}: not an imitaudit training checkpoint")
    config = ImitatorConfig.from_dict(dict(hp["imitator_config"]))
    model = build(hp["arch"], config)
    state = {k[len(prefix) :]: v for k, v in blob["state_dict"].items() if k.startswith(prefix)}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{ckpt}: weights do not fit arch {hp['arch']!r} ({str(exc).splitlines()[0]})") from None
    return save_imitator(
        model,
        out,
        env_id=hp["env_id"],
        env_kwargs=dict(hp.get("env_kwargs") or {}),
        provenance={"converted_from": ckpt.name, "global_step": blob.get("global_step")},
    )
