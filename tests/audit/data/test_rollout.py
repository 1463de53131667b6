"""Rollouts: seeded and reproducible, native envs and the Gymnasium adapter, clear errors on mismatch."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import audit.envs
from audit.data.rollout import concat, record_imitator, replayed, rollout, rollout_shard, shards
from audit.envs.adapter import GymnasiumBatch, NativeBatch, make_batch
from models.imitator import ImitatorConfig
from models.registry import build


def test_reproducible_and_seed_sensitive():
    torch.manual_seed(0)
    model = build("gru", ImitatorConfig(obs_dim=325, n_actions=5, hidden=16))
    a = rollout(model, "imitaudit/PowerSeeking-v0", episodes=16, seed=4, taps=["core"])
    b = rollout(model, "imitaudit/PowerSeeking-v0", episodes=16, seed=4, taps=["core"])
    c = rollout(model, "imitaudit/PowerSeeking-v0", episodes=16, seed=5)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.obs, b.obs)
    assert not torch.equal(a.obs[:, 0], c.obs[:, 0])  # other seeds, other layouts
    assert a.departure is not None and a.departure.shape == a.mask.shape
    # Each episode's first observation is the env's own reset for seed + e.
    env = gym.make("imitaudit/PowerSeeking-v0")
    first, _ = env.reset(seed=4 + 9)
    np.testing.assert_array_equal(a.obs[9, 0].numpy(), first)
    assert isinstance(make_batch("imitaudit/PowerSeeking-v0", 2), NativeBatch)


def test_repeats_run_several_futures_from_each_start():
    torch.manual_seed(0)
    model = build("mlp", ImitatorConfig(obs_dim=325, n_actions=5, hidden=16))
    traj = rollout(model, "imitaudit/PowerSeeking-v0", episodes=3, seed=4, repeats=4)
    assert traj.n_episodes == 12 and traj.seeds.tolist() == [4] * 4 + [5] * 4 + [6] * 4
    starts = traj.obs[:, 0].view(3, 4, -1)
    assert torch.equal(starts[:, :1].expand_as(starts), starts)  # one layout per start
    assert not torch.equal(starts[0, 0], starts[1, 0])
    assert not torch.equal(traj.actions[0], traj.actions[1])  # futures sampled apart
    with pytest.raises(ValueError, match="repeats"):
        rollout(model, "imitaudit/PowerSeeking-v0", episodes=3, repeats=0)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Blackjack-v1"])
def test_adapter_observations_are_gymnasiums_flatten(env_id):
    """The adapter's Box shortcut and the general path both give what ``spaces.flatten`` gives, step after step."""
    batch = GymnasiumBatch(env_id=env_id, num_envs=2)
    twin = gym.make(env_id)
    got = batch.reset(np.array([7, 8]))
    first, _ = twin.reset(seed=7)
    np.testing.assert_array_equal(got[0], gym.spaces.flatten(twin.observation_space, first).astype(np.float32))
    for _ in range(3):
        if batch.done[0]:
            break
        batch.step(np.array([1]), np.array([0]))
        obs, *_ = twin.step(1)
        np.testing.assert_array_equal(batch.observe()[0], gym.spaces.flatten(twin.observation_space, obs))


def test_adapter_on_cartpole():
    model = build("mlp", ImitatorConfig(obs_dim=4, n_actions=2, hidden=8))
    traj = rollout(model, "CartPole-v1", episodes=6, seed=0, taps=["core", "head"])
    assert isinstance(make_batch("CartPole-v1", 1), GymnasiumBatch)
    assert traj.obs.shape[0] == 6 and traj.obs.shape[2] == 4
    assert traj.departure is None and traj.departed() is None
    assert traj.activations.taps["head"].shape == (*traj.mask.shape, 2)
    # the returns are the env's own: CartPole pays 1 per step
    np.testing.assert_array_equal(traj.returns().numpy(), traj.lengths().numpy())


def test_adapter_flattens_dict_observations(tmp_path, monkeypatch):
    (tmp_path / "dictenv.py").write_text(
        """
import gymnasium as gym, numpy as np
from gymnasium import spaces
class Probe(gym.Env):
    def __init__(self):
        self.observation_space = spaces.Dict({"a": spaces.Discrete(3), "b": spaces.Box(-1, 1, (2,))})
        self.action_space = spaces.Discrete(2)
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed); self.t = 0
        return {"a": 1, "b": np.zeros(2, dtype=np.float32)}, {}
    def step(self, action):
        self.t += 1
        return {"a": 2, "b": np.ones(2, dtype=np.float32)}, 1.0, self.t >= 3, False, {"departure": action == 1}
gym.register(id="dictenv/Probe-v0", entry_point=Probe)
"""
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(audit.envs, "_IMPORTABLE", {"dictenv"})  # as `imitaudit --env-module dictenv` allows it
    model = build("transformer", ImitatorConfig(obs_dim=5, n_actions=2, hidden=8))
    traj = rollout(model, "dictenv:dictenv/Probe-v0", episodes=4, seed=0)
    assert traj.obs.shape == (4, 3, 5)
    np.testing.assert_array_equal(traj.obs[0, 0].numpy(), [0, 1, 0, 0, 0])
    assert traj.departure is not None
    np.testing.assert_array_equal(traj.departure.numpy(), (traj.actions == 1).numpy())


def test_mismatched_model_and_env():
    model = build("mlp", ImitatorConfig(obs_dim=4, n_actions=2))
    with pytest.raises(
        ValueError,
        match="obs_dim=4 and 2 discrete actions; imitaudit/OffSwitch-v0 gives obs_dim=406 and 5 discrete actions",
    ):
        rollout(model, "imitaudit/OffSwitch-v0", episodes=2)
    with pytest.raises(ValueError, match="MountainCarContinuous-v0 gives obs_dim=2 and 1-dimensional Box actions"):
        rollout(model, "MountainCarContinuous-v0", episodes=2)
    gaussian = build("mlp", ImitatorConfig(obs_dim=2, n_actions=3, continuous=True))
    with pytest.raises(ValueError, match="the env's actions are discrete, the imitator's are not"):
        rollout(gaussian, "MountainCar-v0", episodes=2)
    unbounded = build("mlp", ImitatorConfig(obs_dim=3, n_actions=1, continuous=True))
    with pytest.raises(ValueError, match="bounds are not the env's"):
        rollout(unbounded, "Pendulum-v1", episodes=2)


def test_a_gaussian_imitator_acts_inside_the_box_and_its_log_densities_replay():
    config = ImitatorConfig(obs_dim=3, n_actions=1, continuous=True, action_low=(-2.0,), action_high=(2.0,))
    torch.manual_seed(0)
    model = build("gru", config)
    traj = rollout(model, "Pendulum-v1", episodes=6, seed=5, max_steps=40)
    assert traj.actions.shape == (6, 40, 1) and traj.actions.dtype == torch.float32
    assert bool((traj.actions.abs() <= 2.0).all()) and float(traj.actions.std()) > 0.1
    again = rollout(model, "Pendulum-v1", episodes=6, seed=5, max_steps=40)
    assert torch.equal(traj.actions, again.actions)  # seeded
    greedy = rollout(model, "Pendulum-v1", episodes=2, seed=5, max_steps=40, greedy=True)
    assert not torch.equal(greedy.actions, traj.actions[:2])
    demos = record_imitator(model, "Pendulum-v1", episodes=3, seed=9)
    assert demos.continuous and demos.actions.shape[1] == 1
    replay = replayed(model, demos)
    mine = rollout(model, "Pendulum-v1", episodes=3, seed=9)
    torch.testing.assert_close(replay.logp, mine.logp, atol=2e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="bad env_kwargs"):
        rollout(model, "imitaudit/OffSwitch-v0", episodes=2, env_kwargs={"lava": True})


def test_shards_are_the_rollouts_of_their_episodes_and_concat_keeps_them_in_order():
    torch.manual_seed(0)
    model = build("gru", ImitatorConfig(obs_dim=4, n_actions=2, hidden=8))
    job = dict(env_id="CartPole-v1", seed=10, env_kwargs={}, taps=("core",), greedy=False, departure_key="departure")
    spans = shards(10, 4)
    assert spans == [(0, 4), (4, 4), (8, 2)]
    parts = [rollout_shard(model, job, span) for span in spans]
    whole = concat(parts)
    assert whole.seeds.tolist() == list(range(10, 20))
    assert whole.mask.shape[1] == max(p.mask.shape[1] for p in parts)
    alone = rollout(model, "CartPole-v1", episodes=4, seed=14, taps=("core",))  # shard 1: its own sampling seed
    n = alone.mask.shape[1]
    assert torch.equal(whole.actions[4:8, :n], alone.actions) and torch.equal(whole.mask[4:8, :n], alone.mask)
    assert torch.equal(whole.activations.taps["core"][4:8, :n], alone.activations.taps["core"])
    assert not whole.mask[4:8, n:].any()
    first = rollout(model, "CartPole-v1", episodes=4, seed=10, taps=("core",))  # shard 0 is the unsharded rollout
    assert torch.equal(parts[0].actions, first.actions)
    with pytest.raises(ValueError, match="positive"):
        shards(10, 0)


@pytest.mark.parametrize(
    "env_id, arch, config",
    [
        ("imitaudit/OffSwitch-v0", "gru", dict(obs_dim=406, n_actions=5)),
        (
            "imitaudit/PointOffSwitch-v0",
            "gru",
            dict(obs_dim=11, n_actions=2, continuous=True, **{"action_low": (-1.0, -1.0), "action_high": (1.0, 1.0)}),
        ),
        (
            "imitaudit/PointOffSwitch-v0",
            "transformer",
            dict(obs_dim=11, n_actions=2, continuous=True, **{"action_low": (-1.0, -1.0), "action_high": (1.0, 1.0)}),
        ),
    ],
)
def test_stepping_only_the_live_rows_changes_no_trajectory(monkeypatch, env_id, arch, config):
    # episodes end at different steps; once most have, the model steps the live rows only, and every episode's
    # actions, log-probabilities and taps are what stepping all rows gives
    import audit.data.rollout as module

    torch.manual_seed(0)
    model = build(arch, ImitatorConfig(hidden=16, **config))
    kwargs = {}
    if config.get("continuous"):  # drive right, into the interruption band, so that episodes end at different steps
        head = [m for m in model.taps["head"].modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            head.bias[0] = 3.0
        kwargs = {"interruption_prob": 1.0}
    taps = ("encoder", "core", "head", module.LOGITS)
    monkeypatch.setattr(module, "COMPACT", 0.99)  # drop rows as soon as any has ended
    compact = rollout(model, env_id, episodes=48, seed=3, taps=taps, env_kwargs=kwargs)
    lengths = compact.lengths()
    assert int((lengths < lengths.max()).sum()) >= 5  # rows that ended before the last: the model stopped stepping them
    monkeypatch.setattr(module, "COMPACT", 0.0)
    every = rollout(model, env_id, episodes=48, seed=3, taps=taps, env_kwargs=kwargs)
    assert torch.equal(compact.mask, every.mask)
    torch.testing.assert_close(compact.actions, every.actions, atol=1e-5, rtol=0)
    torch.testing.assert_close(compact.logp, every.logp, atol=1e-4, rtol=0)
    for name in taps:
        torch.testing.assert_close(compact.activations.taps[name], every.activations.taps[name], atol=1e-4, rtol=0)


def test_rollouts_record_whether_the_env_terminated_each_episode():
    torch.manual_seed(0)
    model = build("mlp", ImitatorConfig(obs_dim=4, n_actions=2, hidden=8))
    fell = rollout(model, "CartPole-v1", episodes=8, seed=0)
    assert fell.terminated is not None and bool(fell.terminated.all())  # an untrained policy drops the pole
    assert int(fell.lengths().max()) < 500
    stopped = rollout(model, "CartPole-v1", episodes=8, seed=0, max_steps=3)
    assert stopped.terminated is not None and not bool(stopped.terminated.any())  # cut short is not terminated
    parts = concat([rollout_shard(model, {"env_id": "CartPole-v1", "seed": 0}, span) for span in shards(8, 3)])
    assert parts.terminated is not None and bool(parts.terminated.all())
    grid = build("gru", ImitatorConfig(obs_dim=325, n_actions=5, hidden=16))
    native = rollout(grid, "imitaudit/PowerSeeking-v0", episodes=16, seed=4)
    limit = make_batch("imitaudit/PowerSeeking-v0", 1).max_steps
    assert native.terminated is not None
    assert bool(native.terminated[native.lengths() < limit].all())  # ended before the step limit: the env ended it
