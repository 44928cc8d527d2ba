"""GAN losses against hand computations; the gradient penalty against an autograd reference."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_gen.losses.gan import GAN_LOSSES, discriminator_loss, generator_loss, gradient_penalty

D_REAL = torch.tensor([1.0, -2.0])

D_FAKE = torch.tensor([0.5, -1.0])


def softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


# (name, D loss by hand, G loss by hand) for d_real = [1, -2], d_fake = [0.5, -1]
HAND = [
    (
        "non_saturating",
        (softplus(-1.0) + softplus(2.0)) / 2 + (softplus(0.5) + softplus(-1.0)) / 2,  # -log s(r) - log(1 - s(f))
        (softplus(-0.5) + softplus(1.0)) / 2,  # -log s(f)
    ),
    ("hinge", (0.0 + 3.0) / 2 + (1.5 + 0.0) / 2, -(0.5 - 1.0) / 2),
    ("wgan_gp", (0.5 - 1.0) / 2 - (1.0 - 2.0) / 2, -(0.5 - 1.0) / 2),
    ("lsgan", 0.5 * (0.0 + 9.0) / 2 + 0.5 * (0.25 + 1.0) / 2, 0.5 * (0.25 + 4.0) / 2),
]


@pytest.mark.parametrize(("name", "d_expected", "g_expected"), HAND)
def test_losses_match_hand_computation(name: str, d_expected: float, g_expected: float) -> None:
    assert discriminator_loss(name, D_REAL, D_FAKE).item() == pytest.approx(d_expected, abs=1e-6)
    assert generator_loss(name, D_FAKE).item() == pytest.approx(g_expected, abs=1e-6)


def test_all_losses_are_covered_and_unknown_name_is_refused() -> None:
    assert {h[0] for h in HAND} == set(GAN_LOSSES)
    with pytest.raises(ValueError, match="GAN loss must be one of"):
        discriminator_loss("wasserstein", D_REAL, D_FAKE)


def test_non_saturating_equals_bce_with_logits() -> None:
    """Cross-check against torch's own BCE: D's loss is BCE(real, 1) + BCE(fake, 0)."""
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(16, generator=g), torch.randn(16, generator=g)
    bce = nn.functional.binary_cross_entropy_with_logits
    expected = bce(real, torch.ones(16)) + bce(fake, torch.zeros(16))
    torch.testing.assert_close(discriminator_loss("non_saturating", real, fake), expected)
    torch.testing.assert_close(generator_loss("non_saturating", fake), bce(fake, torch.ones(16)))


def test_gradient_penalty_of_linear_critic_is_analytic() -> None:
    """D(x) = <w, x> has gradient w everywhere: the penalty is (||w|| - 1)^2 exactly."""
    w = torch.tensor([[[3.0, 0.0], [0.0, 4.0]]])  # ||w|| = 5
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(16.0, abs=1e-5)


def test_gradient_penalty_matches_per_example_autograd_reference() -> None:
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
    real, fake, alpha = torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2), torch.rand(5)

    gp = gradient_penalty(critic, real, fake, alpha=alpha)
    gp.backward()
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in critic.parameters()]
    critic.zero_grad()

    # reference: one example at a time, gradients of the scalar output w.r.t. that example
    terms = []
    for i in range(5):
        x_hat = (alpha[i] * real[i] + (1 - alpha[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        terms.append((g.norm() - 1.0) ** 2)
    reference = torch.stack(terms).mean()
    reference.backward()

    torch.testing.assert_close(gp, reference)
    for got, want in zip(grads, (torch.zeros_like(p) if p.grad is None else p.grad for p in critic.parameters())):
        torch.testing.assert_close(got, want)  # the penalty trains the critic (create_graph)
    assert any(g.abs().sum() > 0 for g in grads)


def test_gradient_penalty_grad_scale_is_transparent() -> None:
    """Scaling the output before autograd.grad (fp16 AMP recipe) and unscaling after changes nothing."""
    torch.manual_seed(1)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1), nn.Flatten(0))
    real, fake, alpha = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2), torch.rand(3)
    torch.testing.assert_close(
        gradient_penalty(critic, real, fake, alpha=alpha, grad_scale=65536.0),
        gradient_penalty(critic, real, fake, alpha=alpha),
    )
