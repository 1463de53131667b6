"""Action distributions over a policy's head outputs: categorical for ``Discrete`` spaces, Gaussian for ``Box`` ones.

A policy's head gives ``params`` per step; what they mean is the one thing that differs between the two kinds:

- categorical: ``params`` [.., n] are logits over n actions; an action is an int64 index;
- Gaussian: ``params`` [.., 2d] are a mean and a log standard deviation per action dimension (state dependent); an
  action is a float32 vector [d]. Where the ``Box`` is bounded the Gaussian is squashed, ``a = mid + half * tanh(u)``,
  so every sampled action lies inside the space and its log-density carries the squash's Jacobian.

Everything that samples, scores or compares actions (rollouts, training, the search, explanations) asks
:func:`distribution_of` for the policy's distribution and never branches on the kind itself.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor

LOG_STD_RANGE = (-5.0, 2.0)
"""A Gaussian head's log standard deviation is clamped here: narrower than e^-5 a density spikes past any useful
log-likelihood, wider than e^2 a squashed action sits at the bounds."""
_EDGE = 1e-5
"""How close to a bound a squashed action may be read back (``atanh`` of +-1 is infinite: demonstrators that saturate
an actuator act exactly at the bound)."""


class ActionDistribution(Protocol):
    """What rollouts and training need from a policy's action distribution."""

    continuous: bool
    head_width: int
    """Head outputs per step."""

    def act(self, params: Tensor, gen: torch.Generator, greedy: bool) -> tuple[Tensor, Tensor]:
        """Actions ([B] int64 or [B, d] float32) and their log-probabilities [B] from params [B, W]."""
        ...

    def log_prob(self, params: Tensor, actions: Tensor) -> Tensor:
        """[...] log-probability (or density) of ``actions`` under ``params`` [..., W]."""
        ...

    def entropy(self, params: Tensor) -> Tensor:
        """[...] the distribution's entropy (for a squashed Gaussian, the unsquashed one's)."""
        ...

    def mode(self, params: Tensor) -> Tensor:
        """The most likely action (the greedy one) of ``params`` [..., W]."""
        ...

    def kl(self, p: Tensor, q: Tensor) -> Tensor:
        """[...] KL(p || q) of two distributions' params [..., W]."""
        ...


class Categorical:
    """Logits over ``n`` discrete actions."""

    continuous = False

    def __init__(self, *, n: int) -> None:
        self.n = n
        self.head_width = n

    def act(self, params: Tensor, gen: torch.Generator, greedy: bool) -> tuple[Tensor, Tensor]:
        logp_all = torch.log_softmax(params, dim=-1)
        action = params.argmax(dim=-1) if greedy else torch.multinomial(logp_all.exp(), 1, generator=gen).squeeze(-1)
        return action, logp_all.gather(1, action[:, None]).squeeze(1)

    def log_prob(self, params: Tensor, actions: Tensor) -> Tensor:
        return torch.log_softmax(params, dim=-1).gather(-1, actions.long()[..., None]).squeeze(-1)

    def entropy(self, params: Tensor) -> Tensor:
        logp = torch.log_softmax(params, dim=-1)
        return -(logp.exp() * logp).sum(dim=-1)

    def mode(self, params: Tensor) -> Tensor:
        return params.argmax(dim=-1)

    def kl(self, p: Tensor, q: Tensor) -> Tensor:
        lp, lq = torch.log_softmax(p, dim=-1), torch.log_softmax(q, dim=-1)
        return (lp.exp() * (lp - lq)).sum(dim=-1)


class Gaussian:
    """A diagonal Gaussian over ``d`` action dimensions, squashed into ``[low, high]`` where both are given.

    Args:
        d: action dimensions.
        low, high: the ``Box``'s bounds per dimension, or None for an unbounded space.
    """

    continuous = True

    def __init__(self, *, d: int, low: tuple[float, ...] | None = None, high: tuple[float, ...] | None = None) -> None:
        self.d = d
        self.head_width = 2 * d
        self.bounded = low is not None and high is not None
        if self.bounded:
            lo, hi = torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32)
            self.mid, self.half = (hi + lo) / 2, (hi - lo) / 2

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = params[..., : self.d], params[..., self.d :]
        return mean, log_std.clamp(*LOG_STD_RANGE)

    def _squash(self, u: Tensor) -> Tensor:
        return self.mid + self.half * torch.tanh(u) if self.bounded else u

    def _log_jacobian(self, u: Tensor) -> Tensor:
        """[...] log |da/du| summed over dimensions (0 unbounded); the stable form of log(half * (1 - tanh(u)^2))."""
        if not self.bounded:
            return u.new_zeros(u.shape[:-1])
        return (torch.log(self.half) + 2 * (math.log(2) - u - torch.nn.functional.softplus(-2 * u))).sum(dim=-1)

    def _normal_logp(self, u: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
        z = (u - mean) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(dim=-1)

    def act(self, params: Tensor, gen: torch.Generator, greedy: bool) -> tuple[Tensor, Tensor]:
        mean, log_std = self._split(params)
        u = mean if greedy else mean + torch.exp(log_std) * torch.randn(mean.shape, generator=gen)
        action = self._squash(u)
        # scored as stored: a draw that float32 rounds onto a bound is read back as training and replays read it
        return action, self.log_prob(params, action) if self.bounded else self._normal_logp(u, mean, log_std)

    def log_prob(self, params: Tensor, actions: Tensor) -> Tensor:
        mean, log_std = self._split(params)
        actions = actions.to(mean.dtype)
        if self.bounded:
            u = torch.atanh(((actions - self.mid) / self.half).clamp(-1 + _EDGE, 1 - _EDGE))
        else:
            u = actions
        return self._normal_logp(u, mean, log_std) - self._log_jacobian(u)

    def entropy(self, params: Tensor) -> Tensor:
        _, log_std = self._split(params)
        return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(dim=-1)

    def mode(self, params: Tensor) -> Tensor:
        return self._squash(self._split(params)[0])

    def kl(self, p: Tensor, q: Tensor) -> Tensor:
        """The unsquashed Gaussians' KL, which is the squashed ones' too: both share the one invertible squash."""
        (mp, sp), (mq, sq) = self._split(p), self._split(q)
        return (sq - sp + 0.5 * (torch.exp(2 * (sp - sq)) + ((mp - mq) * torch.exp(-sq)).square()) - 0.5).sum(dim=-1)


def plain(action: Any) -> int | list[float]:
    """One step's action as reports and replays write it: an int (discrete), or a list of floats rounded to 4 decimals
    (a ``Box`` action [d])."""
    values = action.tolist() if hasattr(action, "tolist") else action
    if isinstance(values, list):
        return [round(float(v), 4) for v in values]
    return int(values)


def distribution_of(config: Any) -> ActionDistribution:
    """The action distribution of a policy's config (``n_actions``, ``continuous``, ``action_low``/``action_high``)."""
    if getattr(config, "continuous", False):
        return Gaussian(d=config.n_actions, low=config.action_low, high=config.action_high)
    return Categorical(n=config.n_actions)
