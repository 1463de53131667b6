"""Activation capture: shapes and masks in rollouts and teacher-forced passes, agreement between them, captum."""

import numpy as np
import pytest
import torch
from captum.attr import LayerActivation

from audit.data.batching import demo_activations, pad_episodes
from audit.data.demonstrations import record
from audit.data.rollout import rollout
from models.imitator import ImitatorConfig
from models.registry import BUILTIN, build
from models.taps import TapRecorder, teacher_forced

ENV = "imitaudit/OffSwitch-v0"
TAPS = ("encoder", "core", "head")


@pytest.fixture(scope="module")
def demos():
    return record(ENV, "corrigible", episodes=12, seed=0)


def model_for(arch):
    torch.manual_seed(0)
    return build(arch, ImitatorConfig(obs_dim=406, n_actions=5, hidden=16, grid=(5, 9, 9)))


@pytest.mark.parametrize("arch", sorted(BUILTIN))
def test_rollout_and_teacher_forced_tap_shapes_agree(arch, demos):
    model = model_for(arch)
    traj = rollout(model, ENV, episodes=10, seed=3, taps=TAPS)
    e, t = traj.mask.shape
    assert e == 10 and t == int(traj.lengths().max())
    sizes = {"encoder": 16, "core": 16, "head": 5}
    for name in TAPS:
        assert traj.activations.taps[name].shape == (e, t, sizes[name])
        assert (traj.activations.taps[name][~traj.mask] == 0).all()
    # Teacher-forcing the imitator on its own trajectories reproduces the captured activations.
    logits, acts = teacher_forced(model, traj.obs, traj.mask, TAPS)
    for name in TAPS:
        torch.testing.assert_close(acts.taps[name], traj.activations.taps[name], atol=1e-5, rtol=1e-4)
    logp = torch.log_softmax(logits, -1).gather(-1, traj.actions[..., None]).squeeze(-1) * traj.mask
    torch.testing.assert_close(logp, traj.logp, atol=1e-5, rtol=1e-4)
    # Over demonstrations: one row per episode, padded to the longest.
    demo_acts = demo_activations(model, demos, TAPS)
    lengths = demos.episode_lengths()
    assert demo_acts.mask.shape == (demos.n_episodes, int(lengths.max()))
    np.testing.assert_array_equal(demo_acts.mask.sum(1).numpy(), lengths)
    assert demo_acts.flat()["core"].shape == (demos.n_steps, 16)


def test_teacher_forced_state_is_the_demonstrators_history(demos):
    model = model_for("gru")
    obs, _, mask = pad_episodes(demos)
    _, acts = teacher_forced(model, obs, mask, ["core"])
    # step t of episode 0 equals a fresh pass over its first t+1 observations only
    t = int(mask[0].sum()) - 1
    _, prefix = teacher_forced(model, obs[:1, : t + 1], mask[:1, : t + 1], ["core"])
    torch.testing.assert_close(acts.taps["core"][0, t], prefix.taps["core"][0, t])


@pytest.mark.parametrize("arch", sorted(BUILTIN))
def test_captum_layer_activation_reads_the_same_taps(arch, demos):
    model = model_for(arch)
    obs, _, mask = pad_episodes(demos)
    _, ours = teacher_forced(model, obs, mask, ["core"])
    theirs = LayerActivation(lambda x: model.sequence(x), model.taps["core"]).attribute(obs)
    torch.testing.assert_close(ours.taps["core"], theirs * mask[..., None])


def test_unknown_tap_is_refused():
    with pytest.raises(ValueError, match="unknown tap"):
        TapRecorder(model=model_for("mlp"), names=["hidden9"])
