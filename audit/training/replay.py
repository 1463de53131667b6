"""Off-policy adversarial imitation (DAC, Kostrikov et al. 2019) for feed-forward imitators with discrete actions.

Each iteration, after a BC warm start (:mod:`audit.training.bc`):
  1. collect: roll the imitator out and keep every transition in a replay buffer (all iterations so far);
  2. ``replay_ratio`` x the new steps updates, each on one minibatch drawn from the buffer and one from the
     demonstrations, and each one simultaneous step of three losses (each reads the other networks as they stand before
     the step):
     a. discriminator: class-balanced BCE (demonstrator labelled 1) plus a gradient penalty on mixed inputs;
     b. critic: soft Q-learning (discrete SAC, twin Q with slow targets) on the reward the discriminator's logit gives
        now, so old transitions are rewarded as today's discriminator sees them; a terminated episode enters the
        absorbing state, whose value is :func:`audit.training.adversarial.absorbing_reward` discounted for ever;
     c. imitator: the soft policy step towards the critic's values, plus the BC loss;
  then
     d. temperature (when ``replay_target_entropy`` is set): one step towards that entropy, as discrete SAC's.
The PPO learner (:mod:`audit.training.adversarial`) learns only from each iteration's own rollouts; reusing every
past step is what lets a few demonstrated steps be enough (BENCHMARKS.md, the second peer row).
"""

from __future__ import annotations

import copy
import math
from typing import Any, cast

import torch
from torch import Tensor, nn

from audit.data.batching import EpisodeDataset, collate_episodes
from audit.data.rollout import Trajectories, rollout
from audit.data.seeds import derive_seed
from audit.training.adversarial import absorbing_reward, training_discriminator
from audit.training.bc import ImitationModule
from models.discriminator import balanced_accuracy, balanced_logit_loss
from models.imitator import Imitator
from models.taps import TapRecorder

GRADIENT_PENALTY = 10.0
"""Weight of the discriminator's gradient penalty (DAC's, after WGAN-GP): a smooth logit over states the imitator has
not reached yet, so the critic's targets do not jump when one more transition is seen."""
TEMPERATURE_LR = 1e-2
"""Adam's step size on the logarithm of a learned temperature (``replay_target_entropy``)."""


def check_fits(imitator: Imitator) -> None:
    """Raises ValueError when ``imitator`` cannot learn by replay: a recurrent one (a stored step has no history) or
    continuous actions (the soft policy step sums over the actions)."""
    if imitator.recurrent:
        raise ValueError("learner 'replay' needs a feed-forward imitator (--arch mlp); a recurrent one reads histories")
    if imitator.config.continuous:
        raise ValueError("learner 'replay' needs a discrete action space")


class ReplayBuffer:
    """The transitions of every rollout so far, up to ``capacity`` (the oldest dropped first).

    Tensors: obs [N, D], actions [N] int64, next_obs [N, D], terminated [N] bool (next_obs is then the absorbing
    state and unused). A truncated episode's last step is not kept: the observation after it was not recorded.
    """

    def __init__(self, *, capacity: int, obs_dim: int) -> None:
        self.capacity = capacity
        self.obs = torch.zeros(0, obs_dim)
        self.actions = torch.zeros(0, dtype=torch.long)
        self.next_obs = torch.zeros(0, obs_dim)
        self.terminated = torch.zeros(0, dtype=torch.bool)
        self.steps = 0
        """Real steps seen (kept or not), for the absorbing state's share."""
        self.ended = 0
        """Episodes the env terminated among them."""

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def add(self, traj: Trajectories) -> None:
        """Keep ``traj``'s transitions.

        Raises:
            ValueError: the rollouts did not record how their episodes ended.
        """
        if traj.terminated is None:
            raise ValueError("the rollouts did not record how their episodes ended")
        mask = traj.mask
        nxt = torch.zeros_like(traj.obs)
        nxt[:, :-1] = traj.obs[:, 1:]
        has_next = mask.clone()
        has_next[:, :-1] &= mask[:, 1:]
        has_next[:, -1] = False
        last = (traj.lengths() - 1).clamp(min=0)
        rows = torch.arange(mask.shape[0])
        ended = traj.terminated & (traj.lengths() > 0)
        done = torch.zeros_like(mask)
        done[rows[ended], last[ended]] = True
        keep = has_next | done
        self.obs = torch.cat([self.obs, traj.obs[keep]])[-self.capacity :]
        self.actions = torch.cat([self.actions, traj.actions[keep]])[-self.capacity :]
        self.next_obs = torch.cat([self.next_obs, nxt[keep]])[-self.capacity :]
        self.terminated = torch.cat([self.terminated, done[keep]])[-self.capacity :]
        self.steps += int(mask.sum())
        self.ended += int(ended.sum())

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``n`` transitions drawn uniformly with replacement: obs, actions, next_obs, terminated."""
        if not len(self):
            raise RuntimeError("sample() before any transition was added")
        idx = torch.randint(len(self), (n,), generator=generator)
        return self.obs[idx], self.actions[idx], self.next_obs[idx], self.terminated[idx]


def value_scale(gamma: float) -> float:
    """What the critics' outputs are in units of: a discounted value times ``1 - gamma``, a per-step average on the
    rewards' own scale (1 when ``gamma`` is 1). An absorbing state's value is its reward over ``1 - gamma``, hundreds
    of times a step's reward; a small network regressing such targets with Adam's small steps stays far from them for
    thousands of updates, and the policy follows its errors instead of its values."""
    return 1.0 - gamma if gamma < 1.0 else 1.0


class TwinCritic(nn.Module):
    """Two independent critics (tanh MLPs, 64 wide) evaluated as one batch of matrix products: values [2, N, A] of
    states obs [N, D]. One network of two stacked weight sets costs half the operations of two, and at this size a
    critic's time is its operations, not its arithmetic."""

    def __init__(self, *, obs_dim: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        sizes = [(obs_dim, hidden), (hidden, hidden), (hidden, n_actions)]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in sizes:
            layers = [nn.Linear(fan_in, fan_out) for _ in range(2)]  # nn.Linear's own initialisation, twice
            self.weights.append(nn.Parameter(torch.stack([layer.weight.detach().T for layer in layers])))
            self.biases.append(nn.Parameter(torch.stack([layer.bias.detach()[None] for layer in layers])))

    def forward(self, obs: Tensor) -> Tensor:
        h = obs.expand(2, *obs.shape)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = torch.tanh(h)
        return h


class ReplayModule(ImitationModule):
    """Off-policy adversarial imitation against an activation-reading discriminator; arguments as
    :class:`ImitationModule`.

    The replay buffer is not part of a checkpoint: a resumed run starts it empty.

    Raises:
        ValueError: a recurrent imitator, continuous actions, or discriminator taps the architecture does not have.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.automatic_optimization = False
        cfg, hp = self.cfg, cast(Any, self.hparams)
        check_fits(self.imitator)
        obs_dim, n_actions = self.imitator.config.obs_dim, self.imitator.config.n_actions
        self.critics = TwinCritic(obs_dim=obs_dim, n_actions=n_actions)
        self.targets = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_temperature = nn.Parameter(
            torch.tensor(math.log(cfg.replay_temperature)), requires_grad=cfg.replay_target_entropy is not None
        )
        self.view, self.discriminator = training_discriminator(self.imitator, cfg, hp.env_id, hp.env_kwargs)
        self.register_buffer("normalized", torch.tensor(False))
        self.buffer = ReplayBuffer(capacity=cfg.replay_capacity, obs_dim=obs_dim)
        self.demo_train: EpisodeDataset | None = None
        self.demo_heldout: EpisodeDataset | None = None
        self._demo_steps: tuple[Tensor, Tensor] | None = None
        self._draws = torch.Generator().manual_seed(derive_seed(cfg.seed, "replay-draws"))

    def attach_demos(self, train: EpisodeDataset, heldout: EpisodeDataset | None) -> None:
        """Give the module its demonstration episodes (not hyper-parameters: they are data)."""
        self.demo_train, self.demo_heldout = train, heldout
        obs, actions, mask = collate_episodes(list(train.items))
        self._demo_steps = (obs[mask], actions[mask])

    def _pass(self, obs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """One pass of the imitator over single states obs [N, D]: its log-probabilities [N, A] (with gradients) and
        its activations {tap: [N, F]} at the discriminator's taps (detached; a feed-forward imitator's activations at
        a state do not depend on what came before)."""
        with TapRecorder(model=self.imitator, names=self.cfg.disc_taps) as rec:
            logits = self.imitator.sequence(obs[:, None])
        taps = {}
        for name, rows in rec.take().items():
            out = rows[-1]
            taps[name] = out[:, 0] if out.dim() == 3 else out
        return torch.log_softmax(logits[:, 0], dim=-1), taps

    def temperature(self) -> float:
        """The entropy temperature now: ``replay_temperature``, or where learning it has taken it."""
        return float(self.log_temperature.detach().exp())

    def _absorbing_value(self) -> float:
        """The absorbing state's discounted value (0 when ``terminal_reward`` is ``none``: an ending is worth
        nothing)."""
        if self.cfg.terminal_reward == "none":
            return 0.0
        assert self.demo_train is not None
        if self.demo_train.terminated is None:
            raise RuntimeError("terminal_reward 'absorbing' with demonstrations that do not record how episodes ended")
        reward = absorbing_reward(
            expert_terminated=self.demo_train.terminated,
            expert_steps=self.demo_train.steps,
            agent_terminated=self.buffer.ended,
            agent_steps=self.buffer.steps,
            floor=self.cfg.absorbing_floor,
        )
        return reward / (1.0 - self.cfg.gamma)

    def _discriminator_loss(self, expert_x: Tensor, agent_x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The balanced BCE plus the gradient penalty on a random mix of the two batches (all three in one pass); that
        loss, the BCE alone, and the agent's logits [N] (detached)."""
        if not bool(self.normalized):
            self.discriminator.set_normalization(torch.cat([expert_x, agent_x]))
            self.normalized.fill_(True)  # type: ignore[operator]
        n = min(expert_x.shape[0], agent_x.shape[0])
        share = torch.rand(n, 1, generator=self._draws)
        mixed = share * expert_x[:n] + (1 - share) * agent_x[:n]
        logits, grad = self.discriminator.logits_and_input_gradients(torch.cat([expert_x, agent_x, mixed]), rows=n)
        expert_l, agent_l, _ = logits.split([expert_x.shape[0], agent_x.shape[0], n])
        bce = balanced_logit_loss(expert_l, agent_l)
        penalty = (grad.norm(dim=-1) - 1).pow(2).mean()
        return bce + GRADIENT_PENALTY * penalty, bce.detach(), agent_l.detach()

    def _critic_loss(
        self, values: Tensor, sample: tuple[Tensor, ...], next_logp: Tensor, reward: Tensor, absorbing: float
    ) -> Tensor:
        """The soft Q-learning loss of the critics' values [2, N, A] at the sampled transitions (obs, actions, next_obs,
        terminated) with ``reward`` [N] and the imitator's log-probabilities at next_obs [N, A]; the critics learn the
        values in :func:`value_scale`'s units."""
        _, actions, next_obs, ended = sample
        cfg = self.cfg
        scale = value_scale(cfg.gamma)
        with torch.no_grad():
            q_next = self.targets(next_obs).min(dim=0).values
            v_next = (next_logp.exp() * (q_next - scale * self.temperature() * next_logp)).sum(-1)
            ending = torch.full_like(v_next, scale * absorbing)
            y = scale * reward + cfg.gamma * torch.where(ended, ending, v_next)
        q = values.gather(2, actions[None, :, None].expand(2, -1, 1)).squeeze(2)
        return ((q - y) ** 2).mean(dim=1).sum()

    def _move_targets(self) -> None:
        """Move the target critics ``replay_target_rate`` of the way to the critics."""
        with torch.no_grad():
            torch._foreach_lerp_(
                list(self.targets.parameters()), list(self.critics.parameters()), self.cfg.replay_target_rate
            )

    def _imitator_loss(
        self, values: Tensor, logp: Tensor, demo_logp: Tensor, demo_actions: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The soft policy loss at states where the imitator's log-probabilities are ``logp`` [N, A] and the critics'
        values ``values`` [2, N, A], plus the BC loss of ``demo_logp`` [M, A] on ``demo_actions`` [M]; both."""
        q = values.detach().min(dim=0).values / value_scale(self.cfg.gamma)
        soft = (logp.exp() * (self.temperature() * logp - q)).sum(-1).mean()
        return soft, nn.functional.nll_loss(demo_logp, demo_actions)

    def _temperature_update(self, logp: Tensor, opt: torch.optim.Optimizer) -> None:
        """One step of the learned temperature towards the target entropy, from the imitator's log-probabilities
        logp [N, A] at the sampled states (discrete SAC's temperature loss)."""
        assert self.cfg.replay_target_entropy is not None
        entropy = -(logp.exp() * logp).sum(-1).mean()
        loss = self.log_temperature * (entropy - self.cfg.replay_target_entropy)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def collect(self, it: int) -> Trajectories:
        """Iteration ``it``'s rollouts, added to the buffer."""
        cfg, hp = self.cfg, cast(Any, self.hparams)
        traj = rollout(
            self.imitator,
            hp.env_id,
            episodes=cfg.rollout_episodes,
            seed=derive_seed(cfg.seed, "replay-rollout", it),
            env_kwargs=hp.env_kwargs,
        )
        self.buffer.add(traj)
        self.env_steps += int(traj.mask.sum())
        return traj

    def update(self, opts: list[torch.optim.Optimizer], absorbing: float) -> dict[str, Tensor]:
        """One simultaneous step of the discriminator, the critics and the imitator (optimizers in that order:
        imitator, critics, discriminator, then the temperature's when it is learned) on one minibatch from the buffer
        and one from the demonstrations; its metrics.

        Each network's loss reads the others as they stand before the step, as a simultaneous game's players do, so
        one pass of each network and one backward pass serve all three (their parameters are disjoint): the imitator
        over every state the update reads (demonstrated, sampled and next), the discriminator over the demonstrated,
        sampled and mixed steps, the critics over the sampled states."""
        assert self._demo_steps is not None
        n = self.cfg.replay_batch
        demo_obs, demo_actions = self._demo_steps
        sample = self.buffer.sample(n, self._draws)
        obs, actions, next_obs, _ = sample
        pick = torch.randint(demo_obs.shape[0], (n,), generator=self._draws)
        d_obs, d_actions = demo_obs[pick], demo_actions[pick]
        logp, taps = self._pass(torch.cat([d_obs, obs, next_obs]))
        both = self.discriminator.features(
            self.view(torch.cat([d_obs, obs]), torch.cat([d_actions, actions])),
            torch.cat([d_actions, actions]),
            {name: v[: 2 * n] for name, v in taps.items()},
        )
        expert_x, agent_x = both[:n], both[n:]
        loss_d, bce, agent_logits = self._discriminator_loss(expert_x, agent_x)
        reward = agent_logits.clamp(-10, 10)
        values = self.critics(obs)
        loss_c = self._critic_loss(values, sample, logp[2 * n :].detach(), reward, absorbing)
        soft, bc = self._imitator_loss(values, logp[n : 2 * n], logp[:n], d_actions)
        for opt in opts[:3]:
            opt.zero_grad()
        (loss_d + loss_c + soft + self.cfg.bc_coef * bc).backward()
        for opt in opts[:3]:
            opt.step()
        self._move_targets()
        if len(opts) > 3:
            self._temperature_update(logp[n : 2 * n].detach(), opts[3])
        return {
            "disc/loss": bce,
            "disc/reward_mean": reward.mean(),
            "critic/loss": loss_c.detach(),
            "imitator/soft_loss": soft.detach(),
            "imitator/bc_loss": bc.detach(),
            "imitator/temperature": self.log_temperature.detach().exp(),
            "expert_x": expert_x,
            "agent_x": agent_x,
        }

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self._demo_steps is None:
            raise RuntimeError("attach_demos() before training")
        it = int(self.current_epoch * self.trainer.num_training_batches + batch_idx)
        traj = self.collect(it)
        opts = [o.optimizer for o in cast(list, self.optimizers())]
        absorbing = self._absorbing_value()
        updates = math.ceil(self.cfg.replay_ratio * int(traj.mask.sum()))
        self.imitator.train()
        metrics: dict[str, Any] = {}
        for _ in range(updates):
            metrics = self.update(opts, absorbing)
        # only the iterations the loggers write: each log call walks Lightning's whole result collection (as BCModule)
        if (it + 1) % getattr(self.trainer, "log_every_n_steps", 1):
            return
        if metrics:
            expert_x, agent_x = metrics.pop("expert_x"), metrics.pop("agent_x")
            with torch.no_grad():
                metrics["disc/acc"] = balanced_accuracy(
                    self.discriminator.logits(expert_x), self.discriminator.logits(agent_x)
                )
            self.log_dict(metrics, batch_size=1)
        self.log("env/train_return", traj.returns().mean(), batch_size=1)

    def on_train_epoch_end(self) -> None:
        self.evaluate_in_env()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint written before the temperature could be learned holds none: it resumes at
        ``replay_temperature``, the value it trained at."""
        weights = checkpoint.get("state_dict")
        if isinstance(weights, dict) and "log_temperature" not in weights:
            weights["log_temperature"] = torch.tensor(math.log(self.cfg.replay_temperature))

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        opts = [
            torch.optim.Adam(self.imitator.parameters(), lr=cfg.replay_lr, fused=True),
            torch.optim.Adam(self.critics.parameters(), lr=cfg.replay_lr, fused=True),
            torch.optim.Adam(self.discriminator.parameters(), lr=cfg.disc_lr, fused=True),
        ]
        if cfg.replay_target_entropy is not None:
            opts.append(torch.optim.Adam([self.log_temperature], lr=TEMPERATURE_LR))
        return opts
