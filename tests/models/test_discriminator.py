"""The discriminator's written-out input gradients: autograd's values, and autograd's gradients of a penalty on them."""

import pytest
import torch

from models.discriminator import Discriminator, DiscriminatorConfig


def discriminator(*, spectral: bool) -> Discriminator:
    torch.manual_seed(0)
    disc = Discriminator(
        config=DiscriminatorConfig(obs_dim=5, n_actions=3, taps={"core": 7}, hidden=16, spectral=spectral)
    )
    with torch.no_grad():
        disc.set_normalization(torch.randn(64, disc.config.input_dim) * 3 + 1)
    return disc


def penalty_gradients(disc: Discriminator, penalty) -> list[torch.Tensor]:
    disc.zero_grad()
    penalty.backward()
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in disc.parameters()]


@pytest.mark.parametrize("spectral", [False, True])
def test_the_input_gradients_and_a_penalty_s_parameter_gradients_are_autograd_s(spectral):
    disc = discriminator(spectral=spectral).eval()  # eval: a spectral norm reads the same weights each pass
    x = torch.randn(40, disc.config.input_dim) * 2
    logits, grad = disc.logits_and_input_gradients(x, rows=15)
    ours = penalty_gradients(disc, (grad.norm(dim=-1) - 1).pow(2).mean())

    leaf = x.clone().requires_grad_(True)
    reference_logits = disc.logits(leaf)
    (reference,) = torch.autograd.grad(reference_logits[25:].sum(), leaf, create_graph=True)
    theirs = penalty_gradients(disc, (reference[25:].norm(dim=-1) - 1).pow(2).mean())

    torch.testing.assert_close(logits, reference_logits.detach())
    torch.testing.assert_close(grad.detach(), reference[25:].detach())
    assert grad.shape == (15, disc.config.input_dim)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
    assert any(float(g.abs().sum()) > 0 for g in ours)


def test_input_gradients_over_more_rows_than_the_batch_are_refused():
    disc = discriminator(spectral=False)
    with pytest.raises(ValueError, match="rows must be in"):
        disc.logits_and_input_gradients(torch.zeros(4, disc.config.input_dim), rows=5)
