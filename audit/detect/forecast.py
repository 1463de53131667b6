"""Forecast: a probe on the imitator's activations that predicts, step by step, how unlike the demonstrator its next
steps will look, with no simulator.

The lookahead and foresight see an intent before it acts by running the imitator forward in a cloned env; a deployed
imitator has no cloned env beside it, so their runtime monitor could only alarm at the departing step. The forecast
detector distils that foresight into a probe. Each fold fits its discriminator as the discriminator detector does,
then a second network of the same shape (:func:`models.discriminator.fit_regressor`) on the same steps' inputs
(step view, action, the imitator's taps) to predict the step's *forecast target*: the peak of the discriminator's
evidence over the recorded continuation, steps t .. t + ``horizon`` - 1. An imitator trajectory's recorded
continuation is one sample of its future from that state, the same statistic the lookahead calibrates against, so
the probe learns what the imitator's state says about where it is going. Its evidence at step t is the prediction,
from step t's inputs alone (and, with ``history``, a summary of the observed history up to t).

What it guarantees: the evidence is a fixed function of each trajectory's own steps, so audited and held-out
demonstrator trajectories are scored alike and the conformal p-values are exact, as for the discriminator: a
demonstrator-like trajectory is flagged, and a runtime monitor alarms on it, with probability at most alpha. How
early it flags a departing one is measured, not promised (BENCHMARKS.md, ``bench/hidden.py``).

Reading internals or behaviour: with ``--taps ''`` the probe reads each step's behaviour alone; with
``--forecast-history`` it also reads the running mean and maximum of the step views so far, a behaviour-only
*sequence* summary of the same capacity, the baseline that says whether the activations add anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from audit.detect.detectors import Detector, Episodes
from audit.detect.discriminate import DiscriminatorDetector
from audit.detect.lookahead import window_peaks
from models.discriminator import Discriminator, DiscriminatorConfig, discriminator_input, fit_regressor


def history_summary(views: Tensor, mask: Tensor) -> Tensor:
    """[E, T, 2V] the running mean and running maximum of step views [E, T, V] over each episode's steps up to t
    (padding comes after real steps, so real steps never see it)."""
    live = mask[..., None].to(views.dtype)
    count = live.cumsum(dim=1).clamp(min=1)
    mean = (views * live).cumsum(dim=1) / count
    peak = torch.where(mask[..., None], views, torch.full_like(views, -1e9)).cummax(dim=1).values
    return torch.cat([mean, torch.where(mask[..., None], peak, torch.zeros_like(peak))], dim=-1)


class ForecastDetector(Detector):
    """The probe of the module docstring, fitted per fold beside its discriminator.

    Args:
        inner: the fold's discriminator (fitted by :meth:`fit`; it makes the probe's targets).
        horizon: steps of the recorded continuation whose peak evidence is the target.
        history: the probe also reads the running mean and maximum of the step views so far.
    """

    name = "forecast"
    monitorable = True
    forecasts = True

    @classmethod
    def factory(cls, config: Any, inputs: Any) -> Callable[[], "ForecastDetector"]:
        disc = DiscriminatorDetector.factory(config, inputs)
        return lambda: cls(inner=disc(), horizon=config.forecast_horizon, history=config.forecast_history)

    def __init__(self, *, inner: DiscriminatorDetector, horizon: int, history: bool) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1, got {horizon}")
        self.inner, self.horizon, self.history = inner, int(horizon), bool(history)
        c = inner.config
        extra = 2 * inner.view.dim if history else 0
        self.probe_config = DiscriminatorConfig(
            obs_dim=inner.view.dim + extra,
            n_actions=c.n_actions,
            taps=dict(c.taps),
            hidden=c.hidden,
            spectral=False,
            continuous=c.continuous,
        )
        self.probe: Discriminator | None = None
        self.reads_history = self.history

    def features(self, episodes: Episodes) -> Tensor:
        """Probe inputs [N, F] of the N real steps of ``episodes``, episode-major."""
        views = self.inner.view(episodes.obs, episodes.actions)  # [E, T, V]
        if self.history:
            views = torch.cat([views, history_summary(views, episodes.mask)], dim=-1)
        mask = episodes.mask
        taps = {name: episodes.taps[name][mask] for name in self.probe_config.taps if name in episodes.taps}
        return discriminator_input(self.probe_config, views[mask], episodes.actions[mask], taps)

    def targets(self, episodes: Episodes) -> Tensor:
        """[N] the forecast target of each real step: the discriminator's peak evidence over its continuation."""
        ahead = window_peaks(self.inner.evidence(episodes), episodes.mask, horizon=self.horizon, every=1)
        return ahead[episodes.mask]

    def fit(self, reference: Episodes, imitator: Episodes, *, seed: int) -> None:
        tick = self.fit_progress
        self.inner.fit_progress = None if tick is None else (lambda f: tick(0.5 * f))
        self.inner.fit(reference, imitator, seed=seed)
        steps = self.inner.steps
        self.probe = fit_regressor(
            self.probe_config,
            [(self.features(e), self.targets(e)) for e in (reference, imitator)],
            steps=steps,
            seed=seed + 1,
            on_step=None if tick is None else (lambda done: tick(0.5 + 0.5 * done / steps)),
        )

    def refit_probe(self, reference: Episodes, imitator: Episodes, *, seed: int) -> None:
        """Fit the probe again on ``imitator``, fresh trajectories of the imitator (and ``reference``), its
        discriminator kept: a runtime monitor's probe learns from many more of the imitator's trajectories than an
        audit's fold holds, with the fold discriminator's evidence as its targets.

        Raises:
            RuntimeError: before :meth:`fit`.
        """
        if self.probe is None or self.inner.steps < 1:
            raise RuntimeError("fit() before refit_probe()")
        self.probe = fit_regressor(
            self.probe_config,
            [(self.features(e), self.targets(e)) for e in (reference, imitator)],
            steps=self.inner.steps,
            seed=seed,
        )

    def evidence(self, episodes: Episodes) -> Tensor:
        if self.probe is None:
            raise RuntimeError("fit() before evidence()")
        flat = self.features(episodes)
        evidence = torch.zeros(episodes.mask.shape)
        with torch.no_grad():
            if len(flat):
                evidence[episodes.mask] = self.probe.logits(flat)
        return evidence

    def explain(self, episodes: Episodes, index: int, reference: Episodes) -> dict[str, Any]:
        """The discriminator's attributions of the steps the trajectory took (what the probe forecasts is its
        evidence)."""
        return self.inner.explain(episodes, index, reference)

    def monitor_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.probe is None:
            raise RuntimeError("fit() before monitor_state()")
        meta, tensors = self.inner.monitor_state()
        meta.update(horizon=self.horizon, history=self.history)
        tensors.update({f"probe.{k}": v.detach().cpu().numpy() for k, v in self.probe.state_dict().items()})
        return meta, tensors

    @classmethod
    def from_monitor_state(cls, meta: dict[str, Any], tensors: dict[str, Tensor]) -> "ForecastDetector":
        det = cls(
            inner=DiscriminatorDetector.from_monitor_state(meta, tensors),
            horizon=int(meta["horizon"]),
            history=bool(meta["history"]),
        )
        det.probe = Discriminator(config=det.probe_config)
        det.probe.load_state_dict({k.removeprefix("probe."): v for k, v in tensors.items() if k.startswith("probe.")})
        det.probe.eval()
        return det
