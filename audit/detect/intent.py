"""Intent evidence: how far the imitator's own action distribution departs from an independent reference policy.

A discriminator over (history, action, activations) cannot flag before the first divergent
action: the reference activations are the same imitator teacher-forced over demonstrator
histories, so at a shared history both classes look alike. The imitator's *intent* does not
need a divergent action: at every step its ``head`` tap (the action logits, or a ``Box``
policy's Gaussian mean and log standard deviation, before any action is sampled) says what it
means to do. The audit fits its own reference policy of the
demonstrator by behavioural cloning on the *fit* demonstrations only (never a calibration
episode), and a step's evidence is KL(imitator || reference) of the two action
distributions. Calibration is the same as for every detector: the same KL on held-out
demonstrator episodes, with the imitator teacher-forced over them.

The reference is an ``mlp`` from the registry (with the grid encoder on built-in grids) with the
imitator's action space, so it works on any Gymnasium env with discrete or ``Box`` actions from
observations and actions alone; the KL is the action distribution's own (:mod:`models.actions`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from audit.data.seeds import derive_seed
from audit.detect.detectors import Detector, Episodes
from models.actions import Categorical, distribution_of, plain
from models.imitator import Imitator, ImitatorConfig
from models.registry import build


def fit_reference_policy(
    fit: Episodes,
    *,
    n_actions: int,
    grid: tuple[int, int, int] | None,
    hidden: int,
    steps: int,
    seed: int,
    batch: int = 256,
    lr: float = 3e-3,
    on_step: Callable[[int], None] | None = None,
    actions_like: Any = None,
) -> Imitator:
    """A memoryless BC policy of the demonstrator from ``fit`` episodes (obs [E, T, D], actions [E, T], or [E, T, d]
    with ``Box`` actions).

    ``actions_like`` is a policy config whose action space the reference takes (``continuous`` and the ``Box``'s
    bounds; None: ``n_actions`` discrete actions).

    ``on_step`` is called with the number of finished steps after each one (progress, and where a
    cancelled audit stops: it may raise).

    Raises:
        ValueError: no steps to learn from.
    """
    if not bool(fit.mask.any()):
        raise ValueError("the reference policy needs at least one demonstration step")
    torch.manual_seed(seed)
    obs, actions = fit.obs[fit.mask], fit.actions[fit.mask]
    space: dict[str, Any] = {}
    if actions_like is not None:
        space = {k: getattr(actions_like, k, None) for k in ("continuous", "action_low", "action_high")}
    config = ImitatorConfig(obs_dim=obs.shape[-1], n_actions=n_actions, hidden=hidden, grid=grid, **space)
    policy = build("mlp", config)
    distribution = distribution_of(config)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        rows = torch.randint(len(obs), (min(batch, len(obs)),), generator=gen)
        params = policy.sequence(obs[rows][:, None], torch.ones(len(rows), 1, dtype=torch.bool))[:, 0]
        loss = -distribution.log_prob(params, actions[rows]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step + 1)
    policy.eval()
    return policy


class IntentDetector(Detector):
    """KL of the acting policy's action distribution (the imitator's ``head`` tap) from reference policy A.

    Its null is approximate (:attr:`exact_null`): audited steps give KL(imitator || A), calibration steps KL(B || A),
    two
    different statistics; the gate refuses it.

    Two reference policies are fitted on disjoint halves of the reference episodes (never a
    calibration episode): A is the yardstick, B stands in for a demonstrator-like imitator on
    the calibration episodes, whose evidence is KL(B || A). An imitator that intends what the
    demonstrator intends then scores like B. The null is approximate (the imitator was trained
    otherwise than B), which the benchmark's demonstrator flag rate and the faithful imitators'
    flags check. The imitator episodes a fold would contrast are not used, so one pair of
    references serves every fold (fitted on the first call).

    Args:
        n_actions: the env's action count (a ``Box``'s dimensions with ``actions_like``).
        grid: built-in grid shape for the references' encoder, or None.
        hidden: the references' width.
        steps: their Adam steps.
        shared: a dict the detectors of one audit share, holding the fitted pair.
        actions_like: the imitator's config, whose action space the references take (None: ``n_actions`` discrete).
    """

    name = "intent"
    exact_null = False
    monitorable = True

    @classmethod
    def reads_taps(cls, config: Any) -> tuple[str, ...]:
        return ("head",)

    @classmethod
    def factory(cls, config: Any, inputs: Any) -> Callable[[], "IntentDetector"]:
        from audit.envs.adapter import grid_shape

        shared: dict = {}
        n_actions, grid = inputs.info.config.n_actions, grid_shape(inputs.info.env_id)
        return lambda: cls(
            n_actions=n_actions,
            grid=grid,
            hidden=config.reference_hidden,
            steps=config.reference_steps,
            shared=shared,
            actions_like=inputs.info.config,
        )

    def monitor_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.pair is None:
            raise RuntimeError("fit() before monitor_state()")
        ref = self.pair[0]
        return (
            {"n_actions": self.n_actions, "reference": ref.config.to_dict()},
            {f"reference.{k}": v.detach().cpu().numpy() for k, v in ref.state_dict().items()},
        )

    @classmethod
    def from_monitor_state(cls, meta: dict[str, Any], tensors: dict[str, Tensor]) -> "IntentDetector":
        ref = build("mlp", ImitatorConfig.from_dict(dict(meta["reference"])))
        ref.load_state_dict({k.removeprefix("reference."): v for k, v in tensors.items() if k.startswith("reference.")})
        ref.eval()
        det = cls(
            n_actions=int(meta["n_actions"]),
            grid=ref.config.grid,
            hidden=ref.config.hidden,
            steps=0,
            shared={},
            actions_like=ref.config,
        )
        det.pair = (ref, ref)
        return det

    def __init__(
        self,
        *,
        n_actions: int,
        grid: tuple[int, int, int] | None,
        hidden: int,
        steps: int,
        shared: dict,
        actions_like: Any = None,
    ) -> None:
        self.n_actions, self.grid, self.hidden, self.steps = n_actions, grid, hidden, steps
        self.shared, self.actions_like = shared, actions_like
        self.distribution = distribution_of(actions_like) if actions_like is not None else Categorical(n=n_actions)
        self.pair: tuple[Imitator, Imitator] | None = None

    def fit(self, reference: Episodes, imitator: Episodes, *, seed: int) -> None:
        if "pair" not in self.shared:  # type: ignore[operator]
            if reference.n_episodes < 2:
                raise ValueError("the intent detector needs at least 2 demonstration episodes to fit on")
            halves = np.random.default_rng(derive_seed(seed, "reference-halves")).permutation(reference.n_episodes)
            mid = reference.n_episodes // 2
            tick = self.fit_progress
            self.shared["pair"] = tuple(  # type: ignore[index]
                fit_reference_policy(
                    reference.subset(np.sort(part)),
                    n_actions=self.n_actions,
                    grid=self.grid,
                    hidden=self.hidden,
                    steps=self.steps,
                    seed=derive_seed(seed, "reference-policy", i),
                    actions_like=self.actions_like,
                    on_step=None if tick is None else lambda done, i=i: tick((i + done / self.steps) / 2),  # type: ignore[misc]
                )
                for i, part in enumerate((halves[:mid], halves[mid:]))
            )
        self.pair = self.shared["pair"]  # type: ignore[index]

    def _logits(self, policy: Imitator, episodes: Episodes) -> Tensor:
        obs = episodes.obs[episodes.mask]
        with torch.no_grad():
            return policy.sequence(obs[:, None], torch.ones(len(obs), 1, dtype=torch.bool))[:, 0]

    def _kl(self, acting: Tensor, episodes: Episodes) -> Tensor:
        out = torch.zeros(episodes.mask.shape)
        kl = self.distribution.kl(acting, self._logits(self.pair[0], episodes))  # type: ignore[index]
        out[episodes.mask] = kl.clamp(min=0.0)
        return out

    def evidence(self, episodes: Episodes) -> Tensor:
        if self.pair is None:
            raise RuntimeError("fit() before evidence()")
        if "head" not in episodes.taps:
            raise ValueError("intent evidence reads the imitator's head tap; the episodes do not carry it")
        return self._kl(episodes.taps["head"][episodes.mask], episodes)

    def calibration_evidence(self, episodes: Episodes) -> Tensor:
        """KL(B || A) on held-out demonstrator episodes: the evidence of a demonstrator-like policy."""
        if self.pair is None:
            raise RuntimeError("fit() before evidence()")
        return self._kl(self._logits(self.pair[1], episodes), episodes)

    def explain(self, episodes: Episodes, index: int, reference: Episodes) -> dict:
        """The steps of trajectory ``index`` where intent departs most, with the imitator's and the reference's
        preferred actions."""
        one = episodes.subset(np.array([index]))
        ev = self.evidence(one)[0][one.mask[0]]
        ref = self._logits(self.pair[0], one)  # type: ignore[index]
        mine = one.taps["head"][one.mask]
        top = ev.argsort(descending=True)[:5].tolist()
        return {
            "top_steps": [
                {
                    "step": int(t),
                    "attribution": float(ev[t]),
                    "imitator_action": plain(self.distribution.mode(mine[t])),
                    "reference_action": plain(self.distribution.mode(ref[t])),
                }
                for t in top
            ],
            "top_obs_features": [],
            "top_units": [],
            "segments": ["intent"],
            "heatmap": [[round(float(v), 5)] for v in ev],
        }
