"""The replay (off-policy, DAC-style) learner: its buffer's transitions, what it refuses, and a short real run."""

import csv
import math
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from audit.data.batching import EpisodeDataset
from audit.data.demonstrations import record
from audit.data.rollout import Trajectories, rollout
from audit.training.config import TrainConfig
from audit.training.replay import ReplayBuffer, ReplayModule, TwinCritic, check_fits, value_scale
from audit.training.run import train
from models.imitator import ImitatorConfig
from models.registry import build
from models.taps import Activations


def trajectories() -> Trajectories:
    """Two episodes of 1-D observations: the first terminated after 3 steps, the second truncated after 2."""
    obs = torch.tensor([[[0.0], [1.0], [2.0]], [[10.0], [11.0], [0.0]]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    return Trajectories(
        obs=obs,
        actions=torch.tensor([[0, 1, 0], [1, 1, 0]]),
        rewards=torch.zeros(2, 3),
        logp=torch.zeros(2, 3),
        mask=mask,
        departure=None,
        activations=Activations(taps={}, mask=mask),
        seeds=torch.tensor([0, 1]),
        env_id="CartPole-v1",
        terminated=torch.tensor([True, False]),
    )


def replay_module(cfg: TrainConfig, *, obs_dim: int, hidden: int) -> ReplayModule:
    """A replay module for CartPole-shaped actions (two) under ``cfg``, its imitator ``hidden`` wide."""
    return ReplayModule(
        train_cfg=cfg.to_dict(),
        imitator_config={"obs_dim": obs_dim, "n_actions": 2, "hidden": hidden},
        env_id="CartPole-v1",
        env_kwargs={},
    )


def module_with_steps(cfg: TrainConfig, demos) -> ReplayModule:
    """A CartPole replay module (imitator 16 wide) under ``cfg`` with ``demos`` attached and two of its own rollouts in
    its buffer: ready for :meth:`ReplayModule.update`."""
    module = replay_module(cfg, obs_dim=4, hidden=16)
    module.attach_demos(EpisodeDataset(demos, list(range(demos.n_episodes))), None)
    module.buffer.add(rollout(module.imitator, "CartPole-v1", episodes=2, seed=0))
    return module


def test_the_buffer_keeps_each_step_with_what_followed_it_and_drops_a_truncated_episodes_last_step():
    buffer = ReplayBuffer(capacity=100, obs_dim=1)
    buffer.add(trajectories())
    assert buffer.obs.flatten().tolist() == [0.0, 1.0, 2.0, 10.0]
    assert buffer.next_obs.flatten().tolist()[:2] == [1.0, 2.0]
    assert buffer.next_obs.flatten().tolist()[3] == 11.0
    assert buffer.terminated.tolist() == [False, False, True, False]
    assert buffer.actions.tolist() == [0, 1, 0, 1]
    assert (buffer.steps, buffer.ended) == (5, 1)


def test_the_buffer_drops_its_oldest_transitions_past_its_capacity():
    buffer = ReplayBuffer(capacity=3, obs_dim=1)
    buffer.add(trajectories())
    assert buffer.obs.flatten().tolist() == [1.0, 2.0, 10.0]


def test_sampling_an_empty_buffer_is_a_call_in_the_wrong_order():
    with pytest.raises(RuntimeError, match="before any transition"):
        ReplayBuffer(capacity=3, obs_dim=1).sample(2, torch.Generator())


def test_replay_refuses_a_recurrent_imitator_and_continuous_actions():
    with pytest.raises(ValueError, match="feed-forward"):
        check_fits(build("gru", ImitatorConfig(obs_dim=4, n_actions=2, hidden=8)))
    with pytest.raises(ValueError, match="discrete"):
        check_fits(build("mlp", ImitatorConfig(obs_dim=4, n_actions=2, hidden=8, continuous=True)))


def critic_step(module, sample, next_logp, reward, absorbing, opt):
    """One step of the critics alone on their loss at ``sample``, then the targets' move."""
    opt.zero_grad()
    module._critic_loss(module.critics(sample[0]), sample, next_logp, reward, absorbing).backward()
    opt.step()
    module._move_targets()


def test_the_critics_learn_an_ending_s_value_in_per_step_units():
    cfg = TrainConfig(arch="mlp", mode="adversarial", learner="replay", hidden=8, gamma=0.99)
    module = replay_module(cfg, obs_dim=1, hidden=8)
    opt = torch.optim.Adam(module.critics.parameters(), lr=1e-2)
    obs = torch.zeros(8, 1)
    sample = (obs, torch.zeros(8, dtype=torch.long), obs, torch.ones(8, dtype=torch.bool))
    uniform = torch.full((8, 2), 0.5).log()
    for _ in range(400):  # a terminated step: reward 1, then the absorbing state's value -1000
        critic_step(module, sample, uniform, torch.ones(8), -1000.0, opt)
    learned = module.critics(obs[:1])[:, 0, 0]  # both twins
    assert learned.tolist() == pytest.approx([value_scale(0.99) * (1.0 + 0.99 * -1000.0)] * 2, abs=0.05)
    assert value_scale(1.0) == 1.0


def test_the_absorbing_floor_sets_what_an_ending_is_worth_when_the_demonstrator_never_ended():
    values = []
    for floor in (-10.0, -2.0):
        cfg = TrainConfig(
            arch="mlp", mode="adversarial", learner="replay", terminal_reward="absorbing", absorbing_floor=floor
        )
        module = replay_module(cfg, obs_dim=4, hidden=8)
        module.demo_train = SimpleNamespace(terminated=0, steps=25)  # what the module reads of its demonstrations
        module.buffer.ended, module.buffer.steps = 3, 60
        values.append(module._absorbing_value())
    assert values == pytest.approx([-10.0 / 0.01, -2.0 / 0.01])
    with pytest.raises(ValueError, match="absorbing_floor"):
        TrainConfig(absorbing_floor=-11.0)


def test_replay_takes_no_queries():
    with pytest.raises(ValueError, match="replay"):
        TrainConfig(mode="adversarial", learner="replay", query_demonstrator="auto")


def expert(obs):
    return int(obs[2] + 0.5 * obs[3] > 0)


def short_run(tmp_path, **changes) -> TrainConfig:
    """A replay run of 21 BC steps and 3 iterations of 2 episodes, logged under tmp_path."""
    return TrainConfig(
        **{
            "arch": "mlp",
            "mode": "adversarial",
            "learner": "replay",
            "terminal_reward": "absorbing",
            "steps": 3,
            "bc_warmup": 21,
            "rollout_episodes": 2,
            "replay_batch": 32,
            "eval_every": 3,
            "eval_episodes": 2,
            "hidden": 16,
            "heldout_fraction": 0.0,
            "log_dir": str(tmp_path),
            "progress": False,
            **changes,
        }
    )


def test_a_short_replay_run_learns_from_its_rollouts_and_says_how_many_env_steps_it_took(tmp_path):
    demos = record("CartPole-v1", expert, episodes=2, seed=0, source="scripted")
    cfg = short_run(tmp_path)
    warm = train(demos, replace(cfg, mode="bc", steps=21)).imitator.state_dict()
    start = time.perf_counter()
    result = train(demos, cfg)
    elapsed = time.perf_counter() - start
    assert result.steps_done == {"bc": 21, "adversarial": 3}
    assert result.env_steps >= 3 * 2 * 8  # CartPole episodes last at least 8 steps
    # the checks (7 warm-start ones, 1 adversarial) are timed apart, so a benchmark can time training alone
    assert 0 < result.eval_seconds < elapsed
    moved = [k for k, v in result.imitator.state_dict().items() if not torch.equal(v, warm[k])]
    assert moved, "the adversarial phase did not change the imitator"


def test_a_replay_run_logs_its_training_metrics_at_the_iterations_the_loggers_write(tmp_path):
    demos = record("CartPole-v1", expert, episodes=2, seed=0, source="scripted")
    result = train(demos, short_run(tmp_path, steps=12, eval_every=12))
    with open(result.run_dir / "adversarial" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("critic/loss")]
    assert [int(r["step"]) for r in rows] == [9]  # Trainer(log_every_n_steps=10): the 10th of 12 iterations
    assert rows[0]["disc/acc"] and rows[0]["env/train_return"] and rows[0]["imitator/bc_loss"]


def test_a_checkpoint_written_before_the_temperature_was_learned_resumes_at_its_fixed_temperature(tmp_path):
    demos = record("CartPole-v1", expert, episodes=2, seed=0, source="scripted")
    cfg = short_run(tmp_path, run_id="old")
    train(demos, cfg)
    last = tmp_path / "old" / "adversarial" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)  # the test's own file
    del checkpoint["state_dict"]["log_temperature"]  # as a checkpoint written before the setting existed
    torch.save(checkpoint, last)
    resumed = train(demos, replace(cfg, steps=6), resume=True)
    assert resumed.steps_done["adversarial"] == 6  # three restored, three more
    saved = torch.load(last, weights_only=False)["state_dict"]["log_temperature"]
    assert float(saved.exp()) == pytest.approx(cfg.replay_temperature)


def test_a_learned_temperature_rises_below_its_target_entropy_and_falls_above_it():
    demos = record("CartPole-v1", expert, episodes=2, seed=0, source="scripted")
    temperatures = {}
    for target in (None, math.log(2.0), 0.0):  # a 2-action imitator's entropy lies between the two targets
        cfg = TrainConfig(
            arch="mlp", mode="adversarial", learner="replay", replay_batch=32, replay_target_entropy=target
        )
        module = module_with_steps(cfg, demos)
        opts = module.configure_optimizers()
        assert len(opts) == (3 if target is None else 4)
        for _ in range(30):
            module.update(opts, 0.0)
        temperatures[target] = module.temperature()
    assert temperatures[None] == pytest.approx(0.05)
    assert temperatures[math.log(2.0)] > 1.2 * 0.05
    assert temperatures[0.0] < 0.05 / 1.2


def test_the_twin_critics_are_two_networks_each_learning_only_from_its_own_error():
    twins = TwinCritic(obs_dim=3, n_actions=2)
    obs = torch.randn(5, 3)
    values = twins(obs)
    assert values.shape == (2, 5, 2) and not torch.allclose(values[0], values[1])  # two initialisations
    values[0].sum().backward()
    assert all(p.grad is not None and p.grad[1].abs().sum() == 0 and p.grad[0].abs().sum() > 0
               for p in twins.parameters())  # fmt: skip


def test_the_target_critics_move_towards_the_critics_by_the_target_rate_at_each_update():
    moved = {}
    for rate in (0.005, 0.5, 1.0):
        cfg = TrainConfig(arch="mlp", mode="adversarial", learner="replay", replay_target_rate=rate)
        module = replay_module(cfg, obs_dim=1, hidden=8)
        before = [p.clone() for p in module.targets.parameters()]
        opt = torch.optim.Adam(module.critics.parameters(), lr=1e-2)
        obs = torch.zeros(4, 1)
        sample = (obs, torch.zeros(4, dtype=torch.long), obs, torch.zeros(4, dtype=torch.bool))
        critic_step(module, sample, torch.full((4, 2), 0.5).log(), torch.ones(4), 0.0, opt)
        for old, target, critic in zip(before, module.targets.parameters(), module.critics.parameters(), strict=True):
            assert torch.allclose(target, old + rate * (critic - old), atol=1e-6)
        moved[rate] = sum(float((t - o).abs().sum()) for o, t in zip(before, module.targets.parameters(), strict=True))
    assert 0 < moved[0.005] < moved[0.5] < moved[1.0]
    with pytest.raises(ValueError, match="replay_target_rate"):
        TrainConfig(replay_target_rate=0.0)


def test_each_network_learns_only_from_its_own_loss_in_the_update_s_one_backward_pass():
    demos = record("CartPole-v1", expert, episodes=2, seed=0, source="scripted")
    module = module_with_steps(TrainConfig(arch="mlp", mode="adversarial", learner="replay", replay_batch=32), demos)
    nets = {"imitator": module.imitator, "critics": module.critics, "discriminator": module.discriminator}
    reaches = {}

    def spy(name, method, total):
        """``method``, noting which networks its loss (``total`` of its outputs) has a gradient for."""

        def wrapped(*args):
            out = method(*args)
            reaches[name] = set()
            for net, part in nets.items():
                grads = torch.autograd.grad(total(out), list(part.parameters()), retain_graph=True, allow_unused=True)
                if any(g is not None and float(g.abs().sum()) > 0 for g in grads):
                    reaches[name].add(net)
            return out

        return wrapped

    module._discriminator_loss = spy("discriminator", module._discriminator_loss, lambda out: out[0])
    module._critic_loss = spy("critics", module._critic_loss, lambda out: out)
    module._imitator_loss = spy("imitator", module._imitator_loss, lambda out: out[0] + out[1])
    before = {net: [p.clone() for p in part.parameters()] for net, part in nets.items()}
    module.update(module.configure_optimizers(), 0.0)
    assert reaches == {net: {net} for net in nets}
    for net, part in nets.items():  # and the one step moved all three
        assert any(not torch.equal(a, b) for a, b in zip(before[net], part.parameters(), strict=True)), net
