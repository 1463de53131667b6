"""Action distributions: the squashed Gaussian's samples stay in the box and its log-densities are right (against
torch.distributions and a change of variables), the categorical one is the softmax; Box configs are validated and
round-trip through a checkpoint."""

import math

import pytest
import torch

from models.actions import LOG_STD_RANGE, Categorical, Gaussian, distribution_of
from models.checkpoint import save_imitator
from models.imitator import ImitatorConfig
from models.load import load_imitator
from models.registry import build


def test_an_unbounded_gaussian_is_the_normal_distribution():
    torch.manual_seed(0)
    params = torch.randn(64, 6).clamp(-2, 2)
    dist = Gaussian(d=3)
    actions, logp = dist.act(params, torch.Generator().manual_seed(1), greedy=False)
    normal = torch.distributions.Normal(params[:, :3], params[:, 3:].exp())
    torch.testing.assert_close(logp, normal.log_prob(actions).sum(-1))
    torch.testing.assert_close(dist.log_prob(params, actions), logp)
    torch.testing.assert_close(dist.entropy(params), normal.entropy().sum(-1))
    assert torch.equal(dist.act(params, torch.Generator(), greedy=True)[0], params[:, :3])


def test_a_squashed_gaussian_stays_in_its_box_and_its_density_integrates_to_one():
    dist = Gaussian(d=1, low=(-2.0,), high=(2.0,))
    params = torch.tensor([[0.7, 0.3]])
    actions, logp = dist.act(params.expand(20_000, 2), torch.Generator().manual_seed(0), greedy=False)
    assert float(actions.abs().max()) < 2.0
    torch.testing.assert_close(dist.log_prob(params.expand(20_000, 2), actions), logp)
    grid = torch.linspace(-2 + 1e-4, 2 - 1e-4, 200_001)[:, None]
    density = dist.log_prob(params.expand(len(grid), 2), grid).exp()
    assert float(density.sum() * (grid[1] - grid[0])) == pytest.approx(1.0, abs=2e-3)
    assert float(dist.mode(params)) == pytest.approx(2 * math.tanh(0.7))
    # a demonstrator that saturates its actuator acts exactly at the bound: a finite log-density, not inf or NaN
    assert bool(torch.isfinite(dist.log_prob(params, torch.tensor([[2.0]]))).all())


def test_the_categorical_is_the_softmax():
    logits = torch.randn(8, 5)
    dist = Categorical(n=5)
    actions, logp = dist.act(logits, torch.Generator().manual_seed(0), greedy=False)
    torch.testing.assert_close(logp, torch.log_softmax(logits, -1)[torch.arange(8), actions])
    torch.testing.assert_close(dist.log_prob(logits, actions), logp)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(n_actions=2, action_low=(-1.0, -1.0), action_high=(1.0, 1.0)), "continuous actions only"),
        (dict(continuous=True, action_low=(-1.0, 0.0), action_high=(1.0, 1.0)), "one bound per action dimension"),
        (dict(continuous=True, action_low=(1.0,), action_high=(-1.0,)), "below"),
        (dict(continuous=True, action_low=(float("-inf"),), action_high=(1.0,)), "finite"),
        (dict(continuous="yes"), "true or false"),
    ],
)
def test_bad_box_configs_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ImitatorConfig(**{"obs_dim": 3, "n_actions": 1, **fields})


@pytest.mark.parametrize("arch", ["mlp", "gru", "transformer"])
def test_a_gaussian_imitator_round_trips_through_a_checkpoint(arch, tmp_path):
    config = ImitatorConfig(obs_dim=3, n_actions=2, continuous=True, action_low=(-1.0, -2.0), action_high=(1.0, 2.0))
    model = build(arch, config)
    assert model.tap_sizes()["head"] == 4 and isinstance(distribution_of(model.config), Gaussian)
    back, info = load_imitator(str(save_imitator(model, tmp_path / "g.safetensors", env_id="Pendulum-v1")))
    assert back.config == config and info.config == config
    obs = torch.randn(4, 3)
    torch.testing.assert_close(back(obs)[0], model(obs)[0])


def test_kl_is_the_textbook_one_for_both_kinds_and_squashing_leaves_it_unchanged():
    gen = torch.Generator().manual_seed(0)
    p, q = torch.randn(5, 6, generator=gen), torch.randn(5, 6, generator=gen)
    cat = torch.distributions.Categorical(logits=p), torch.distributions.Categorical(logits=q)
    assert torch.allclose(Categorical(n=6).kl(p, q), torch.distributions.kl_divergence(*cat), atol=1e-6)
    normal = [torch.distributions.Normal(x[:, :3], x[:, 3:].clamp(*LOG_STD_RANGE).exp()) for x in (p, q)]
    textbook = torch.distributions.kl_divergence(*normal).sum(-1)
    assert torch.allclose(Gaussian(d=3).kl(p, q), textbook, atol=1e-5)
    assert torch.allclose(Gaussian(d=3, low=(-1.0,) * 3, high=(2.0,) * 3).kl(p, q), textbook, atol=1e-5)
    assert torch.all(Gaussian(d=3).kl(p, p).abs() < 1e-6) and torch.all(Gaussian(d=3).kl(p, q) > 0)
