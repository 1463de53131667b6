"""Counterfactual futures: reproducible, never disturbing the episode they branch from, clear refusals."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from audit.data.futures import Budget, branch_futures, walk
from audit.data.rollout import rollout
from audit.envs.adapter import make_batch
from models.imitator import ImitatorConfig
from models.registry import build

ENV = "imitaudit/OffSwitch-v0"


def state_of(batch):
    e = batch.engine
    return [a.copy() for a in (e.cell, e.flag, e.t, e.done, e.key, e.layout.walls)] + [batch.observe()]


@pytest.mark.parametrize("arch", ["mlp", "gru", "transformer"])
def test_futures_are_reproducible_and_leave_the_branched_episodes_alone(arch):
    torch.manual_seed(0)
    model = build(arch, ImitatorConfig(obs_dim=406, n_actions=5, hidden=16)).eval()
    batch = make_batch(ENV, 6)
    batch.reset(np.arange(6))
    state = model.initial_state(6)
    with torch.no_grad():
        for _ in range(3):  # walk a few steps so the state and the env are mid-episode
            obs = torch.from_numpy(batch.observe())
            logits, state = model(obs, state)
            live = np.flatnonzero(~batch.done)
            batch.step(logits.argmax(-1).numpy()[live], live)
    before = state_of(batch)
    state_before = None if state is None else state.clone()
    rows = np.flatnonzero(~batch.done)
    budget = Budget(horizon=5, samples=3, every=1)
    with torch.no_grad():
        a = branch_futures(batch, rows, model=model, state=state, budget=budget, taps=("core", "head"), seed=11, step=3)
        b = branch_futures(batch, rows, model=model, state=state, budget=budget, taps=("core", "head"), seed=11, step=3)
        c = branch_futures(batch, rows, model=model, state=state, budget=budget, taps=("core", "head"), seed=12, step=3)
    for x, y in zip(before, state_of(batch)):
        np.testing.assert_array_equal(x, y)  # the real episodes did not move
    if state is not None:
        assert torch.equal(state, state_before)
    assert (
        torch.equal(a.obs, b.obs) and torch.equal(a.actions, b.actions) and torch.equal(a.taps["core"], b.taps["core"])
    )
    assert not torch.equal(a.actions, c.actions)  # another seed, other futures
    assert a.obs.shape[0] == 3 * len(rows) and a.obs.shape[1] <= 5
    # each future starts where its episode stands, with the model's state carried into it
    np.testing.assert_array_equal(a.obs[:, 0].numpy(), np.repeat(batch.observe()[rows], 3, axis=0))
    with torch.no_grad():
        first, _ = model(torch.from_numpy(batch.observe()[rows]), model.select_state(state, torch.from_numpy(rows)))
    torch.testing.assert_close(a.taps["head"][::3, 0], first)


def test_walk_replays_the_rollout_and_refuses_one_it_cannot():
    torch.manual_seed(1)
    model = build("gru", ImitatorConfig(obs_dim=406, n_actions=5, hidden=16))
    traj = rollout(model, ENV, episodes=8, seed=100)
    calls = []

    def score(futures):
        calls.append(futures.step)
        return futures.mask.sum(dim=1).float()  # how many steps each future ran

    budget = Budget(horizon=4, samples=2, every=3)
    forecast = walk(
        model,
        ENV,
        seeds=traj.seeds.numpy(),
        obs=traj.obs,
        actions=traj.actions,
        mask=traj.mask,
        budget=budget,
        score=score,
        taps=(),
        seed=0,
    )
    assert forecast.shape == traj.mask.shape
    assert calls == list(range(0, traj.mask.shape[1], 3))
    assert float(forecast[traj.mask].max()) <= 4 and float(forecast[traj.mask].min()) >= 1
    assert float(forecast[~traj.mask].abs().sum()) == 0.0
    again = walk(
        model,
        ENV,
        seeds=traj.seeds.numpy(),
        obs=traj.obs,
        actions=traj.actions,
        mask=traj.mask,
        budget=budget,
        score=score,
        taps=(),
        seed=0,
    )
    assert torch.equal(forecast, again)
    with pytest.raises(ValueError, match="does not replay"):
        walk(
            model,
            ENV,
            seeds=traj.seeds.numpy() + 1,
            obs=traj.obs,
            actions=traj.actions,
            mask=traj.mask,
            budget=budget,
            score=score,
            taps=(),
            seed=0,
        )
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        Budget(horizon=0, samples=1, every=1)


class Uncopyable(gym.Env):
    """A Gymnasium env that holds something deepcopy refuses (as a live simulator handle would)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}

    def __deepcopy__(self, memo):
        raise TypeError("cannot pickle 'simulator' object")


def test_gymnasium_envs_branch_by_deepcopy_or_refuse_in_one_line():
    cart = make_batch("CartPole-v1", 2)
    cart.reset(np.arange(2))
    twin = cart.branch(np.array([1]), 3, salt=5)
    np.testing.assert_array_equal(twin.observe(), np.repeat(cart.observe()[1:], 3, axis=0))
    before = copy.deepcopy(cart.observe())
    twin.step(np.zeros(3, dtype=np.int64), np.arange(3))
    np.testing.assert_array_equal(cart.observe(), before)
    gym.register("imitaudit-test/Uncopyable-v0", entry_point=Uncopyable, max_episode_steps=5)
    batch = make_batch("imitaudit-test/Uncopyable-v0", 2)
    batch.reset(np.arange(2))
    with pytest.raises(ValueError, match="cannot be cloned for the lookahead") as err:
        batch.branch(np.array([0]), 2, salt=0)
    assert "\n" not in str(err.value)
