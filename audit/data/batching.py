"""Demonstration episodes as tensors: seeded splits, padding, minibatches of whole episodes.

Every padded batch in the project comes from :func:`pad_steps`: obs [E, T, D] float32,
actions [E, T] int64 (or [E, T, d] float32 in a ``Box`` env) and a step mask [E, T] bool, zeros past each episode's
end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler

from audit.data.demonstrations import Demonstrations
from models.policy import Policy
from models.taps import Activations, teacher_forced


def pad_steps(
    obs: np.ndarray | Tensor, actions: np.ndarray | Tensor, lengths: np.ndarray
) -> tuple[Tensor, Tensor, Tensor]:
    """Episodes laid end to end (obs [N, D], actions [N] or [N, d], lengths [E] summing to N) padded to the longest.

    Returns:
        obs [E, T, D] float32, actions [E, T] int64 (or [E, T, d] float32), mask [E, T] bool.

    Raises:
        ValueError: lengths that do not add up to the steps given.
    """
    obs = torch.as_tensor(obs, dtype=torch.float32).reshape(len(actions), -1)
    continuous = getattr(actions, "ndim", 1) == 2
    actions = torch.as_tensor(actions, dtype=torch.float32 if continuous else torch.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if int(lengths.sum()) != len(actions):
        raise ValueError(f"episode lengths add up to {int(lengths.sum())} steps, got {len(actions)}")
    e, t = len(lengths), int(lengths.max()) if len(lengths) else 0
    mask = torch.from_numpy(np.arange(t)[None, :] < lengths[:, None])
    padded_obs = torch.zeros(e, t, obs.shape[1])
    padded_actions = torch.zeros(e, t, *actions.shape[1:], dtype=actions.dtype)
    padded_obs[mask] = obs
    padded_actions[mask] = actions
    return padded_obs, padded_actions, mask


def pad_episodes(demos: Demonstrations) -> tuple[Tensor, Tensor, Tensor]:
    """Every episode of ``demos`` padded: obs [E, T, D] float32, actions [E, T] int64 or [E, T, d] float32, mask [E,
    T] bool."""
    bounds = demos.episode_bounds()
    return pad_steps(demos.obs.reshape(demos.n_steps, -1), demos.actions, bounds[:, 1] - bounds[:, 0])


def demo_activations(model: Policy, demos: Demonstrations, names: Sequence[str]) -> Activations:
    """Teacher-forced activations of ``model`` over every episode of ``demos`` (no gradients)."""
    obs, _, mask = pad_episodes(demos)
    with torch.no_grad():
        _, acts = teacher_forced(model, obs, mask, names)
    return acts


def split_episodes(
    n_episodes: int, fraction: float, seed: int, *, max_rest: int | None = None, max_apart: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of episode positions: (rest, the ``fraction`` set apart), each a random subset of
    at most ``max_rest`` / ``max_apart``, sorted.

    The one split used for training's held-out episodes and the audit's calibration set.
    """
    order = np.random.default_rng(seed).permutation(n_episodes)
    n_apart = int(round(fraction * n_episodes))
    return np.sort(order[n_apart:][:max_rest]), np.sort(order[:n_apart][:max_apart])


class EpisodeDataset(Dataset):
    """Demonstration episodes, one item each: (obs [L, D], actions [L])."""

    def __init__(self, demos: Demonstrations, episodes: np.ndarray) -> None:
        bounds = demos.episode_bounds()[episodes]
        obs = torch.from_numpy(demos.obs.reshape(demos.n_steps, -1))
        actions = torch.from_numpy(demos.actions)
        self.items = [(obs[a:b], actions[a:b]) for a, b in bounds]
        self.steps = int((bounds[:, 1] - bounds[:, 0]).sum())
        #: how many of the episodes the env terminated (the rest were truncated), or None where not recorded
        self.terminated = None if demos.terminated is None else int(demos.terminated[episodes].sum())

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.items[i]


def collate_episodes(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Pad a list of episodes: obs [B, T, D], actions [B, T], mask [B, T]."""
    lengths = np.array([len(a) for _, a in items])
    return pad_steps(torch.cat([o for o, _ in items]), torch.cat([a for _, a in items]), lengths)


def episode_loader(dataset: EpisodeDataset, batch: int, n_batches: int, seed: int) -> DataLoader:
    """``n_batches`` minibatches of episodes, sampled with replacement, seeded."""
    sampler = RandomSampler(
        dataset, replacement=True, num_samples=batch * n_batches, generator=torch.Generator().manual_seed(seed)
    )
    return DataLoader(dataset, batch_size=batch, sampler=sampler, collate_fn=collate_episodes)
