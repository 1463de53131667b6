"""Evaluating an imitator: its figures in the env, and how distinguishable it is from its demonstrations.

``evaluate`` rolls the imitator out and reports mean return, departure rate (where the
env records departures) and episode length, each with its standard error.
``distinguishability`` fits a *fresh* discriminator (observation + action + activations at
the chosen taps) on part of the demonstration episodes and part of the imitator's
rollouts, and reports its balanced step accuracy and AUROC on the held-out rest: 0.5
means the imitator cannot be told apart from its demonstrator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from audit.data.batching import pad_episodes, split_episodes
from audit.data.demonstrations import Demonstrations
from audit.data.rollout import Trajectories, rollout
from audit.data.seeds import derive_seed
from audit.detect.calibrate import auroc
from audit.envs.features import step_view
from models.discriminator import DiscriminatorConfig, balanced_accuracy, fit_discriminator, real_steps_input
from models.policy import Policy
from models.taps import teacher_forced


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def summarize(traj: Trajectories) -> dict[str, Any]:
    """Mean return, departure rate and length of rollouts (with standard errors)."""
    ret, ret_se = _mean_se(traj.returns().double().numpy())
    length, length_se = _mean_se(traj.lengths().double().numpy())
    out: dict[str, Any] = {
        "episodes": traj.n_episodes,
        "mean_return": ret,
        "mean_return_se": ret_se,
        "mean_length": length,
        "mean_length_se": length_se,
    }
    departed = traj.departed()
    if departed is not None:
        rate, rate_se = _mean_se(departed.double().numpy())
        out.update(departure_rate=rate, departure_rate_se=rate_se)
    else:
        out["departure_rate"] = None
    return out


def evaluate(
    model: Policy,
    env_id: str,
    *,
    episodes: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    demos: Demonstrations | None = None,
) -> dict[str, Any]:
    """The imitator's figures in ``env_id``; with ``demos``, the demonstrations' beside them and the ratios."""
    out = summarize(rollout(model, env_id, episodes=episodes, seed=seed, env_kwargs=env_kwargs))
    out["env_id"] = env_id
    if demos is not None:
        s = demos.summary()
        out["demos"] = {k: s[k] for k in ("episodes", "mean_return", "mean_length", "departure_rate")}
        if s["mean_return"]:
            out["return_ratio"] = out["mean_return"] / s["mean_return"]
    return out


def distinguishability(
    model: Policy,
    demos: Demonstrations,
    *,
    episodes: int = 400,
    seed: int = 0,
    taps: Sequence[str] = ("core",),
    steps: int = 400,
    train_fraction: float = 0.7,
    hidden: int = 128,
) -> dict[str, float]:
    """Held-out balanced accuracy and AUROC of a fresh step-level discriminator, demonstrator vs imitator.

    Demonstration episodes and imitator rollouts are each split by episode; the
    discriminator is fitted by the auditor's loop (:func:`models.discriminator.fit_discriminator`,
    class-balanced minibatches) on ``train_fraction`` of each and scored on the rest.
    """
    torch.manual_seed(seed)
    traj = rollout(
        model,
        demos.env_id,
        episodes=episodes,
        seed=derive_seed(seed, "distinguishability"),
        env_kwargs=demos.env_kwargs,
        taps=taps,
    )
    obs, actions, mask = pad_episodes(demos)
    with torch.no_grad():
        _, acts = teacher_forced(model, obs, mask, taps)
    demo_train, demo_test = split_episodes(obs.shape[0], 1.0 - train_fraction, seed)
    imit_train, imit_test = split_episodes(
        traj.n_episodes, 1.0 - train_fraction, derive_seed(seed, "distinguishability-split")
    )
    sizes = model.tap_sizes()
    # the auditor's step view and discriminator (no spectral norm), so this figure is the audit's notion of
    # distinguishable
    view = step_view(demos.env_id, demos.env_kwargs, model.config.obs_dim, raw_grid=False, tiles=True)
    config = DiscriminatorConfig(
        obs_dim=view.dim,
        n_actions=model.config.n_actions,
        taps={t: sizes[t] for t in taps},
        hidden=hidden,
        spectral=False,
        continuous=bool(getattr(model.config, "continuous", False)),
    )

    def feats(o, a, m, act, rows):
        sel = m & torch.isin(torch.arange(m.shape[0]), torch.from_numpy(rows))[:, None]
        return real_steps_input(config, view, o, a, sel, act)

    disc = fit_discriminator(
        config,
        feats(obs, actions, mask, acts.taps, demo_train),
        feats(traj.obs, traj.actions, traj.mask, traj.activations.taps, imit_train),
        steps=steps,
        seed=derive_seed(seed, "distinguishability-discriminator"),
    )
    with torch.no_grad():
        le = disc.logits(feats(obs, actions, mask, acts.taps, demo_test))
        la = disc.logits(feats(traj.obs, traj.actions, traj.mask, traj.activations.taps, imit_test))
    return {
        "heldout_acc": balanced_accuracy(le, la),
        "heldout_auroc": auroc(le.numpy(), la.numpy()),
        "heldout_steps_demo": int(len(le)),
        "heldout_steps_imitator": int(len(la)),
    }
