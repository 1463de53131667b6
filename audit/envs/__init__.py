"""The corrigibility gridworlds, registered with Gymnasium, and env-id resolution for the rest of imitaudit.

Ids: ``imitaudit/OffSwitch-v0``, ``imitaudit/AbsentSupervisor-v0``, ``imitaudit/PowerSeeking-v0``,
``imitaudit/HiddenSupervisor-v0`` (partially observed: intent hidden from behaviour). Each has an ``entry_point`` (one
episode at a time, ``gymnasium.make``) and a ``vector_entry_point`` (the native batched engine, ``gymnasium.make_vec``).
``imitaudit/PointOffSwitch-v0`` (:mod:`audit.envs.point_switch`) is their continuous counterpart: a point mass with
``Box`` actions and the same two entry points, batched natively (``ENGINES``, :func:`engine_of`). Three more
continuous-control envs are registered beside them, ``imitaudit/PendulumSpeedLimit-v0``
(:mod:`audit.envs.speed_limit`: Pendulum-v1 with a speed limit as its departure), ``imitaudit/ReacherSpeedLimit-v0``
(:mod:`audit.envs.reacher_speed_limit`: MuJoCo's Reacher-v5 with a joint speed limit) and
``imitaudit/HalfCheetahSpeedLimit-v0`` (:mod:`audit.envs.cheetah_speed_limit`: HalfCheetah-v5 with a forward speed
limit); none of them has a native engine.
Importing this package registers them; from a clean interpreter
``gymnasium.make("audit.envs:imitaudit/OffSwitch-v0")`` does the import.
"""

from __future__ import annotations

import importlib
from functools import partial

import gymnasium as gym

from audit.envs.absent_supervisor import AbsentSupervisor
from audit.envs.api import GridEnv, GridVectorEnv
from audit.envs.cheetah_speed_limit import ForwardSpeedLimit
from audit.envs.grid import ACTIONS, N_ACTIONS, GridWorld
from audit.envs.hidden_supervisor import HiddenSupervisor
from audit.envs.offswitch import OffSwitch
from audit.envs.point_switch import PointOffSwitch
from audit.envs.power_seeking import PowerSeeking
from audit.envs.reacher_speed_limit import JointSpeedLimit
from audit.envs.speed_limit import SpeedLimit

#: Built-in env id -> engine class.
WORLDS: dict[str, type[GridWorld]] = {
    "imitaudit/OffSwitch-v0": OffSwitch,
    "imitaudit/AbsentSupervisor-v0": AbsentSupervisor,
    "imitaudit/PowerSeeking-v0": PowerSeeking,
    "imitaudit/HiddenSupervisor-v0": HiddenSupervisor,
}

#: Built-in env id -> batched engine class: the grid worlds and the continuous ones.
ENGINES: dict[str, type[GridWorld] | type[PointOffSwitch]] = {**WORLDS, "imitaudit/PointOffSwitch-v0": PointOffSwitch}

for _env_id, _world in ENGINES.items():
    if _env_id not in gym.registry:
        gym.register(
            id=_env_id,
            entry_point=partial(GridEnv, world=_world),
            vector_entry_point=partial(GridVectorEnv, world=_world),
        )


_IMPORTABLE: set[str] = set()
"""Modules a ``module:Env`` id may import: only those the user named on their own machine (``--env-module``)."""


def allow_env_modules(*modules: str) -> None:
    """Let ``module:Env`` ids import these modules (their code runs: the CLI's ``--env-module``, never the service)."""
    for module in modules:
        if not module or not all(part.isidentifier() for part in module.split(".")):
            raise ValueError(f"--env-module must be a dotted Python module name, got {module!r}")
        _IMPORTABLE.add(module)


def resolve_env_id(env_id: str) -> str:
    """Check that ``env_id`` names an installed Gymnasium env and return its plain id.

    Accepts ``module:EnvName-v0`` (imports ``module`` first, as ``gymnasium.make`` does) only
    for a module allowed by :func:`allow_env_modules`: an id read from a file must not run code.

    Raises:
        ValueError: the module is not allowed or cannot be imported, or the id is not registered.
    """
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env id must be a non-empty string, got {env_id!r}")
    plain = env_id
    if ":" in env_id:
        module, plain = env_id.split(":", 1)
        if module not in _IMPORTABLE:
            raise ValueError(
                f"env id {env_id!r} would import module {module!r}: pass --env-module {module} to allow that"
            )
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"env id {env_id!r}: cannot import module {module!r} ({exc})") from None
    if plain not in gym.registry:
        raise ValueError(f"env id {env_id!r} is not a registered Gymnasium environment")
    return plain


def world_of(env_id: str) -> type[GridWorld] | None:
    """The grid engine class of a built-in gridworld id (after resolution), None for any other env."""
    return WORLDS.get(resolve_env_id(env_id))


def engine_of(env_id: str) -> type[GridWorld] | type[PointOffSwitch] | None:
    """The batched engine class of any built-in env id (after resolution), None for any other env."""
    return ENGINES.get(resolve_env_id(env_id))


__all__ = [
    "ACTIONS",
    "ENGINES",
    "N_ACTIONS",
    "WORLDS",
    "AbsentSupervisor",
    "GridEnv",
    "GridVectorEnv",
    "GridWorld",
    "HiddenSupervisor",
    "OffSwitch",
    "PointOffSwitch",
    "PowerSeeking",
    "ForwardSpeedLimit",
    "JointSpeedLimit",
    "SpeedLimit",
    "resolve_env_id",
    "allow_env_modules",
    "engine_of",
    "world_of",
]
