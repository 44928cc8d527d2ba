"""VAE terms in nats, one value per example (summed over pixels / latent dims)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Likelihood = Literal["bernoulli", "gaussian"]


def kl_diag_gaussian_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL( N(mu, diag exp(logvar)) || N(0, I) ) per example: 0.5 * sum(mu^2 + var - 1 - logvar)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(-1)


def log_likelihood(x: Tensor, decoder_out: Tensor, likelihood: Likelihood, log_scale: Tensor | None = None) -> Tensor:
    """``log p(x | z)`` per example.

    Bernoulli: ``decoder_out`` are logits. Gaussian: ``decoder_out`` are means and ``log_scale``
    the (broadcastable) log standard deviation.
    """
    if likelihood == "bernoulli":
        return -F.binary_cross_entropy_with_logits(decoder_out, x, reduction="none").flatten(1).sum(-1)
    if likelihood == "gaussian":
        if log_scale is None:
            raise ValueError("A Gaussian likelihood needs `log_scale`.")
        log_scale = log_scale.expand_as(decoder_out)
        logp = -0.5 * ((x - decoder_out) / log_scale.exp()).pow(2) - log_scale - 0.5 * math.log(2 * math.pi)
        return logp.flatten(1).sum(-1)
    raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}.")


def log_normal_diag(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``log N(z; mu, diag exp(logvar))`` summed over the last dim."""
    return (-0.5 * ((z - mu).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi))).sum(-1)


def importance_weighted_bound(log_weights: Tensor) -> Tensor:
    """IWAE bound ``log (1/k) sum_i w_i`` from log-weights ``log p(x, z_i) - log q(z_i | x)``, ``(k, B) -> (B,)``."""
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])
