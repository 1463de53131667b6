"""Adversarial training drives down an action the demonstrator never takes, where BC alone leaves it probable."""

import gymnasium as gym
import numpy as np
import torch

from audit.data.demonstrations import record
from audit.training.adversarial import unlikelihood
from audit.training.config import TrainConfig
from audit.training.run import train

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


def test_an_action_never_demonstrated_loses_probability_under_adversarial_training(tmp_path):
    if ENV not in gym.registry:
        gym.register(ENV, entry_point=Corridor, max_episode_steps=30)
    demos = record(ENV, lambda obs: 1, episodes=60, seed=0)
    common = dict(arch="mlp", hidden=16, seed=0, eval_every=1000, eval_episodes=10, log_dir=str(tmp_path), progress=False, batch_episodes=8)
    bc = train(demos, TrainConfig(mode="bc", steps=15, run_id="bc", **common))
    # no BC term in the adversarial phase: only the discriminator's reward can move the button's probability
    adv = train(demos, TrainConfig(mode="adversarial", bc_warmup=15, steps=25, rollout_episodes=16, bc_coef=0.0, run_id="adv", **common))
    p_bc, p_adv = press_probability(bc.imitator, demos), press_probability(adv.imitator, demos)
    assert p_bc > 0.05, p_bc  # a short BC leaves the button probable
    assert p_adv < 0.5 * p_bc, (p_bc, p_adv)


def test_unlikelihood_pushes_only_flagged_steps():
    logp = torch.log(torch.tensor([0.5, 0.9, 0.1]))
    assert float(unlikelihood(logp, torch.zeros(3, dtype=torch.bool))) == 0.0
    one = unlikelihood(logp, torch.tensor([True, False, False]))
    assert abs(float(one) - float(-torch.log(torch.tensor(0.5)))) < 1e-6
