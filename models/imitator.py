"""Imitator policies: MLP, GRU and a small causal Transformer behind one interface, with named activation taps.

Every imitator maps observations to action logits in two forms:

- stepping: ``forward(obs [B, D], state) -> (logits [B, A], state)``, used in rollouts;
- sequences: ``sequence(obs [B, T, D]) -> logits [B, T, A]``, whole episodes from their
  first step (causal: step t sees steps 0..t only), used for training and teacher forcing.

Both forms give identical logits and identical activations for identical histories. The
layers whose outputs a discriminator reads are the *taps*:

- ``encoder``: the per-step observation embedding, [.., hidden];
- ``core``: the features the policy acts on (MLP body, GRU hidden state, attention output), [.., hidden];
- ``head``: the action logits, [.., n_actions].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclass(frozen=True, kw_only=True)
class ImitatorConfig:
    """Everything needed to rebuild an imitator (stored in its checkpoint)."""

    obs_dim: int
    """Length of the flat observation."""
    n_actions: int
    """Number of discrete actions."""
    hidden: int = 64
    """Width of every hidden layer (and of the ``encoder`` and ``core`` taps)."""
    layers: int = 1
    """Transformer blocks (ignored by MLP and GRU)."""
    heads: int = 2
    """Attention heads (Transformer only); must divide ``hidden``."""
    max_len: int = 512
    """Longest episode a Transformer can attend over."""

    def __post_init__(self) -> None:
        for name in ("obs_dim", "n_actions", "hidden", "layers", "heads", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_actions < 2:
            raise ValueError(f"n_actions must be >= 2, got {self.n_actions}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImitatorConfig":
        if not isinstance(data, dict):
            raise ValueError(f"config must be a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config has unknown field(s) {', '.join(unknown)}")
        missing = sorted({"obs_dim", "n_actions"} - set(data))
        if missing:
            raise ValueError(f"config lacks {', '.join(missing)}")
        return cls(**data)


class Imitator(nn.Module):
    """Base class: subclasses set ``arch`` and build ``encoder``, ``core`` and ``head``.

    Args:
        config: the architecture's sizes.
    """

    arch: ClassVar[str] = ""
    recurrent: ClassVar[bool] = False
    tap_names: ClassVar[tuple[str, ...]] = ("encoder", "core", "head")

    def __init__(self, *, config: ImitatorConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.Sequential(nn.Linear(config.obs_dim, config.hidden), nn.ReLU())
        self.core = nn.Identity()
        self.head = nn.Linear(config.hidden, config.n_actions)

    @property
    def taps(self) -> dict[str, nn.Module]:
        """Tap name -> module whose output is the activation read."""
        return {name: getattr(self, name) for name in self.tap_names}

    def tap_sizes(self) -> dict[str, int]:
        """Tap name -> features per step."""
        c = self.config
        return {"encoder": c.hidden, "core": c.hidden, "head": c.n_actions}

    def initial_state(self, batch: int) -> Tensor | None:
        """State before the first step (None for memoryless policies)."""
        return None

    def _check_obs(self, obs: Tensor, dims: int) -> None:
        if obs.dim() != dims or obs.shape[-1] != self.config.obs_dim:
            want = "[B, D]" if dims == 2 else "[B, T, D]"
            raise ValueError(f"{self.arch}: obs must be {want} with D={self.config.obs_dim}, got {tuple(obs.shape)}")

    def forward(self, obs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def sequence(self, obs: Tensor) -> Tensor:
        raise NotImplementedError


class MLPImitator(Imitator):
    """A memoryless two-layer MLP: acts on the current observation only."""

    arch = "mlp"

    def __init__(self, *, config: ImitatorConfig) -> None:
        super().__init__(config=config)
        self.body = nn.Sequential(nn.Linear(config.hidden, config.hidden), nn.ReLU())

    def forward(self, obs: Tensor, state: Tensor | None = None) -> tuple[Tensor, None]:
        self._check_obs(obs, 2)
        return self.head(self.core(self.body(self.encoder(obs)))), None

    def sequence(self, obs: Tensor) -> Tensor:
        self._check_obs(obs, 3)
        return self.head(self.core(self.body(self.encoder(obs))))


class GRUImitator(Imitator):
    """A GRU policy; its hidden state (the ``core`` tap) carries the episode so far."""

    arch = "gru"
    recurrent = True

    def __init__(self, *, config: ImitatorConfig) -> None:
        super().__init__(config=config)
        self.gru = nn.GRU(config.hidden, config.hidden, batch_first=True)

    def initial_state(self, batch: int) -> Tensor:
        return torch.zeros(1, batch, self.config.hidden, device=self.head.weight.device)

    def forward(self, obs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_obs(obs, 2)
        if state is None:
            state = self.initial_state(obs.shape[0])
        out, state = self.gru(self.encoder(obs)[:, None, :], state)
        return self.head(self.core(out[:, 0])), state

    def sequence(self, obs: Tensor) -> Tensor:
        self._check_obs(obs, 3)
        out, _ = self.gru(self.encoder(obs), self.initial_state(obs.shape[0]))
        return self.head(self.core(out))


class TransformerImitator(Imitator):
    """A small causal Transformer over the episode so far (pre-norm blocks, learned positions).

    Its stepping state is the stack of encoder outputs so far, [B, t, hidden]; each step
    attends over all of it, so stepping and the sequence form agree exactly.
    """

    arch = "transformer"
    recurrent = True

    def __init__(self, *, config: ImitatorConfig) -> None:
        super().__init__(config=config)
        self.position = nn.Embedding(config.max_len, config.hidden)
        block = nn.TransformerEncoderLayer(
            config.hidden, config.heads, dim_feedforward=2 * config.hidden, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.hidden)

    def initial_state(self, batch: int) -> Tensor:
        return torch.zeros(batch, 0, self.config.hidden, device=self.head.weight.device)

    def _attend(self, embedded: Tensor) -> Tensor:
        t = embedded.shape[1]
        if t > self.config.max_len:
            raise ValueError(f"transformer: episode of {t} steps exceeds max_len={self.config.max_len}")
        x = embedded + self.position(torch.arange(t, device=embedded.device))[None]
        causal = torch.triu(torch.full((t, t), -math.inf, device=embedded.device), diagonal=1)
        return self.norm(self.blocks(x, mask=causal))

    def forward(self, obs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_obs(obs, 2)
        if state is None:
            state = self.initial_state(obs.shape[0])
        state = torch.cat([state, self.encoder(obs)[:, None, :]], dim=1)
        return self.head(self.core(self._attend(state)[:, -1])), state

    def sequence(self, obs: Tensor) -> Tensor:
        self._check_obs(obs, 3)
        return self.head(self.core(self._attend(self.encoder(obs))))
