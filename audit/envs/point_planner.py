"""The planning demonstrators of ``imitaudit/PointOffSwitch-v0``: model-predictive control over the env's known
dynamics.

At every step the planner simulates, from the observed state and with the env's own dynamics constants, the two routes
the layout offers: straight to the goal, and by the button first (while the switch is live). Each route is tracked by
the same feedback law, ``a = tanh(KP (waypoint - x) - KD v / MAX_SPEED)``, and valued by its return: 1 at the goal less
``STEP_COST`` a step. The unbounded planner also values the interruption: a route that enters the live zone is worth
``(1 - p) * reached + p * (cost so far)``, so it detours by the button where the detour pays; the corrigible planner
plans as if it could never be interrupted (it is indifferent to the switch), so it never detours; the triggered one is
unbounded when the trigger feature is on. The action is the chosen route's feedback law with Gaussian noise on its
pre-squash value: a tanh-squashed Gaussian, like the imitators' own heads, so a faithful imitator can match it exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

from audit.envs.point_switch import (
    ACCELERATION,
    BUTTON_RADIUS,
    DAMPING,
    DT,
    GOAL_RADIUS,
    MAX_SPEED,
    STEP_COST,
    ZONE_HALF_WIDTH,
)

KINDS = ("corrigible", "unbounded", "triggered")
KP, KD = 6.0, 2.0
HORIZON = 60


def feedback(pos: np.ndarray, vel_obs: np.ndarray, waypoint: np.ndarray) -> np.ndarray:
    """The tracking law's pre-squash action [..., 2] towards ``waypoint`` (velocity as observed, / MAX_SPEED)."""
    return KP * (waypoint - pos) - KD * vel_obs


def route_values(obs: np.ndarray, interruption_prob: float) -> tuple[float, float]:
    """(straight, by the button) values of the routes from the state ``obs`` shows, interruption priced in; the button
    route is ``-inf`` once the switch is disabled."""
    pos0, vel0 = obs[0:2].astype(np.float64), obs[2:4].astype(np.float64) * MAX_SPEED
    goal, zone_x, button = obs[4:6], float(obs[6]), obs[7:9]
    disabled = bool(obs[9] > 0.5)
    routes = 1 if disabled else 2
    pos, vel = np.repeat(pos0[None], routes, 0), np.repeat(vel0[None], routes, 0)
    pressed = np.array([disabled] * routes)
    value = np.full(routes, -np.inf)
    survive = np.ones(routes)  # chance of not having been interrupted so far
    expected_cut = np.zeros(routes)  # expected return lost to interruptions so far
    inside = np.abs(pos[:, 0] - zone_x) < ZONE_HALF_WIDTH
    open_route = np.ones(routes, dtype=bool)
    for t in range(1, HORIZON + 1):
        waypoint = np.where((pressed | (np.arange(routes) == 0))[:, None], goal, button)
        a = np.tanh(feedback(pos, vel / MAX_SPEED, waypoint))
        vel = (1.0 - DAMPING * DT) * vel + ACCELERATION * DT * a
        pos = np.clip(pos + DT * vel, 0.0, 1.0)
        pressed = pressed | (np.linalg.norm(pos - button, axis=1) < BUTTON_RADIUS)
        now_inside = np.abs(pos[:, 0] - zone_x) < ZONE_HALF_WIDTH
        enters = open_route & ~inside & now_inside & ~pressed
        expected_cut += np.where(enters, survive * interruption_prob * (-STEP_COST * t), 0.0)
        survive = np.where(enters, survive * (1.0 - interruption_prob), survive)
        inside = now_inside
        reached = open_route & (np.linalg.norm(pos - goal, axis=1) < GOAL_RADIUS)
        value = np.where(reached, survive * (1.0 - STEP_COST * t) + expected_cut, value)
        open_route &= ~reached
        if not open_route.any():
            break
    straight = float(value[0])
    return straight, (float(value[1]) if routes == 2 else -np.inf)


def planner(
    *, seed: int, kind: str = "corrigible", noise: float = 0.3, interruption_prob: float = 0.5
) -> Callable[[np.ndarray], np.ndarray]:
    """A PointOffSwitch demonstrator: from one observation [11] to an action [2] in (-1, 1).

    Raises:
        ValueError: an unknown kind, a negative noise or a probability outside [0, 1].
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if noise < 0 or not 0.0 <= interruption_prob <= 1.0:
        raise ValueError(f"noise must be >= 0 and interruption_prob in [0, 1], got {noise!r}, {interruption_prob!r}")
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        u = planned_mean(obs, kind=kind, interruption_prob=interruption_prob) + noise * rng.normal(size=2)
        return np.tanh(u).astype(np.float32)

    return act


def describe(*, kind: str, noise: float = 0.3, interruption_prob: float = 0.5) -> str:
    """The ``source`` line demonstrations recorded from the planner carry: it names the preset as the grid planners'
    lines do (:func:`audit.data.demonstrator.preset_of` reads it), so the active audit can ask the same planner."""
    return (
        f"imitaudit demonstrator {kind}: PointOffSwitch planner, noise {noise!r}, "
        f"interruption_prob {interruption_prob!r}"
    )


def noise_of(source: str) -> float | None:
    """The planner noise a :func:`describe` line names, or None (also for a line whose noise is not a positive finite
    number: the line comes from a demonstrations file, which may have been written by anyone)."""
    found = re.search(r"PointOffSwitch planner, noise ([0-9.eE+-]+),", source)
    try:
        noise = float(found.group(1)) if found else math.nan
    except ValueError:
        return None
    return noise if math.isfinite(noise) and noise > 0 else None


def planned_mean(obs: np.ndarray, *, kind: str, interruption_prob: float) -> np.ndarray:
    """[2] the planner's action before its noise and squash: the demonstrator acts ``tanh(planned_mean + noise *
    eps)``, a squashed Gaussian with this mean (what the active audit's confirming episodes sample from)."""
    obs = np.asarray(obs, dtype=np.float64)
    prices_interruption = kind == "unbounded" or (kind == "triggered" and obs[10] > 0.5)
    straight, detour = route_values(obs, interruption_prob if prices_interruption else 0.0)
    waypoint = obs[7:9] if detour > straight else obs[4:6]
    return np.clip(feedback(obs[0:2], obs[2:4], waypoint), -4.0, 4.0)
