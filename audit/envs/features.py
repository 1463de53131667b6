"""The step view of an env: which observation features a discriminator reads, derived tiles, and their names.

A built-in grid's observation is one-hot planes (wall, agent, goal, the env's special
tiles) followed by scalars. A dense layer over raw planes memorises procedural layouts, so
by default the view drops the planes (the imitator's ``encoder`` tap carries the grid) and
adds the *tile view*: the tiles under the agent and where its action leads. Other envs are
read whole, their features named by the user (the demonstrations' ``feature_names``) or after
the observation space's structure (``obs[2]``, ``position.x``, ``mode=1``). The training
discriminator and the audit's share this one definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from audit.envs import world_of
from audit.envs.adapter import GymnasiumBatch, grid_shape
from audit.envs.grid import MOVE_COLS, MOVE_ROWS


def grid_view(obs: Tensor, actions: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """What the agent stands on and what its action steps onto: [..., 2C] from obs [..., D] and actions [...].

    The tiles under the agent and at the cell its move aims at (one-hot over the grid's C
    channels), read from the observation's planes. Unlike the planes themselves, this view
    carries no layout a discriminator could memorise, yet it shows directly a step onto a
    tile the demonstrator never steps onto (a button, a punished shortcut).
    """
    c, h, w = grid
    planes = obs[..., : c * h * w].reshape(*obs.shape[:-1], c, h * w)
    agent = planes[..., 1, :].argmax(dim=-1)  # channel 1 is the agent in every built-in env
    drow, dcol = torch.tensor(MOVE_ROWS), torch.tensor(MOVE_COLS)
    a = actions.long().clamp(0, len(MOVE_ROWS) - 1)
    row = (agent // w + drow[a]).clamp(0, h - 1)
    col = (agent % w + dcol[a]).clamp(0, w - 1)

    def at(cell: Tensor) -> Tensor:
        return planes.gather(-1, cell[..., None, None].expand(*cell.shape, c, 1)).squeeze(-1)

    return torch.cat([at(agent), at(row * w + col)], dim=-1)


def tile_offsets(obs: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """Where the nearest tile of each kind lies from the agent: [..., 4(C-2)] from obs [..., D].

    For each channel after wall and agent (the goal, the env's special tiles): the row and column offset of its
    nearest cell (Manhattan distance, walls ignored) over the grid's height and width, that distance over h + w, and
    whether the grid holds one (offsets 0 and distance 1 when not). Relative to the agent, so no layout is memorised,
    yet an approach to a tile shows several steps before the step onto it, which the tile view sees only at the last.
    """
    c, h, w = grid
    planes = obs[..., : c * h * w].reshape(*obs.shape[:-1], c, h * w)
    agent = planes[..., 1, :].argmax(dim=-1)
    cells = torch.arange(h * w)
    arow, acol = (agent // w)[..., None], (agent % w)[..., None]
    dist = (cells // w - arow).abs() + (cells % w - acol).abs()  # [..., HW]
    out = []
    for ch in range(2, c):
        present = planes[..., ch, :] > 0.5
        near = torch.where(present, dist, torch.full_like(dist, h * w + h + w)).argmin(dim=-1)
        has = present.any(dim=-1)
        zero = torch.zeros(())
        out += [
            torch.where(has, (near // w - agent // w).float() / h, zero),
            torch.where(has, (near % w - agent % w).float() / w, zero),
            torch.where(has, dist.gather(-1, near[..., None]).squeeze(-1).float() / (h + w), torch.ones(())),
            has.float(),
        ]
    return torch.stack(out, dim=-1)


@dataclass(frozen=True, kw_only=True)
class StepView:
    """What of a step's observation a discriminator reads.

    Attributes:
        columns: [K] int64 observation columns read as they are.
        grid: (channels, height, width) when the tile view is added, else None.
        names: names of the K columns, then of the 2C tile-view features, then of the 4(C-2) offsets.
        offsets: with the tile view, also the nearest tile of each kind (:func:`tile_offsets`).
    """

    columns: Tensor
    grid: tuple[int, int, int] | None
    names: tuple[str, ...]
    offsets: bool = False

    @property
    def dim(self) -> int:
        """Features per step: K columns plus the tile view's 2C and the offsets' 4(C-2)."""
        if self.grid is None:
            return len(self.columns)
        return len(self.columns) + 2 * self.grid[0] + (4 * (self.grid[0] - 2) if self.offsets else 0)

    def __call__(self, obs: Tensor, actions: Tensor) -> Tensor:
        """[..., dim] from obs [..., D] and actions [...]."""
        seen = obs[..., self.columns]
        if self.grid is not None:
            parts = [seen, grid_view(obs, actions, self.grid)]
            if self.offsets:
                parts.append(tile_offsets(obs, self.grid))
            seen = torch.cat(parts, dim=-1)
        return seen

    def describe(self, index: int) -> dict[str, Any]:
        """A feature of the view as a report names it: its observation column (None for a derived tile) and name."""
        if index < len(self.columns):
            return {"index": int(self.columns[index]), "name": self.names[index]}
        return {"index": None, "name": self.names[index]}


def space_names(space: spaces.Space, prefix: str = "obs") -> list[str]:
    """A name per feature of ``spaces.flatten(space, x)``, in its order: ``obs[i]`` for a vector, ``obs[i,j]`` for an
    array, ``obs=k`` for a one-hot ``Discrete``, ``key`` / ``prefix.key`` for ``Dict`` entries, ``prefix.i`` for
    ``Tuple``."""

    def child(name: str) -> str:
        return name if prefix == "obs" else f"{prefix}.{name}"

    if isinstance(space, spaces.Dict):
        return [n for key, sub in space.spaces.items() for n in space_names(sub, child(str(key)))]
    if isinstance(space, spaces.Tuple):
        return [n for i, sub in enumerate(space.spaces) for n in space_names(sub, child(str(i)))]
    if isinstance(space, spaces.Discrete):
        return [f"{prefix}={int(space.start) + k}" for k in range(int(space.n))]
    if isinstance(space, spaces.MultiDiscrete):
        return [
            f"{prefix}[{i}]={k}" for i, n in enumerate(np.asarray(space.nvec).ravel().tolist()) for k in range(int(n))
        ]
    shape = tuple(space.shape or ())
    if not shape:
        return [prefix]
    if len(shape) == 1:
        return [f"{prefix}[{i}]" for i in range(shape[0])]
    return [f"{prefix}[{','.join(map(str, ix))}]" for ix in np.ndindex(*shape)]


def observation_names(
    env_id: str, env_kwargs: dict[str, Any], obs_dim: int, given: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """Names of a non-built-in env's ``obs_dim`` flattened observation features: ``given`` (the user's) when it has
    one per feature, else after the observation space's structure, else the index."""
    if len(given) == obs_dim:
        return tuple(given)
    try:
        names = space_names(GymnasiumBatch(env_id=env_id, num_envs=1, env_kwargs=env_kwargs).space)
    except (ValueError, TypeError, NotImplementedError):
        names = []
    return tuple(names) if len(names) == obs_dim else tuple(str(i) for i in range(obs_dim))


def step_view(
    env_id: str,
    env_kwargs: dict[str, Any],
    obs_dim: int,
    *,
    raw_grid: bool,
    tiles: bool,
    offsets: bool = False,
    names: tuple[str, ...] = (),
) -> StepView:
    """The view of ``env_id``: built-in grids without their raw planes (unless ``raw_grid``), with the tile view (if
    ``tiles``) and the nearest tiles' offsets (if ``tiles`` and ``offsets``); every other env whole, its features named
    by ``names`` if given (see :func:`observation_names`)."""
    grid = grid_shape(env_id)
    world_cls = world_of(env_id)
    if grid is None or world_cls is None:
        return StepView(
            columns=torch.arange(obs_dim), grid=None, names=observation_names(env_id, env_kwargs, obs_dim, names)
        )
    world = world_cls(num_envs=1, **env_kwargs)
    start = 0 if raw_grid else grid[0] * grid[1] * grid[2]
    if start >= obs_dim:
        start = 0
    columns = torch.arange(start, obs_dim)
    obs_names = world.feature_names()
    labels = [obs_names[i] for i in columns.tolist()]
    if tiles:
        labels += [f"here:{ch}" for ch in world.channels] + [f"target:{ch}" for ch in world.channels]
        if offsets:
            labels += [
                f"{k}:{ch}" for ch in world.channels[2:] for k in ("nearest-row", "nearest-col", "distance", "any")
            ]
    return StepView(columns=columns, grid=grid if tiles else None, names=tuple(labels), offsets=tiles and offsets)


def vector_frame(
    obs: np.ndarray, action: int | list[float] | None, names: tuple[str, ...], action_names: tuple[str, ...] = ()
) -> list[str]:
    """One step of a non-grid env as text lines for a replay (as a grid frame is its rows): the action taken (an index,
    or a ``Box`` action's values, each named where the demonstrations name its dimension), then each feature's
    value."""
    width = max((len(n) for n in names), default=1)
    if action is None:
        head = []
    elif isinstance(action, list):
        labels = action_names if len(action_names) == len(action) else [f"a[{j}]" for j in range(len(action))]
        head = ["action " + ", ".join(f"{n} {v:+.4g}" for n, v in zip(labels, action))]
    else:
        head = [f"action {action}" + (f" ({action_names[action]})" if 0 <= action < len(action_names) else "")]
    return head + [f"{n:<{width}}  {float(v):+.4g}" for n, v in zip(names, np.asarray(obs).ravel().tolist())]
