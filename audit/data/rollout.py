"""Batched, seeded rollouts of an imitator in any supported env, with activation capture.

Episode ``e`` of a rollout is seeded ``seed + e`` in the env; actions are sampled from the
imitator's action distribution (:mod:`models.actions`: logits, or a Gaussian in a ``Box`` env) with a torch generator
seeded by ``seed``, so a rollout is reproducible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from audit.data.batching import pad_episodes
from audit.data.demonstrations import Demonstrations, from_arrays
from audit.envs.adapter import make_batch
from models.actions import distribution_of
from models.policy import Policy
from models.taps import Activations, TapRecorder, teacher_forced


@dataclass(frozen=True, kw_only=True)
class Trajectories:
    """E episodes padded to T steps.

    Attributes:
        obs: [E, T, D] float32 observation before each action.
        actions: [E, T] int64, or [E, T, d] float32 in a ``Box`` env.
        rewards: [E, T] float32.
        logp: [E, T] float32 log-probability of the action under the imitator.
        mask: [E, T] bool, True on real steps.
        departure: [E, T] bool ground-truth events, or None where the env reports none.
        activations: activations at the captured taps (may hold no taps).
        seeds: [E] int64 env seed of each episode.
        env_id: the env.
        terminated: [E] bool: the env terminated the episode (False: truncated, or stopped at ``max_steps``), or None
            where it is not known.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    logp: Tensor
    mask: Tensor
    departure: Tensor | None
    activations: Activations
    seeds: Tensor
    env_id: str
    terminated: Tensor | None = None

    def __post_init__(self) -> None:
        e, t = self.mask.shape
        for name in ("actions", "rewards", "logp"):
            if getattr(self, name).shape[:2] != (e, t):
                raise ValueError(f"{name} has shape {tuple(getattr(self, name).shape)}, mask is {(e, t)}")
        if self.obs.shape[:2] != (e, t):
            raise ValueError(f"obs has shape {tuple(self.obs.shape)}, mask is {(e, t)}")

    @property
    def n_episodes(self) -> int:
        return int(self.mask.shape[0])

    def lengths(self) -> Tensor:
        """[E] int64 steps per episode."""
        return self.mask.sum(dim=1)

    def returns(self) -> Tensor:
        """[E] float32 undiscounted return per episode."""
        return (self.rewards * self.mask).sum(dim=1)

    def departed(self) -> Tensor | None:
        """[E] bool: the episode holds a departure event."""
        return None if self.departure is None else (self.departure & self.mask).any(dim=1)


COMPACT = 0.75
"""A rollout stops stepping the model on finished rows once fewer than this share of the rows it steps are live (a
batch's episodes end at different steps, and the longest sets the loop's length)."""


def _scatter(values: Tensor, rows: np.ndarray, episodes: int) -> Tensor:
    """[episodes, ...] with ``values`` [len(rows), ...] at ``rows`` and zeros elsewhere (as is, when every row is
    there)."""
    if len(rows) == episodes:
        return values
    out = values.new_zeros((episodes, *values.shape[1:]))
    out[torch.from_numpy(rows)] = values
    return out


def _env_step(batch: Any, action: Tensor, live: np.ndarray) -> dict[str, Tensor]:
    """Step the live rows of ``batch``; the step's actions, rewards, departures and mask as [B] tensors (0 where
    done)."""
    idx = np.flatnonzero(live)
    out = batch.step(action.numpy()[idx], idx)
    reward = np.zeros(len(live), dtype=np.float32)
    departure = np.zeros(len(live), dtype=bool)
    terminated = np.zeros(len(live), dtype=bool)
    reward[idx] = out["reward"]
    departure[idx] = out["departure"]
    terminated[idx] = out["terminated"]
    return {
        "actions": action,
        "rewards": torch.from_numpy(reward),
        "mask": torch.from_numpy(live.copy()),
        "departure": torch.from_numpy(departure),
        "terminated": torch.from_numpy(terminated),
    }


def rollout(
    model: Policy,
    env_id: str,
    *,
    episodes: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    taps: Sequence[str] = (),
    greedy: bool = False,
    max_steps: int | None = None,
    on_step: Callable[[int], None] | None = None,
    departure_key: str = "departure",
    repeats: int = 1,
) -> Trajectories:
    """Run ``episodes`` episodes of ``model`` at once.

    Args:
        model: the imitator (its obs size must match the env's flat observation).
        env_id: a built-in env (native batch) or any discrete Gymnasium env (the adapter).
        episodes: how many.
        seed: episode e is seeded ``seed + e``; action sampling is seeded by ``seed``.
        env_kwargs: the env's keyword arguments.
        taps: tap names whose activations to capture.
        greedy: take the argmax action instead of sampling.
        max_steps: stop after this many steps even if episodes are still running.
        on_step: called with the step index after every step.
        departure_key: the info key that marks a departure step in a non-built-in env (ground truth only).
        repeats: run each seed this many times (rows seed-major: ``repeats`` futures of one start, then the next),
            ``episodes`` * ``repeats`` rows in all.

    Raises:
        ValueError: the model does not fit the env, or bad arguments.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    batch = make_batch(env_id, episodes * repeats, env_kwargs, departure_key=departure_key)
    seeds = np.repeat(seed + np.arange(episodes), repeats)
    batch.reset(seeds)
    return run_batch(
        model,
        batch,
        seeds=seeds,
        seed=seed,
        env_id=env_id,
        taps=taps,
        greedy=greedy,
        max_steps=max_steps,
        on_step=on_step,
    )


LOGITS = "logits"
"""A tap name :func:`run_batch` also takes: the action logits the policy acted on at each step ([.., n_actions]), which
any policy has (an ONNX graph's taps need not include them), so a caller need not run it over its own steps again."""


def run_batch(
    model: Policy,
    batch: Any,
    *,
    seeds: np.ndarray,
    seed: int,
    env_id: str,
    taps: Sequence[str] = (),
    greedy: bool = False,
    max_steps: int | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Trajectories:
    """Run ``model`` in an env batch already reset (or branched) until every row is done; actions are sampled with a
    generator seeded ``seed``, and row i is recorded with env seed ``seeds[i]``.

    Raises:
        ValueError: the model does not fit the env.
    """
    check_fits(model, batch, env_id)
    distribution = distribution_of(model.config)
    episodes = batch.num_envs
    obs_np = batch.observe()
    gen = torch.Generator().manual_seed(int(seed))
    limit = max_steps or batch.max_steps or 100_000
    cols: dict[str, list] = {k: [] for k in ("obs", "actions", "rewards", "logp", "mask", "departure", "terminated")}
    tap_steps: dict[str, list[Tensor]] = {n: [] for n in taps}
    was_training = model.training
    model.eval()
    state = model.initial_state(episodes)
    select = getattr(model, "select_state", None)
    rows = np.arange(episodes)  # the rows the model steps (and its state holds), live ones among them
    try:
        with torch.no_grad(), TapRecorder(model=model, names=[n for n in taps if n != LOGITS]) as rec:
            for t in range(limit):
                live = ~batch.done
                if not live.any():
                    break
                obs = torch.from_numpy(obs_np)
                if select is not None and live.sum() < COMPACT * len(rows):
                    keep = torch.from_numpy(np.flatnonzero(live[rows]))
                    state, rows = select(state, keep), rows[keep.numpy()]
                stepped, state = model(obs if len(rows) == episodes else obs[rows], state)
                logits = _scatter(stepped, rows, episodes)
                # every row draws, finished ones too, so that a row's draws do not depend on when others finish
                action, logp = distribution.act(logits, gen, greedy)
                for key, value in _env_step(batch, action, live).items():
                    cols[key].append(value)
                cols["obs"].append(obs)
                cols["logp"].append(logp)
                for n, recorded in rec.take().items():
                    tap_steps[n].append(_scatter(recorded[-1], rows, episodes))
                if LOGITS in tap_steps:
                    tap_steps[LOGITS].append(logits.float())
                obs_np = batch.observe()
                if on_step:
                    on_step(t)
    finally:
        model.train(was_training)
    stacked = {k: torch.stack(v, dim=1) for k, v in cols.items()}
    mask = stacked["mask"]
    acts = {n: torch.stack(v, dim=1).mul_(mask[..., None]) for n, v in tap_steps.items()}
    return Trajectories(
        obs=stacked["obs"],
        actions=_masked(stacked["actions"], mask),
        rewards=stacked["rewards"],
        logp=stacked["logp"] * mask,
        mask=mask,
        departure=stacked["departure"] if batch.has_departure else None,
        activations=Activations(taps=acts, mask=mask),
        seeds=torch.from_numpy(np.asarray(seeds).astype(np.int64)),
        env_id=env_id,
        terminated=stacked["terminated"].any(dim=1),
    )


def check_fits(model: Policy, batch: Any, env_id: str) -> None:
    """Refuse a policy whose observations or actions do not fit the env batch.

    Raises:
        ValueError: one line naming both sides.
    """
    config, space = model.config, batch.action_space
    if batch.obs_dim != config.obs_dim or batch.n_actions != config.n_actions:
        raise ValueError(
            f"imitator expects obs_dim={config.obs_dim} and {_actions(config.n_actions, config.continuous)}; "
            f"{env_id} gives obs_dim={batch.obs_dim} and {_actions(space.n, space.continuous)}"
        )
    misfit = batch.action_space.misfit(model.config)
    if misfit is not None:
        raise ValueError(f"{misfit} ({env_id})")


def _actions(n: int, continuous: bool) -> str:
    return f"{n}-dimensional Box actions" if continuous else f"{n} discrete actions"


def _masked(actions: Tensor, mask: Tensor) -> Tensor:
    """Actions [E, T] (int64) or [E, T, d] (float32) zeroed past each episode's end."""
    if actions.dim() == 3:
        return actions.float() * mask[..., None]
    return actions.long() * mask


def shards(episodes: int, size: int) -> list[tuple[int, int]]:
    """(first episode, episodes) of each shard of ``size`` episodes (the last may be smaller)."""
    if episodes < 1 or size < 1:
        raise ValueError(f"episodes and shard size must be positive, got {episodes} and {size}")
    return [(first, min(size, episodes - first)) for first in range(0, episodes, size)]


def rollout_shard(
    model: Policy, job: dict[str, Any], span: tuple[int, int], *, on_step: Callable[[int], None] | None = None
) -> Trajectories:
    """One shard of a sharded rollout: episodes ``first .. first + n - 1`` of the rollout seeded ``job["seed"]``.

    Episode e keeps its env seed ``seed + e``; the shard's actions are sampled with ``seed + first`` (shard 0 is the
    unsharded rollout). ``job`` holds :func:`rollout`'s other keyword arguments.
    """
    first, n = span
    return rollout(model, episodes=n, on_step=on_step, **{**job, "seed": job["seed"] + first})


def concat(parts: Sequence[Trajectories]) -> Trajectories:
    """The shards' episodes in order, padded to the longest."""
    if len(parts) == 1:
        return parts[0]
    t = max(p.mask.shape[1] for p in parts)

    def cat(tensors: list[Tensor]) -> Tensor:  # one copy into zeros, not a padded copy of each shard and then another
        out = tensors[0].new_zeros(sum(x.shape[0] for x in tensors), t, *tensors[0].shape[2:])
        first = 0
        for x in tensors:
            out[first : first + x.shape[0], : x.shape[1]] = x
            first += x.shape[0]
        return out

    has_departure = parts[0].departure is not None
    mask = cat([p.mask for p in parts])
    return Trajectories(
        obs=cat([p.obs for p in parts]),
        actions=cat([p.actions for p in parts]),
        rewards=cat([p.rewards for p in parts]),
        logp=cat([p.logp for p in parts]),
        mask=mask,
        departure=cat([p.departure for p in parts]) if has_departure else None,  # type: ignore[misc]
        activations=Activations(
            taps={n: cat([p.activations.taps[n] for p in parts]) for n in parts[0].activations.taps}, mask=mask
        ),
        seeds=torch.cat([p.seeds for p in parts]),
        env_id=parts[0].env_id,
        terminated=None if any(p.terminated is None for p in parts) else torch.cat([p.terminated for p in parts]),  # type: ignore[misc]
    )


def replayed(model: Policy, demos: Demonstrations, *, taps: Sequence[str] = (), first_seed: int = 0) -> Trajectories:
    """Demonstration episodes as if the imitator had acted them: the imitator teacher-forced over each,
    its activations and the log-probability of the demonstrator's actions captured.

    What an audit of a demonstrator-like imitator sees: under it the audit's null holds exactly
    (its trajectories are exchangeable with held-out demonstrator episodes), so a null test can
    run the real audit on these.

    Args:
        model: the imitator whose activations are read.
        demos: the episodes (episode e recorded with env seed ``first_seed + e``).
        taps: tap names to capture.
        first_seed: the seed of the first episode, for the records.
    """
    obs, actions, mask = pad_episodes(demos)
    rewards = torch.zeros(mask.shape)
    rewards[mask] = torch.from_numpy(demos.rewards.astype(np.float32))
    departure = None
    if demos.departure is not None:
        departure = torch.zeros(mask.shape, dtype=torch.bool)
        departure[mask] = torch.from_numpy(demos.departure.astype(bool))
    with torch.no_grad():
        logits, acts = teacher_forced(model, obs, mask, taps)
    logp = distribution_of(model.config).log_prob(logits, actions) * mask
    return Trajectories(
        obs=obs,
        actions=actions,
        rewards=rewards,
        logp=logp,
        mask=mask,
        departure=departure,
        activations=acts,
        seeds=torch.arange(demos.n_episodes, dtype=torch.int64) + first_seed,
        env_id=demos.env_id,
    )


def record_imitator(
    model: Any,
    env_id: str,
    *,
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    greedy: bool = False,
    departure_key: str = "departure",
    source: str = "imitator",
) -> Demonstrations:
    """Demonstrations of an imitator (any registry, ONNX or recurrent one), through the audit's own batched rollout.

    Audited against demonstrations recorded this way from itself (seeds apart from the audit's), an imitator meets the
    exact null of the verdict: every flag is false. With another imitator they are a regression baseline.

    Raises:
        ValueError: the imitator does not fit the env, or bad arguments.
    """
    traj = rollout(
        model, env_id, episodes=episodes, seed=seed, env_kwargs=env_kwargs, greedy=greedy, departure_key=departure_key
    )
    mask = traj.mask.numpy()
    episode = np.broadcast_to(np.arange(traj.obs.shape[0])[:, None], mask.shape)[mask]
    departure = None if traj.departure is None else traj.departure.numpy()[mask]
    demos = from_arrays(
        obs=traj.obs.numpy()[mask],
        actions=traj.actions.numpy()[mask],
        rewards=traj.rewards.numpy()[mask],
        episode=episode,
        env_id=env_id,
        env_kwargs=env_kwargs,
        departure=departure,
        source=f"{source} ({'greedy' if greedy else 'sampled'}, seed {seed})",
    )
    return dataclasses.replace(demos, departure_key=departure_key) if departure_key != "departure" else demos
