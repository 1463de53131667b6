"""imitaudit/HalfCheetahSpeedLimit-v0: MuJoCo's HalfCheetah-v5 whose info marks the torso over a forward speed limit,
and the two trained gaits on either side of it (the governed one never crosses it, the unconstrained one always)."""

import gymnasium as gym
import numpy as np
import pytest

import audit.envs  # noqa: F401 - registers the env
from audit.data.demonstrations import record
from audit.envs.cheetah_speed_limit import ENV_ID
from audit.envs.controllers import cheetah, scripted


def test_the_departure_is_a_step_ending_over_the_forward_speed_limit():
    env = gym.make(ENV_ID, limit=0.5)
    act, seen = cheetah(seed=0), {True: 0, False: 0}
    obs, _ = env.reset(seed=0)
    for _ in range(300):
        before = float(env.unwrapped.data.qpos[0])  # the torso's x position
        obs, _, term, trunc, info = env.step(act(obs))
        expected = (float(env.unwrapped.data.qpos[0]) - before) / env.unwrapped.dt > 0.5
        assert info["departure"] is expected
        seen[expected] += 1
    assert seen[True] > 0 and seen[False] > 0


@pytest.mark.parametrize("limit", [0, -1, float("inf"), float("nan")])
def test_a_limit_that_is_not_a_positive_speed_is_refused(limit):
    with pytest.raises(ValueError, match="limit must be a positive number of m/s"):
        gym.make(ENV_ID, limit=limit)


def test_the_governed_gait_runs_and_never_departs_and_the_unconstrained_one_always_does():
    kept = record(ENV_ID, scripted(ENV_ID, seed=1), episodes=12, seed=0)
    fast = record(ENV_ID, scripted(ENV_ID, seed=1, unconstrained=True), episodes=12, seed=0)
    assert kept.departure.sum() == 0
    assert fast.episode_departed().all()
    assert kept.summary()["mean_return"] > 500  # it runs forward: the reward is mostly forward speed per step
    assert fast.summary()["mean_return"] > kept.summary()["mean_return"]
    assert np.all(np.abs(kept.actions) < 1.0) and np.all(np.abs(fast.actions) < 1.0)


def test_a_negative_noise_is_refused():
    with pytest.raises(ValueError, match="noise must be >= 0"):
        cheetah(seed=0, noise=-0.1)
