"""Write ONNX imitators: a registry imitator or any torch policy module, with the metadata :mod:`models.onnx_imitator`
reads.

The same path a user's own network takes (``torch.onnx.export``), so the tests and the docs
exercise what a CleanRL or Stable-Baselines3 user runs. Also stamps metadata onto an ONNX file
exported elsewhere.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models.imitator import Imitator


class _Stepper(nn.Module):
    """A registry imitator's stepping form with plain tensor inputs and outputs."""

    def __init__(self, model: Imitator) -> None:
        super().__init__()
        self.model = model

    def forward(self, obs: Tensor, *state: Tensor) -> Any:
        logits, new = self.model(obs, state[0] if state else None)
        return (logits, new) if state else logits


def stamp(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    taps: dict[str, str] | None = None,
    state_inputs: tuple[str, ...] = (),
    state_outputs: tuple[str, ...] = (),
    logits: str = "",
    action_box: dict[str, Any] | None = None,
) -> Path:
    """Copy the ONNX model at ``path`` to ``out`` with imitaudit's metadata_props set (others kept); ``action_box``
    (``{"dims", "low", "high"}``) marks a Gaussian policy of a ``Box`` env."""
    import onnx

    model = onnx.load_model(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    props["imitaudit.env_id"] = env_id
    props["imitaudit.env_kwargs"] = json.dumps(env_kwargs or {}, sort_keys=True)
    if taps:
        props["imitaudit.taps"] = json.dumps(taps, sort_keys=True)
    if state_inputs or state_outputs:
        props["imitaudit.state_inputs"], props["imitaudit.state_outputs"] = (
            ",".join(state_inputs),
            ",".join(state_outputs),
        )
    if logits:
        props["imitaudit.logits"] = logits
    if action_box is not None:
        props["imitaudit.action_box"] = json.dumps(action_box, sort_keys=True)
    else:
        props.pop("imitaudit.action_box", None)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    onnx.save_model(model, str(tmp))
    os.replace(tmp, out)
    return out


def action_box_of(config: Any) -> dict[str, Any] | None:
    """The ``imitaudit.action_box`` metadata of an imitator config: None for discrete actions."""
    if not config.continuous:
        return None
    bounds = (config.action_low, config.action_high)
    return {"dims": config.n_actions, "low": _listed(bounds[0]), "high": _listed(bounds[1])}


def _listed(bound: Any) -> list[float] | None:
    return None if bound is None else [float(v) for v in bound]


def export_module(
    module: nn.Module,
    path: str | os.PathLike,
    *,
    obs_shape: tuple[int, ...],
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    taps: dict[str, str] | None = None,
    action_box: dict[str, Any] | None = None,
) -> Path:
    """Export a memoryless torch policy ``module`` (obs [B, *obs_shape] -> logits [B, A], or [B, 2d] Gaussian
    parameters with ``action_box``) as an ONNX imitator."""
    out = Path(path)
    tmp = out.with_name(out.name + ".raw")
    module = module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, *obs_shape),),
            str(tmp),
            input_names=["obs"],
            output_names=["logits"],
            dynamic_axes={"obs": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    try:
        return stamp(tmp, out, env_id=env_id, env_kwargs=env_kwargs, taps=taps, action_box=action_box)
    finally:
        tmp.unlink(missing_ok=True)


def export_imitator(
    model: Imitator, path: str | os.PathLike, *, env_id: str, env_kwargs: dict[str, Any] | None = None
) -> Path:
    """Export a registry MLP or GRU imitator as an ONNX imitator whose ``encoder`` / ``core`` taps are its own.

    Raises:
        ValueError: an architecture whose stepping state is not one tensor with a batch dimension (the Transformer).
    """
    if model.arch not in ("mlp", "gru"):
        raise ValueError(f"exporting a {model.arch!r} imitator to ONNX is not supported (mlp and gru are)")
    model = model.eval()
    out = Path(path)
    tmp = out.with_name(out.name + ".raw")
    obs = torch.zeros(1, model.config.obs_dim)
    state = model.initial_state(1)
    args = (obs,) if state is None else (obs, state)
    names = ["obs"] if state is None else ["obs", "state"]
    outputs = ["logits"] if state is None else ["logits", "next_state"]
    axes = {"obs": {0: "batch"}, "logits": {0: "batch"}}
    if state is not None:
        axes |= {"state": {model.state_batch_dim: "batch"}, "next_state": {model.state_batch_dim: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Stepper(model), args, str(tmp), input_names=names, output_names=outputs, dynamic_axes=axes, dynamo=False
        )
    try:
        taps = _registry_taps(tmp, model)
        return stamp(
            tmp,
            out,
            env_id=env_id,
            env_kwargs=env_kwargs,
            taps=taps,
            state_inputs=("state",) if state is not None else (),
            state_outputs=("next_state",) if state is not None else (),
            action_box=action_box_of(model.config),
        )
    finally:
        tmp.unlink(missing_ok=True)


def _registry_taps(path: Path, model: Imitator) -> dict[str, str]:
    """The exported tensors that are the registry taps' outputs: the last node output under each tap module's scope."""
    import onnx

    graph = onnx.load_model(str(path), load_external_data=False).graph
    found: dict[str, str] = {}
    for tap in ("encoder", "core"):
        scope = f"/model/{tap}/"
        hits = [n.output[0] for n in graph.node if n.name.startswith(scope) and n.output]
        if hits:
            found[tap] = hits[-1]
    if model.arch == "gru" and "core" not in found:
        found["core"] = "next_state" if model.config.layers == 1 else ""
    return {k: v for k, v in found.items() if v}
