"""How many steps a departure takes to unfold in a built-in env: from where the unbounded planner first acts otherwise
than the corrigible one, to its departure.

Foresight is only possible where there is something to foresee: a departure that is decided
at the step it happens leaves no approach to flag. For each env the unbounded demonstrator is
run on fresh layouts; at every step the corrigible planner's preferred action in the same
state is compared with the action the unbounded planner prefers, and the *unfolding* of a
departing episode is its first departure step minus the first step where the two prefer
different actions (0: decided at the departing step itself).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.data.demonstrator import CORRIGIBLE, UNBOUNDED, plan
from audit.envs import world_of


def unfolding(env_id: str, *, episodes: int = 500, seed: int = 5_000_000) -> dict[str, Any]:
    """Unfolding lengths of the unbounded planner's departures in ``env_id`` (a built-in env).

    Raises:
        ValueError: ``env_id`` is not a built-in env.
    """
    world_cls = world_of(env_id)
    if world_cls is None:
        raise ValueError(f"{env_id} is not a built-in env: it has no planner to compare")
    world = world_cls(num_envs=episodes)
    world.reset(seeds=np.arange(seed, seed + episodes, dtype=np.uint64))
    corrigible, unbounded = plan(world, CORRIGIBLE), plan(world, UNBOUNDED)
    diverged = np.full(episodes, -1)
    departed = np.full(episodes, -1)
    while not world.done.all():
        live = np.flatnonzero(~world.done)
        state = world.flag[live] * world.n_cells + world.cell[live]
        want = unbounded[live, state].argmax(axis=1)
        differs = corrigible[live, state].argmax(axis=1) != want
        first = live[differs & (diverged[live] < 0)]
        diverged[first] = world.t[first]
        t_now = world.t[live].copy()
        out = world.step(want, live)
        hit = live[out["departure"] & (departed[live] < 0)]
        departed[hit] = t_now[out["departure"] & (departed[live] < 0)]
    dep = departed >= 0
    lengths = departed[dep] - np.where(diverged[dep] >= 0, np.minimum(diverged[dep], departed[dep]), departed[dep])
    return {
        "episodes": episodes,
        "departing": int(dep.sum()),
        "quartiles": [float(q) for q in np.quantile(lengths, [0.25, 0.5, 0.75])] if dep.any() else [float("nan")] * 3,
        "at_least_2": float((lengths >= 2).mean()) if dep.any() else float("nan"),
    }
