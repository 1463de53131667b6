"""Imitators: one interface, stepping equals the sequence form, taps are where the docs say."""

import pytest
import torch

from models.imitator import ImitatorConfig
from models.registry import BUILTIN, architectures, build

ARCHS = sorted(BUILTIN)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    "grid,agent,plan", [(None, None, 0), ((2, 3, 3), None, 0), ((2, 3, 3), 1, 0), ((2, 3, 3), 1, 4)]
)
def test_stepping_equals_sequence(arch, grid, agent, plan):
    torch.manual_seed(0)
    cfg = ImitatorConfig(obs_dim=20, n_actions=4, hidden=16, grid=grid, agent_plane=agent, plan_iterations=plan)
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
    with pytest.raises(ValueError, match="plan_iterations needs agent_plane"):
        ImitatorConfig(obs_dim=20, n_actions=2, grid=(2, 3, 3), plan_iterations=4)
    for bad in (-1, 65, True, 2.5):
        with pytest.raises(ValueError, match="plan_iterations must be an integer from 0 to 64"):
            ImitatorConfig(obs_dim=20, n_actions=2, grid=(2, 3, 3), agent_plane=0, plan_iterations=bad)
    assert ImitatorConfig.from_dict({"obs_dim": 4, "n_actions": 2}).plan_iterations == 0  # checkpoints before it
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


@pytest.mark.parametrize("iterations,sees", [(2, False), (8, True)])
def test_the_value_iteration_layer_reaches_as_far_as_its_iterations(iterations, sees):
    """A rewarding tile seven moves from the agent changes what the planning layer reads at the agent only once value
    has had the steps to travel there; one next to it always does."""
    torch.manual_seed(0)
    cfg = ImitatorConfig(
        obs_dim=2 * 81, n_actions=4, hidden=8, grid=(2, 9, 9), agent_plane=0, plan_iterations=iterations
    )
    enc = build("mlp", cfg).encoder
    assert enc.plan.iterations == iterations
    with torch.no_grad():
        enc.plan.cell[0, 1] = 5.0  # the first map's reward on the tile's plane

    def planned(tile):
        grid = torch.zeros(1, 2, 9, 9)
        grid[0, 0, 1, 1] = 1.0
        if tile is not None:
            grid[0, 1, tile[0], tile[1]] = 1.0
        with torch.no_grad():
            return (enc.plan(grid, torch.zeros(1, 0)) * grid[:, :1]).sum(dim=(2, 3))

    assert torch.allclose(planned(None), planned((1, 8))) != sees
    assert not torch.allclose(planned(None), planned((1, 2)))


def test_planning_each_distinct_layout_once_gives_every_step_the_same_maps():
    """Steps of one layout share its plan (the agent's plane is not the planner's input): the same encoding as
    planning each step on its own, and a tile the agent is not on still moves it."""
    torch.manual_seed(0)
    cfg = ImitatorConfig(obs_dim=3 * 25 + 1, n_actions=5, hidden=8, grid=(3, 5, 5), agent_plane=1, plan_iterations=6)
    enc = build("gru", cfg).encoder
    layout = (torch.rand(3, 5, 5) < 0.2).float()
    steps = []
    for cell in range(6):
        grid = layout.clone()
        grid[1] = 0.0
        grid[1].view(-1)[cell] = 1.0
        steps.append(torch.cat([grid.flatten(), torch.tensor([float(cell % 2)])]))
    obs = torch.stack(steps)
    with torch.no_grad():
        together = enc(obs)
        alone = torch.cat([enc(row[None]) for row in obs])
        torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-6)
        moved = obs.clone()
        moved[:, 20] = 1.0 - moved[:, 20]  # a tile of plane 0 far from the agent's first cells
        assert not torch.allclose(
            enc.plan(moved[:, :75].reshape(-1, 3, 5, 5), moved[:, 75:]),
            enc.plan(obs[:, :75].reshape(-1, 3, 5, 5), obs[:, 75:]),
        )
