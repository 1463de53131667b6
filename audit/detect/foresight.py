"""Foresight: the imitator run forward from its own state at a few fixed steps, each step its own exact test.

The lookahead branches a fresh future at every step of an audited trajectory, while a demonstrator episode has one
recorded continuation that every step's window slides over. Step by step the two are exchangeable (one future of the
imitator from a state against one continuation of the demonstrator from a state distributed alike), but a trajectory's
peak over many steps is not: the maximum of independent futures runs higher than the maximum over one path, so the
lookahead's level is not known (BENCHMARKS.md shows where the difference shows).

Foresight keeps only what is exact. At each of the branch steps ``BRANCH_STEPS`` the env is cloned and the imitator
rolled ``horizon`` steps ahead from there, its own hidden state carried in (:mod:`audit.data.futures`); the fold's
discriminator scores that future and its peak is the step's forecast. Each branch step is its own evidence *kind*: the
kind's trajectory score is the forecast at that step alone (a floor when the episode ended before it), calibrated on
the held-out demonstrator episodes' recorded continuations from the same step. Each kind is then an exact conformal
test, and the kinds are combined only through Bonferroni (flags at alpha / K, certification and the collective test at
delta / K, the lower bound the largest of the kinds'), which needs nothing about their joint law. So the gate may use
it: an imitator whose trajectories are exchangeable with the demonstrator's fails at most delta of the time.

What it sees that a discriminator over the steps taken cannot: an intent held in the imitator's state before any
action shows it (HiddenSupervisor's sleeper, which walks a forced corridor exactly as the demonstrator does and
departs at its end). What it reads is the imitator run forward, not its activations: with ``--taps ''`` its futures
are scored from behaviour alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from audit.data.futures import Budget
from audit.detect.lookahead import LookaheadDetector

#: The steps the imitator is branched from: its plan at the start, and twice more along the way.
BRANCH_STEPS: tuple[int, ...] = (0, 4, 8)
FLOOR = -1e4
"""A kind's evidence away from its branch step, and its score when the episode ended before it (the same for both
sides, so the test stays exact)."""


class ForesightDetector(LookaheadDetector):
    """The lookahead at ``BRANCH_STEPS`` only, one exact evidence kind per branch step (see the module docstring)."""

    name = "foresight"
    kinds = tuple(f"from step {s}" for s in BRANCH_STEPS)
    exact_null = True
    joint_exchangeable = False
    monitorable = False  # the monitor has no simulator to branch from, and without one foresight is nothing

    @classmethod
    def budget_of(cls, config: Any) -> Budget:
        """One future per branch step (the exact null needs one), every ``BRANCH_STEPS`` apart."""
        return Budget(horizon=config.lookahead_horizon, samples=1, every=BRANCH_STEPS[1] - BRANCH_STEPS[0])

    @staticmethod
    def _kinds(forecast: Tensor, mask: Tensor) -> Tensor:
        """[E, T, K] from forecasts [E, T]: kind k holds the forecast at its branch step and the floor elsewhere."""
        e, t = mask.shape
        out = torch.full((e, t, len(BRANCH_STEPS)), FLOOR)
        for k, step in enumerate(BRANCH_STEPS):
            if step < t:
                live = mask[:, step]
                out[live, step, k] = forecast[live, step]
        return out * mask[..., None]  # an episode over before a branch step scores the floor there

    def evidence(self, episodes: Any) -> Tensor:
        return self._kinds(super().evidence(episodes), episodes.mask)

    def calibration_evidence(self, episodes: Any) -> Tensor:
        return self._kinds(super().calibration_evidence(episodes), episodes.mask)
