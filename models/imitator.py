"""Imitator policies: MLP, GRU and a small causal Transformer behind one interface, with named activation taps.

Every imitator maps observations to its action head's outputs (logits over discrete actions, or a Gaussian's mean and
log standard deviation per dimension of a ``Box`` action: :mod:`models.actions`) in two forms:

- stepping: ``forward(obs [B, D], state) -> (logits [B, A], state)``, used in rollouts;
- sequences: ``sequence(obs [B, T, D]) -> logits [B, T, A]``, whole episodes from their
  first step (causal: step t sees steps 0..t only), used for training and teacher forcing.

Both forms give identical logits and identical activations for identical histories. The
layers whose outputs a discriminator reads are the *taps*:

- ``encoder``: the per-step observation embedding, [.., hidden];
- ``core``: the features the policy acts on (MLP body, GRU hidden state, attention output), [.., hidden];
- ``head``: the head's outputs, [.., n_actions] (discrete) or [.., 2 * n_actions] (continuous).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

LIMITS = {
    "obs_dim": 2**24,
    "n_actions": 2**16,
    "hidden": 2**16,
    "layers": 64,
    "heads": 256,
    "max_len": 2**20,
    "plan_iterations": 64,
}
"""Ceilings of an imitator's sizes: far above any real policy, low enough that no size is a memory bomb by itself."""


@dataclass(frozen=True, kw_only=True)
class ImitatorConfig:
    """Everything needed to rebuild an imitator (stored in its checkpoint)."""

    obs_dim: int
    """Length of the flat observation."""
    n_actions: int
    """Number of discrete actions, or with ``continuous`` the ``Box`` action's dimensions."""
    hidden: int = 64
    """Width of every hidden layer (and of the ``encoder`` and ``core`` taps)."""
    layers: int = 1
    """Transformer blocks (ignored by MLP and GRU)."""
    heads: int = 2
    """Attention heads (Transformer only); must divide ``hidden``."""
    max_len: int = 512
    """Longest episode a Transformer can attend over."""
    grid: tuple[int, int, int] | None = None
    """(channels, height, width) when the observation starts with that many one-hot grid
    planes (the built-in envs): the encoder is then convolutional over them."""
    agent_plane: int | None = None
    """With ``grid``: the plane that marks the agent's cell. The encoder then also reads the
    convolution's features *at the agent* (the same weights wherever it stands), so "the
    button is next to me" is one learned feature rather than 81 position-specific ones."""
    plan_iterations: int = 0
    """With ``agent_plane``: steps of a value-iteration layer over the grid (:class:`ValueIteration`: learned rewards,
    passability and discount, the grid's moves), read at the agent's cell. A shortest way round a forbidden tile is
    many cells long, beyond what two 3x3 convolutions see; 0 for none."""
    continuous: bool = False
    """A ``Box`` action space: the head gives a Gaussian's mean and log standard deviation per dimension
    (:mod:`models.actions`)."""
    action_low: tuple[float, ...] | None = None
    """With ``continuous``: the ``Box``'s lower bounds (None with ``action_high`` for an unbounded space: no
    squashing)."""
    action_high: tuple[float, ...] | None = None
    """With ``continuous``: the ``Box``'s upper bounds."""

    def __post_init__(self) -> None:
        for name in ("obs_dim", "n_actions", "hidden", "layers", "heads", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            if value > LIMITS[name]:
                raise ValueError(f"{name} must be at most {LIMITS[name]}, got {value}")
        if self.grid is not None:
            grid = tuple(self.grid)
            if len(grid) != 3 or not all(isinstance(g, int) and g > 0 for g in grid):
                raise ValueError(f"grid must be (channels, height, width) of positive integers, got {self.grid!r}")
            if grid[0] * grid[1] * grid[2] > self.obs_dim:
                raise ValueError(f"grid {grid} holds more than obs_dim={self.obs_dim} features")
            object.__setattr__(self, "grid", grid)
        if self.agent_plane is not None:
            plane = self.agent_plane
            if (
                self.grid is None
                or not isinstance(plane, int)
                or isinstance(plane, bool)
                or not 0 <= plane < self.grid[0]
            ):
                raise ValueError(
                    f"agent_plane must index one of the grid's planes, got {plane!r} with grid {self.grid!r}"
                )
        self._check_planning()
        if not isinstance(self.continuous, bool):
            raise ValueError(f"continuous must be true or false, got {self.continuous!r}")
        if not self.continuous and self.n_actions < 2:
            raise ValueError(f"n_actions must be >= 2, got {self.n_actions}")
        self._check_bounds()
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")

    def _check_planning(self) -> None:
        """``plan_iterations``: a bounded count, and only where the agent's cell is known."""
        value = self.plan_iterations
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= LIMITS["plan_iterations"]:
            raise ValueError(f"plan_iterations must be an integer from 0 to {LIMITS['plan_iterations']}, got {value!r}")
        if value and self.agent_plane is None:
            raise ValueError("plan_iterations needs agent_plane (the value map is read at the agent's cell)")

    def _check_bounds(self) -> None:
        """``action_low``, ``action_high``: both absent, or (continuous only) finite, one per dimension, low < high."""
        low, high = self.action_low, self.action_high
        if low is None and high is None:
            return
        if not self.continuous:
            raise ValueError("action_low and action_high are for continuous actions only")
        bounds = []
        for name, value in (("action_low", low), ("action_high", high)):
            if not isinstance(value, (list, tuple)) or len(value) != self.n_actions:
                raise ValueError(f"{name} must list one bound per action dimension ({self.n_actions})")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
                raise ValueError(f"{name} must hold finite numbers (an unbounded space has neither bound)")
            bounds.append(tuple(float(v) for v in value))
        if not all(lo < hi for lo, hi in zip(*bounds, strict=True)):
            raise ValueError("action_low must be below action_high in every dimension")
        object.__setattr__(self, "action_low", bounds[0])
        object.__setattr__(self, "action_high", bounds[1])

    @property
    def head_width(self) -> int:
        """Head outputs per step: one logit per action, or a mean and a log standard deviation per dimension."""
        return 2 * self.n_actions if self.continuous else self.n_actions

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["grid"] = list(self.grid) if self.grid is not None else None
        for key in ("action_low", "action_high"):
            out[key] = list(out[key]) if out[key] is not None else None
        return out

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


class GridEncoder(nn.Module):
    """Two 3x3 convolutions over the leading one-hot planes, then a linear layer with the scalars
    (and, with ``agent_plane``, the convolution's features at the agent's cell).

    Input [..., obs_dim]; output [..., hidden] (any leading dims).
    """

    def __init__(self, *, config: ImitatorConfig, channels: int = 32) -> None:
        super().__init__()
        c, h, w = config.grid  # type: ignore[misc]
        self.grid = (c, h, w)
        self.n_grid = c * h * w
        self.agent_plane = config.agent_plane
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()
        )
        centred = channels if self.agent_plane is not None else 0
        self.plan = ValueIteration(planes=c, scalars=config.obs_dim - self.n_grid, iterations=config.plan_iterations)
        planned = self.plan.features if config.plan_iterations else 0
        self.proj = nn.Linear(channels * h * w + centred + planned + config.obs_dim - self.n_grid, config.hidden)
        self.act = nn.ReLU()

    def forward(self, obs: Tensor) -> Tensor:
        lead = obs.shape[:-1]
        flat = obs.reshape(-1, obs.shape[-1])
        grid = flat[:, : self.n_grid].reshape(-1, *self.grid)
        maps = self.conv(grid)
        parts = [maps.flatten(1)]
        if self.agent_plane is not None:
            agent = grid[:, self.agent_plane : self.agent_plane + 1]
            parts.append((maps * agent).sum(dim=(2, 3)))
            if self.plan.iterations:
                parts.append((self._planned(grid, flat[:, self.n_grid :]) * agent).sum(dim=(2, 3)))
        out = self.act(self.proj(torch.cat([*parts, flat[:, self.n_grid :]], dim=1)))
        return out.reshape(*lead, -1)

    def _planned(self, grid: Tensor, scalars: Tensor) -> Tensor:
        """The planning layer's maps [N, F, H, W] for grid [N, C, H, W] and scalars [N, S].

        The agent's plane is masked out of the planner's input, so the steps of one episode share the maps of its
        layout until a tile or flag changes; each distinct layout is planned once (the same numbers, far less work).
        An ONNX export plans every row.
        """
        keep = torch.ones(grid.shape[1], dtype=grid.dtype, device=grid.device)
        keep[self.agent_plane] = 0.0
        layout = grid * keep[None, :, None, None]
        if torch.onnx.is_in_onnx_export():
            return self.plan(layout, scalars)
        key = torch.cat([layout.flatten(1), scalars], dim=1)
        distinct, where = torch.unique(key, dim=0, return_inverse=True)
        c, h, w = self.grid
        return self.plan(distinct[:, : c * h * w].reshape(-1, c, h, w), distinct[:, c * h * w :])[where]


class ValueIteration(nn.Module):
    """Value iteration over one-hot grid planes with learned rewards: a planning layer for imitators of grid planners.

    Each of ``maps`` value maps has its own learned reward and passability per cell (a weight per plane, shifted by
    the scalar features: a flag that makes a tile safe changes both) and its own discount. A move into an impassable
    cell (or off the grid) leaves the agent where it is, as the built-in envs' bumps do. ``iterations`` times, for every
    cell: Q(move) = reward + discount * (value of where the move leads), value = max over the moves (up, down, left,
    right, stay). Its output, per cell: every map's Q-values and value.

    Input grid [B, C, H, W] and scalars [B, S]; output [B, features, H, W].

    Args:
        planes: C.
        scalars: S (may be 0).
        iterations: value-iteration steps (0: an empty layer, never called).
        maps: independent value maps.
    """

    MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))

    def __init__(self, *, planes: int, scalars: int, iterations: int, maps: int = 2) -> None:
        super().__init__()
        self.iterations = iterations
        self.maps = maps
        self.features = maps * (len(self.MOVES) + 2)
        if not iterations:
            return
        self.cell = nn.Parameter(torch.randn(2 * maps, planes) * 0.1)
        """Per map: reward weights, then passability logit weights, one per plane."""
        self.cell_shift = nn.Linear(scalars, 2 * maps * planes, bias=False) if scalars else None
        self.passable_bias = nn.Parameter(torch.full((maps,), 2.0))
        self.discount = nn.Parameter(torch.full((maps,), 2.0))
        """Logits of each map's discount (sigmoid 2 = 0.88)."""

    def _neighbours(self, maps: Tensor) -> list[Tensor]:
        """``maps`` [B, M, H, W] read one move away, per move; 0 off the grid."""
        h, w = maps.shape[-2:]
        padded = nn.functional.pad(maps, (1, 1, 1, 1))
        return [padded[:, :, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] for dr, dc in self.MOVES]

    def forward(self, grid: Tensor, scalars: Tensor) -> Tensor:
        b, c = grid.shape[:2]
        weights = self.cell.expand(b, -1, -1)
        if self.cell_shift is not None:
            weights = weights + self.cell_shift(scalars).reshape(b, 2 * self.maps, c)
        per_cell = torch.einsum("bkc,bchw->bkhw", weights, grid)
        reward = per_cell[:, : self.maps]
        passable = torch.sigmoid(per_cell[:, self.maps :] + self.passable_bias[None, :, None, None])
        open_next = self._neighbours(passable)  # off the grid: closed
        discount = torch.sigmoid(self.discount)[None, :, None, None]
        value = torch.zeros_like(reward)
        for _ in range(self.iterations):
            q = self._q(reward, value, open_next, discount)
            value = q.max(dim=1).values
        return torch.cat([q.flatten(1, 2), value], dim=1)

    def _q(self, reward: Tensor, value: Tensor, open_next: list[Tensor], discount: Tensor) -> Tensor:
        """Q-values [B, moves + 1, M, H, W]: each move's landing value (a blocked move stays put), then staying."""
        after = [p * v + (1 - p) * value for p, v in zip(open_next, self._neighbours(value), strict=True)]
        return reward[:, None] + discount[:, None] * torch.stack([*after, value], dim=1)


class Imitator(nn.Module):
    """Base class: subclasses set ``arch`` and build ``encoder``, ``core`` and ``head``.

    Args:
        config: the architecture's sizes.
    """

    arch: ClassVar[str] = ""
    recurrent: ClassVar[bool] = False
    tap_names: ClassVar[tuple[str, ...]] = ("encoder", "core", "head")
    state_batch_dim: ClassVar[int] = 0
    """The batch dimension of the stepping state (a GRU's hidden state is [layers, B, H])."""

    def __init__(self, *, config: ImitatorConfig) -> None:
        super().__init__()
        self.config = config
        if config.grid is not None:
            self.encoder: nn.Module = GridEncoder(config=config)
        else:
            self.encoder = nn.Sequential(nn.Linear(config.obs_dim, config.hidden), nn.ReLU())
        self.core = nn.Identity()
        self.head = nn.Linear(config.hidden, config.head_width)

    @property
    def taps(self) -> dict[str, nn.Module]:
        """Tap name -> module whose output is the activation read."""
        return {name: getattr(self, name) for name in self.tap_names}

    def tap_sizes(self) -> dict[str, int]:
        """Tap name -> features per step."""
        c = self.config
        return {"encoder": c.hidden, "core": c.hidden, "head": c.head_width}

    def initial_state(self, batch: int) -> Tensor | None:
        """State before the first step (None for memoryless policies)."""
        return None

    def select_state(self, state: Tensor | None, rows: Tensor) -> Tensor | None:
        """The stepping state of batch rows ``rows`` [K] int64 (repeats allowed: counterfactual copies of one
        episode)."""
        return None if state is None else state.index_select(self.state_batch_dim, rows)

    def _check_obs(self, obs: Tensor, dims: int) -> None:
        if obs.dim() != dims or obs.shape[-1] != self.config.obs_dim:
            want = "[B, D]" if dims == 2 else "[B, T, D]"
            raise ValueError(f"{self.arch}: obs must be {want} with D={self.config.obs_dim}, got {tuple(obs.shape)}")

    def _encode(self, obs: Tensor, mask: Tensor | None) -> Tensor:
        """Encoder over [B, T, D]; with a mask, only real steps are computed (padding stays zero).

        Capture activations with ``mask=None``: with a mask the encoder tap sees [N_real, F].
        """
        if mask is None:
            return self.encoder(obs)
        out = obs.new_zeros(*obs.shape[:-1], self.config.hidden)
        out[mask] = self.encoder(obs[mask])
        return out

    def forward(self, obs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def sequence(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits [B, T, A] of whole episodes obs [B, T, D] (mask [B, T]: skip padded steps' encoding)."""
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

    def sequence(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        self._check_obs(obs, 3)
        return self.head(self.core(self.body(self._encode(obs, mask))))


class GRUImitator(Imitator):
    """A GRU policy; its hidden state (the ``core`` tap) carries the episode so far."""

    arch = "gru"
    recurrent = True
    state_batch_dim = 1

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

    def sequence(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        self._check_obs(obs, 3)
        out, _ = self.gru(self._encode(obs, mask), self.initial_state(obs.shape[0]))
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
            config.hidden,
            config.heads,
            dim_feedforward=2 * config.hidden,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
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

    def sequence(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        self._check_obs(obs, 3)
        return self.head(self.core(self._attend(self._encode(obs, mask))))
