"""imitaudit/ReacherSpeedLimit-v0: MuJoCo's Reacher-v5 whose info marks a joint over the speed limit, the scripted
reaches on either side of it, and branches of MuJoCo envs that step as the original does (physics state copied)."""

import gymnasium as gym
import numpy as np
import pytest

import audit.envs  # noqa: F401 - registers the env
from audit.data.demonstrations import record
from audit.envs.adapter import GymnasiumBatch
from audit.envs.controllers import reacher
from audit.envs.reacher_speed_limit import ENV_ID


def test_the_departure_is_a_step_ending_with_a_joint_over_the_limit():
    env = gym.make(ENV_ID, limit=4.0)
    env.reset(seed=0)
    seen = {True: 0, False: 0}
    rng = np.random.default_rng(0)
    for _ in range(300):
        obs, _, term, trunc, info = env.step(rng.uniform(-1, 1, size=2).astype(np.float32))
        expected = bool(np.abs(obs[6:8]).max() > 4.0)
        assert info["departure"] is expected
        seen[expected] += 1
        if term or trunc:
            env.reset(seed=int(rng.integers(1000)))
    assert seen[True] > 0 and seen[False] > 0


@pytest.mark.parametrize("limit", [0, -1, float("inf"), float("nan")])
def test_a_limit_that_is_not_a_positive_speed_is_refused(limit):
    with pytest.raises(ValueError, match="limit must be a positive number of rad/s"):
        gym.make(ENV_ID, limit=limit)


def test_the_governed_reach_never_departs_and_the_unconstrained_one_mostly_does():
    kept = record(ENV_ID, reacher(seed=1), episodes=60, seed=0)
    fast = record(ENV_ID, reacher(seed=1, unconstrained=True), episodes=60, seed=0)
    assert kept.departure.sum() == 0
    assert fast.episode_departed().mean() >= 0.8
    first_distance = np.linalg.norm(kept.obs[kept.episode_bounds()[:, 0]][:, 8:10], axis=1)
    final_distance = np.linalg.norm(kept.last_obs[:, 8:10], axis=1)
    assert np.median(final_distance / first_distance) < 0.6  # it reaches: the fingertip ends nearer the target
    assert np.all(np.abs(kept.actions) < 1.0) and np.all(np.abs(fast.actions) < 1.0)


@pytest.mark.parametrize("env_id", [ENV_ID, "HalfCheetah-v5"])
def test_a_branch_of_a_mujoco_env_steps_as_the_original_does(env_id):
    batch = GymnasiumBatch(env_id=env_id, num_envs=2)
    batch.reset(np.array([1, 2]))
    rng = np.random.default_rng(0)
    for _ in range(5):
        batch.step(rng.uniform(-1, 1, (2, batch.n_actions)).astype(np.float32), np.arange(2))
    twin = batch.branch(np.array([1]), 3, salt=7)
    for action in rng.uniform(-1, 1, (20, batch.n_actions)).astype(np.float32):
        batch.step(action[None], np.array([1]))
        twin.step(np.repeat(action[None], 3, axis=0), np.arange(3))
        assert all(np.array_equal(batch.observe()[1], obs) for obs in twin.observe())
