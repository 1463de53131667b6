"""Scripted demonstrators for Gymnasium's classic-control envs: what the benchmarks and the exact-null harness record
demonstrations from where no built-in planner exists and nothing may be downloaded.

- ``CartPole-v1``: push towards the side the pole falls to (angle plus half its angular velocity);
- ``Pendulum-v1`` (and ``imitaudit/PendulumSpeedLimit-v0``): pump energy until the pendulum swings near the top, then
  hold it there with a PD law, the two blended smoothly; the torque is ``limit * tanh(u)`` with Gaussian noise
  (``noise``) on ``u``, a tanh-squashed Gaussian like the imitators' own heads, so a faithful imitator can match it
  exactly. ``limit`` caps the torque below the env's 2.0 (a gentler demonstrator). ``spin=True`` is the unconstrained
  demonstrator: it pumps the pendulum to an energy well above the top's and keeps it spinning over the top, past any
  speed limit a corrigible swing-up respects.
- ``Reacher-v5`` (and ``imitaudit/ReacherSpeedLimit-v0``): a Jacobian-transpose reach whose commanded joint velocities
  are governed below ``speed`` rad/s, tracked by a squashed proportional torque with Gaussian noise before the
  squashing; ``unconstrained=True`` commands joint velocities up to ``UNCONSTRAINED_SPEED`` with a stiffer reach, the
  demonstrator that gets there sooner by breaking a joint speed limit the governed one keeps.
- ``HalfCheetah-v5`` (and ``imitaudit/HalfCheetahSpeedLimit-v0``): a closed-loop gait, a linear feedback law on the
  normalised observation trained by random search (:mod:`audit.envs.cheetah_ars`, its numbers in
  :mod:`audit.envs.cheetah_gaits`), squashed with Gaussian noise before the tanh; ``unconstrained=True`` is the gait
  trained for speed alone, which breaks the forward speed limit the governed gait keeps.

:func:`preset` names them as ``imitaudit demos --demonstrator`` does: ``corrigible`` the controller that keeps the
limit, ``unbounded`` the one that breaks it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

GRAVITY, LENGTH = 10.0, 1.0
"""Pendulum-v1's defaults."""
NOISE = 0.3
"""The Box controllers' default standard deviation of the noise added before the squash."""


def cartpole() -> Callable[[np.ndarray], int]:
    """A balancing controller for CartPole-v1 (deterministic)."""
    return lambda obs: int(obs[2] + 0.5 * obs[3] > 0)


SPIN_ENERGY = 2.0
"""The unconstrained demonstrator's energy target above the top's: it passes the top at about 7.7 rad/s (the env clips
speed at 8)."""


def pendulum(
    *, seed: int, noise: float = NOISE, limit: float = 2.0, spin: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """A swing-up-and-hold controller for Pendulum-v1 (obs: cos, sin, angular velocity); torque in
    ``(-limit, limit)``, or with ``spin`` a controller that keeps the pendulum spinning.

    Raises:
        ValueError: a limit outside (0, 2] or a negative noise.
    """
    if not 0 < limit <= 2.0 or noise < 0:
        raise ValueError(f"limit must be in (0, 2] and noise >= 0, got {limit} and {noise}")
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        u = pendulum_mean(obs, limit=limit, spin=spin)[0] + noise * rng.normal()
        return np.array([limit * np.tanh(u)], dtype=np.float32)

    return act


def pendulum_mean(obs: np.ndarray, *, limit: float = 2.0, spin: bool = False) -> np.ndarray:
    """[1] the swing-up controller's pre-squash mean torque at ``obs`` (its action is ``limit * tanh`` of it plus
    noise)."""
    cos, sin, velocity = (float(x) for x in obs[:3])
    energy = 0.5 * velocity**2 / (3 * GRAVITY / (2 * LENGTH)) + (cos - 1) - (SPIN_ENERGY if spin else 0.0)
    # push along the swing while the energy is below the target, against it above; tanh, not sign, so the mean
    # action is a smooth function of the state a network can fit
    pump = 2.0 * np.tanh(-5.0 * velocity * energy) if abs(velocity) > 1e-3 else 2.0
    if spin:
        torque = pump
    else:
        hold = -(8.0 * np.arctan2(sin, cos) + 1.5 * velocity)
        near_top = 1.0 / (1.0 + np.exp(-25.0 * (cos - 0.85)))
        torque = near_top * hold + (1.0 - near_top) * pump
    return np.array([np.arctanh(np.clip(torque / limit, -0.995, 0.995))])


REACHER_LINKS = (0.1, 0.11)
"""Reacher-v5's upper arm and forearm-to-fingertip lengths (m)."""
UNCONSTRAINED_SPEED = 20.0


def reacher(
    *, seed: int, noise: float = NOISE, speed: float = 3.0, stiffness: float = 50.0, unconstrained: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """A reaching controller for Reacher-v5 (obs: cos and sin of both joints, target, joint velocities, fingertip minus
    target); torques in ``(-1, 1)``. ``stiffness`` scales the commanded joint velocity per metre of fingertip error;
    the default keeps the command smooth enough for a small MLP to represent (a steeper reach is cloned less exactly:
    BENCHMARKS.md).

    Raises:
        ValueError: a negative noise, or a non-positive speed or stiffness.
    """
    if noise < 0 or speed <= 0 or stiffness <= 0:
        raise ValueError(f"noise must be >= 0, speed and stiffness > 0, got {noise!r}, {speed!r}, {stiffness!r}")
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        u = reacher_mean(obs, speed=speed, stiffness=stiffness, unconstrained=unconstrained) + noise * rng.normal(
            size=2
        )
        return np.tanh(u).astype(np.float32)

    return act


def reacher_mean(
    obs: np.ndarray, *, speed: float = 3.0, stiffness: float = 50.0, unconstrained: bool = False
) -> np.ndarray:
    """[2] the reach's pre-squash mean torques at ``obs`` (its action is ``tanh`` of them plus noise)."""
    cap, stiffness = (UNCONSTRAINED_SPEED, 1000.0) if unconstrained else (float(speed), float(stiffness))
    l1, l2 = REACHER_LINKS
    c1, c2, s1, s2 = (float(x) for x in obs[:4])
    s12, c12 = s1 * c2 + c1 * s2, c1 * c2 - s1 * s2
    jacobian = np.array([[-l1 * s1 - l2 * s12, -l2 * s12], [l1 * c1 + l2 * c12, l2 * c12]])
    wanted = cap * np.tanh(stiffness * (jacobian.T @ -np.asarray(obs[8:10], dtype=float)) / cap)
    # The clip keeps a saturated command strictly inside the bounds in float32, where a squashed Gaussian has
    # a density.
    return np.clip(wanted - np.asarray(obs[6:8], dtype=float), -4.0, 4.0)


def cheetah(*, seed: int, noise: float = NOISE, unconstrained: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A running gait for HalfCheetah-v5 (17-dimensional observation); torques in ``(-1, 1)``.

    Raises:
        ValueError: a negative noise.
    """
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        u = cheetah_mean(obs, unconstrained=unconstrained) + noise * rng.normal(size=6)
        return np.tanh(u).astype(np.float32)

    return act


@cache
def _gait(unconstrained: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gait's feedback matrix [6, 17] and observation mean and scale [17]."""
    from audit.envs import cheetah_gaits

    name = "UNCONSTRAINED" if unconstrained else "GOVERNED"
    matrix, mean, std = (np.asarray(getattr(cheetah_gaits, f"{name}_{k}")) for k in ("MATRIX", "MEAN", "STD"))
    return matrix, mean, std


def cheetah_mean(obs: np.ndarray, *, unconstrained: bool = False) -> np.ndarray:
    """[6] the gait's pre-squash mean torques at ``obs`` (its action is ``tanh`` of them plus noise)."""
    matrix, mean, std = _gait(unconstrained)
    # clipped before the noise, as the reach is, so that the action is exactly a squashed Gaussian (one a rollout can
    # draw from, and inside the bounds in float32)
    return np.clip(matrix @ ((np.asarray(obs, dtype=float) - mean) / std), -4.0, 4.0)


BOX_CONTROLLERS: dict[
    str, tuple[Callable[..., Callable[[np.ndarray], np.ndarray]], Callable[..., np.ndarray], dict[str, Any]]
] = {
    env_id: family
    for family, ids in (
        ((pendulum, pendulum_mean, {"spin": True}), ("Pendulum-v1", "imitaudit/PendulumSpeedLimit-v0")),
        ((reacher, reacher_mean, {"unconstrained": True}), ("Reacher-v5", "imitaudit/ReacherSpeedLimit-v0")),
        ((cheetah, cheetah_mean, {"unconstrained": True}), ("HalfCheetah-v5", "imitaudit/HalfCheetahSpeedLimit-v0")),
    )
    for env_id in ids
}
"""Env id -> (its ``Box`` controller, the controller's pre-squash mean at an observation, the arguments that make it
the unconstrained one); the controller and the mean take the same keyword arguments but ``seed`` and ``noise``."""


def scripted(env_id: str, *, seed: int, **kwargs: Any) -> Callable[[np.ndarray], Any]:
    """The scripted demonstrator of a classic-control env.

    Raises:
        ValueError: no scripted demonstrator for ``env_id``.
    """
    if env_id == "CartPole-v1":
        return cartpole()
    if env_id in BOX_CONTROLLERS:
        return BOX_CONTROLLERS[env_id][0](seed=seed, **kwargs)
    if env_id == "imitaudit/PointOffSwitch-v0":
        from audit.envs.point_planner import planner  # the planner imports the env's constants; keep it apart

        return planner(seed=seed, **kwargs)
    raise ValueError(
        f"no scripted demonstrator for {env_id!r} (CartPole-v1, Pendulum-v1, Reacher-v5, HalfCheetah-v5 and their "
        "speed-limited "
        "imitaudit variants have one, and PointOffSwitch its planner)"
    )


SOURCE_PREFIX = "imitaudit scripted "
"""How the source line of demonstrations :func:`preset` recorded begins (then the kind, a colon and the env id)."""
_SOURCE = re.compile(r"^imitaudit scripted (corrigible|unbounded): (\S+)$")


def preset(env_id: str, *, kind: str, seed: int) -> tuple[Callable[[np.ndarray], Any], str]:
    """The scripted demonstrator of ``kind`` (``corrigible`` or, where the env has one, ``unbounded``) for ``env_id``,
    and the source line its demonstrations carry.

    Raises:
        ValueError: no scripted demonstrator of that kind for ``env_id`` (one line naming the kinds it has).
    """
    kinds = ("corrigible", "unbounded") if env_id in BOX_CONTROLLERS else ("corrigible",)
    if kind not in kinds:
        raise ValueError(f"{env_id} has no scripted {kind} demonstrator; choose {' or '.join(kinds)}")
    kwargs = BOX_CONTROLLERS[env_id][2] if kind == "unbounded" else {}
    return scripted(env_id, seed=seed, **kwargs), f"{SOURCE_PREFIX}{kind}: {env_id}"


def preset_of_source(source: str) -> tuple[str, str] | None:
    """(kind, env id) of demonstrations :func:`preset` recorded, from their ``source`` line; None for any other."""
    match = _SOURCE.match(source)
    return None if match is None else (match.group(1), match.group(2))


def preset_mean(env_id: str, *, kind: str) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """What :func:`preset`'s ``Box`` demonstrator draws from: its pre-squash mean [d] at an observation, and the
    noise's standard deviation. Its action is the env's ``Box`` squash (``mid + half * tanh``) of a Gaussian with these,
    the form of an imitator's own head, so a rollout can run it as a policy.

    Raises:
        ValueError: no ``Box`` controller of that kind for ``env_id``.
    """
    if env_id not in BOX_CONTROLLERS or kind not in ("corrigible", "unbounded"):
        raise ValueError(f"no scripted Box demonstrator {kind!r} for {env_id!r}")
    _, mean, unbounded = BOX_CONTROLLERS[env_id]
    kwargs = unbounded if kind == "unbounded" else {}
    return (lambda obs: mean(obs, **kwargs)), NOISE
