"""Safe reading and atomic writing of imitaudit's safetensors files (checkpoints, datasets).

Files are parsed by the safetensors format only; pickles and zip archives (``torch.save``)
are recognised by their first bytes and refused. Every problem is a one-line ``ValueError``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors (numpy) and string metadata of a safetensors file.

    Raises:
        ValueError: missing, empty, truncated, pickled, zipped or otherwise not safetensors.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    return parse_safetensors(path.read_bytes(), str(path))


def parse_safetensors(data: bytes, name: str = "upload") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Like :func:`read_safetensors`, on bytes already in memory (``name`` labels messages)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_bytes

    if not data:
        raise ValueError(f"{name}: file is empty")
    looks_safetensors = len(data) >= 9 and data[8:9] == b"{"
    if not looks_safetensors:
        if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise ValueError(f"{name}: this is a Python pickle, not safetensors; imitaudit never unpickles files")
        if data[:2] == b"PK":
            raise ValueError(f"{name}: this is a zip archive (a torch.save file?), not safetensors")
        if len(data) < 9:
            raise ValueError(f"{name}: truncated file ({len(data)} bytes): not safetensors")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        if not looks_safetensors:
            raise ValueError(f"{name}: not a safetensors file (no JSON header)")
        raise ValueError(f"{name}: not safetensors: header length {header_len} exceeds the file's {len(data)} bytes")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{name}: not safetensors: its header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError(f"{name}: not safetensors: its header is not a JSON object")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{name}: safetensors metadata must map strings to strings")
    try:
        tensors = load_bytes(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise ValueError(f"{name}: invalid safetensors file ({str(exc).splitlines()[0]})") from None
    return tensors, metadata


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write atomically: a temp file beside ``path``, then a rename."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
