"""Safe reading and atomic writing of imitaudit's safetensors files (checkpoints, datasets).

Files are parsed by the safetensors format only; pickles and zip archives (``torch.save``)
are recognised by their first bytes and refused. Every problem is a one-line ``ValueError``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

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


MAX_HEADER_BYTES = 16 * 1024 * 1024
"""A safetensors JSON header past this is refused before it is parsed."""
MAX_METADATA_VALUE = 256 * 1024
"""Characters of one metadata value (provenance, env_kwargs, ...)."""
DTYPES = ("F64", "F32", "F16", "I64", "I32", "I16", "I8", "U8", "BOOL")
"""Tensor dtypes imitaudit reads (numpy has no bfloat16 or float8)."""


def _header_length(data: bytes, name: str) -> int:
    """The JSON header's length, once the bytes look like safetensors (a pickle, a zip or a truncated file named)."""
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
    if header_len > MAX_HEADER_BYTES:
        raise ValueError(f"{name}: safetensors header of {header_len} bytes is over the limit of {MAX_HEADER_BYTES}")
    return header_len


def parse_safetensors(data: bytes, name: str = "upload") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Like :func:`read_safetensors`, on bytes already in memory (``name`` labels messages)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_bytes

    header_len = _header_length(data, name)
    try:
        header = strict_json(data[8 : 8 + header_len])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{name}: not safetensors: its header is not valid JSON ({str(exc).splitlines()[0][:200]})"
        ) from None
    if not isinstance(header, dict):
        raise ValueError(f"{name}: not safetensors: its header is not a JSON object")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{name}: safetensors metadata must map strings to strings")
    for key, value in metadata.items():
        if len(value) > MAX_METADATA_VALUE:
            raise ValueError(
                f"{name}: metadata {key[:100]!r} is {len(value)} characters, over the limit of {MAX_METADATA_VALUE}"
            )
    for key, entry in header.items():
        if key != "__metadata__" and isinstance(entry, dict) and entry.get("dtype") not in DTYPES:
            raise ValueError(
                f"{name}: tensor {key[:100]!r} has dtype {str(entry.get('dtype'))[:20]}, which imitaudit does not read "
                f"(it reads {', '.join(DTYPES)}; save weights as float32)"
            )
    try:
        tensors = load_bytes(data)
    except (SafetensorError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(
            f"{name}: invalid safetensors file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    return tensors, metadata


def strict_json(text: str | bytes) -> Any:
    """JSON as an untrusted file holds it: no NaN or infinities, no duplicate keys, no nesting deep enough to exhaust
    the stack.

    Raises:
        ValueError: the first of those, in one line.
    """

    def no_constants(word: str) -> Any:
        raise ValueError(f"non-finite number {word} is not allowed")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"duplicate key {key[:100]!r}")
            out[key] = value
        return out

    def finite(word: str) -> float:
        value = float(word)
        if not math.isfinite(value):
            raise ValueError(f"number {word[:30]} overflows to infinity")
        return value

    try:
        return json.loads(text, parse_constant=no_constants, parse_float=finite, object_pairs_hook=unique)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


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
