"""Discriminators over (observation, action, imitator activations), logits_expert_is_high, and their one fitting loop
(shared with the regressor of the same shape the forecast detector fits).

The input of one step is the observation, the action one-hot, and the imitator's
activations at the chosen taps, concatenated in that order; :meth:`Discriminator.features`
builds it and :meth:`Discriminator.score` reads it, so attribution methods can work on
the flat input. With no taps it is the behaviour-only discriminator GAIL uses.
Spectral normalisation on every linear layer keeps it Lipschitz, for stable adversarial training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass(frozen=True, kw_only=True)
class DiscriminatorConfig:
    """Sizes of a discriminator's input and body."""

    obs_dim: int
    """Length of the flat observation."""
    n_actions: int
    """Number of discrete actions (one-hot input), or with ``continuous`` the action vector's dimensions."""
    taps: dict[str, int] = field(default_factory=dict)
    """Tap name -> features read per step, in input order; empty for behaviour only."""
    hidden: int = 128
    """Width of the two hidden layers."""
    spectral: bool = True
    """Spectral normalisation on every layer."""
    continuous: bool = False
    """``Box`` actions: the action vector is read as it is, not one-hot."""

    def __post_init__(self) -> None:
        if self.obs_dim < 1 or self.n_actions < (1 if self.continuous else 2) or self.hidden < 1:
            raise ValueError(
                f"bad discriminator sizes: obs_dim={self.obs_dim}, n_actions={self.n_actions}, hidden={self.hidden}"
            )

    @property
    def input_dim(self) -> int:
        return self.obs_dim + self.n_actions + sum(self.taps.values())

    def segments(self) -> list[tuple[str, int, int]]:
        """(name, start, stop) of each input block: ``obs``, ``action``, then ``tap:<name>``."""
        out, at = [], 0
        for name, size in [
            ("obs", self.obs_dim),
            ("action", self.n_actions),
            *[(f"tap:{k}", v) for k, v in self.taps.items()],
        ]:
            out.append((name, at, at + size))
            at += size
        return out


def discriminator_input(
    config: DiscriminatorConfig, obs: Tensor, actions: Tensor, activations: dict[str, Tensor] | None = None
) -> Tensor:
    """Flat input [..., input_dim] from obs [..., D], actions [...] int64 (or [..., d] float with ``continuous``) and
    activations {tap: [..., F]}."""
    activations = activations or {}
    if obs.shape[-1] != config.obs_dim:
        raise ValueError(f"obs must be [..., {config.obs_dim}], got {tuple(obs.shape)}")
    want = (*obs.shape[:-1], config.n_actions) if config.continuous else obs.shape[:-1]
    if actions.shape != want:
        raise ValueError(f"actions must be {tuple(want)}, got {tuple(actions.shape)}")
    if config.continuous:
        parts = [obs, actions.to(obs.dtype)]
    else:
        parts = [obs, nn.functional.one_hot(actions.long(), config.n_actions).to(obs.dtype)]
    for name, size in config.taps.items():
        if name not in activations:
            raise ValueError(f"missing activations for tap {name!r}")
        act = activations[name]
        if act.shape != (*obs.shape[:-1], size):
            raise ValueError(f"tap {name!r} activations must be {(*obs.shape[:-1], size)}, got {tuple(act.shape)}")
        parts.append(act.to(obs.dtype))
    return torch.cat(parts, dim=-1)


def real_steps_input(
    config: DiscriminatorConfig,
    view: Callable[[Tensor, Tensor], Tensor],
    obs: Tensor,
    actions: Tensor,
    mask: Tensor,
    activations: dict[str, Tensor],
) -> Tensor:
    """Inputs [N, input_dim] of the N real steps (``mask`` [E, T]) of padded episodes, episode-major; padding is never
    built. ``view`` maps (obs [N, D], actions [N]) to the step features the discriminator reads (the env's step view).
    """
    steps_obs, steps_actions = obs[mask], actions[mask]
    taps = {name: activations[name][mask] for name in config.taps if name in activations}
    return discriminator_input(config, view(steps_obs, steps_actions), steps_actions, taps)


class Discriminator(nn.Module):
    """An MLP scoring one step: high logit = looks like the demonstrator.

    Args:
        config: input and body sizes.
    """

    def __init__(self, *, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        wrap = spectral_norm if config.spectral else (lambda m: m)
        h = config.hidden
        # Input standardisation (identity until set): features on wildly different scales,
        # such as one-hot planes beside raw logits, otherwise starve the small ones.
        self.register_buffer("in_mean", torch.zeros(config.input_dim))
        self.register_buffer("in_scale", torch.ones(config.input_dim))
        self.net = nn.Sequential(
            wrap(nn.Linear(config.input_dim, h)),
            nn.LeakyReLU(0.2),
            wrap(nn.Linear(h, h)),
            nn.LeakyReLU(0.2),
            wrap(nn.Linear(h, 1)),
        )

    def features(self, obs: Tensor, actions: Tensor, activations: dict[str, Tensor] | None = None) -> Tensor:
        """Flat input [N, input_dim] from obs [N, D], actions [N] int64 and activations {tap: [N, F]}."""
        return discriminator_input(self.config, obs, actions, activations)

    def set_normalization(self, features: Tensor, floor: float = 0.25) -> None:
        """Standardise inputs with the mean and spread of ``features`` [N, input_dim].

        The spread is floored: a one-hot cell that is almost never set would otherwise turn
        one unseen layout into an enormous input, and an enormous, meaningless log-odds.
        """
        self.in_mean.copy_(features.mean(dim=0))  # type: ignore[operator]
        self.in_scale.copy_(features.std(dim=0).clamp(min=floor))  # type: ignore[operator]

    def logits(self, features: Tensor) -> Tensor:
        """Logits [N] of flat inputs [N, input_dim] (logits_expert_is_high)."""
        return self.net((features - self.in_mean) / self.in_scale).squeeze(-1)  # type: ignore[operator]

    def logits_and_input_gradients(self, features: Tensor, *, rows: int) -> tuple[Tensor, Tensor]:
        """Logits [N] of flat inputs features [N, input_dim], and the gradients [rows, input_dim] of the last ``rows``
        logits each with respect to its own input, as functions of the parameters that can be differentiated again
        (a gradient penalty's).

        The same values as ``torch.autograd.grad`` with ``create_graph=True``, written out for this two-layer body: a
        leaky ReLU's slope is a constant where it is differentiated, so the gradient is a product of the weights and
        the slopes, and penalising it needs one backward pass instead of a backward through a backward, and only over
        the rows it is taken at.

        Raises:
            ValueError: ``rows`` is not in [0, N].
        """
        if not 0 <= rows <= features.shape[0]:
            raise ValueError(f"rows must be in [0, {features.shape[0]}], got {rows}")
        layers = cast(tuple[nn.Linear, nn.LeakyReLU, nn.Linear, nn.LeakyReLU, nn.Linear], tuple(self.net))
        first, act1, second, act2, last = layers
        w1, w2, w3 = first.weight, second.weight, last.weight  # one read each: a spectral norm iterates per read
        z1 = nn.functional.linear((features - self.in_mean) / self.in_scale, w1, first.bias)  # type: ignore[operator]
        z2 = nn.functional.linear(act1(z1), w2, second.bias)
        logits = nn.functional.linear(act2(z2), w3, last.bias).squeeze(-1)
        tail = features.shape[0] - rows
        d2 = torch.where(z2[tail:] > 0, 1.0, act2.negative_slope) * w3
        d1 = torch.where(z1[tail:] > 0, 1.0, act1.negative_slope) * (d2 @ w2)
        return logits, (d1 @ w1) / self.in_scale  # type: ignore[operator]

    def forward(self, obs: Tensor, actions: Tensor, activations: dict[str, Tensor] | None = None) -> Tensor:
        return self.logits(self.features(obs, actions, activations))


# ----- the one fitting loop ---------------------------------------------------------------


def balanced_loss(disc: Discriminator, expert: Tensor, imitator: Tensor) -> Tensor:
    """BCE with each class weighted equally: expert [N1, F] labelled 1, imitator [N0, F] labelled 0."""
    return balanced_logit_loss(disc.logits(expert), disc.logits(imitator))


def balanced_logit_loss(expert: Tensor, imitator: Tensor) -> Tensor:
    """:func:`balanced_loss` of logits already computed: expert [N1] labelled 1, imitator [N0] labelled 0."""
    return 0.5 * (nn.functional.softplus(-expert).mean() + nn.functional.softplus(imitator).mean())


def balanced_accuracy(expert_logits: Tensor, imitator_logits: Tensor) -> float:
    """Mean of the per-class accuracies of logits (expert above 0, imitator below): 0.5 = indistinguishable."""
    return float(0.5 * ((expert_logits > 0).float().mean() + (imitator_logits < 0).float().mean()))


def fit_discriminator(
    config: DiscriminatorConfig,
    expert: Tensor,
    imitator: Tensor,
    *,
    steps: int,
    seed: int,
    batch: int = 2048,
    lr: float = 2e-3,
    weight_decay: float = 1e-2,
    on_step: Callable[[int], None] | None = None,
) -> Discriminator:
    """A fresh discriminator trained on expert [N1, F] (label 1) against imitator [N0, F] (label 0).

    Each minibatch draws ``batch / 2`` steps from each class, so the rare departing steps of
    an imitator are not drowned by the demonstrator's majority. Weight decay: a fresh
    discriminator that memorises its demonstrator episodes calls every unseen demonstrator
    state imitator-like, which inflates the calibration scores.

    ``on_step`` is called with the number of updates done after every 20th: a caller's progress
    report and the place a long fit is stopped (an exception raised there ends the fit).

    Raises:
        ValueError: an empty class, or features that do not match ``config``.
    """
    if len(expert) == 0 or len(imitator) == 0:
        raise ValueError(
            f"a discriminator needs steps of both classes, got {len(expert)} expert and {len(imitator)} imitator"
        )
    if expert.shape[-1] != config.input_dim or imitator.shape[-1] != config.input_dim:
        raise ValueError(
            f"features must be [N, {config.input_dim}], got {tuple(expert.shape)} and {tuple(imitator.shape)}"
        )
    torch.manual_seed(seed)
    disc = Discriminator(config=config)
    disc.set_normalization(torch.cat([expert, imitator]))
    gen = torch.Generator().manual_seed(seed)
    half = batch // 2

    def loss() -> Tensor:
        e = expert[torch.randint(len(expert), (min(half, len(expert)),), generator=gen)]
        i = imitator[torch.randint(len(imitator), (min(half, len(imitator)),), generator=gen)]
        return balanced_loss(disc, e, i)

    return _descend(disc, loss, steps=steps, lr=lr, weight_decay=weight_decay, on_step=on_step)


def fit_regressor(
    config: DiscriminatorConfig,
    groups: list[tuple[Tensor, Tensor]],
    *,
    steps: int,
    seed: int,
    batch: int = 2048,
    lr: float = 2e-3,
    weight_decay: float = 1e-2,
    on_step: Callable[[int], None] | None = None,
) -> Discriminator:
    """A fresh network of the discriminator's shape trained to predict a value per step (squared error).

    Args:
        groups: (inputs [N_g, F], targets [N_g]) per group (the demonstrator's steps, the imitator's); each
            minibatch draws equally from every group, as :func:`fit_discriminator` draws from its two classes.

    Returns:
        The network; its :meth:`Discriminator.logits` are the predictions in standard units of the pooled targets.

    Raises:
        ValueError: an empty group, or inputs that do not match ``config``.
    """
    if not groups or any(len(x) == 0 or len(x) != len(y) for x, y in groups):
        raise ValueError("a regressor needs non-empty groups of inputs and as many targets")
    if any(x.shape[-1] != config.input_dim for x, _ in groups):
        raise ValueError(f"inputs must be [N, {config.input_dim}]")
    torch.manual_seed(seed)
    net = Discriminator(config=config)
    net.set_normalization(torch.cat([x for x, _ in groups]))
    pooled = torch.cat([y for _, y in groups])
    centre, spread = pooled.mean(), pooled.std().clamp(min=1e-6)
    gen = torch.Generator().manual_seed(seed)
    share = max(1, batch // len(groups))

    def loss() -> Tensor:
        total = torch.zeros(())
        for x, y in groups:
            pick = torch.randint(len(x), (min(share, len(x)),), generator=gen)
            total = total + nn.functional.mse_loss(net.logits(x[pick]), (y[pick] - centre) / spread)
        return total / len(groups)

    return _descend(net, loss, steps=steps, lr=lr, weight_decay=weight_decay, on_step=on_step)


def _descend(
    net: Discriminator,
    loss: Callable[[], Tensor],
    *,
    steps: int,
    lr: float,
    weight_decay: float,
    on_step: Callable[[int], None] | None,
) -> Discriminator:
    """``steps`` AdamW updates of ``net`` on a fresh minibatch ``loss()`` each; ``on_step`` after every 20th."""
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    for step in range(steps):
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
        if on_step is not None and (step + 1) % 20 == 0:
            on_step(step + 1)
    net.eval()
    return net
