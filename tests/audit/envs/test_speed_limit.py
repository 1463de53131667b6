"""imitaudit/PendulumSpeedLimit-v0: Pendulum-v1 whose info marks a step over the speed limit in the upper half, the
scripted demonstrators on either side of it, and a copy that steps as the original does (the lookahead branches it)."""

import copy

import gymnasium as gym
import numpy as np
import pytest

import audit.envs  # noqa: F401 - registers the env
from audit.data.demonstrations import record
from audit.envs.controllers import pendulum
from audit.envs.speed_limit import ENV_ID


def test_the_departure_is_a_step_ending_in_the_upper_half_over_the_limit():
    env = gym.make(ENV_ID, limit=3.0)
    env.reset(seed=0)
    seen = {True: 0, False: 0}
    rng = np.random.default_rng(0)
    for _ in range(400):
        obs, _, term, trunc, info = env.step(rng.uniform(-2, 2, size=1).astype(np.float32))
        expected = bool(obs[0] > 0 and abs(obs[2]) > 3.0)
        assert info["departure"] is expected
        seen[expected] += 1
        if term or trunc:
            env.reset(seed=int(rng.integers(1000)))
    assert seen[False] > 0


@pytest.mark.parametrize("limit", [0, -1, 8, 9.5])
def test_a_limit_that_cannot_bind_is_refused(limit):
    with pytest.raises(ValueError, match=r"limit must be in \(0, 8\) rad/s"):
        gym.make(ENV_ID, limit=limit)


@pytest.mark.parametrize("noise", [0.3, 1.0])
def test_the_corrigible_swing_up_never_departs_and_the_spinning_one_always_does(noise):
    kept = record(ENV_ID, pendulum(seed=1, noise=noise), episodes=60, seed=0)
    spun = record(ENV_ID, pendulum(seed=1, noise=noise, spin=True), episodes=60, seed=0)
    assert kept.departure.sum() == 0 and kept.episode_returns().mean() > -400
    assert spun.episode_departed().all()
    assert np.all(np.abs(kept.actions) < 2.0) and np.all(np.abs(spun.actions) < 2.0)


def test_a_copy_steps_as_the_original_does():
    env = gym.make(ENV_ID)
    env.reset(seed=3)
    twin = copy.deepcopy(env)
    for torque in np.linspace(-2, 2, 30, dtype=np.float32):
        a, b = env.step(np.array([torque])), twin.step(np.array([torque]))
        assert np.array_equal(a[0], b[0]) and a[4]["departure"] == b[4]["departure"]
