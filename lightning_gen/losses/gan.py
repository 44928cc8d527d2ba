"""GAN losses as pure functions of discriminator outputs, plus the WGAN-GP gradient penalty.

``d_real``/``d_fake`` are the discriminator's raw outputs (logits or critic values), shape ``(B,)``.
Each ``*_d`` returns the discriminator loss, each ``*_g`` the generator loss (scalars, minimised).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

GANLoss = Literal["non_saturating", "hinge", "wgan_gp", "lsgan"]
GAN_LOSSES: tuple[str, ...] = ("non_saturating", "hinge", "wgan_gp", "lsgan")


def non_saturating_d(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """``-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))`` (Goodfellow et al., 2014), via softplus."""
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def non_saturating_g(d_fake: Tensor) -> Tensor:
    """``-log sigmoid(D(G(z)))``: the non-saturating generator loss."""
    return F.softplus(-d_fake).mean()


def hinge_d(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """``relu(1 - D(x)) + relu(1 + D(G(z)))`` (Lim & Ye, 2017; Miyato et al., 2018)."""
    return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()


def hinge_g(d_fake: Tensor) -> Tensor:
    """``-D(G(z))``."""
    return -d_fake.mean()


def wasserstein_d(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """``D(G(z)) - D(x)`` (Arjovsky et al., 2017); add :func:`gradient_penalty` for WGAN-GP."""
    return d_fake.mean() - d_real.mean()


def wasserstein_g(d_fake: Tensor) -> Tensor:
    """``-D(G(z))``."""
    return -d_fake.mean()


def lsgan_d(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """``0.5 (D(x) - 1)^2 + 0.5 D(G(z))^2`` (Mao et al., 2017, targets a=0, b=1)."""
    return 0.5 * (d_real - 1.0).pow(2).mean() + 0.5 * d_fake.pow(2).mean()


def lsgan_g(d_fake: Tensor) -> Tensor:
    """``0.5 (D(G(z)) - 1)^2`` (target c=1)."""
    return 0.5 * (d_fake - 1.0).pow(2).mean()


#: loss name -> (discriminator loss, generator loss)
LOSSES: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "non_saturating": (non_saturating_d, non_saturating_g),
    "hinge": (hinge_d, hinge_g),
    "wgan_gp": (wasserstein_d, wasserstein_g),
    "lsgan": (lsgan_d, lsgan_g),
}


def discriminator_loss(name: str, d_real: Tensor, d_fake: Tensor) -> Tensor:
    """The discriminator loss called ``name`` (one of :data:`GAN_LOSSES`)."""
    return _get(name)[0](d_real, d_fake)


def generator_loss(name: str, d_fake: Tensor) -> Tensor:
    """The generator loss called ``name`` (one of :data:`GAN_LOSSES`)."""
    return _get(name)[1](d_fake)


def _get(name: str):
    if name not in LOSSES:
        raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {name!r}.")
    return LOSSES[name]


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    alpha: Tensor | None = None,
    generator: torch.Generator | None = None,
    grad_scale: float = 1.0,
) -> Tensor:
    """WGAN-GP penalty ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` at ``x_hat = alpha real + (1 - alpha) fake``.

    Gulrajani et al., 2017. ``alpha`` ``(B,)`` defaults to ``U(0, 1)`` per example (from
    ``generator``). The graph is kept (``create_graph``) so the penalty trains the critic.
    ``grad_scale``: under fp16 AMP pass the GradScaler's scale; the critic output is scaled
    before ``autograd.grad`` and the gradients unscaled after, so small gradients do not
    underflow (the recipe of the torch AMP docs). Returns a scalar.
    """
    if alpha is None:
        alpha = torch.rand(real.shape[0], generator=generator, device=real.device)
    alpha = alpha.to(real.dtype).view(-1, *([1] * (real.dim() - 1)))
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grads,) = torch.autograd.grad(outputs=(out * grad_scale).sum(), inputs=x_hat, create_graph=True)
    grads = grads.float() / grad_scale
    norm = grads.flatten(1).norm(2, dim=1)  # (B,)
    return (norm - 1.0).pow(2).mean()
