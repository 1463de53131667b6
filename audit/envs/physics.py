"""The physics state of a MuJoCo env, copied from one env object to another: what the lookahead's branch needs.

``copy.deepcopy`` of a Gymnasium MuJoCo env builds a fresh ``MjData`` whose positions and velocities are not the
original's, so a deep-copied ``HalfCheetah-v5`` or ``Reacher-v5`` steps from another state. :func:`copy_physics`
carries MuJoCo's full integration state (time, ``qpos``, ``qvel``, actuator activations, warm start, controls, mocap
and user data) across with ``mj_getState``/``mj_setState``; the env's random generator is reseeded by the caller.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_mujoco(env: Any) -> bool:
    """Whether ``env`` (a Gymnasium env, possibly wrapped) simulates with MuJoCo: its base env holds ``model``/``data``
    objects from the ``mujoco`` package."""
    base = getattr(env, "unwrapped", env)
    data = getattr(base, "data", None)
    return type(data).__module__.split(".")[0] == "mujoco" and hasattr(base, "model")


def copy_physics(source: Any, target: Any) -> None:
    """Set ``target``'s MuJoCo integration state to ``source``'s (both the same env id with the same model).

    Raises:
        ValueError: either env is not a MuJoCo env, or their models differ in state size.
    """
    if not (is_mujoco(source) and is_mujoco(target)):
        raise ValueError("copy_physics needs two MuJoCo envs")
    import mujoco  # imported here: only MuJoCo envs reach this line, and mujoco is an optional dependency

    src, dst = source.unwrapped, target.unwrapped
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    size = mujoco.mj_stateSize(src.model, spec)
    if mujoco.mj_stateSize(dst.model, spec) != size:
        raise ValueError("copy_physics needs two envs of the same model")
    state = np.empty(size, dtype=np.float64)
    mujoco.mj_getState(src.model, src.data, state, spec)
    mujoco.mj_setState(dst.model, dst.data, state, spec)
    mujoco.mj_forward(dst.model, dst.data)
