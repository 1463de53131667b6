"""Conversion of imitators made elsewhere into files imitaudit reads: one function that dispatches on the source's kind.

- ``lightning``: a ``.ckpt`` of an imitaudit training run -> a checkpoint
  (:func:`models.checkpoint.convert_lightning_checkpoint`);
- ``imitaudit``: a checkpoint -> ONNX (:func:`models.onnx_export.export_imitator`);
- ``onnx``: any ONNX policy -> the same graph with its env, taps and states stamped on
  (:func:`models.onnx_export.stamp`), refused unless the audit could read it;
- ``sb3``: a Stable-Baselines3 ``.zip`` -> ONNX, read as data, never unpickled (:func:`models.sb3.convert_sb3`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

KINDS = ("lightning", "imitaudit", "onnx", "sb3")


def convert(
    kind: str,
    source: str | Path,
    out: str,
    *,
    env_id: str = "",
    env_kwargs: dict[str, Any] | None = None,
    taps: dict[str, str] | None = None,
    state_inputs: tuple[str, ...] = (),
    state_outputs: tuple[str, ...] = (),
    logits: str = "",
    net_arch: str = "",
    activation: str = "",
    action_box: dict[str, Any] | None = None,
) -> Path:
    """Convert ``source`` of ``kind`` into ``out`` (``.onnx`` for ONNX, else a checkpoint); returns the written path.

    ``action_box`` is the env's ``Box`` (``{"dims", "low", "high"}``) for ``onnx`` and ``sb3``: the policy is then a
    Gaussian over it (:mod:`models.onnx_imitator`); None for a discrete env.

    Raises:
        ValueError: one line: an unknown kind, a missing env for ``onnx``/``sb3``, or a file the readers refuse.
    """
    from models.checkpoint import convert_lightning_checkpoint, load_checkpoint_bytes
    from models.load import load_imitator
    from models.onnx_export import export_imitator, stamp

    to_onnx, env_kwargs = out.endswith(".onnx"), dict(env_kwargs or {})
    if kind == "onnx":
        if not env_id or not to_onnx:
            raise ValueError("--from onnx stamps the env onto the graph: give --env ID and an --out ending in .onnx")
        path = stamp(
            source,
            out,
            env_id=env_id,
            env_kwargs=env_kwargs,
            taps=dict(taps or {}),
            state_inputs=state_inputs,
            state_outputs=state_outputs,
            logits=logits,
            action_box=action_box,
        )
        try:
            load_imitator(path)  # what the audit will read: refuse now, and leave no file that would be refused there
        except ValueError:
            path.unlink(missing_ok=True)
            raise
        return path
    if kind == "sb3":
        from models.sb3 import convert_sb3

        if not env_id:
            raise ValueError("--from sb3 needs --env ID (the env the policy acts in)")
        return convert_sb3(
            source,
            out,
            env_id=env_id,
            env_kwargs=env_kwargs,
            net_arch=net_arch,
            activation=activation,
            action_box=action_box,
        )
    if kind not in ("lightning", "imitaudit"):
        raise ValueError(f"unknown --from {kind!r}; choose {', '.join(KINDS)}")
    path = (
        convert_lightning_checkpoint(source, out if not to_onnx else out + ".safetensors")
        if kind == "lightning"
        else Path(source)
    )
    if to_onnx:
        model, info = load_checkpoint_bytes(path.read_bytes(), str(path))
        export_imitator(model, out, env_id=info.env_id, env_kwargs=info.env_kwargs)
        if kind == "lightning":
            path.unlink()
        path = Path(out)
    return path
