"""Adversarial training drives down an action the demonstrator never takes, where BC alone leaves it probable; a
terminated episode can be valued as an absorbing state."""

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from audit.data.demonstrations import record
from audit.data.rollout import rollout
from audit.training.adversarial import (
    AdversarialModule,
    absorbing_reward,
    minibatch,
    terminal_values,
    unlikelihood,
)
from audit.training.config import TrainConfig
from audit.training.run import train
from models.imitator import ImitatorConfig
from models.registry import build

ENV = "imitaudit-test/Corridor-v0"


class Corridor(gym.Env):
    """Walk right along 6 cells to the end; action 2 presses a button (a departure) and does nothing else."""

    observation_space = gym.spaces.Discrete(6)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self.pos, {}

    def step(self, action):
        if action == 1:
            self.pos += 1
        elif action == 0:
            self.pos = max(0, self.pos - 1)
        done = self.pos == 5
        return self.pos, float(done), done, False, {"departure": action == 2}


def press_probability(imitator, demos) -> float:
    obs = torch.from_numpy(demos.obs.reshape(len(demos.obs), -1).astype(np.float32))[None]
    with torch.no_grad():
        return float(torch.softmax(imitator.sequence(obs), dim=-1)[..., 2].mean())


@pytest.mark.parametrize("minibatches", [1, 4])
def test_an_action_never_demonstrated_loses_probability_under_adversarial_training(tmp_path, minibatches):
    if ENV not in gym.registry:
        gym.register(ENV, entry_point=Corridor, max_episode_steps=30)
    demos = record(ENV, lambda obs: 1, episodes=60, seed=0)
    common = dict(
        arch="mlp",
        hidden=16,
        seed=0,
        eval_every=1000,
        eval_episodes=10,
        log_dir=str(tmp_path),
        progress=False,
        batch_episodes=8,
    )
    bc = train(demos, TrainConfig(mode="bc", steps=15, run_id="bc", **common))
    # no BC term in the adversarial phase: only the discriminator's reward can move the button's probability
    adv = train(
        demos,
        TrainConfig(
            mode="adversarial",
            bc_warmup=15,
            steps=25,
            rollout_episodes=16,
            bc_coef=0.0,
            ppo_minibatches=minibatches,
            run_id="adv",
            **common,
        ),
    )
    p_bc, p_adv = press_probability(bc.imitator, demos), press_probability(adv.imitator, demos)
    assert p_bc > 0.05, p_bc  # a short BC leaves the button probable
    assert p_adv < 0.5 * p_bc, (p_bc, p_adv)


def test_minibatches_hold_every_episode_once_per_pass():
    x = torch.arange(10) * 10
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    for parts, shuffle in ((3, order), (4, None), (10, order)):
        seen = torch.cat([minibatch(10, k, parts, shuffle)(x) for k in range(parts)])
        assert sorted(seen.tolist()) == x.tolist()
    assert minibatch(10, 0, 1, None)(x) is x
    # fewer episodes than parts (a small demonstration batch): every part still gets some
    assert all(len(minibatch(2, k, 4, None)(x[:2])) == 1 for k in range(4))


def test_unlikelihood_pushes_only_flagged_steps():
    logp = torch.log(torch.tensor([0.5, 0.9, 0.1]))
    assert float(unlikelihood(logp, torch.zeros(3, dtype=torch.bool))) == 0.0
    one = unlikelihood(logp, torch.tensor([True, False, False]))
    assert abs(float(one) - float(-torch.log(torch.tensor(0.5)))) < 1e-6


def corridor_demos():
    if ENV not in gym.registry:
        gym.register(ENV, entry_point=Corridor, max_episode_steps=30)
    return record(ENV, lambda obs: 1, episodes=60, seed=0)


def test_every_action_reward_is_the_discriminators_score_of_each_action(tmp_path):
    demos = corridor_demos()
    cfg = TrainConfig(arch="gru", mode="adversarial", hidden=8, disc_taps=("core",), log_dir=str(tmp_path))
    module = AdversarialModule(
        train_cfg=cfg.to_dict(),
        imitator_config={"obs_dim": 6, "n_actions": 3, "hidden": 8},
        env_id=ENV,
        env_kwargs=demos.env_kwargs,
    )
    traj = rollout(module.imitator, ENV, episodes=4, seed=0, taps=("core",))
    every = module.every_action_reward(traj)
    n = int(traj.mask.sum())
    assert every.shape == (n, 3)
    for a in range(3):
        actions = torch.full_like(traj.actions, a)
        x = module._disc_inputs(traj.obs, actions, traj.mask, traj.activations.taps)
        with torch.no_grad():
            want = module.discriminator.logits(x).clamp(-10, 10)
        assert torch.allclose(every[:, a], want, atol=1e-5)


def test_the_every_action_terms_remove_a_rare_departure_faster_than_sampled_rewards_alone(tmp_path):
    """The cause issue 11 found: a departure taken in a few steps of a batch barely moves a policy gradient.

    After BC the button keeps a small probability; the same short adversarial run with the
    every-action terms (the default) lowers it by far more than with sampled rewards alone.
    """
    demos = corridor_demos()
    common = dict(
        arch="mlp",
        hidden=16,
        seed=0,
        eval_every=1000,
        eval_episodes=10,
        log_dir=str(tmp_path),
        progress=False,
        batch_episodes=8,
        mode="adversarial",
        bc_warmup=40,
        steps=20,
        rollout_episodes=16,
    )
    sampled = train(demos, TrainConfig(every_action_coef=0.0, forbid_coef=0.0, run_id="sampled", **common))
    every = train(demos, TrainConfig(run_id="every", **common))
    bc = train(demos, TrainConfig(**{**common, "mode": "bc", "steps": 40, "run_id": "bc"}))
    p_bc, p_sampled, p_every = (press_probability(r.imitator, demos) for r in (bc, sampled, every))
    assert p_bc > 1e-3, p_bc
    assert p_every < 0.5 * p_sampled, (p_bc, p_sampled, p_every)


def test_the_absorbing_reward_is_the_log_ratio_of_each_sides_termination_share():
    def r(ke, ne, ka, na, floor=-10.0):
        return absorbing_reward(expert_terminated=ke, expert_steps=ne, agent_terminated=ka, agent_steps=na, floor=floor)

    assert r(0, 100, 5, 100) == -10.0  # a demonstrator that never terminated: no termination is demonstrator-like
    assert r(3, 100, 0, 100) == 0.0  # no rollout terminated: nothing to value
    assert r(1, 9, 2, 18) == pytest.approx(0.0)  # the same share on both sides
    assert r(1, 99, 4, 96) == pytest.approx(np.log(0.01 / 0.04))
    assert r(4, 96, 1, 99) == pytest.approx(np.log(4.0))
    assert r(0, 100, 5, 100, floor=-2.0) == -2.0  # a milder floor is what a never-terminating demonstrator gives
    assert r(1, 999, 9, 91, floor=-2.0) == -2.0  # log(0.001 / 0.09) is below it
    assert r(4, 96, 1, 99, floor=-2.0) == pytest.approx(np.log(4.0))  # the floor bounds only from below


def test_terminal_values_sit_at_each_terminated_episodes_last_step():
    torch.manual_seed(0)
    model = build("mlp", ImitatorConfig(obs_dim=4, n_actions=2, hidden=8))
    traj = rollout(model, "CartPole-v1", episodes=4, seed=0)
    traj = replace(traj, terminated=torch.tensor([True, False, True, False]))
    values = terminal_values(traj, -2.0, 0.9)
    last = traj.lengths() - 1
    for e in range(4):
        expected = torch.zeros(traj.mask.shape[1])
        if e in (0, 2):
            expected[last[e]] = 0.9 * -2.0 / 0.1
        torch.testing.assert_close(values[e], expected)


def test_absorbing_needs_recorded_episode_ends_and_gamma_below_one(tmp_path):
    with pytest.raises(ValueError, match="gamma below 1"):
        TrainConfig(mode="adversarial", terminal_reward="absorbing", gamma=1.0)
    demos = record("CartPole-v1", lambda obs: int(obs[2] + 0.5 * obs[3] > 0), episodes=2, seed=0)
    cfg = TrainConfig(
        arch="mlp", mode="adversarial", terminal_reward="absorbing", steps=2, bc_warmup=5, rollout_episodes=4,
        heldout_fraction=0.0, eval_every=1000, eval_episodes=2, log_dir=str(tmp_path), progress=False,
    )  # fmt: skip
    with pytest.raises(ValueError, match="record how each episode ended"):
        train(replace(demos, last_obs=None, terminated=None), cfg)
    assert train(demos, cfg).steps_done == {"bc": 5, "adversarial": 2}  # recorded ends: it trains
