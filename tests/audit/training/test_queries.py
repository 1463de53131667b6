"""Demonstrator queries label the imitator's own states with the planner's policy at exactly those states."""

import numpy as np
import pytest
import torch

from audit.data.demonstrations import record
from audit.data.demonstrator import Demonstrator
from audit.envs.adapter import env_signature, make_batch
from audit.training.config import TrainConfig
from audit.training.queries import QueriedMemory, queried_rollout, query_loss
from audit.training.run import train
from models.imitator import ImitatorConfig
from models.registry import build

ENV = "imitaudit/OffSwitch-v0"


@pytest.fixture(scope="module")
def wanderer():
    """An untrained imitator: it walks at random and presses the button now and then."""
    torch.manual_seed(0)
    obs_dim, space = env_signature(ENV)
    n_actions = space.n
    return build("mlp", ImitatorConfig(obs_dim=obs_dim, n_actions=n_actions, hidden=16))


def test_labels_are_the_planners_policy_at_the_state_each_step_acted_in(wanderer):
    traj, labels = queried_rollout(wanderer, ENV, preset="corrigible", episodes=256, seed=3)
    assert labels.shape == (*traj.mask.shape, 5)
    real = labels[traj.mask]
    assert torch.allclose(real.sum(-1), torch.ones(real.shape[0]), atol=1e-5)
    assert float(labels[~traj.mask].abs().sum()) == 0.0
    departing = traj.departure & traj.mask
    assert int(departing.sum()) >= 5  # a random walker presses the button: the check below has cases to fail on
    taken = labels.gather(-1, traj.actions[..., None]).squeeze(-1)
    # the constrained planner gives every departure move probability 0 where it was made: a label one step off
    # (the state before or after) would be another cell's policy, where that move is allowed
    assert float(taken[departing].max()) == 0.0
    assert float(taken[traj.mask & ~departing].min()) >= 0.0
    _, unbounded = queried_rollout(wanderer, ENV, preset="unbounded", episodes=256, seed=3)
    assert float(unbounded.gather(-1, traj.actions[..., None]).squeeze(-1)[departing].max()) > 0.0


def test_query_loss_pushes_down_what_the_planner_never_does():
    labels = torch.tensor([[[0.5, 0.5, 0.0]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    low = torch.log_softmax(torch.tensor([[[0.0, 0.0, -10.0]]]), -1)
    high = torch.log_softmax(torch.tensor([[[0.0, 0.0, 0.0]]]), -1)
    assert float(query_loss(low, labels, mask)) < float(query_loss(high, labels, mask))
    floor = torch.log_softmax(torch.tensor([[[0.0, 0.0, -40.0]]]), -1).requires_grad_()
    query_loss(floor, labels, mask).backward()
    assert float(floor.grad[0, 0, 2]) == 0.0  # below the floor nothing more is asked


def test_auto_needs_a_preset_recording_and_a_built_in_env(tmp_path):
    demos = record(ENV, "corrigible", episodes=30, seed=0)
    cfg = dict(mode="adversarial", arch="mlp", hidden=16, steps=10, bc_warmup=1, rollout_episodes=8, eval_every=10)
    cfg |= dict(eval_episodes=8, log_dir=str(tmp_path), progress=False)
    result = train(demos, TrainConfig(**cfg, query_demonstrator="auto"))
    logged = "".join(p.read_text() for p in result.run_dir.rglob("metrics.csv"))
    assert "imitator/query_loss" in logged
    scripted = record(ENV, lambda obs: 0, episodes=5, seed=0)
    with pytest.raises(ValueError, match="not recorded by a built-in preset"):
        train(scripted, TrainConfig(**cfg, query_demonstrator="auto"))
    cartpole = record("CartPole-v1", lambda obs: int(obs[2] > 0), episodes=5, seed=0)
    with pytest.raises(ValueError, match="built-in env"):
        train(cartpole, TrainConfig(**cfg, query_demonstrator="corrigible"))


def test_memory_keeps_the_last_iterations_and_refits_one(wanderer):
    memory = QueriedMemory(size=2, seed=0)
    assert memory.loss(wanderer) is None
    for seed in range(3):
        traj, labels = queried_rollout(wanderer, ENV, preset="corrigible", episodes=4, seed=seed)
        memory.add(traj.obs, labels, traj.mask)
    assert len(memory.kept) == 2 and memory.kept[-1][1] is labels
    loss = memory.loss(wanderer)
    assert loss is not None and bool(torch.isfinite(loss))
    QueriedMemory(size=0, seed=0).add(traj.obs, labels, traj.mask)


def test_episodes_started_anywhere_begin_on_free_cells_with_the_planners_labels_there(wanderer):
    traj, labels = queried_rollout(wanderer, ENV, preset="corrigible", episodes=256, seed=5, anywhere=True)
    batch = make_batch(ENV, 256)
    batch.reset(5 + np.arange(256))
    world = batch.engine
    start = traj.obs[:, 0, world.n_cells : 2 * world.n_cells].argmax(-1).numpy()
    layout = world.layout
    assert not layout.walls[np.arange(256), start].any()
    for name, cells in layout.tiles.items():
        if name != "start":
            assert not (start == cells).any(), name
    # most episodes do not begin on the start tile, and the starts spread over the room
    assert (start != layout.tiles["start"]).mean() > 0.8 and len(set(start.tolist())) > 20
    planner = Demonstrator(preset="corrigible")
    planner.start(world)
    world.cell[:] = start
    assert torch.allclose(labels[:, 0], torch.from_numpy(planner.probs()).float())
    again, _ = queried_rollout(wanderer, ENV, preset="corrigible", episodes=256, seed=5, anywhere=True)
    assert torch.equal(again.obs, traj.obs)


def test_start_anywhere_is_for_episodes_that_have_not_stepped():
    batch = make_batch(ENV, 4)
    with pytest.raises(RuntimeError, match="reset"):
        batch.engine.start_anywhere(np.random.default_rng(0))
    batch.reset(np.arange(4))
    batch.engine.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(RuntimeError, match="not stepped"):
        batch.engine.start_anywhere(np.random.default_rng(0))


def test_training_fits_episodes_started_anywhere_and_needs_a_planner(tmp_path):
    demos = record(ENV, "corrigible", episodes=30, seed=0)
    cfg = dict(mode="adversarial", arch="gru", hidden=16, steps=4, bc_warmup=1, rollout_episodes=8, eval_every=4)
    cfg |= dict(eval_episodes=8, log_dir=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="query_anywhere needs query_demonstrator"):
        TrainConfig(**cfg, query_anywhere=8)
    plain = train(demos, TrainConfig(**cfg, query_demonstrator="auto", run_id="plain"))
    anywhere = train(demos, TrainConfig(**cfg, query_demonstrator="auto", query_anywhere=8, run_id="anywhere"))
    # the same seed: only the episodes started anywhere differ, they add env steps and change the weights
    assert anywhere.env_steps > plain.env_steps
    moved = [not torch.equal(a, b) for a, b in zip(plain.imitator.parameters(), anywhere.imitator.parameters())]
    assert any(moved)


def _planner_kl(model, states_of, seed: int) -> float:
    """Mean KL (nats per step) of ``model``'s policy from the corrigible planner's over 64 episodes of ``states_of``."""
    traj, labels = queried_rollout(states_of, ENV, preset="corrigible", episodes=64, seed=seed)
    with torch.no_grad():
        logp = torch.log_softmax(model.sequence(traj.obs, traj.mask), dim=-1)[traj.mask]
    target = labels[traj.mask]
    return float((target * (torch.log(target.clamp_min(1e-12)) - logp)).sum(-1).mean())


def test_finishing_phase_fits_the_planner_on_its_own_states_and_needs_one(tmp_path):
    demos = record(ENV, "corrigible", episodes=30, seed=0)
    cfg = dict(mode="adversarial", arch="gru", hidden=16, steps=2, bc_warmup=50, rollout_episodes=8, eval_every=10)
    cfg |= dict(eval_episodes=8, log_dir=str(tmp_path), progress=False, query_demonstrator="auto")
    with pytest.raises(ValueError, match="query_finish needs query_demonstrator"):
        TrainConfig(**{**cfg, "query_demonstrator": ""}, query_finish=10)
    plain = train(demos, TrainConfig(**cfg, run_id="plain"))
    finished = train(demos, TrainConfig(**cfg, query_finish=20, finish_lr=3e-3, run_id="finished"))
    assert finished.steps_done["finish"] == 20 and "finish" not in plain.steps_done
    assert finished.env_steps > plain.env_steps
    assert (finished.run_dir / "finish" / "checkpoints" / "last.ckpt").exists()
    # the same run up to the finish; on the states the finished imitator reaches (those it was fitted on), it is
    # closer to its planner than the imitator it started from
    states = finished.imitator
    assert _planner_kl(finished.imitator, states, 77) < 0.9 * _planner_kl(plain.imitator, states, 77)
