"""Behavioural cloning as a LightningModule, and the periodic evaluation in the env both training modes share."""

from __future__ import annotations

import math
import time
from typing import Any, cast

import lightning as L
import torch
from torch import Tensor

from audit.data.rollout import Trajectories, rollout
from audit.data.seeds import derive_seed
from audit.training.config import TrainConfig
from models.actions import distribution_of
from models.imitator import Imitator, ImitatorConfig
from models.registry import build


def bc_loss(imitator: Imitator, obs: Tensor, actions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The mean negative log-likelihood of the demonstrator's actions, and how often the imitator's most likely action
    is the demonstrator's, over the real steps of padded episodes obs [B, T, D], actions [B, T] (or [B, T, d] in a
    ``Box`` env), mask [B, T].

    In a ``Box`` env "the same action" is one within a twentieth of the space's width in every dimension (0.1 where the
    space is unbounded): a figure to watch, not a guarantee.
    """
    params = imitator.sequence(obs, mask)[mask]
    dist = distribution_of(imitator.config)
    nll = -dist.log_prob(params, actions[mask]).mean()
    mode, taken = dist.mode(params), actions[mask]
    if dist.continuous:
        c = imitator.config
        width = 0.1 if c.action_low is None else torch.tensor(c.action_high) - torch.tensor(c.action_low)
        acc = (mode - taken).abs() <= width / 20 if c.action_low is not None else (mode - taken).abs() <= width
        return nll, acc.all(dim=-1).float().mean()
    return nll, (mode == taken).float().mean()


class ImitationModule(L.LightningModule):
    """What both training modes share: the whole TrainConfig as hyper-parameters, the imitator, evaluation in the env.

    Args:
        train_cfg: the :class:`TrainConfig` as a dict (``TrainConfig.to_dict``).
        imitator_config: ``ImitatorConfig`` as a dict.
        env_id, env_kwargs: the demonstrations' env.
        demo_return: the demonstrations' mean return, for ``env/return_ratio``.
        query_preset: the planner preset the adversarial phase asks on its rollouts ('' for none; ``query_demonstrator``
            resolved).
    """

    def __init__(
        self,
        *,
        train_cfg: dict,
        imitator_config: dict,
        env_id: str,
        env_kwargs: dict,
        demo_return: float = 0.0,
        query_preset: str = "",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = TrainConfig.from_dict(dict(train_cfg))
        self.imitator = build(self.cfg.arch, ImitatorConfig.from_dict(dict(imitator_config)))
        self.last_eval: dict[str, float] = {}
        self.reached_target = False
        self.env_steps = 0
        self.eval_seconds = 0.0
        """Wall-clock spent in :meth:`evaluate_in_env`, so a benchmark can time training alone."""

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """The batch as it is on the CPU, where the trainer always runs (``accelerator="cpu"``, run.py) and the batch
        already is: Lightning's generic move would walk every field of it (deep-copying each dataclass) at every
        step for nothing."""
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def evaluate_in_env(self) -> Trajectories:
        """Roll the imitator out, log ``env/`` metrics, stop the run if ``target_return`` is reached."""
        start = time.perf_counter()
        try:
            return self._evaluate()
        finally:
            self.eval_seconds += time.perf_counter() - start

    def _evaluate(self) -> Trajectories:
        cfg, hp = self.cfg, cast(Any, self.hparams)  # Lightning's AttributeDict: the keys saved by save_hyperparameters
        traj = rollout(
            self.imitator,
            hp.env_id,
            episodes=cfg.eval_episodes,
            seed=derive_seed(cfg.seed, "evaluation", self.current_epoch),
            env_kwargs=hp.env_kwargs,
            taps=cfg.disc_taps,
            greedy=cfg.eval_greedy,
        )
        ret = float(traj.returns().mean())
        metrics = {"env/return": ret, "env/length": float(traj.lengths().float().mean())}
        if hp.demo_return > 0:  # a ratio of negative returns (Pendulum's) reads upside down: none is logged there
            metrics["env/return_ratio"] = ret / hp.demo_return
        departed = traj.departed()
        if departed is not None:
            metrics["env/departure_rate"] = float(departed.float().mean())
        self.log_dict(metrics, on_step=False, on_epoch=True)
        self.last_eval = metrics
        if cfg.target_return is not None and ret >= cfg.target_return:
            self.reached_target = True
            self.trainer.should_stop = True
        return traj


class BCModule(ImitationModule):
    """Behavioural cloning of whole demonstration episodes (the sequence form, so recurrent imitators learn from
    histories)."""

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        obs, actions, mask = batch
        loss, acc = bc_loss(self.imitator, obs, actions, mask)
        # only the steps the loggers write: each log call walks Lightning's whole result collection, which cost
        # several times the step itself for a small imitator
        if (self.global_step + 1) % getattr(self.trainer, "log_every_n_steps", 1) == 0:
            lr = float(self.optimizers().param_groups[0]["lr"])  # type: ignore[union-attr]
            self.log_dict({"imitator/bc_loss": loss, "imitator/bc_acc": acc}, batch_size=obs.shape[0])
            self.log("imitator/lr", lr, batch_size=obs.shape[0])
        return loss

    def on_train_epoch_end(self) -> None:
        self.evaluate_in_env()

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.imitator.parameters(), lr=self.cfg.lr)
        if self.cfg.lr_schedule == "constant":
            return opt
        total = max(self.cfg.bc_steps, 1)
        decay = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": decay, "interval": "step"}}
