"""Activation capture: forward hooks on an imitator's named taps, in rollouts and in teacher-forced passes.

Rollouts call the imitator one step at a time; the recorder stacks each tap's per-step
outputs [B, F] into [B, T, F]. A teacher-forced pass runs the imitator's sequence form over
whole demonstration episodes, so a recurrent or Transformer imitator's state at step t is
what it would be after seeing the demonstrator's first t observations. Either way the
result is :class:`Activations`: per tap [episodes, steps, features] with a step mask.
The hooks are ordinary ``register_forward_hook`` hooks on the tap modules, the same modules
captum's ``LayerActivation`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from models.policy import Policy


@dataclass(frozen=True, kw_only=True)
class Activations:
    """Activations of E episodes padded to T steps.

    Attributes:
        taps: tap name -> [E, T, F] float32 (zeros past each episode's end).
        mask: [E, T] bool, True on real steps.
    """

    taps: dict[str, Tensor]
    mask: Tensor

    def __post_init__(self) -> None:
        for name, act in self.taps.items():
            if act.shape[:2] != self.mask.shape:
                raise ValueError(f"tap {name!r} has shape {tuple(act.shape)}, mask is {tuple(self.mask.shape)}")

    def flat(self) -> dict[str, Tensor]:
        """Tap name -> [steps, F] over the real steps, episode-major."""
        return {name: act[self.mask] for name, act in self.taps.items()}


class TapRecorder:
    """Context manager that records the outputs of ``model``'s taps ``names``.

    Args:
        model: the imitator.
        names: tap names to hook (must be in ``model.taps``).
        detach: record detached copies (set False to keep gradients through activations).

    Raises:
        ValueError: an unknown tap name.
    """

    def __init__(self, *, model: Policy, names: Sequence[str], detach: bool = True) -> None:
        unknown = [n for n in names if n not in model.taps]
        if unknown:
            raise ValueError(f"unknown tap(s) {', '.join(unknown)}; {model.arch} has {', '.join(model.taps)}")
        self.model = model
        self.names = tuple(names)
        self.detach = detach
        self.records: dict[str, list[Tensor]] = {n: [] for n in self.names}
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module, inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            self.records[name].append(out.detach() if self.detach else out)

        return hook

    def __enter__(self) -> "TapRecorder":
        taps = self.model.taps
        self._handles = [taps[n].register_forward_hook(self._hook(n)) for n in self.names]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def take(self) -> dict[str, list[Tensor]]:
        """Everything recorded since the last call."""
        out, self.records = self.records, {n: [] for n in self.names}
        return out


def teacher_forced(
    model: Policy, obs: Tensor, mask: Tensor, names: Sequence[str], *, detach: bool = True, chunk: int = 512
) -> tuple[Tensor, Activations]:
    """Run ``model`` over whole episodes obs [E, T, D]: logits [E, T, A] and activations at ``names``.

    Padded steps are not encoded (the imitator's masked sequence form), so long padded
    batches cost what their real steps cost. With ``detach=False`` (and grad enabled)
    gradients flow through logits and activations.
    """
    logits: list = []
    taps: dict[str, list] = {n: [] for n in names}
    for i in range(0, obs.shape[0], chunk):
        part_mask = mask[i : i + chunk]
        with TapRecorder(model=model, names=names, detach=detach) as rec:
            logits.append(model.sequence(obs[i : i + chunk], part_mask))
        for n, rows in rec.take().items():
            out = rows[-1]
            if out.dim() == 2:  # recorded on real steps only: scatter back to [E, T, F]
                full = out.new_zeros(*part_mask.shape, out.shape[-1])
                full[part_mask] = out
                out = full
            taps[n].append(out)
    acts = {n: torch.cat(v, dim=0) * mask[..., None] for n, v in taps.items()}
    return torch.cat(logits, dim=0), Activations(taps=acts, mask=mask)
