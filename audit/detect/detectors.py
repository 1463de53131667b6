"""Detectors: one small interface for every kind of per-step departure evidence, and the cross-fitting that runs them.

Like cupbearer's anomaly detectors, a detector is fitted on reference data and then gives
each step its evidence; one ``evidence`` method serves calibration and audited episodes
alike, so the two can never be scored two different ways. Three words, three things: a
discriminator's *logit* (high = demonstrator-like), a step's *evidence* (high =
imitator-like), a trajectory's *score* (from its steps' evidence, by the score rule). Every detector's evidence goes
through the same calibration
(:func:`audit.detect.calibrate.calibrate`).

- :class:`audit.detect.discriminate.DiscriminatorDetector`: a fresh discriminator over the
  step view, action and activations (behaviour only with no taps);
- :class:`MahalanobisDetector`: distance of the ``core`` activations from the
  demonstrator's teacher-forced ones.

Cross-fitting (:func:`cross_fit`): the audited trajectories are split into K folds by
episode; detector k is fitted on the reference against every fold but k and scores fold k
and all calibration episodes. No trajectory is scored by a detector that saw it, and each
fold has calibration scores from its own detector, exchangeable with its own under the null.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from audit.data.seeds import derive_seed


@dataclass(frozen=True, kw_only=True)
class Episodes:
    """E episodes padded to T steps, with the imitator's activations.

    Attributes:
        obs: [E, T, D] float32 observation before each action.
        actions: [E, T] int64, or [E, T, d] float32 in a ``Box`` env.
        mask: [E, T] bool, True on real steps.
        taps: tap name -> [E, T, F] float32 activations (zeros on padding).
        seeds: [E] int64 env seed of each episode, where it can be replayed (the lookahead needs it), else None.
    """

    obs: Tensor
    actions: Tensor
    mask: Tensor
    taps: dict[str, Tensor]
    seeds: Tensor | None = None

    def __post_init__(self) -> None:
        e, t = self.mask.shape
        if self.obs.shape[:2] != (e, t) or self.actions.shape[:2] != (e, t):
            raise ValueError(
                f"obs {tuple(self.obs.shape)} and actions {tuple(self.actions.shape)} do not match mask {(e, t)}"
            )
        for name, act in self.taps.items():
            if act.shape[:2] != (e, t):
                raise ValueError(f"tap {name!r} has shape {tuple(act.shape)}, mask is {(e, t)}")

    @property
    def n_episodes(self) -> int:
        return int(self.mask.shape[0])

    def subset(self, episodes: np.ndarray) -> "Episodes":
        """The episodes at positions ``episodes``."""
        sel = torch.from_numpy(np.asarray(episodes, dtype=np.int64))
        return Episodes(
            obs=self.obs[sel],
            actions=self.actions[sel],
            mask=self.mask[sel],
            taps={k: v[sel] for k, v in self.taps.items()},
            seeds=None if self.seeds is None else self.seeds[sel],
        )


class Detector(ABC):
    """Per-step departure evidence: high = imitator-like, 0 on padding."""

    name: ClassVar[str]
    """The evidence's name in reports."""
    exact_null: ClassVar[bool] = True
    """Whether calibration episodes are scored exactly as audited trajectories are, so the null of the p-values (and
    the gate's level) is exact; where not, reports say the p-values are approximate."""
    kinds: ClassVar[tuple[str, ...]] = ()
    """Names of the evidence kinds when :meth:`evidence` gives several ([E, T, kinds]); empty for one ([E, T])."""
    joint_exchangeable: ClassVar[bool] = True
    """With several kinds: whether the kinds' scores are exchangeable jointly (one combined collective test), or only
    kind by kind (a collective test per kind, Bonferroni)."""
    fit_progress: Callable[[float], None] | None = None
    """Set by :func:`cross_fit`: a detector whose fit is long reports the fraction done here, and
    an exception raised by it (a cancelled audit) ends the fit."""
    shared: dict | None = None
    """State the folds of one audit share, filled by the first fold's fit (the intent detector's reference policies);
    None where each fold fits alone."""
    reads_history: bool = False
    """Whether a step's evidence reads the trajectory's earlier steps too (a monitor then keeps them)."""
    monitorable: ClassVar[bool] = False
    forecasts: ClassVar[bool] = False
    """Whether its evidence forecasts the imitator's course (it then has an ``inner`` discriminator): its monitor is
    calibrated on the imitator's own demonstrator-like trajectories (:meth:`audit.detect.monitor.Monitor.forecasting`).
    """
    """Whether a runtime monitor (:mod:`audit.detect.monitor`) can carry this detector's step evidence."""

    @classmethod
    def reads_taps(cls, config: Any) -> tuple[str, ...]:
        """The imitator taps this detector reads under an :class:`~audit.detect.config.AuditConfig` (default: its
        ``taps``)."""
        return tuple(config.taps)

    @classmethod
    @abstractmethod
    def factory(cls, config: Any, inputs: Any) -> Callable[[], "Detector"]:
        """A maker of fresh, unfitted detectors for one audit (``config``: its AuditConfig; ``inputs``: the loaded
        imitator, its info and the demonstrations, :class:`audit.detect.pipeline.Inputs`); one per fold."""

    def step_detector(self) -> "Detector":
        """The detector a runtime monitor carries: its evidence on the steps taken (itself, by default)."""
        return self

    def monitor_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(JSON metadata, name -> array) that :meth:`from_monitor_state` rebuilds this fitted detector from.

        Raises:
            ValueError: the detector cannot be carried by a monitor.
        """
        raise ValueError(f"a monitor cannot carry a {self.name} detector")

    @classmethod
    def from_monitor_state(cls, meta: dict[str, Any], tensors: dict[str, Tensor]) -> "Detector":
        """The fitted detector :meth:`monitor_state` described (built from this package's code, never unpickled)."""
        raise ValueError(f"a monitor cannot carry a {cls.name} detector")

    @abstractmethod
    def fit(self, reference: Episodes, imitator: Episodes, *, seed: int) -> None:
        """Learn the demonstrator from ``reference`` (and, if the method uses them, imitator episodes to contrast)."""

    @abstractmethod
    def evidence(self, episodes: Episodes) -> Tensor:
        """Evidence [E, T] of every step of ``episodes``.

        Raises:
            RuntimeError: before :meth:`fit`.
        """

    def calibration_evidence(self, episodes: Episodes) -> Tensor:
        """Evidence [E, T] of held-out demonstrator episodes, the null the audited ones are calibrated against.

        By default the same :meth:`evidence` (the imitator teacher-forced over them); a detector
        whose evidence compares the imitator with the demonstrator substitutes a demonstrator-like policy.
        """
        return self.evidence(episodes)

    def explain(self, episodes: Episodes, index: int, reference: Episodes) -> dict[str, Any] | None:
        """Attributions of one trajectory's evidence, or None where the method has none."""
        return None


class MahalanobisDetector(Detector):
    """Mahalanobis distance of the ``tap`` activations from the reference's (mean and ridge-regularised covariance).

    Args:
        tap: the imitator tap read.
        ridge: added to the covariance's diagonal.
    """

    name = "mahalanobis"

    @classmethod
    def reads_taps(cls, config: Any) -> tuple[str, ...]:
        return ("core",)

    @classmethod
    def factory(cls, config: Any, inputs: Any) -> Callable[[], Detector]:
        return lambda: cls(tap="core")

    def __init__(self, *, tap: str = "core", ridge: float = 1e-3) -> None:
        self.tap, self.ridge = tap, ridge
        self.mean: Tensor | None = None
        self.precision: Tensor | None = None

    def fit(self, reference: Episodes, imitator: Episodes, *, seed: int) -> None:
        if self.tap not in reference.taps:
            raise ValueError(
                f"the Mahalanobis detector reads tap {self.tap!r}; the episodes carry "
                f"{', '.join(reference.taps) or 'none'}"
            )
        x = reference.taps[self.tap][reference.mask].double()
        self.mean = x.mean(0)
        cov = torch.cov(x.T) + self.ridge * torch.eye(x.shape[1], dtype=torch.float64)
        self.precision = torch.linalg.inv(cov)

    def evidence(self, episodes: Episodes) -> Tensor:
        if self.mean is None:
            raise RuntimeError("fit() before evidence()")
        d = episodes.taps[self.tap].double() - self.mean
        return (torch.einsum("etf,fg,etg->et", d, self.precision, d).clamp(min=0).sqrt() * episodes.mask).float()


@dataclass(frozen=True, kw_only=True)
class CrossFit:
    """Per-step evidence from K cross-fitted detectors.

    Attributes:
        test_evidence: [E_test, T_test] float32 evidence of each audited step under its fold's detector (0 on padding);
            [E_test, T_test, kinds] for a detector with several evidence kinds (its ``kinds``).
        cal_evidence: [K, E_cal, T_cal] (or [K, E_cal, T_cal, kinds]) float32 evidence of every calibration step under
        each detector.
        fold: [E_test] int64 fold of each audited trajectory.
        detectors: the K fitted detectors.
        trained_on: per detector, the audited episode indices it was fitted against.
    """

    test_evidence: Tensor
    cal_evidence: Tensor
    fold: np.ndarray
    detectors: list[Detector]
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


def fit_fold(
    make: Callable[[], Detector],
    fit: Episodes,
    cal: Episodes,
    test: Episodes,
    fold: np.ndarray,
    seed: int,
    k: int,
    progress: Callable[[float], None] | None = None,
) -> tuple[Detector, Tensor, Tensor]:
    """Fold ``k`` of :func:`cross_fit`: a fresh detector fitted on the other folds' episodes; its evidence on fold
    ``k``'s
    episodes [E_k, T(, kinds)] and on the calibration episodes. A pure function of its arguments (a Ray task runs
    it)."""
    det = make()
    det.fit_progress = progress
    det.fit(fit, test.subset(np.flatnonzero(fold != k)), seed=derive_seed(seed, "detector", k))
    with torch.no_grad():
        return det, det.evidence(test.subset(np.flatnonzero(fold == k))), det.calibration_evidence(cal)


def cross_fit(
    make: Callable[[], Detector],
    fit: Episodes,
    cal: Episodes,
    test: Episodes,
    *,
    folds: int,
    seed: int,
    progress: Callable[[float], None] | None = None,
    cluster: Any | None = None,
) -> CrossFit:
    """Fit ``folds`` fresh detectors from ``make`` and score every audited and calibration step (see the module
    docstring).

    With a :class:`audit.cluster.Cluster` the folds run as its tasks (same seeds, same result); ``progress`` then moves
    as folds finish. Folds that share a first fit (:attr:`Detector.shared`) wait for fold 0's task, then run together.
    """
    fold = assign_folds(test.n_episodes, folds, seed)
    if cluster is not None:
        inputs = (make, fit, cal, test, fold, seed)
        shared, outs = make().shared, []
        if (
            shared is not None
        ):  # a task's copy of the shared state does not come back by itself: fold 0 first, its state shared
            outs = cluster.map(
                fit_fold,
                [0],
                common=inputs,
                progress=progress and (lambda f: progress(f / folds)),
                kind="detector fits",
            )
            shared.update(outs[0][0].shared)
        outs += cluster.map(
            fit_fold,
            range(len(outs), folds),
            common=inputs,
            kind="detector fits",
            progress=progress and (lambda f: progress((len(outs) + f * (folds - len(outs))) / folds)),
        )
    else:
        outs = [
            fit_fold(
                make,
                fit,
                cal,
                test,
                fold,
                seed,
                k,
                None if progress is None else (lambda frac, k=k: progress((k + min(frac, 1.0)) / folds)),  # type: ignore[misc]
            )
            for k in range(folds)
        ]
    test_ev: Tensor | None = None
    for k, (_, scores, _) in enumerate(outs):
        if test_ev is None:  # [E, T], or [E, T, kinds] for a detector with several evidence kinds
            test_ev = scores.new_zeros(test.n_episodes, *scores.shape[1:])
        test_ev[torch.from_numpy(np.flatnonzero(fold == k))] = scores
    assert test_ev is not None  # folds >= 2, so at least one fold scored
    return CrossFit(
        test_evidence=test_ev,
        cal_evidence=torch.stack([c for _, _, c in outs]),
        fold=fold,
        detectors=[d for d, _, _ in outs],
        trained_on=[np.flatnonzero(fold != k) for k in range(folds)],
    )
