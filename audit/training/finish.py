"""The finishing phase: DAgger alone after the adversarial iterations (``query_finish``).

An adversarially trained imitator ends where its last policy-gradient step left it: near its demonstrator, but with
the step's noise in its weights (how near varies with the training seed). Each finishing iteration rolls the imitator
out, asks the planner for its policy at every state it reached (:func:`audit.training.queries.queried_rollout`), keeps
the iteration in the aggregated set (:class:`audit.training.queries.QueriedMemory`), and fits the imitator to the
labels by cross-entropy alone: no discriminator reward and no entropy bonus, whose gradients do not vanish at the
planner's policy. The learning rate (``finish_lr``) decays by cosine to zero over the phase, so the last steps are
small.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch

from audit.data.seeds import derive_seed
from audit.training.bc import ImitationModule
from audit.training.queries import QueriedMemory, queried_rollout, query_loss

UPDATES = 4
"""Imitator updates per finishing iteration: one on the iteration's own rollouts, the others on kept iterations drawn
at random."""


class FinishModule(ImitationModule):
    """Query-only fitting of an imitator to its planner on its own states (see the module docstring).

    Takes :class:`audit.training.bc.ImitationModule`'s arguments; ``query_preset`` must name a planner.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not kwargs.get("query_preset"):
            raise ValueError("the finishing phase needs a planner to ask (query_demonstrator)")
        self.automatic_optimization = False
        self.queried = QueriedMemory(size=self.cfg.query_memory, seed=derive_seed(self.cfg.seed, "finish-memory"))

    def _rate(self, it: int) -> float:
        """The learning rate of iteration ``it``: ``finish_lr`` decayed by cosine to zero at ``query_finish``."""
        return (
            self.cfg.finish_lr * 0.5 * (1 + math.cos(math.pi * min(it, self.cfg.query_finish) / self.cfg.query_finish))
        )

    def training_step(self, batch: Any, batch_idx: int) -> None:
        cfg, hp = self.cfg, cast(Any, self.hparams)
        it = int(self.current_epoch * self.trainer.num_training_batches + batch_idx)
        self.imitator.eval()  # rollouts as the audit runs them
        traj, labels = queried_rollout(
            self.imitator,
            hp.env_id,
            preset=hp.query_preset,
            episodes=cfg.rollout_episodes,
            seed=derive_seed(cfg.seed, "finish-rollout", it),
            env_kwargs=hp.env_kwargs,
        )
        self.env_steps += int(traj.mask.sum())
        self.imitator.train()
        opt = cast(torch.optim.Optimizer, self.optimizers())
        for group in opt.param_groups:
            group["lr"] = self._rate(it)
        own = query_loss(torch.log_softmax(self.imitator.sequence(traj.obs, traj.mask), -1), labels, traj.mask)
        self.queried.add(traj.obs, labels, traj.mask)
        for update in range(UPDATES):
            loss = own if update == 0 else self.queried.loss(self.imitator)
            if loss is None:  # query_memory 0 keeps nothing: the iteration's own rollouts only
                break
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        self.log_dict(
            {"imitator/finish_query_loss": own.detach(), "imitator/lr": self._rate(it)}, prog_bar=False, batch_size=1
        )

    def on_train_epoch_end(self) -> None:
        self.evaluate_in_env()

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.imitator.parameters(), lr=self.cfg.finish_lr)
