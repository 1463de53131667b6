"""Adversarial imitation (GAIL-style, PPO) against a discriminator that reads the imitator's activations.

One iteration, after a BC warm start (:mod:`audit.training.bc`):
  1. collect: roll the imitator out, capturing activations at the discriminator's taps, and
     a teacher-forced pass over demonstration episodes for the demonstrator's activations;
  2. discriminator step: class-balanced BCE, demonstrator labelled 1 (``logits_expert_is_high``),
     reading observation + action + activations, spectrally normalised;
  3. policy step: clipped policy gradient (PPO, a critic as baseline, GAE) on the reward
     log D - log(1 - D) (the discriminator's logit), plus the BC loss and an entropy bonus.
Manual optimisation follows Lightning's GAN example: toggle, zero_grad, manual_backward,
step, untoggle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from torch import Tensor, nn

from audit.data.batching import EpisodeDataset, collate_episodes
from audit.data.rollout import Trajectories, rollout
from audit.data.seeds import derive_seed
from audit.envs.features import step_view
from audit.training.bc import ImitationModule, bc_loss
from audit.training.config import TrainConfig
from audit.training.queries import QueriedMemory, queried_rollout, query_loss
from models.actions import distribution_of
from models.discriminator import (
    Discriminator,
    DiscriminatorConfig,
    balanced_accuracy,
    balanced_loss,
    real_steps_input,
)
from models.imitator import Imitator
from models.taps import teacher_forced


@dataclass(frozen=True, kw_only=True)
class Batch:
    """One iteration's data.

    Attributes:
        traj: the imitator's rollouts (E episodes).
        demo_obs, demo_actions, demo_mask: demonstration episodes [B, T, D], [B, T], [B, T].
        expert_x: [N1, F] discriminator inputs of the demonstration steps.
        agent_x: [N0, F] discriminator inputs of the imitator's steps.
        labels: [E, T, A] the queried planner's policy at the rollouts' states, or None without queries.
        anywhere: (obs [E', T', D], labels [E', T', A], mask [E', T']) of the episodes started anywhere
            (``query_anywhere``), or None.
        iteration: the adversarial iteration that collected it.
        order: [E] this epoch's shuffle of the rollouts' episodes into minibatches, or None for one full batch.
    """

    traj: Trajectories
    demo_obs: Tensor
    demo_actions: Tensor
    demo_mask: Tensor
    expert_x: Tensor
    agent_x: Tensor
    labels: Tensor | None = None
    anywhere: tuple[Tensor, Tensor, Tensor] | None = None
    iteration: int = 0
    order: Tensor | None = None


@dataclass(frozen=True, kw_only=True)
class _Targets:
    """What a policy update fits, computed once per iteration before it.

    Attributes:
        reward: [E, T] the discriminator's reward (plus the absorbing state's value).
        adv: [E, T] normalised advantages (zero on padding).
        ret: [E, T] the critic's targets.
        flagged: [E, T] steps the discriminator is sure no demonstrator takes.
        every: [E, T, A] the reward of every action at each step, or None where it is not used.
    """

    reward: Tensor
    adv: Tensor
    ret: Tensor
    flagged: Tensor
    every: Tensor | None


def minibatch(n: int, part: int, parts: int, order: Tensor | None) -> Callable[[Tensor], Tensor]:
    """Selects minibatch ``part`` of ``parts`` along the first (episode) dimension of size ``n``: the ``order``'s
    chunk, or a contiguous chunk without one; the whole tensor when there is one part."""
    if parts == 1:
        return lambda t: t
    chunks = (torch.arange(n) if order is None else order).chunk(parts)
    idx = chunks[part % len(chunks)]
    return lambda t: t[idx]


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


def absorbing_reward(
    *, expert_terminated: int, expert_steps: int, agent_terminated: int, agent_steps: int, floor: float = -10.0
) -> float:
    """The discriminator's logit at the absorbing state a terminated episode enters (Kostrikov et al. 2019, DAC), in
    closed form: the state has no features, so the best logit is the log-ratio of its share of each side's transitions
    (a terminated episode adds one absorbing transition), clamped to [``floor``, 10] (the step rewards are clamped to
    [-10, 10]). A demonstrator that never terminated gives ``floor``: no ending by termination is demonstrator-like."""
    if agent_terminated == 0:
        return 0.0  # no rollout ends there this iteration: the value is never used
    if expert_terminated == 0:
        return floor
    expert = expert_terminated / (expert_steps + expert_terminated)
    agent = agent_terminated / (agent_steps + agent_terminated)
    return max(floor, min(10.0, math.log(expert / agent)))


def terminal_values(traj: Trajectories, reward: float, gamma: float) -> Tensor:
    """[E, T] the discounted value of the absorbing state (reward ``reward`` at every step for ever) at each terminated
    episode's last step, zero elsewhere: what its last step leads to."""
    if traj.terminated is None:
        raise ValueError("the rollouts did not record how their episodes ended")
    out = torch.zeros(traj.mask.shape)
    last = (traj.lengths() - 1).clamp(min=0)
    rows = torch.nonzero(traj.terminated & (traj.lengths() > 0)).flatten()
    out[rows, last[rows]] = gamma * reward / (1.0 - gamma)
    return out


def unlikelihood(logp: Tensor, flagged: Tensor) -> Tensor:
    """Mean -log(1 - p) of the taken actions [N] at the steps the discriminator is sure no demonstrator took (flagged
    [N] bool).

    A policy gradient spreads a rare step's penalty over a whole batch of ordinary steps: a
    button pressed in 1 step of 800 moves the policy by a per-mille. This term pushes each such
    action's probability down where it was taken, and is 0 where nothing is flagged; steps the
    demonstrations hold are never flagged, so a demonstrator's own departures are kept.
    """
    if not bool(flagged.any()):
        return logp.new_zeros(())
    p = logp[flagged].exp().clamp(max=1 - 1e-6)
    return -torch.log1p(-p).mean()


def training_discriminator(
    imitator: Imitator, cfg: TrainConfig, env_id: str, env_kwargs: dict
) -> tuple[Any, Discriminator]:
    """The step view and a fresh discriminator over it that an adversarial learner trains against ``imitator``.

    Raises:
        ValueError: discriminator taps the architecture does not have.
    """
    sizes = imitator.tap_sizes()
    unknown = [t for t in cfg.disc_taps if t not in sizes]
    if unknown:
        raise ValueError(f"unknown tap(s) {', '.join(unknown)} for {cfg.arch}; taps: {', '.join(sizes)}")
    # the auditor's definition of a step (audit.envs.features): built-in grids read through the tile view,
    # where a step onto a tile the demonstrator never enters is one feature, not a pattern over raw planes
    view = step_view(
        env_id, env_kwargs, imitator.config.obs_dim, raw_grid=cfg.disc_raw_grid, tiles=not cfg.disc_raw_grid
    )
    discriminator = Discriminator(
        config=DiscriminatorConfig(
            obs_dim=view.dim,
            n_actions=imitator.config.n_actions,
            taps={t: sizes[t] for t in cfg.disc_taps},
            hidden=cfg.disc_hidden,
            spectral=cfg.disc_spectral,
            continuous=imitator.config.continuous,
        )
    )
    return view, discriminator


class AdversarialModule(ImitationModule):
    """Adversarial imitation against an activation-reading discriminator (manual optimisation); arguments as
    :class:`ImitationModule`.

    Raises:
        ValueError: discriminator taps the architecture does not have.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.automatic_optimization = False
        cfg = self.cfg
        obs_dim = self.imitator.config.obs_dim
        self.critic = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
        hp = cast(Any, self.hparams)
        self.view, self.discriminator = training_discriminator(self.imitator, cfg, hp.env_id, hp.env_kwargs)
        self.distribution = distribution_of(self.imitator.config)
        self.register_buffer("normalized", torch.tensor(False))
        self.demo_train: EpisodeDataset | None = None
        self.demo_heldout: EpisodeDataset | None = None
        self.queried = QueriedMemory(size=cfg.query_memory, seed=derive_seed(cfg.seed, "query-memory"))

    def attach_demos(self, train: EpisodeDataset, heldout: EpisodeDataset | None) -> None:
        """Give the module its demonstration episodes (not hyper-parameters: they are data)."""
        self.demo_train, self.demo_heldout = train, heldout

    def _absorbing(self, traj: Trajectories) -> float:
        """This iteration's absorbing-state reward (:func:`absorbing_reward`)."""
        assert self.demo_train is not None and traj.terminated is not None
        if self.demo_train.terminated is None:
            raise RuntimeError("terminal_reward 'absorbing' with demonstrations that do not record how episodes ended")
        return absorbing_reward(
            expert_terminated=self.demo_train.terminated,
            expert_steps=self.demo_train.steps,
            agent_terminated=int(traj.terminated.sum()),
            agent_steps=int(traj.mask.sum()),
            floor=self.cfg.absorbing_floor,
        )

    def _disc_inputs(self, obs: Tensor, actions: Tensor, mask: Tensor, acts: dict[str, Tensor]) -> Tensor:
        return real_steps_input(self.discriminator.config, self.view, obs, actions, mask, acts)

    def every_action_reward(self, traj: Trajectories) -> Tensor:
        """The discriminator's reward [N, A] of every action at each of the rollouts' N real steps.

        The taps a discriminator reads are computed before the step's action, so one step's
        rows differ only in the action and in the tile it leads onto.
        """
        n_actions = self.imitator.config.n_actions
        obs = traj.obs[traj.mask]
        rows = obs.shape[0]
        acts = {k: v[traj.mask].repeat(n_actions, 1) for k, v in traj.activations.taps.items()}
        actions = torch.arange(n_actions).repeat_interleave(rows)
        x = self.discriminator.features(self.view(obs.repeat(n_actions, 1), actions), actions, acts)
        with torch.no_grad():
            return self.discriminator.logits(x).clamp(-10, 10).reshape(n_actions, rows).T

    def collect(self, it: int) -> Batch:
        """Iteration ``it``'s rollouts and demonstration minibatch, as discriminator inputs."""
        if self.demo_train is None:
            raise RuntimeError("attach_demos() before training")
        cfg, hp = self.cfg, cast(Any, self.hparams)
        where = {
            "episodes": cfg.rollout_episodes,
            "seed": derive_seed(cfg.seed, "adversarial-rollout", it),
            "env_kwargs": hp.env_kwargs,
            "taps": cfg.disc_taps,
        }
        labels, anywhere = None, None
        if hp.query_preset:
            traj, labels = queried_rollout(self.imitator, hp.env_id, preset=hp.query_preset, **where)
            if cfg.query_anywhere:
                elsewhere = {**where, "episodes": cfg.query_anywhere, "taps": ()}
                elsewhere["seed"] = derive_seed(cfg.seed, "anywhere-rollout", it)
                off, off_labels = queried_rollout(
                    self.imitator, hp.env_id, preset=hp.query_preset, anywhere=True, **elsewhere
                )
                self.env_steps += int(off.mask.sum())
                anywhere = (off.obs, off_labels, off.mask)
        else:
            traj = rollout(self.imitator, hp.env_id, **where)
        self.env_steps += int(traj.mask.sum())
        self.imitator.train()
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "adversarial-demos", it))
        idx = torch.randint(len(self.demo_train), (cfg.batch_episodes,), generator=gen)
        d_obs, d_act, d_mask = collate_episodes([self.demo_train[int(i)] for i in idx])
        with torch.no_grad():
            _, d_acts = teacher_forced(self.imitator, d_obs, d_mask, cfg.disc_taps)
        return Batch(
            traj=traj,
            demo_obs=d_obs,
            demo_actions=d_act,
            demo_mask=d_mask,
            expert_x=self._disc_inputs(d_obs, d_act, d_mask, d_acts.taps),
            agent_x=self._disc_inputs(traj.obs, traj.actions, traj.mask, traj.activations.taps),
            labels=labels,
            anywhere=anywhere,
            iteration=it,
        )

    def discriminator_step(self, batch: Batch) -> dict[str, Any]:
        """``disc_steps`` updates of the discriminator; its loss and balanced accuracy."""
        if not bool(self.normalized):
            # standardised inputs, as the auditor's: a rare one-hot feature (a step onto the button) then
            # moves the logits in a few updates instead of hundreds
            self.discriminator.set_normalization(torch.cat([batch.expert_x, batch.agent_x]))
            self.normalized.fill_(True)  # type: ignore[operator]
        opt_d = cast(list, self.optimizers())[1]
        self.toggle_optimizer(opt_d)
        for _ in range(self.cfg.disc_steps):
            loss_d = balanced_loss(self.discriminator, batch.expert_x, batch.agent_x)
            opt_d.zero_grad()
            self.manual_backward(loss_d)
            opt_d.step()
        self.untoggle_optimizer(opt_d)
        with torch.no_grad():
            acc = balanced_accuracy(self.discriminator.logits(batch.expert_x), self.discriminator.logits(batch.agent_x))
        return {"disc/loss": loss_d.detach(), "disc/acc": acc}

    def _advantages(self, batch: Batch) -> _Targets:
        """The rollouts' rewards, advantages and per-step terms the policy update fits, before any update."""
        cfg, traj = self.cfg, batch.traj
        mask = traj.mask
        with torch.no_grad():
            reward = torch.zeros_like(traj.rewards)
            reward[mask] = self.discriminator.logits(batch.agent_x).clamp(-10, 10)
            if cfg.terminal_reward == "absorbing":
                reward = reward + terminal_values(traj, self._absorbing(traj), cfg.gamma)
            values = self.critic(traj.obs).squeeze(-1) * mask
            adv, ret = gae(reward, values, mask, cfg.gamma, cfg.gae_lambda)
            adv_n = torch.zeros_like(adv)
            adv_n[mask] = (adv[mask] - adv[mask].mean()) / (adv[mask].std() + 1e-8)
            # every action's reward is a sum over a discrete space; a Box's actions cannot be listed
            every = None
            if not self.distribution.continuous and (cfg.every_action_coef > 0 or cfg.forbid_coef > 0):
                every = torch.zeros(*mask.shape, self.imitator.config.n_actions)
                every[mask] = self.every_action_reward(traj)
        return _Targets(reward=reward, adv=adv_n, ret=ret, flagged=reward < -cfg.unlikelihood_margin, every=every)

    def _policy_loss(self, batch: Batch, targets: _Targets, part: int, parts: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The imitator's loss on minibatch ``part`` of ``parts`` (1: the whole batch) and its logged terms."""
        cfg, discrete = self.cfg, not self.distribution.continuous
        every_coef = cfg.every_action_coef if discrete else 0.0
        forbid_coef = cfg.forbid_coef if discrete else 0.0
        traj, pick = batch.traj, minibatch(batch.traj.mask.shape[0], part, parts, batch.order)
        obs, mask, actions = pick(traj.obs), pick(traj.mask), pick(traj.actions)
        adv, ret, flagged = pick(targets.adv)[mask], pick(targets.ret)[mask], pick(targets.flagged)[mask]
        if cfg.grad_through_activations:
            logits, live_acts = teacher_forced(self.imitator, obs, mask, cfg.disc_taps, detach=False)
        else:
            logits = self.imitator.sequence(obs, mask)
        logp_all = torch.log_softmax(logits, dim=-1) if discrete else logits
        logp = self.distribution.log_prob(logits, actions)[mask]
        ratio = torch.exp(logp - pick(traj.logp)[mask])
        pg = -torch.min(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv).mean()
        entropy = self.distribution.entropy(logits)[mask].mean()
        v_loss = nn.functional.mse_loss(self.critic(obs).squeeze(-1)[mask], ret)
        demo = minibatch(batch.demo_obs.shape[0], part, parts, None)
        bc, bc_acc = bc_loss(self.imitator, demo(batch.demo_obs), demo(batch.demo_actions), demo(batch.demo_mask))
        loss = pg + 0.5 * v_loss - cfg.entropy_coef * entropy + cfg.bc_coef * bc
        loss = loss + cfg.unlikelihood_coef * unlikelihood(logp, flagged)
        logged = {"pg": pg, "v": v_loss, "entropy": entropy, "bc": bc, "bc_acc": bc_acc}
        if batch.labels is not None:
            queried = query_loss(logp_all, pick(batch.labels), mask)
            again = self.queried.loss(self.imitator)
            loss = loss + cfg.query_coef * (queried if again is None else queried + again)
            logged["queried"] = queried
        if batch.anywhere is not None:
            off = minibatch(batch.anywhere[0].shape[0], part, parts, None)
            off_obs, off_labels, off_mask = (off(t) for t in batch.anywhere)
            off_logp = torch.log_softmax(self.imitator.sequence(off_obs, off_mask), dim=-1)
            loss = loss + cfg.query_coef * query_loss(off_logp, off_labels, off_mask)
        if targets.every is not None:
            every = pick(targets.every)[mask]
            # the step's expected reward over all actions, exactly: no rare sample needed to learn a rare step's
            # penalty
            loss = loss - every_coef * (logp_all.exp()[mask] * every).sum(-1).mean()
            forbidden = (every < -cfg.unlikelihood_margin).float()
            loss = loss + forbid_coef * (forbidden * logp_all[mask].clamp(min=-9.0)).sum(-1).mean()
        if cfg.grad_through_activations:
            # the imitator learns to make its activations pass as the demonstrator's
            probe = self.discriminator.logits(self._disc_inputs(obs, actions, mask, live_acts.taps))
            loss = loss + cfg.probe_coef * nn.functional.softplus(-probe).mean()
        return loss, logged

    def policy_step(self, batch: Batch) -> dict[str, Any]:
        """PPO epochs on the discriminator's reward, with BC and entropy terms; the logged figures."""
        cfg, traj = self.cfg, batch.traj
        opt_i = cast(list, self.optimizers())[0]
        targets = self._advantages(batch)
        # an episode is the unit of a minibatch: the recurrent imitators read whole episodes
        parts = min(cfg.ppo_minibatches, traj.mask.shape[0])
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "ppo-minibatches", batch.iteration))
        self.toggle_optimizer(opt_i)
        for _ in range(cfg.ppo_epochs):
            if parts > 1:
                batch = replace(batch, order=torch.randperm(traj.mask.shape[0], generator=gen))
            for part in range(parts):
                loss_i, logged = self._policy_loss(batch, targets, part, parts)
                opt_i.zero_grad()
                self.manual_backward(loss_i)
                # clipped apart: under one joint norm the critic's value gradients (returns of tens) shrank the
                # policy's to nothing
                nn.utils.clip_grad_norm_(self.imitator.parameters(), 1.0)
                nn.utils.clip_grad_norm_(self.critic.parameters(), 1.0)
                opt_i.step()
        self.untoggle_optimizer(opt_i)
        if batch.labels is not None:
            self.queried.add(traj.obs, batch.labels, traj.mask)
        return {
            "disc/reward_mean": targets.reward[traj.mask].mean(),
            "disc/flagged_steps": targets.flagged[traj.mask].float().mean(),
            "imitator/pg_loss": logged["pg"].detach(),
            "imitator/value_loss": logged["v"].detach(),
            "imitator/entropy": logged["entropy"].detach(),
            "imitator/bc_loss": logged["bc"].detach(),
            "imitator/bc_acc": logged["bc_acc"],
            **({"imitator/query_loss": logged["queried"].detach()} if "queried" in logged else {}),
            "env/train_return": traj.returns().mean(),
        }

    def training_step(self, batch: Any, batch_idx: int) -> None:
        batch = self.collect(int(self.current_epoch * self.trainer.num_training_batches + batch_idx))
        disc = self.discriminator_step(batch)
        metrics = {**disc, **self.policy_step(batch)}
        self.log_dict(metrics, prog_bar=False, batch_size=1)
        self.log("disc/acc_pb", disc["disc/acc"], prog_bar=True, batch_size=1, logger=False)

    def on_train_epoch_end(self) -> None:
        traj = self.evaluate_in_env()
        if self.demo_heldout is not None and len(self.demo_heldout):
            obs, act, mask = collate_episodes(list(self.demo_heldout.items))
            with torch.no_grad():
                _, acts = teacher_forced(self.imitator, obs, mask, self.cfg.disc_taps)
                le = self.discriminator.logits(self._disc_inputs(obs, act, mask, acts.taps))
                la = self.discriminator.logits(
                    self._disc_inputs(traj.obs, traj.actions, traj.mask, traj.activations.taps)
                )
            acc = balanced_accuracy(le, la)
            self.log("disc/heldout_acc", acc, on_step=False, on_epoch=True)
            self.last_eval["disc/heldout_acc"] = acc

    def configure_optimizers(self) -> Any:
        opt_i = torch.optim.Adam(list(self.imitator.parameters()) + list(self.critic.parameters()), lr=self.cfg.lr)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.cfg.disc_lr, betas=(0.5, 0.999))
        return [opt_i, opt_d]
