"""Imitators: one interface, stepping equals the sequence form, taps are where the docs say."""

import pytest
import torch

from models.imitator import ImitatorConfig
from models.registry import BUILTIN, architectures, build

ARCHS = sorted(BUILTIN)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("grid,agent", [(None, None), ((2, 3, 3), None), ((2, 3, 3), 1)])
def test_stepping_equals_sequence(arch, grid, agent):
    torch.manual_seed(0)
    cfg = ImitatorConfig(obs_dim=20, n_actions=4, hidden=16, grid=grid, agent_plane=agent)
    model = build(arch, cfg)
    obs = torch.randn(3, 9, 20)
    seq = model.sequence(obs)
    state, steps = model.initial_state(3), []
    for t in range(9):
        logits, state = model(obs[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(seq, torch.stack(steps, dim=1), atol=1e-5, rtol=1e-5)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[0, 5:] = False
    masked = model.sequence(obs, mask)
    torch.testing.assert_close(masked[1:], seq[1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked[0, :5], seq[0, :5], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_taps_and_sizes(arch):
    model = build(arch, ImitatorConfig(obs_dim=7, n_actions=3, hidden=8))
    assert set(model.taps) == {"encoder", "core", "head"}
    assert model.tap_sizes() == {"encoder": 8, "core": 8, "head": 3}
    assert model.recurrent == (arch != "mlp")


def test_memory_matters_for_recurrent_archs():
    torch.manual_seed(0)
    obs = torch.randn(1, 6, 5)
    other = obs.clone()
    other[0, 0] += 3.0  # change only the first step
    for arch in ("gru", "transformer"):
        model = build(arch, ImitatorConfig(obs_dim=5, n_actions=3, hidden=8))
        assert not torch.allclose(model.sequence(obs)[0, -1], model.sequence(other)[0, -1])
    mlp = build("mlp", ImitatorConfig(obs_dim=5, n_actions=3, hidden=8))
    torch.testing.assert_close(mlp.sequence(obs)[0, -1], mlp.sequence(other)[0, -1])


def test_config_validation_and_shape_errors():
    with pytest.raises(ValueError, match="n_actions"):
        ImitatorConfig(obs_dim=4, n_actions=1)
    with pytest.raises(ValueError, match="divisible"):
        ImitatorConfig(obs_dim=4, n_actions=2, hidden=10, heads=3)
    with pytest.raises(ValueError, match="grid"):
        ImitatorConfig(obs_dim=4, n_actions=2, grid=(2, 3, 3))
    with pytest.raises(ValueError, match="agent_plane"):
        ImitatorConfig(obs_dim=20, n_actions=2, grid=(2, 3, 3), agent_plane=2)
    with pytest.raises(ValueError, match="agent_plane"):
        ImitatorConfig(obs_dim=20, n_actions=2, agent_plane=0)
    with pytest.raises(ValueError, match="unknown field"):
        ImitatorConfig.from_dict({"obs_dim": 4, "n_actions": 2, "colour": "red"})
    with pytest.raises(ValueError, match="unknown architecture"):
        build("lstm9000", ImitatorConfig(obs_dim=4, n_actions=2))
    model = build("gru", ImitatorConfig(obs_dim=4, n_actions=2))
    with pytest.raises(ValueError, match=r"obs must be \[B, D\] with D=4, got \(2, 5\)"):
        model(torch.zeros(2, 5))
    tf = build("transformer", ImitatorConfig(obs_dim=4, n_actions=2, hidden=8, max_len=5))
    with pytest.raises(ValueError, match="max_len"):
        tf.sequence(torch.zeros(1, 6, 4))
    assert set(architectures()) >= {"mlp", "gru", "transformer"}


def test_the_centred_readout_sees_the_same_neighbourhood_alike_wherever_the_agent_stands():
    """Features at the agent's cell are shared across positions: a button east of the agent reads the same in two
    places."""
    torch.manual_seed(0)
    cfg = ImitatorConfig(obs_dim=2 * 25, n_actions=4, hidden=8, grid=(2, 5, 5), agent_plane=0)
    enc = build("mlp", cfg).encoder
    with torch.no_grad():
        enc.proj.weight[:, : enc.conv[-2].out_channels * 25] = 0.0  # silence the position-specific part

    def encode(agent, button):
        obs = torch.zeros(2, 5, 5)
        obs[0, agent[0], agent[1]] = 1.0
        obs[1, button[0], button[1]] = 1.0
        with torch.no_grad():
            return enc(obs.reshape(1, -1))

    torch.testing.assert_close(encode((1, 1), (1, 2)), encode((3, 2), (3, 3)))
    assert not torch.allclose(encode((1, 1), (1, 2)), encode((1, 1), (2, 1)))
