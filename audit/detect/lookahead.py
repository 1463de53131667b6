"""Lookahead evidence: the fresh discriminator scores the imitator's counterfactual futures from every step.

A discriminator over the steps an imitator took cannot flag before the first divergent
action. The imitator's *futures* can: at each step (every ``every`` steps) the env is cloned
and the imitator rolled ``horizon`` steps ahead from there (:mod:`audit.data.futures`), and the
fold's discriminator scores that imitated future. A future's value is the peak of its steps'
evidence; the step's evidence (its *forecast*) is that value, so an imitator that is about to
walk to the button scores high while it still walks like the demonstrator.

Calibration needs the same statistic for the demonstrator, and it has it exactly: a held-out
demonstration episode's own continuation from step t is one sample of the demonstrator's
future from that state, so its forecast at t is the peak evidence of its recorded steps t to
t + horizon - 1 (:func:`window_peaks`), under the same fold's discriminator. Under the null (the
imitator acts as the demonstrator does) a sampled future of the imitator and the recorded
continuation of a demonstrator episode are exchangeable, so the conformal guarantee holds as
for every detector, with no stand-in policy. With ``samples`` > 1 the forecast is the mean of
several futures' peaks, which the single recorded continuation does not match exactly (the
mean has a lighter tail; the figures say what it does).

Needs an env that can be cloned and replays from its seeds; otherwise the lookahead raises one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from audit.data.futures import Budget, Futures, walk
from audit.data.seeds import derive_seed
from audit.detect.detectors import Detector, Episodes
from audit.detect.discriminate import DiscriminatorDetector
from models.policy import Policy


def peaks(evidence: Tensor, mask: Tensor) -> Tensor:
    """[E] the peak evidence of each row of evidence [E, h] over its live steps (mask [E, h], at least one live)."""
    return torch.where(mask, evidence, torch.full_like(evidence, -torch.inf)).max(dim=1).values


def window_peaks(evidence: Tensor, mask: Tensor, *, horizon: int, every: int) -> Tensor:
    """[E, T] at each branching step t (t % every == 0) the peak of live steps t .. t + horizon - 1, carried to the
    steps after (0 on padding)."""
    e, t = mask.shape
    if t == 0:
        return evidence.clone()
    live = torch.where(mask, evidence, torch.full_like(evidence, -torch.inf))
    padded = torch.cat([live, live.new_full((e, horizon - 1), -torch.inf)], dim=1)
    windows = padded.unfold(1, horizon, 1)  # [E, T, h]
    win_mask = torch.cat([mask, mask.new_zeros(e, horizon - 1)], dim=1).unfold(1, horizon, 1)
    ahead = peaks(windows.reshape(e * t, horizon), win_mask.reshape(e * t, horizon) | ~mask.reshape(e * t, 1)).reshape(
        e, t
    )
    branch_at = (torch.arange(t) // every) * every
    return torch.where(mask, ahead[:, branch_at], torch.zeros_like(ahead))


class LookaheadDetector(Detector):
    """The fresh discriminator's evidence on the imitator's counterfactual futures (see the module docstring).

    Args:
        inner: the fold's discriminator (fitted by :meth:`fit`).
        model: the audited imitator (it acts in its own futures).
        env_id, env_kwargs: the env to branch.
        budget: horizon, samples, every.
        seed: seeds the futures (the same for every fold: same seed, same futures).
    """

    name = "lookahead"
    exact_null = False  # audited forecasts branch a fresh future at every step; calibration ones slide over one path
    monitorable = True  # the monitor carries its discriminator: a deployed imitator has no simulator to branch

    @classmethod
    def budget_of(cls, config: Any) -> Budget:
        """How far, how often and how many futures this detector runs, from the audit's settings."""
        return Budget(horizon=config.lookahead_horizon, samples=config.lookahead_samples, every=config.lookahead_every)

    @classmethod
    def factory(cls, config: Any, inputs: Any) -> Callable[[], "LookaheadDetector"]:
        disc = DiscriminatorDetector.factory(config, inputs)
        budget = cls.budget_of(config)
        info = inputs.info
        return lambda: cls(
            inner=disc(),
            model=inputs.model,
            env_id=info.env_id,
            env_kwargs=info.env_kwargs,
            budget=budget,
            seed=config.seed,
        )

    def step_detector(self) -> Detector:
        return self.inner

    def __init__(
        self, *, inner: DiscriminatorDetector, model: Policy, env_id: str, env_kwargs: dict, budget: Budget, seed: int
    ) -> None:
        self.inner, self.model, self.env_id, self.env_kwargs = inner, model, env_id, dict(env_kwargs)
        self.budget, self.seed = budget, derive_seed(seed, "lookahead")
        self.taps = tuple(inner.config.taps)

    def fit(self, reference: Episodes, imitator: Episodes, *, seed: int) -> None:
        self.inner.fit_progress = self.fit_progress
        self.inner.fit(reference, imitator, seed=seed)

    def _future_peaks(self, futures: Futures) -> Tensor:
        ev = self.inner.evidence(
            Episodes(obs=futures.obs, actions=futures.actions, mask=futures.mask, taps=futures.taps)
        )
        return peaks(ev, futures.mask)

    def evidence(self, episodes: Episodes) -> Tensor:
        if self.inner.disc is None:
            raise RuntimeError("fit() before evidence()")
        if episodes.seeds is None:
            raise ValueError("lookahead evidence needs each trajectory's env seed to replay it")
        return walk(
            self.model,
            self.env_id,
            env_kwargs=self.env_kwargs,
            seeds=episodes.seeds.numpy(),
            obs=episodes.obs,
            actions=episodes.actions,
            mask=episodes.mask,
            budget=self.budget,
            score=self._future_peaks,
            taps=self.taps,
            seed=self.seed,
        )

    def calibration_evidence(self, episodes: Episodes) -> Tensor:
        """Held-out demonstrator episodes' forecasts: the peak evidence of each one's recorded continuation."""
        if self.inner.disc is None:
            raise RuntimeError("fit() before evidence()")
        return self._continuations(self.inner.evidence(episodes), episodes)

    def _continuations(self, steps: Tensor, episodes: Episodes) -> Tensor:
        return window_peaks(steps, episodes.mask, horizon=self.budget.horizon, every=self.budget.every)

    def explain(self, episodes: Episodes, index: int, reference: Episodes) -> dict:
        """The discriminator's attributions of the steps the trajectory really took."""
        return self.inner.explain(episodes, index, reference)


class CombinedDetector(LookaheadDetector):
    """Two evidence kinds from one fitted discriminator per fold: its evidence on the steps taken, and the lookahead's
    forecasts ([E, T, 2], kinds ``discriminator``, ``lookahead``). Each kind is calibrated on its own and the
    trajectory's p-value is Bonferroni's over both (:func:`audit.detect.calibrate.combine`), so the steps the
    imitator took and the futures it would take can each raise the flag, and the report says which fired first.
    """

    name = "combined"
    kinds = ("discriminator", "lookahead")

    def evidence(self, episodes: Episodes) -> Tensor:
        return torch.stack([self.inner.evidence(episodes), super().evidence(episodes)], dim=-1)

    def calibration_evidence(self, episodes: Episodes) -> Tensor:
        if self.inner.disc is None:
            raise RuntimeError("fit() before evidence()")
        steps = self.inner.evidence(episodes)
        return torch.stack([steps, self._continuations(steps, episodes)], dim=-1)
