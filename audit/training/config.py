"""TrainConfig: every setting of a training run, defined once (the CLI's ``train`` options come from it)."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audit.options import check, setting
from models.registry import architectures


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run."""

    arch: str = setting("gru")
    """Imitator architecture (a registry name: mlp, gru, transformer or a plugin)."""
    mode: str = setting("bc", choices=("bc", "adversarial"))
    """``bc`` or ``adversarial``."""
    learner: str = setting("ppo", choices=("ppo", "replay"))
    """Adversarial mode: how the imitator learns from the discriminator's reward. ``ppo``: on-policy, from each
    iteration's own rollouts. ``replay`` (experimental): off-policy (DAC: soft Q-learning over every rollout so far, a
    gradient-penalised discriminator), far fewer env steps when it works but not yet robust across seeds
    (BENCHMARKS.md); feed-forward imitators with discrete actions, and none of the PPO-only settings (ppo_*, clip,
    gae_lambda, entropy_coef, the push-downs, queries, probes)."""
    steps: int | None = setting(None, ge=1)
    """BC gradient steps (bc; default 500) or adversarial iterations after the warm start (adversarial; default 300:
    with the warm start, 1.5-2 minutes for a built-in env's 1,000 demonstrations on a quiet 2-core machine). Rounded up
    to whole multiples of eval_every."""
    bc_warmup: int = setting(1500, ge=0)
    """BC steps before the adversarial phase."""
    seed: int = setting(0, ge=0)
    """Seeds weights, minibatches and rollouts."""
    hidden: int = setting(64, ge=1)
    """Imitator width."""
    grid_encoder: bool = setting(True)
    """Convolutional encoder over the built-in envs' grid planes (ignored for other envs)."""
    centred_readout: bool = setting(True)
    """With the grid encoder: also read its features at the agent's cell (what is next to the agent, wherever it
    stands)."""
    plan_iterations: int = setting(0, ge=0, le=64)
    """With the centred readout: steps of the encoder's value-iteration layer (a planning prior for imitators of
    planners; 0 for none)."""
    lr: float = setting(3e-3, gt=0.0)
    """Imitator learning rate (BC and policy steps)."""
    lr_schedule: str = setting("constant", choices=("constant", "cosine"))
    """How the learning rate moves over the BC steps: ``constant``, or ``cosine`` decay from ``lr`` to zero at the
    last BC step (a closer clone of a noisy demonstrator: the last steps average the minibatches' noise out)."""
    batch_episodes: int = setting(32, ge=1)
    """Demonstration episodes per BC minibatch (and per discriminator step)."""
    heldout_fraction: float = setting(0.2, ge=0.0, lt=1.0)
    """Share of demonstration episodes never trained on (for held-out evaluation)."""
    rollout_episodes: int = setting(64, ge=1)
    """Imitator episodes per adversarial iteration."""
    disc_taps: tuple[str, ...] = setting(("core",))
    """Imitator taps the discriminator reads ('' = behaviour only)."""
    disc_raw_grid: bool = setting(False)
    """Built-in grids: the discriminator reads the raw grid planes instead of the auditor's tile view."""
    disc_spectral: bool = setting(False)
    """Spectral normalisation of the training discriminator (steadies training, but caps the log-odds of a rare step:
    off by default, BENCHMARKS.md)."""
    disc_hidden: int = setting(128, ge=1)
    """Discriminator width."""
    disc_lr: float = setting(1e-3, gt=0.0)
    """Discriminator learning rate."""
    disc_steps: int = setting(10, ge=1)
    """Discriminator updates per iteration."""
    grad_through_activations: bool = setting(False)
    """Let the discriminator's gradient flow through the activations into the imitator (teaches hiding).

    Off by default: it teaches the imitator to make its activations look like the
    demonstrator's to this probe, i.e. to hide from an activation-reading auditor."""
    probe_coef: float = setting(1.0, ge=0.0)
    """Weight of the through-activations term when that option is on."""
    ppo_epochs: int = setting(2, ge=1)
    """Passes over each batch of rollouts."""
    ppo_minibatches: int = setting(1, ge=1)
    """Policy updates per pass: the rollouts' episodes shuffled into this many minibatches (and the demonstration and
    started-anywhere episodes split as many ways), one update each; 1 is one full-batch update per pass."""
    clip: float = setting(0.2, gt=0.0)
    """PPO ratio clip."""
    gamma: float = setting(0.99, ge=0.0, le=1.0)
    """Discount for advantages."""
    gae_lambda: float = setting(0.95, ge=0.0, le=1.0)
    """GAE lambda."""
    terminal_reward: str = setting("none", choices=("none", "absorbing"))
    """Adversarial mode: what an episode the env terminates is worth after its last step. ``none``: nothing, so where
    the imitator's steps look unlike the demonstrator's (negative rewards), ending the episode early pays: the
    termination bias of Kostrikov et al. (2019). ``absorbing``: the discounted value of their absorbing state, its
    reward the discriminator's best logit for it (:func:`audit.training.adversarial.absorbing_reward`); needs
    demonstrations that record how each episode ended, and ``gamma`` below 1."""
    absorbing_floor: float = setting(-10.0, ge=-10.0, le=0.0)
    """terminal_reward ``absorbing``: the lowest reward per step the absorbing state gets, and what it gets when the
    demonstrator never terminated. -10 is the step rewards' own clamp; a milder floor gives the critics of learner
    ``replay`` a smaller cliff to fit at each ending (BENCHMARKS.md, the second peer row)."""
    replay_ratio: float = setting(0.125, gt=0.0, le=64.0)
    """learner ``replay``: updates per new env step (each iteration makes this many times its rollouts' steps)."""
    replay_batch: int = setting(256, ge=1, le=65536)
    """learner ``replay``: transitions (and demonstration steps) per update."""
    replay_capacity: int = setting(1_000_000, ge=1, le=100_000_000)
    """learner ``replay``: transitions kept (the oldest dropped first)."""
    replay_lr: float = setting(1e-3, gt=0.0)
    """learner ``replay``: imitator and critic learning rate after the warm start."""
    replay_target_rate: float = setting(0.005, gt=0.0, le=1.0)
    """learner ``replay``: how far the slow target critics move towards the critics at each update (SAC's tau)."""
    replay_temperature: float = setting(0.05, gt=0.0)
    """learner ``replay``: entropy temperature of the soft Q-learning (in the discriminator's logit units)."""
    replay_target_entropy: float | None = setting(None, ge=0.0)
    """learner ``replay``: when set, the temperature is learned as discrete SAC learns it: starting at
    ``replay_temperature``, it rises while the imitator's mean entropy (nats) at the sampled states is below this
    target and falls while it is above. Unset: the temperature stays at ``replay_temperature``."""
    entropy_coef: float = setting(0.01, ge=0.0)
    """Entropy bonus weight."""
    bc_coef: float = setting(1.0, ge=0.0)
    """Weight of the BC loss in the adversarial imitator step."""
    unlikelihood_coef: float = setting(0.0, ge=0.0)
    """Weight of the push-down on actions at steps the discriminator is sure the demonstrator never took (off by
    default: on OffSwitch it raised departures, BENCHMARKS.md)."""
    every_action_coef: float = setting(1.0, ge=0.0)
    """Weight of the exact expected reward over every action at each visited step: the discriminator scores all
    actions, so a departure the rollouts rarely sample is still penalised wherever it was possible."""
    forbid_coef: float = setting(0.1, ge=0.0)
    """Weight of pushing down (to log-probability -9) every action the discriminator is sure no demonstrator
    takes (logit below -unlikelihood_margin) at each visited step; a demonstrated departure is never flagged."""
    unlikelihood_margin: float = setting(2.0, ge=0.0)
    """A step is that sure when its discriminator logit is below minus this (D <= 0.12 at 2)."""
    query_demonstrator: str = setting("", choices=("", "auto", "corrigible", "unbounded", "triggered"))
    """Adversarial mode, built-in envs: a planner preset asked for its policy at every state of each iteration's
    rollouts, which the imitator is also fitted to (DAgger's labels, on the imitator's own states); ``auto`` asks
    the preset that recorded the demonstrations; '' asks no one."""
    query_coef: float = setting(1.0, ge=0.0)
    """Weight of the fit to the queried labels."""
    query_memory: int = setting(32, ge=0)
    """Past iterations' queried rollouts kept; each policy update also refits one of them drawn at random (DAgger's
    aggregated data set, capped; not kept across --resume)."""
    query_anywhere: int = setting(0, ge=0, le=4096)
    """Queried episodes per iteration, besides the rollouts, that start on a free cell of their layout drawn at random
    instead of the start tile; fitted to the planner's labels like the rollouts, never shown to the discriminator. A
    state beside a forbidden tile that the imitator's own rollouts reach once in thousands of episodes is then
    labelled "never here" every few iterations."""
    query_finish: int = setting(0, ge=0, le=100_000)
    """Iterations after the adversarial ones in which the imitator is fitted to the queried planner's labels on its own
    rollouts alone (DAgger: no discriminator, no entropy bonus; :mod:`audit.training.finish`), its learning rate
    ``finish_lr`` decayed by cosine to zero. Needs ``query_demonstrator``."""
    finish_lr: float = setting(1e-3, gt=0.0)
    """The finishing phase's first learning rate (``query_finish``)."""
    eval_every: int = setting(100, ge=1)
    """Iterations between evaluations (and checkpoints)."""
    warmup_eval_every: int | None = setting(None, ge=1)
    """Adversarial mode: BC steps between evaluations of the warm start (default: eval_every)."""
    eval_episodes: int = setting(200, ge=1)
    """Episodes per evaluation rollout."""
    eval_greedy: bool = setting(False)
    """Evaluate with the imitator's most likely action at each step instead of a sampled one (how a deployed policy
    is often run, and how Stable-Baselines3's ``evaluate_policy`` checks one); ``target_return`` then applies to it."""
    log_dir: str = setting("")
    """Folder for CSV/TensorBoard logs and resumable checkpoints (default: runs/ in the data directory,
    $IMITAUDIT_DATA_DIR or ~/.local/share/imitaudit; never the current directory)."""
    run_id: str = setting("")
    """Name of the run folder (default: arch, mode, seed and the start time, so two runs never share one; --resume
    needs it)."""
    progress: bool = setting(True, flag="--quiet", invert=True)
    """No progress bar."""
    target_return: float | None = setting(None)
    """Stop as soon as an evaluation's mean return reaches this (both phases)."""

    @property
    def bc_steps(self) -> int:
        """BC steps of the run: the whole of a ``bc`` run, the warm start of an ``adversarial`` one."""
        return self.phase_steps if self.mode == "bc" else self.bc_warmup

    @property
    def phase_steps(self) -> int:
        """``steps``, or the mode's default: 500 BC steps, 300 adversarial iterations."""
        if self.steps is not None:
            return self.steps
        return 500 if self.mode == "bc" else 300

    def __post_init__(self) -> None:
        check(self)
        if self.plan_iterations and not (self.grid_encoder and self.centred_readout):
            raise ValueError(
                "plan_iterations needs the grid encoder and its centred readout (grid_encoder, centred_readout)"
            )
        if self.learner == "replay" and (self.query_demonstrator or self.grad_through_activations):
            raise ValueError("learner 'replay' takes no query_demonstrator and no grad_through_activations")
        if self.query_anywhere and not self.query_demonstrator:
            raise ValueError("query_anywhere needs query_demonstrator (a planner to label the episodes)")
        if self.query_finish and not self.query_demonstrator:
            raise ValueError("query_finish needs query_demonstrator (a planner to label the episodes)")
        if self.terminal_reward == "absorbing" and self.gamma >= 1.0:
            raise ValueError(
                "terminal_reward 'absorbing' needs gamma below 1 (an absorbing state's value is r/(1-gamma))"
            )
        if self.arch not in architectures():
            raise ValueError(f"unknown architecture {self.arch!r}; known: {', '.join(sorted(architectures()))}")

    @property
    def name(self) -> str:
        """The run folder's name: ``run_id``, or a fresh one per run (arch, mode, seed, start time, a random tag)."""
        if self.run_id:
            return self.run_id
        return f"{self.arch}-{self.mode}-seed{self.seed}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"

    def runs_folder(self) -> Path:
        """Where run folders go: ``log_dir``, else runs/ in the data directory (see ``log_dir``)."""
        if self.log_dir:
            return Path(self.log_dir)
        home = os.environ.get("IMITAUDIT_DATA_DIR") or str(Path.home() / ".local" / "share" / "imitaudit")
        return Path(home) / "runs"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists): what a Lightning module saves as its hyper-parameters."""
        return {**asdict(self), "disc_taps": list(self.disc_taps)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return cls(**{**values, "disc_taps": tuple(values.get("disc_taps", ()))})
