"""Load any imitator file by what it is (:func:`models.formats.sniff`): a safetensors checkpoint of a registered
architecture (:mod:`models.checkpoint`) or an ONNX policy (:mod:`models.onnx_imitator`)."""

from __future__ import annotations

import os
from pathlib import Path

from models.checkpoint import load_checkpoint_bytes
from models.formats import CheckpointInfo, is_onnx
from models.onnx_imitator import load_onnx_bytes
from models.policy import Policy


def load_imitator(path: str | os.PathLike) -> tuple[Policy, CheckpointInfo]:
    """Rebuild an imitator from its file (in eval mode).

    Raises:
        ValueError: one line naming the problem (see :func:`load_imitator_bytes`).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    return load_imitator_bytes(path.read_bytes(), str(path))


def load_imitator_bytes(data: bytes, name: str = "upload") -> tuple[Policy, CheckpointInfo]:
    """:func:`load_imitator` on bytes in memory (``name`` labels the messages).

    Raises:
        ValueError: one line: an ONNX graph :mod:`models.onnx_imitator` refuses, or a checkpoint
            :func:`models.checkpoint.load_checkpoint_bytes` refuses.
    """
    if is_onnx(data):
        return load_onnx_bytes(data, name)
    return load_checkpoint_bytes(data, name)
