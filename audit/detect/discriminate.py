"""The audit's fresh discriminator as a detector: per-step evidence = the negated logit (high = imitator-like).

Its input per step is the env's step view (:mod:`audit.envs.features`), the action one-hot
and the imitator's activations at the chosen taps; with no taps it is the behaviour-only
discriminator GAIL uses. It is a plain MLP without spectral normalisation: that steadies
adversarial training but caps the log-odds a rare, perfectly separable departure can reach.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from audit.detect.detectors import Detector, Episodes
from audit.detect.explain import explain
from audit.envs.features import StepView, step_view
from models.discriminator import Discriminator, DiscriminatorConfig, fit_discriminator, real_steps_input


class DiscriminatorDetector(Detector):
    """A discriminator fitted fresh on reference (label 1) against imitator steps (label 0).

    Args:
        view: what of the observation it reads.
        n_actions: the env's action count (a ``Box``'s dimensions with ``continuous``).
        taps: tap name -> features, in input order (empty: behaviour only).
        hidden: width.
        steps: Adam steps (class-balanced minibatches).
    """

    name = "discriminator"
    monitorable = True

    @classmethod
    def factory(cls, config: Any, inputs: Any) -> Callable[[], "DiscriminatorDetector"]:
        info = inputs.info
        view = step_view(
            info.env_id,
            info.env_kwargs,
            info.config.obs_dim,
            raw_grid=config.raw_grid or config.behaviour_only,
            tiles=config.grid_view,
            offsets=config.grid_offsets,
            names=inputs.demos.feature_names,
        )
        sizes = inputs.model.tap_sizes()
        taps = {t: sizes[t] for t in config.taps}
        continuous = bool(getattr(info.config, "continuous", False))
        return lambda: cls(
            view=view,
            n_actions=info.config.n_actions,
            taps=taps,
            hidden=config.disc_hidden,
            steps=config.disc_steps,
            continuous=continuous,
        )

    def monitor_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.disc is None:
            raise RuntimeError("fit() before monitor_state()")
        c = self.config
        meta = {
            "n_actions": c.n_actions,
            "continuous": c.continuous,
            "taps": c.taps,
            "hidden": c.hidden,
            "columns": self.view.columns.tolist(),
            "grid": self.view.grid,
            "offsets": self.view.offsets,
            "names": list(self.view.names),
        }
        return meta, {f"disc.{k}": v.detach().cpu().numpy() for k, v in self.disc.state_dict().items()}

    @classmethod
    def from_monitor_state(cls, meta: dict[str, Any], tensors: dict[str, Tensor]) -> "DiscriminatorDetector":
        view = StepView(
            columns=torch.tensor(meta["columns"], dtype=torch.int64),
            grid=tuple(meta["grid"]) if meta["grid"] else None,
            names=tuple(meta["names"]),
            offsets=meta.get("offsets") is True,
        )
        det = cls(
            view=view,
            n_actions=int(meta["n_actions"]),
            taps={k: int(v) for k, v in meta["taps"].items()},
            hidden=int(meta["hidden"]),
            steps=0,
            continuous=meta.get("continuous") is True,
        )
        det.disc = Discriminator(config=det.config)
        det.disc.load_state_dict({k.removeprefix("disc."): v for k, v in tensors.items() if k.startswith("disc.")})
        det.disc.eval()
        return det

    def __init__(
        self,
        *,
        view: StepView,
        n_actions: int,
        taps: dict[str, int],
        hidden: int,
        steps: int,
        continuous: bool = False,
    ) -> None:
        self.view = view
        self.config = DiscriminatorConfig(
            obs_dim=view.dim, n_actions=n_actions, taps=dict(taps), hidden=hidden, spectral=False, continuous=continuous
        )
        self.steps = steps
        self.disc: Discriminator | None = None

    def features(self, episodes: Episodes) -> Tensor:
        """Discriminator inputs [N, F] of the N real steps of ``episodes`` (episode-major; padding is never built)."""
        return real_steps_input(self.config, self.view, episodes.obs, episodes.actions, episodes.mask, episodes.taps)

    def fit(self, reference: Episodes, imitator: Episodes, *, seed: int) -> None:
        expert = self.features(reference)
        tick = self.fit_progress
        self.disc = fit_discriminator(
            self.config,
            expert,
            self.features(imitator),
            steps=self.steps,
            seed=seed,
            on_step=None if tick is None else lambda done: tick(done / self.steps),
        )
        self._baseline = expert.mean(dim=0)

    def evidence(self, episodes: Episodes, chunk: int = 8192) -> Tensor:
        if self.disc is None:
            raise RuntimeError("fit() before evidence()")
        flat = self.features(episodes)
        with torch.no_grad():
            out = (
                torch.cat([-self.disc.logits(flat[i : i + chunk]) for i in range(0, len(flat), chunk)])
                if len(flat)
                else torch.zeros(0)
            )
        evidence = torch.zeros(episodes.mask.shape)
        evidence[episodes.mask] = out
        return evidence

    def explain(self, episodes: Episodes, index: int, reference: Episodes) -> dict[str, Any]:
        """Integrated Gradients of trajectory ``index``'s evidence against the average reference step; features named
        by the view."""
        if self.disc is None:
            raise RuntimeError("fit() before explain()")
        out = explain(self.disc, self.features(episodes.subset(np.array([index]))), self._baseline)
        for feature in out["top_obs_features"]:
            feature.update(self.view.describe(feature["index"]))
        return out
