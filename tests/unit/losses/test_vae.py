"""VAE terms against closed forms and torch.distributions on tiny tensors."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from lightning_gen.losses.vae import (
    importance_weighted_bound,
    kl_diag_gaussian_standard_normal,
    log_likelihood,
    log_normal_diag,
)


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    p = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    torch.testing.assert_close(kl_diag_gaussian_standard_normal(mu, logvar), kl_divergence(q, p))


def test_kl_hand_computed_value():
    # mu = 1, var = e: 0.5 * (1 + e - 1 - 1) = 0.5 * (e - 1)
    kl = kl_diag_gaussian_standard_normal(torch.tensor([[1.0]]), torch.tensor([[1.0]]))
    assert kl.item() == pytest.approx(0.5 * (math.e - 1))


def test_bernoulli_log_likelihood():
    torch.manual_seed(1)
    x = torch.randint(0, 2, (4, 1, 3, 3)).float()
    logits = torch.randn(4, 1, 3, 3)
    ref = Independent(Bernoulli(logits=logits), 3).log_prob(x)
    torch.testing.assert_close(log_likelihood(x, logits, "bernoulli"), ref)


def test_gaussian_log_likelihood():
    torch.manual_seed(2)
    x, mean = torch.rand(4, 1, 3, 3), torch.rand(4, 1, 3, 3)
    log_scale = torch.tensor([-1.3])
    ref = Independent(Normal(mean, log_scale.exp()), 3).log_prob(x)
    torch.testing.assert_close(log_likelihood(x, mean, "gaussian", log_scale), ref)


def test_log_normal_diag_and_iwae_bound():
    torch.manual_seed(3)
    z, mu, logvar = torch.randn(6, 2), torch.randn(6, 2), torch.randn(6, 2)
    ref = Independent(Normal(mu, (0.5 * logvar).exp()), 1).log_prob(z)
    torch.testing.assert_close(log_normal_diag(z, mu, logvar), ref)
    # log mean exp of equal weights is that weight; of (log 1, log 3) it is log 2
    assert importance_weighted_bound(torch.full((7, 2), -3.0)).tolist() == pytest.approx([-3.0, -3.0])
    assert importance_weighted_bound(torch.tensor([[0.0], [math.log(3.0)]])).item() == pytest.approx(math.log(2.0))


def test_elbo_equals_hand_computation_for_fixed_noise():
    """ELBO of a 1-pixel VAE-like model, by hand: log p(x|z) - KL."""
    mu, logvar, x, logit_of = torch.tensor([[0.5]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), 2.0
    z = mu  # zero noise
    log_px = log_likelihood(x, torch.tensor([[logit_of * z.item()]]), "bernoulli")
    kl = kl_diag_gaussian_standard_normal(mu, logvar)
    expected = math.log(torch.sigmoid(torch.tensor(1.0)).item()) - 0.5 * 0.25
    assert (log_px - kl).item() == pytest.approx(expected, abs=1e-6)
