"""Counterfactual futures: at chosen steps of a recorded episode the env is cloned and the imitator rolled h steps
ahead.

:func:`walk` replays E recorded episodes from their env seeds (checking, step by step, that
the env shows what was recorded) and, every ``every`` steps, branches ``samples`` copies of
each live episode's env (natively and in batch for the built-in envs, ``copy.deepcopy`` for
other Gymnasium envs: :meth:`audit.envs.adapter.NativeBatch.branch`) and lets the imitator act
``horizon`` steps forward in them, its state continuing from the branching step, its
activations captured. A caller's ``score`` turns each batch of futures into one number per
future; a step's forecast is the mean over its futures, carried forward to the steps between
branchings.

The walk never touches the episodes it branches from: every future runs in a copy. The same
seed gives the same futures (the copies' chance draws and the sampled actions are seeded per
branching step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from audit.data.rollout import check_fits
from audit.data.seeds import derive_seed
from audit.envs.adapter import make_batch
from models.actions import distribution_of
from models.policy import Policy
from models.taps import TapRecorder


@dataclass(frozen=True, kw_only=True)
class Budget:
    """How far and how often the lookahead looks: ``horizon`` steps ahead, ``samples`` futures, every ``every``
    steps."""

    horizon: int
    samples: int
    every: int

    def __post_init__(self) -> None:
        for name in ("horizon", "samples", "every"):
            if getattr(self, name) < 1:
                raise ValueError(f"lookahead {name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True, kw_only=True)
class Futures:
    """F futures of at most h steps, branched at one step of the walk.

    Attributes:
        obs: [F, h, D] float32 observations.
        actions: [F, h] int64 sampled actions, or [F, h, d] float32 in a ``Box`` env.
        mask: [F, h] bool, True on steps the env really took (a future ends with its episode).
        taps: tap name -> [F, h, S] the reader's activations.
        rows: [F] int64 the walk's episode each future branched from.
        step: the walk's step they branched at.
    """

    obs: Tensor
    actions: Tensor
    mask: Tensor
    taps: dict[str, Tensor]
    rows: np.ndarray
    step: int


Score = Callable[[Futures], Tensor]
"""Futures -> [F] one number per future (e.g. the peak of its steps' evidence)."""


def branch_futures(
    batch: Any,
    rows: np.ndarray,
    *,
    model: Policy,
    state: Tensor | None,
    budget: Budget,
    taps: Sequence[str],
    seed: int,
    step: int,
) -> Futures:
    """``budget.samples`` futures of ``budget.horizon`` steps from each of ``rows``' current state (``state``: the
    model's, before the step)."""
    m = budget.samples
    distribution = distribution_of(model.config)
    env = batch.branch(rows, m, derive_seed(seed, "future-env", step))
    state = model.select_state(state, torch.from_numpy(np.repeat(rows, m)))
    gen = torch.Generator().manual_seed(derive_seed(seed, "future-actions", step))
    cols: dict[str, list[Tensor]] = {"obs": [], "actions": [], "mask": []}
    tap_steps: dict[str, list[Tensor]] = {n: [] for n in taps}
    obs_np = env.observe()
    with TapRecorder(model=model, names=taps) as rec:
        for _ in range(budget.horizon):
            live = ~env.done
            if not live.any():
                break
            obs = torch.from_numpy(obs_np)
            logits, state = model(obs, state)
            if distribution.continuous:
                action, _ = distribution.act(logits, gen, False)
            else:  # drawn as before Box actions came, so that discrete futures (and reports) stay what they were
                action = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen).squeeze(-1)
            idx = np.flatnonzero(live)
            env.step(action.numpy()[idx], idx)
            live_t = torch.from_numpy(live.copy())
            cols["obs"].append(obs)
            cols["actions"].append(action * (live_t[:, None] if action.dim() > 1 else live_t))
            cols["mask"].append(live_t)
            for n, recorded in rec.take().items():
                tap_steps[n].append(recorded[-1] * live_t[:, None])
            obs_np = env.observe()
    stacked = {k: torch.stack(v, dim=1) for k, v in cols.items()}
    return Futures(
        obs=stacked["obs"],
        actions=stacked["actions"],
        mask=stacked["mask"],
        taps={n: torch.stack(v, dim=1) for n, v in tap_steps.items()},
        rows=np.repeat(rows, m),
        step=step,
    )


def walk(
    model: Policy,
    env_id: str,
    *,
    seeds: np.ndarray,
    obs: Tensor,
    actions: Tensor,
    mask: Tensor,
    budget: Budget,
    score: Score,
    taps: Sequence[str],
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
) -> Tensor:
    """Replay E recorded episodes and forecast every step from the imitator's futures: [E, T] float32 (0 on padding).

    Args:
        model: the imitator: it reads the replayed steps (its state) and acts in the futures.
        env_id, env_kwargs: the env.
        seeds: [E] env seed of each episode.
        obs, actions, mask: [E, T, D], [E, T] (or [E, T, d] Box actions), [E, T] the recorded episodes.
        budget: horizon, samples, every.
        score: futures -> [F] one number each.
        taps: the model's taps to capture in the futures.
        seed: seeds the futures' chance draws and sampled actions.

    Raises:
        ValueError: the env cannot be cloned, or does not replay the recorded observations from the seeds.
    """
    batch = make_batch(env_id, len(seeds), env_kwargs)
    check_fits(model, batch, env_id)
    batch.reset(np.asarray(seeds))
    e, t_max = mask.shape
    forecast = torch.zeros(e, t_max)
    running = torch.zeros(e)
    state = model.initial_state(e)
    obs_np = batch.observe()
    with torch.no_grad():
        for t in range(t_max):
            live = mask[:, t].numpy().copy()
            if not live.any():
                break
            live_t = torch.from_numpy(live)
            if (live & batch.done).any() or not torch.equal(torch.from_numpy(obs_np[live]), obs[live_t, t]):
                raise ValueError(
                    f"{env_id} does not replay the audited trajectories from their seeds (step {t} differs); "
                    "the lookahead needs an env that is deterministic given its seed"
                )
            idx = np.flatnonzero(live)
            if t % budget.every == 0:
                futures = branch_futures(
                    batch, idx, model=model, state=state, budget=budget, taps=taps, seed=seed, step=t
                )
                running[live_t] = score(futures).reshape(len(idx), budget.samples).mean(dim=1)
            forecast[:, t] = running * live_t
            _, state = model(torch.from_numpy(obs_np), state)
            batch.step(actions[:, t].numpy()[idx], idx)
            obs_np = batch.observe()
    return forecast
