"""Demonstrator queries: the built-in planner's policy at every state of the imitator's own rollouts (DAgger's labels).

Demonstrations cover the states the demonstrator visits. An imitator that strays off them (a layout unlike its
training ones, a bump into a wall that leaves the observation unchanged) acts there on guesses, and a rare guess is a
departure. Where the demonstrator can be asked (a built-in env with the preset that recorded the demonstrations), each
adversarial iteration's rollouts are labelled with the planner's action distribution at the states the imitator reached,
and the imitator is also fitted to those labels. A constrained planner gives a departure move probability exactly 0
wherever the imitator stands, so the labels teach "never here" on the very states where it would have departed; an
unconstrained one's departures are labelled as it makes them, so the imitator is still taught to imitate, not to
correct.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from audit.data.demonstrator import PRESETS, Demonstrator
from audit.data.rollout import Trajectories, run_batch
from audit.envs import world_of
from audit.envs.adapter import make_batch
from models.policy import Policy

FORBIDDEN_BELOW = 1e-9
"""A labelled action this unlikely is one the planner never takes there (a constrained planner's departure moves are
exactly 0): its log-probability is pushed down, not only its share of the cross-entropy."""
FLOOR = -14.0
PUSH = 1.0
"""Weight of that push-down beside the cross-entropy (a tenth of it left departures behind: BENCHMARKS.md)."""
"""The log-probability a never-taken action is pushed down to (about one in a million)."""


def check_preset(env_id: str, preset: str) -> None:
    """Refuse queries an env cannot answer.

    Raises:
        ValueError: not a built-in env, or an unknown preset.
    """
    if world_of(env_id) is None:
        raise ValueError(f"demonstrator queries need a built-in env's planner; {env_id} has none")
    if preset not in PRESETS:
        raise ValueError(f"unknown demonstrator preset {preset!r}; choose one of {', '.join(PRESETS)}")


def queried_rollout(
    model: Policy,
    env_id: str,
    *,
    preset: str,
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    taps: Sequence[str] = (),
    anywhere: bool = False,
) -> tuple[Trajectories, Tensor]:
    """The imitator's rollouts as :func:`audit.data.rollout.rollout` gives them, and the planner's policy at each step's
    state. With ``anywhere``, each episode starts on a free cell of its layout drawn at random
    (:meth:`audit.envs.grid.GridWorld.start_anywhere`) instead of the start tile.

    Returns:
        (trajectories with E episodes of T steps, labels [E, T, A] float32 probabilities; 0 past each episode's end).

    Raises:
        ValueError: the env has no planner, an unknown preset, or the model does not fit the env.
    """
    check_preset(env_id, preset)
    batch = make_batch(env_id, episodes, env_kwargs)
    seeds = seed + np.arange(episodes)
    batch.reset(seeds)
    if anywhere:
        batch.engine.start_anywhere(np.random.default_rng(seed))  # type: ignore[union-attr]
    planner = Demonstrator(preset=preset)
    planner.start(batch.engine)  # type: ignore[union-attr]
    seen = [planner.probs()]

    def after_step(_: int) -> None:
        seen.append(planner.probs())

    traj = run_batch(model, batch, seeds=seeds, seed=seed, env_id=env_id, taps=taps, on_step=after_step)
    labels = torch.from_numpy(np.stack(seen[: traj.mask.shape[1]], axis=1)).float()
    return traj, labels * traj.mask[..., None]


def query_loss(logp_all: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy of the imitator's log-probabilities logp_all [E, T, A] to the planner's labels [E, T, A] over the
    real steps (mask [E, T]), plus the push-down of every action the planner never takes there (to :data:`FLOOR`).

    The cross-entropy alone moves a small probability by about itself per step, so an action at one in a thousand
    would take thousands of updates to reach one in a million; the push-down moves its log-probability at a fixed rate.
    """
    logp, target = logp_all[mask], labels[mask]
    ce = -(target * logp).sum(-1).mean()
    never = (target < FORBIDDEN_BELOW).float()
    return ce + (never * logp.clamp(min=FLOOR)).sum(-1).mean() * PUSH


class QueriedMemory:
    """The queried rollouts of the last ``size`` iterations (DAgger's aggregated data set, capped): a state the imitator
    reaches once in thousands of episodes is fitted again at later steps, not once, as the iteration passes.

    Args:
        size: iterations kept (0 keeps none).
        seed: seeds which kept iteration each step refits.
    """

    def __init__(self, *, size: int, seed: int) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = size
        self.kept: list[tuple[Tensor, Tensor, Tensor]] = []
        self.gen = torch.Generator().manual_seed(seed)

    def add(self, obs: Tensor, labels: Tensor, mask: Tensor) -> None:
        """Keep one iteration's episodes obs [E, T, D], labels [E, T, A], mask [E, T] (the oldest goes when full)."""
        if self.size == 0:
            return
        self.kept.append((obs, labels, mask))
        del self.kept[: -self.size]

    def loss(self, model: Policy) -> Tensor | None:
        """:func:`query_loss` of ``model`` on one kept iteration drawn at random, or None while none is kept."""
        if not self.kept:
            return None
        obs, labels, mask = self.kept[int(torch.randint(len(self.kept), (1,), generator=self.gen))]
        return query_loss(torch.log_softmax(model.sequence(obs, mask), dim=-1), labels, mask)
