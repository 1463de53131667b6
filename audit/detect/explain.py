"""Explanations of flags: captum Integrated Gradients on the audit discriminator that scored the trajectory.

For each flagged trajectory, the attribution of its per-step departure evidence (the
negated discriminator logit) to every input feature of every step, against a baseline of
the average demonstrator step. The report keeps what a person can read: the top steps,
the top observation features, the top activation units (tap and index), and a
steps x input-blocks heatmap (obs, action, each tap).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from models.discriminator import Discriminator


def explain(
    disc: Discriminator, features: Tensor, baseline: Tensor, *, top: int = 5, ig_steps: int = 32
) -> dict[str, Any]:
    """Attributions for one trajectory's real steps.

    Args:
        disc: the fold's discriminator.
        features: [T, F] the trajectory's discriminator inputs.
        baseline: [F] the average demonstrator input.
        top: how many steps, features and units to keep.
        ig_steps: Integrated Gradients integration steps.

    Returns:
        ``{"top_steps": [{"step", "attribution"}], "top_obs_features": [{"index", "attribution"}],
        "top_units": [{"tap", "index", "attribution"}], "segments": [names], "heatmap": [[T x segments]]}``.
    """
    # imported here: captum pulls in matplotlib, and every command line parse imports this module's detector
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(lambda x: -disc.logits(x))
    attr = ig.attribute(features, baselines=baseline.expand_as(features), n_steps=ig_steps).detach()
    per_step = attr.sum(dim=1)
    segments = disc.config.segments()
    heat = torch.stack([attr[:, a:b].sum(dim=1) for _, a, b in segments], dim=1)

    def top_of(values: Tensor, k: int) -> list[int]:
        return values.abs().argsort(descending=True)[:k].tolist()

    obs_start, obs_stop = segments[0][1], segments[0][2]
    obs_total = attr[:, obs_start:obs_stop].sum(dim=0)
    units = []
    for name, a, b in segments[2:]:
        total = attr[:, a:b].sum(dim=0)
        units += [(name.removeprefix("tap:"), i, float(total[i])) for i in range(b - a)]
    units.sort(key=lambda u: -abs(u[2]))
    return {
        "top_steps": [{"step": i, "attribution": float(per_step[i])} for i in top_of(per_step, top)],
        "top_obs_features": [{"index": i, "attribution": float(obs_total[i])} for i in top_of(obs_total, top)],
        "top_units": [{"tap": t, "index": i, "attribution": v} for t, i, v in units[:top]],
        "segments": [name for name, _, _ in segments],
        "heatmap": [[round(float(v), 5) for v in row] for row in heat],
    }
