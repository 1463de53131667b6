"""The files imitaudit reads, in one place: their schema strings, what a file is (:func:`sniff`), and what an imitator
file says about itself (:class:`CheckpointInfo`).

- an imitator checkpoint: safetensors, metadata ``imitaudit.schema`` = :data:`IMITATOR_SCHEMA`
(:mod:`models.checkpoint`);
- an ONNX policy: a serialized ModelProto (:mod:`models.onnx_imitator`);
- demonstrations: safetensors, :data:`DEMONSTRATIONS_SCHEMA` (``audit.data.demonstrations``);
- a runtime monitor: safetensors, :data:`MONITOR_SCHEMA` (``audit.detect.monitor``).

:func:`sniff` reads a file's first bytes and, for safetensors, its header's metadata only: nothing is built or run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.imitator import ImitatorConfig
from models.safetensors_io import read_safetensors

IMITATOR_SCHEMA = "imitaudit.imitator/1"
DEMONSTRATIONS_SCHEMA = "imitaudit.demonstrations/2"
DEMONSTRATIONS_SCHEMA_V1 = "imitaudit.demonstrations/1"
"""Version 1 held discrete actions only; version 2 files may hold ``Box`` actions. Both are read."""
MONITOR_SCHEMA = "imitaudit.monitor/1"
KINDS = {
    IMITATOR_SCHEMA: "imitator",
    DEMONSTRATIONS_SCHEMA: "demonstrations",
    DEMONSTRATIONS_SCHEMA_V1: "demonstrations",
    MONITOR_SCHEMA: "monitor",
}
"""Schema string -> the kind :func:`sniff` names."""


def is_onnx(data: bytes) -> bool:
    """Whether ``data`` starts like a serialized ONNX ModelProto (field 1, ir_version, a varint) rather than
    safetensors."""
    return len(data) > 2 and data[0] == 0x08 and not (len(data) >= 9 and data[8:9] == b"{")


def sniff(path: str | os.PathLike) -> str:
    """What the file is: ``onnx``, ``imitator``, ``demonstrations`` or ``monitor``.

    Raises:
        ValueError: one line: no such file, not safetensors or ONNX, no imitaudit schema, or an unknown one.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with open(path, "rb") as f:
        if is_onnx(f.read(16)):
            return "onnx"
    _, metadata = read_safetensors(path)
    return kind_of(metadata, str(path))


def kind_of(metadata: dict[str, str], name: str) -> str:
    """The kind a safetensors file's metadata declares (see :func:`sniff`)."""
    schema = metadata.get("imitaudit.schema")
    if schema is None:
        raise ValueError(f"{name}: metadata has no 'imitaudit.schema': not an imitaudit file")
    if schema not in KINDS:
        raise ValueError(f"{name}: unknown schema version {schema[:80]!r}; this imitaudit reads {', '.join(KINDS)}")
    return KINDS[schema]


@dataclass(frozen=True, kw_only=True)
class CheckpointInfo:
    """What a checkpoint says about itself."""

    arch: str
    config: ImitatorConfig
    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    obs_shape: tuple[int, ...] = ()
    n_actions: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)
    n_params: int = 0
    sha256: str = ""

    def summary(self) -> dict[str, Any]:
        config = self.config.to_dict()
        if self.arch == "onnx":  # a graph has no layers, heads or context length: only what the audit reads of it
            keep = ("obs_dim", "n_actions", "hidden", "continuous", "action_low", "action_high")
            config = {k: config[k] for k in keep if k in config}
        return {
            "kind": "imitator",
            "schema": IMITATOR_SCHEMA,
            "arch": self.arch,
            "config": config,
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "obs_shape": list(self.obs_shape),
            "n_actions": self.n_actions,
            "parameters": self.n_params,
            "provenance": self.provenance,
            "sha256": self.sha256,
        }
