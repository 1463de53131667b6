"""Training imitators: behavioural cloning and adversarial imitation (GAIL-style, PPO) as LightningModules.

``bc``: cross-entropy on whole demonstration episodes (the sequence form, so recurrent
imitators learn from histories). ``adversarial``: a BC warm start, then iterations of
  1. roll the imitator out, capturing activations at the discriminator's taps;
  2. a teacher-forced pass over demonstration episodes for the demonstrator's activations;
  3. discriminator steps: BCE, demonstrator labelled 1 (``logits_expert_is_high``), reading
     observation + action + activations, spectrally normalised;
  4. an imitator step: clipped policy gradient (PPO, a critic as baseline, GAE) on the
     reward log D - log(1 - D), plus the BC loss and an entropy bonus.
Manual optimisation follows Lightning's GAN example: toggle, zero_grad, manual_backward,
step, untoggle. Metrics are namespaced ``disc/``, ``imitator/``, ``env/`` and go to CSV
and TensorBoard under ``<log_dir>/<run_id>``; checkpoints there make a run resumable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from audit.demonstrations import Demonstrations
from audit.envs.adapter import env_signature, grid_shape
from audit.rollout import Trajectories, rollout
from audit.taps import teacher_forced
from models.checkpoint import save_imitator
from models.discriminator import Discriminator, DiscriminatorConfig
from models.imitator import Imitator, ImitatorConfig
from models.registry import architectures, build


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run."""

    arch: str = "gru"
    """Imitator architecture (a registry name)."""
    mode: str = "bc"
    """``bc`` or ``adversarial``."""
    steps: int = 500
    """BC gradient steps (bc) or adversarial iterations after the warm start (adversarial)."""
    bc_warmup: int = 300
    """BC steps before the adversarial phase."""
    seed: int = 0
    """Seeds weights, minibatches and rollouts."""
    hidden: int = 64
    """Imitator width."""
    grid_encoder: bool = True
    """Convolutional encoder over the built-in envs' grid planes (ignored for other envs)."""
    lr: float = 3e-3
    """Imitator learning rate (BC and policy steps)."""
    batch_episodes: int = 32
    """Demonstration episodes per BC minibatch (and per discriminator step)."""
    heldout_fraction: float = 0.2
    """Share of demonstration episodes never trained on (for held-out evaluation)."""
    rollout_episodes: int = 64
    """Imitator episodes per adversarial iteration."""
    disc_taps: tuple[str, ...] = ("core",)
    """Imitator taps the discriminator reads (empty: behaviour only)."""
    disc_hidden: int = 128
    """Discriminator width."""
    disc_lr: float = 1e-3
    """Discriminator learning rate."""
    disc_steps: int = 2
    """Discriminator updates per iteration."""
    grad_through_activations: bool = False
    """Let the discriminator's gradient flow through the activations into the imitator.

    Off by default: it teaches the imitator to make its activations look like the
    demonstrator's to this probe, i.e. to hide from an activation-reading auditor."""
    probe_coef: float = 1.0
    """Weight of the through-activations term when that option is on."""
    ppo_epochs: int = 2
    """Policy updates per batch of rollouts."""
    clip: float = 0.2
    """PPO ratio clip."""
    gamma: float = 0.99
    """Discount for advantages."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    entropy_coef: float = 0.01
    """Entropy bonus weight."""
    bc_coef: float = 1.0
    """Weight of the BC loss in the adversarial imitator step."""
    eval_every: int = 100
    """Iterations between evaluations (and checkpoints)."""
    eval_episodes: int = 200
    """Episodes per evaluation rollout."""
    log_dir: str = "runs"
    """Where CSV, TensorBoard logs and resumable checkpoints go."""
    run_id: str = ""
    """Name of the run folder (default: derived from arch, mode and seed)."""
    progress: bool = True
    """Show a progress bar."""
    target_return: float | None = None
    """Stop as soon as an evaluation's mean return reaches this (both phases)."""

    def __post_init__(self) -> None:
        if self.mode not in ("bc", "adversarial"):
            raise ValueError(f"mode must be 'bc' or 'adversarial', got {self.mode!r}")
        if self.arch not in architectures():
            raise ValueError(f"unknown architecture {self.arch!r}; known: {', '.join(sorted(architectures()))}")
        for name in ("steps", "batch_episodes", "rollout_episodes", "eval_every", "eval_episodes", "disc_steps", "ppo_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.bc_warmup < 0:
            raise ValueError(f"bc_warmup must be >= 0, got {self.bc_warmup}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")

    @property
    def name(self) -> str:
        return self.run_id or f"{self.arch}-{self.mode}-seed{self.seed}"


# ----- data -------------------------------------------------------------------------------


def split_episodes(demos: Demonstrations, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) episode positions, a seeded permutation split."""
    order = np.random.default_rng(seed).permutation(demos.n_episodes)
    n_held = int(round(heldout_fraction * demos.n_episodes))
    return np.sort(order[n_held:]), np.sort(order[:n_held])


class EpisodeDataset(Dataset):
    """Demonstration episodes, one item each: (obs [L, D], actions [L])."""

    def __init__(self, demos: Demonstrations, episodes: np.ndarray) -> None:
        bounds = demos.episode_bounds()[episodes]
        obs = torch.from_numpy(demos.obs.reshape(demos.n_steps, -1))
        actions = torch.from_numpy(demos.actions)
        self.items = [(obs[a:b], actions[a:b]) for a, b in bounds]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.items[i]


def collate_episodes(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Pad a list of episodes: obs [B, T, D], actions [B, T], mask [B, T]."""
    t = max(len(a) for _, a in items)
    b, d = len(items), items[0][0].shape[1]
    obs = torch.zeros(b, t, d)
    actions = torch.zeros(b, t, dtype=torch.long)
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i, (o, a) in enumerate(items):
        obs[i, : len(a)], actions[i, : len(a)], mask[i, : len(a)] = o, a, True
    return obs, actions, mask


def episode_loader(dataset: EpisodeDataset, batch: int, n_batches: int, seed: int) -> DataLoader:
    """``n_batches`` minibatches of episodes, sampled with replacement, seeded."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=batch * n_batches, generator=torch.Generator().manual_seed(seed))
    return DataLoader(dataset, batch_size=batch, sampler=sampler, collate_fn=collate_episodes)


def bc_loss(imitator: Imitator, obs: Tensor, actions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and accuracy over the real steps of padded episodes."""
    logits = imitator.sequence(obs, mask)
    ce = nn.functional.cross_entropy(logits[mask], actions[mask])
    acc = (logits[mask].argmax(-1) == actions[mask]).float().mean()
    return ce, acc


# ----- shared evaluation ------------------------------------------------------------------


class _EvalMixin:
    """Periodic evaluation in the env, logged under ``env/``."""

    def _eval_settings(self) -> dict[str, Any]:
        """env_id, env_kwargs, eval_episodes, seed, disc_taps, demo_return."""
        raise NotImplementedError

    def _evaluate_env(self) -> Trajectories:
        hp = self._eval_settings()
        traj = rollout(
            self.imitator,
            hp["env_id"],
            episodes=hp["eval_episodes"],
            seed=10_000_000 + hp["seed"] * 1000 + self.current_epoch,
            env_kwargs=hp["env_kwargs"],
            taps=tuple(hp["disc_taps"]),
        )
        ret = float(traj.returns().mean())
        metrics = {"env/return": ret, "env/length": float(traj.lengths().float().mean())}
        if hp["demo_return"]:
            metrics["env/return_ratio"] = ret / hp["demo_return"]
        departed = traj.departed()
        if departed is not None:
            metrics["env/departure_rate"] = float(departed.float().mean())
        self.log_dict(metrics, on_step=False, on_epoch=True)
        self.last_eval = metrics
        target = hp.get("target_return")
        if target is not None and ret >= target:
            self.reached_target = True
            self.trainer.should_stop = True
        return traj


class BCModule(_EvalMixin, L.LightningModule):
    """Behavioural cloning of demonstration episodes.

    Args:
        arch: imitator architecture.
        imitator_config: ``ImitatorConfig`` as a dict.
        env_id, env_kwargs: the demonstrations' env.
        lr, seed, eval_episodes, disc_taps, demo_return: see :class:`TrainConfig`.
    """

    def __init__(
        self,
        *,
        arch: str,
        imitator_config: dict,
        env_id: str,
        env_kwargs: dict,
        lr: float,
        seed: int,
        eval_episodes: int,
        disc_taps: tuple[str, ...] = (),
        demo_return: float = 0.0,
        target_return: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.imitator = build(arch, ImitatorConfig.from_dict(dict(imitator_config)))
        self.last_eval: dict[str, float] = {}
        self.reached_target = False
        self.env_steps = 0

    def _eval_settings(self) -> dict[str, Any]:
        hp = self.hparams
        keys = ("env_id", "env_kwargs", "eval_episodes", "seed", "disc_taps", "demo_return", "target_return")
        return {k: hp.get(k) for k in keys}

    def training_step(self, batch, batch_idx):
        obs, actions, mask = batch
        loss, acc = bc_loss(self.imitator, obs, actions, mask)
        self.log_dict({"imitator/bc_loss": loss, "imitator/bc_acc": acc}, prog_bar=True, batch_size=obs.shape[0])
        return loss

    def on_train_epoch_end(self) -> None:
        self._evaluate_env()

    def configure_optimizers(self):
        return torch.optim.Adam(self.imitator.parameters(), lr=self.hparams.lr)


class AdversarialModule(_EvalMixin, L.LightningModule):
    """Adversarial imitation against an activation-reading discriminator (manual optimisation).

    Args:
        arch, imitator_config, env_id, env_kwargs: the imitator and its env.
        train_cfg: the :class:`TrainConfig` as a dict (hyper-parameters of the run).
        demo_return: the demonstrations' mean return, for ``env/return_ratio``.
    """

    def __init__(self, *, arch: str, imitator_config: dict, env_id: str, env_kwargs: dict, train_cfg: dict, demo_return: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        cfg = TrainConfig(**{**train_cfg, "disc_taps": tuple(train_cfg.get("disc_taps", ()))})
        self.cfg = cfg
        self.imitator = build(arch, ImitatorConfig.from_dict(dict(imitator_config)))
        sizes = self.imitator.tap_sizes()
        unknown = [t for t in cfg.disc_taps if t not in sizes]
        if unknown:
            raise ValueError(f"unknown tap(s) {', '.join(unknown)} for {arch}; taps: {', '.join(sizes)}")
        obs_dim, n_actions = self.imitator.config.obs_dim, self.imitator.config.n_actions
        self.critic = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
        self.discriminator = Discriminator(
            config=DiscriminatorConfig(obs_dim=obs_dim, n_actions=n_actions, taps={t: sizes[t] for t in cfg.disc_taps}, hidden=cfg.disc_hidden)
        )
        self.demo_train: EpisodeDataset | None = None
        self.demo_heldout: EpisodeDataset | None = None
        self.last_eval = {}
        self.reached_target = False
        self.env_steps = 0

    def _eval_settings(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "env_id": self.hparams.env_id,
            "env_kwargs": self.hparams.env_kwargs,
            "eval_episodes": cfg.eval_episodes,
            "seed": cfg.seed,
            "disc_taps": cfg.disc_taps,
            "demo_return": self.hparams.demo_return,
            "target_return": cfg.target_return,
        }

    def attach_demos(self, train: EpisodeDataset, heldout: EpisodeDataset | None) -> None:
        """Give the module its demonstration episodes (not hyper-parameters: they are data)."""
        self.demo_train, self.demo_heldout = train, heldout

    def _demo_batch(self, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        if self.demo_train is None:
            raise RuntimeError("attach_demos() before training")
        idx = torch.randint(len(self.demo_train), (n,), generator=gen)
        return collate_episodes([self.demo_train[int(i)] for i in idx])

    def _disc_inputs(self, obs: Tensor, actions: Tensor, mask: Tensor, acts: dict[str, Tensor]) -> Tensor:
        return self.discriminator.features(obs[mask], actions[mask], {k: v[mask] for k, v in acts.items()})

    def training_step(self, batch, batch_idx):
        cfg = self.cfg
        opt_i, opt_d = self.optimizers()
        it = self.current_epoch * self.trainer.num_training_batches + batch_idx
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + it)
        taps = cfg.disc_taps

        traj = rollout(self.imitator, self.hparams.env_id, episodes=cfg.rollout_episodes, seed=cfg.seed * 1_000_003 + it * cfg.rollout_episodes, env_kwargs=self.hparams.env_kwargs, taps=taps)
        self.env_steps += int(traj.mask.sum())
        self.imitator.train()
        d_obs, d_act, d_mask = self._demo_batch(cfg.batch_episodes, gen)
        with torch.no_grad():
            _, d_acts = teacher_forced(self.imitator, d_obs, d_mask, taps)
        expert_x = self._disc_inputs(d_obs, d_act, d_mask, d_acts.taps)
        agent_x = self._disc_inputs(traj.obs, traj.actions, traj.mask, traj.activations.taps)

        # discriminator: demonstrator labelled 1, each class weighted equally
        self.toggle_optimizer(opt_d)
        for _ in range(cfg.disc_steps):
            le, la = self.discriminator.score(expert_x), self.discriminator.score(agent_x)
            loss_d = 0.5 * (nn.functional.softplus(-le).mean() + nn.functional.softplus(la).mean())
            opt_d.zero_grad()
            self.manual_backward(loss_d)
            opt_d.step()
        self.untoggle_optimizer(opt_d)
        acc_d = 0.5 * ((le > 0).float().mean() + (la < 0).float().mean())

        # imitator: PPO on log D - log(1 - D) = the discriminator's logit
        with torch.no_grad():
            reward = torch.zeros_like(traj.rewards)
            reward[traj.mask] = self.discriminator.score(agent_x).clamp(-10, 10)
            values = self.critic(traj.obs).squeeze(-1) * traj.mask
            adv, ret = gae(reward, values, traj.mask, cfg.gamma, cfg.gae_lambda)
            adv_n = (adv[traj.mask] - adv[traj.mask].mean()) / (adv[traj.mask].std() + 1e-8)
        self.toggle_optimizer(opt_i)
        for _ in range(cfg.ppo_epochs):
            if cfg.grad_through_activations:
                logits, live_acts = teacher_forced(self.imitator, traj.obs, traj.mask, taps, detach=False)
            else:
                logits = self.imitator.sequence(traj.obs, traj.mask)
            logp_all = torch.log_softmax(logits, dim=-1)
            logp = logp_all.gather(-1, traj.actions[..., None]).squeeze(-1)[traj.mask]
            ratio = torch.exp(logp - traj.logp[traj.mask])
            pg = -torch.min(ratio * adv_n, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv_n).mean()
            entropy = -(logp_all.exp() * logp_all).sum(-1)[traj.mask].mean()
            v = self.critic(traj.obs).squeeze(-1)[traj.mask]
            v_loss = nn.functional.mse_loss(v, ret[traj.mask])
            bc, bc_acc = bc_loss(self.imitator, d_obs, d_act, d_mask)
            loss_i = pg + 0.5 * v_loss - cfg.entropy_coef * entropy + cfg.bc_coef * bc
            if cfg.grad_through_activations:
                # the imitator learns to make its activations pass as the demonstrator's
                probe = self.discriminator(traj.obs[traj.mask], traj.actions[traj.mask], {k: a[traj.mask] for k, a in live_acts.taps.items()})
                loss_i = loss_i + cfg.probe_coef * nn.functional.softplus(-probe).mean()
            opt_i.zero_grad()
            self.manual_backward(loss_i)
            nn.utils.clip_grad_norm_(list(self.imitator.parameters()) + list(self.critic.parameters()), 1.0)
            opt_i.step()
        self.untoggle_optimizer(opt_i)

        self.log_dict(
            {
                "disc/loss": loss_d.detach(),
                "disc/acc": acc_d,
                "disc/reward_mean": reward[traj.mask].mean(),
                "imitator/pg_loss": pg.detach(),
                "imitator/value_loss": v_loss.detach(),
                "imitator/entropy": entropy.detach(),
                "imitator/bc_loss": bc.detach(),
                "imitator/bc_acc": bc_acc,
                "env/train_return": traj.returns().mean(),
            },
            prog_bar=False,
            batch_size=1,
        )
        self.log("disc/acc_pb", acc_d, prog_bar=True, batch_size=1, logger=False)

    def on_train_epoch_end(self) -> None:
        traj = self._evaluate_env()
        if self.demo_heldout is not None and len(self.demo_heldout):
            obs, act, mask = collate_episodes(list(self.demo_heldout.items))
            with torch.no_grad():
                _, acts = teacher_forced(self.imitator, obs, mask, self.cfg.disc_taps)
                le = self.discriminator.score(self._disc_inputs(obs, act, mask, acts.taps))
                la = self.discriminator.score(self._disc_inputs(traj.obs, traj.actions, traj.mask, traj.activations.taps))
            acc = 0.5 * ((le > 0).float().mean() + (la < 0).float().mean())
            self.log("disc/heldout_acc", acc, on_step=False, on_epoch=True)
            self.last_eval["disc/heldout_acc"] = float(acc)

    def configure_optimizers(self):
        opt_i = torch.optim.Adam(list(self.imitator.parameters()) + list(self.critic.parameters()), lr=self.cfg.lr)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.cfg.disc_lr, betas=(0.5, 0.999))
        return [opt_i, opt_d]


def gae(reward: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimates and returns over padded episodes [E, T] (episode ends are terminal)."""
    e, t = reward.shape
    adv = torch.zeros_like(reward)
    running = torch.zeros(e)
    for i in reversed(range(t)):
        nxt = values[:, i + 1] * mask[:, i + 1] if i + 1 < t else torch.zeros(e)
        delta = reward[:, i] + gamma * nxt - values[:, i]
        running = (delta + gamma * lam * running * (mask[:, i + 1] if i + 1 < t else 0)) * mask[:, i]
        adv[:, i] = running
    return adv, adv + values


# ----- the run ----------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a run produced."""

    imitator: Imitator
    path: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None
    steps_done: dict[str, int] = field(default_factory=dict)
    """Phase -> training batches completed (counting any resumed part)."""
    reached_target: bool = False
    """An evaluation reached ``target_return`` (training stopped there)."""
    env_steps: int = 0
    """Environment steps used for training (adversarial rollouts; evaluations not counted)."""


def _trainer(cfg: TrainConfig, run_dir: Path, phase: str, epochs: int) -> L.Trainer:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(save_dir=str(run_dir), name=phase, version="")]
    try:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name=phase, version=""))
    except ModuleNotFoundError:  # tensorboard is optional at run time
        pass
    ckpt = ModelCheckpoint(dirpath=str(run_dir / phase / "checkpoints"), save_last=True, every_n_epochs=1, save_top_k=0)
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=loggers,
        callbacks=[ckpt],
        enable_progress_bar=cfg.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        deterministic=False,
    )


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_utilities"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*GPU available.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")


def train(
    demos: Demonstrations,
    cfg: TrainConfig,
    *,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    demos_sha256: str = "",
) -> TrainResult:
    """Train an imitator on ``demos`` and (if ``out``) save its checkpoint.

    With ``resume``, a run folder left by an interrupted run of the same ``run_id`` is
    continued from its last checkpoint (per phase).

    Raises:
        ValueError: bad config, or demonstrations that do not fit their env.
    """
    _quiet_lightning()
    obs_dim, n_actions = env_signature(demos.env_id, demos.env_kwargs)
    flat = int(np.prod(demos.obs_shape))
    if flat != obs_dim:
        raise ValueError(f"demonstrations have obs of {flat} features, {demos.env_id} gives {obs_dim}")
    if int(demos.actions.max()) >= n_actions:
        raise ValueError(f"demonstrations hold action {int(demos.actions.max())}, {demos.env_id} has {n_actions}")
    train_eps, held_eps = split_episodes(demos, cfg.heldout_fraction, cfg.seed)
    if len(train_eps) == 0:
        raise ValueError("no demonstration episodes left to train on")
    train_set = EpisodeDataset(demos, train_eps)
    held_set = EpisodeDataset(demos, held_eps) if len(held_eps) else None
    demo_return = float(demos.episode_returns()[train_eps].mean())
    icfg = ImitatorConfig(
        obs_dim=obs_dim,
        n_actions=n_actions,
        hidden=cfg.hidden,
        max_len=max(512, int(demos.episode_lengths().max()) + 1),
        grid=grid_shape(demos.env_id) if cfg.grid_encoder else None,
    )
    run_dir = Path(cfg.log_dir) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=list))
    torch.manual_seed(cfg.seed)
    common = {"arch": cfg.arch, "imitator_config": icfg.to_dict(), "env_id": demos.env_id, "env_kwargs": demos.env_kwargs}

    bc_steps = cfg.steps if cfg.mode == "bc" else cfg.bc_warmup
    imitator: Imitator
    metrics: dict[str, float] = {}
    done: dict[str, int] = {}
    adv_last = run_dir / "adversarial" / "checkpoints" / "last.ckpt"
    skip_bc = cfg.mode == "adversarial" and resume and adv_last.exists()
    if bc_steps > 0 and not skip_bc:
        bc = BCModule(**common, lr=cfg.lr, seed=cfg.seed, eval_episodes=cfg.eval_episodes, disc_taps=cfg.disc_taps, demo_return=demo_return, target_return=cfg.target_return)
        per_epoch = min(cfg.eval_every, bc_steps)
        epochs = max(1, math.ceil(bc_steps / per_epoch))
        loader = episode_loader(train_set, cfg.batch_episodes, per_epoch, cfg.seed)
        last = run_dir / "bc" / "checkpoints" / "last.ckpt"
        trainer = _trainer(cfg, run_dir, "bc", epochs)
        trainer.fit(bc, train_dataloaders=loader, ckpt_path=str(last) if resume and last.exists() else None)
        imitator, metrics = bc.imitator, dict(bc.last_eval)
        done["bc"] = trainer.fit_loop.epoch_loop.total_batch_idx + 1
        reached = bc.reached_target
    else:
        imitator = build(cfg.arch, icfg)
        reached = False
    env_steps = 0
    if cfg.mode == "adversarial" and not reached:
        adv = AdversarialModule(**common, train_cfg={**asdict(cfg), "disc_taps": list(cfg.disc_taps)}, demo_return=demo_return)
        adv.imitator.load_state_dict(imitator.state_dict())
        adv.attach_demos(train_set, held_set)
        per_epoch = min(cfg.eval_every, cfg.steps)
        epochs = max(1, math.ceil(cfg.steps / per_epoch))
        loader = DataLoader(range(per_epoch), batch_size=1)
        trainer = _trainer(cfg, run_dir, "adversarial", epochs)
        trainer.fit(adv, train_dataloaders=loader, ckpt_path=str(adv_last) if resume and adv_last.exists() else None)
        imitator, metrics = adv.imitator, dict(adv.last_eval)
        done["adversarial"] = trainer.fit_loop.epoch_loop.total_batch_idx + 1
        reached, env_steps = adv.reached_target, adv.env_steps
    imitator.eval()
    path = None
    if out is not None:
        provenance = {
            "trainer": "imitaudit.train",
            "mode": cfg.mode,
            "steps": cfg.steps,
            "bc_warmup": cfg.bc_warmup if cfg.mode == "adversarial" else 0,
            "seed": cfg.seed,
            "disc_taps": list(cfg.disc_taps),
            "grad_through_activations": cfg.grad_through_activations,
            "demos_sha256": demos_sha256,
            "demos_source": demos.source,
            "final_metrics": metrics,
        }
        path = save_imitator(imitator, out, env_id=demos.env_id, env_kwargs=demos.env_kwargs, obs_shape=demos.obs_shape, provenance=provenance)
    return TrainResult(
        imitator=imitator, path=path, metrics=metrics, run_dir=run_dir, steps_done=done, reached_target=reached, env_steps=env_steps
    )


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def config_from_args(args: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from CLI keyword arguments (None values keep the defaults)."""
    given = {k: v for k, v in args.items() if v is not None and k in TrainConfig.__dataclass_fields__}
    if "disc_taps" in given and isinstance(given["disc_taps"], str):
        given["disc_taps"] = tuple(t for t in given["disc_taps"].split(",") if t)
    return TrainConfig(**given)
