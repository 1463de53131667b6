"""The audit's fresh discriminators, cross-fitted over episodes: per-step departure evidence for every trajectory.

Three sets of episodes meet here, each as :class:`StepSet` (padded steps with their
discriminator input features):

- ``fit``: demonstrator episodes the discriminators learn the demonstrator from (label 1);
- ``cal``: held-out demonstrator episodes no discriminator ever trains on;
- ``test``: the audited imitator's trajectories, split into K folds by episode.

Discriminator k trains on ``fit`` against every test fold but k (class-balanced BCE,
``logits_expert_is_high``) and scores test fold k and all of ``cal``. So no trajectory is
scored by a discriminator that saw it, and each test fold has calibration scores from
its own discriminator, exchangeable with its own under the null (the imitator behaves
like the demonstrator). The per-step evidence is the negated logit: high = imitator-like.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from models.discriminator import Discriminator, DiscriminatorConfig


@dataclass(frozen=True, kw_only=True)
class StepSet:
    """E episodes padded to T steps, as discriminator inputs.

    Attributes:
        features: [E, T, F] float32 flat discriminator inputs (obs, action one-hot, taps).
        mask: [E, T] bool, True on real steps.
    """

    features: Tensor
    mask: Tensor

    def __post_init__(self) -> None:
        if self.features.dim() != 3 or self.features.shape[:2] != self.mask.shape:
            raise ValueError(f"features {tuple(self.features.shape)} do not match mask {tuple(self.mask.shape)}")

    @property
    def n_episodes(self) -> int:
        return int(self.mask.shape[0])

    def rows(self, episodes: np.ndarray) -> Tensor:
        """Real steps of the given episodes, [N, F]."""
        sel = torch.from_numpy(np.asarray(episodes, dtype=np.int64))
        return self.features[sel][self.mask[sel]]


@dataclass(frozen=True, kw_only=True)
class CrossFit:
    """Per-step evidence from K cross-fitted discriminators.

    Attributes:
        test_evidence: [E_test, T_test] float32 evidence of each test step under its fold's discriminator (0 on padding).
        cal_evidence: [K, E_cal, T_cal] float32 evidence of every calibration step under each discriminator.
        fold: [E_test] int64 fold of each test trajectory.
        discriminators: the K fitted discriminators (eval mode).
        trained_on: per discriminator, the test episode indices it was trained on.
    """

    test_evidence: Tensor
    cal_evidence: Tensor
    fold: np.ndarray
    discriminators: list[Discriminator]
    trained_on: list[np.ndarray]


def assign_folds(n: int, k: int, seed: int) -> np.ndarray:
    """A seeded, balanced assignment of n episodes to k folds: [n] int64."""
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    if n < k:
        raise ValueError(f"need at least {k} trajectories for {k}-fold cross-fitting, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    fold = np.empty(n, dtype=np.int64)
    fold[perm] = np.arange(n) % k
    return fold


def fit_discriminator(
    config: DiscriminatorConfig,
    expert: Tensor,
    imitator: Tensor,
    *,
    steps: int,
    seed: int,
    batch: int = 2048,
    lr: float = 2e-3,
) -> Discriminator:
    """A fresh discriminator trained on expert [N1, F] (label 1) against imitator [N0, F] (label 0).

    Each minibatch draws ``batch / 2`` steps from each class, so the rare departing steps of
    an imitator are not drowned by the demonstrator's majority.
    """
    torch.manual_seed(seed)
    disc = Discriminator(config=config)
    disc.set_normalization(torch.cat([expert, imitator]))
    # weight decay: a fresh discriminator that memorises its demonstrator episodes calls
    # every unseen demonstrator state imitator-like, which inflates the calibration scores
    opt = torch.optim.AdamW(disc.parameters(), lr=lr, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    half = batch // 2
    for _ in range(steps):
        e = expert[torch.randint(len(expert), (min(half, len(expert)),), generator=gen)]
        i = imitator[torch.randint(len(imitator), (min(half, len(imitator)),), generator=gen)]
        loss = 0.5 * (nn.functional.softplus(-disc.score(e)).mean() + nn.functional.softplus(disc.score(i)).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    disc.eval()
    return disc


def evidence(disc: Discriminator, steps: StepSet, chunk: int = 8192) -> Tensor:
    """Per-step evidence (negated logit) [E, T] of a step set under ``disc`` (0 on padding)."""
    flat = steps.features.reshape(-1, steps.features.shape[-1])
    with torch.no_grad():
        out = torch.cat([-disc.score(flat[i : i + chunk]) for i in range(0, len(flat), chunk)]) if len(flat) else torch.zeros(0)
    return out.reshape(steps.mask.shape) * steps.mask


def cross_fit(
    config: DiscriminatorConfig,
    fit: StepSet,
    cal: StepSet,
    test: StepSet,
    *,
    folds: int,
    steps: int,
    seed: int,
    progress: Callable[[float], None] | None = None,
) -> CrossFit:
    """Fit ``folds`` discriminators and score every test and calibration step (see the module docstring)."""
    fold = assign_folds(test.n_episodes, folds, seed)
    expert = fit.rows(np.arange(fit.n_episodes))
    test_ev = torch.zeros(test.mask.shape)
    cal_ev = []
    discs, trained = [], []
    for k in range(folds):
        train_eps = np.flatnonzero(fold != k)
        disc = fit_discriminator(config, expert, test.rows(train_eps), steps=steps, seed=seed * 1000 + k)
        score_eps = torch.from_numpy(np.flatnonzero(fold == k))
        sub = StepSet(features=test.features[score_eps], mask=test.mask[score_eps])
        test_ev[score_eps] = evidence(disc, sub)
        cal_ev.append(evidence(disc, cal))
        discs.append(disc)
        trained.append(train_eps)
        if progress:
            progress((k + 1) / folds)
    return CrossFit(test_evidence=test_ev, cal_evidence=torch.stack(cal_ev), fold=fold, discriminators=discs, trained_on=trained)
