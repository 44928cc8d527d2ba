"""Variational autoencoder (Kingma & Welling, 2014) with a beta-weighted KL and KL warm-up."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from gen_common.errors import ConfigError
from lightning_gen.losses.vae import (
    Likelihood,
    importance_weighted_bound,
    kl_diag_gaussian_standard_normal,
    log_likelihood,
    log_normal_diag,
)
from lightning_gen.models.base import ExportSpec, ImageGenerator, MonitorMode, rename_state_dict_prefix
from lightning_gen.nets.conv_vae import ConvDecoder, ConvEncoder, ConvVAE
from lightning_gen.utils.modules import eval_mode


class VAE(ImageGenerator):
    """A conv VAE: ``q(z|x)`` diagonal Gaussian, ``p(z) = N(0, I)``, Bernoulli or Gaussian ``p(x|z)``.

    All terms are in nats per image. Logs ``train/loss`` (``-recon_ll + beta * kl``),
    ``train/recon`` (``-log p(x|z)``), ``train/kl``, ``val/elbo`` (the true ELBO, beta = 1), and
    on test the importance-weighted bound ``test/nll`` (nats) and ``test/bpd`` (bits/dim).
    Validation and test draw ``z`` from the contract's ``eval_generator``: one checkpoint, one number.
    The nets live in ``net`` (:class:`~lightning_gen.nets.conv_vae.ConvVAE`); with ``ema_decay``
    set, ``sample``, ``reconstruct`` and ``export`` use its average (the metrics use the raw nets).
    """

    #: metric that checkpointing and early stopping follow, and its direction
    monitor: ClassVar[tuple[str | None, MonitorMode]] = ("val/elbo", "max")

    def __init__(
        self,
        image_shape: tuple[int, int, int] | None = None,
        latent_dim: int = 32,
        widths: Sequence[int] = (32, 64),
        activation: str = "relu",
        likelihood: Likelihood = "bernoulli",
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        iw_samples: int = 100,
        ema_decay: float | None = None,
        ema_start: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
    ) -> None:
        """
        Args:
            image_shape: ``(C, H, W)``; linked from the datamodule by the CLI.
            latent_dim: Size of ``z``.
            widths: Channels of the encoder's stride-2 convs (the decoder mirrors them).
            activation: ``relu``, ``silu``, ``gelu`` or ``leaky_relu``.
            likelihood: ``bernoulli`` (binary or [0,1] pixels, decoder outputs logits) or
                ``gaussian`` (decoder outputs means, one learned log-scale).
            beta: Weight of the KL term in the training loss (beta-VAE); 1 is the ELBO.
            kl_warmup_steps: Linearly raise the KL weight from 0 to ``beta`` over this many steps.
            iw_samples: Importance samples ``k`` of the test NLL bound (IWAE; 5000 in the paper).
            ema_decay: Decay of an exponential moving average of the nets, used for sampling,
                reconstructions and export; ``None`` (default): no EMA.
            ema_start: For the first ``ema_start`` optimizer steps the EMA copies the weights.
            optimizer: Optimizer factory, e.g. ``torch.optim.Adam`` with ``lr``.
        """
        super().__init__(image_shape)
        if beta < 0 or kl_warmup_steps < 0 or iw_samples < 1 or latent_dim < 1:
            raise ConfigError("`beta` and `kl_warmup_steps` must be >= 0, `iw_samples` and `latent_dim` >= 1.")
        self.save_hyperparameters(ignore=["optimizer"])
        self.latent_dim = latent_dim
        self.likelihood: Likelihood = likelihood
        self.beta = beta
        self.kl_warmup_steps = kl_warmup_steps
        self.iw_samples = iw_samples
        self.optimizer_factory = optimizer
        try:
            self.net = ConvVAE(self.image_shape, widths, latent_dim, activation, likelihood)
        except ValueError as err:
            raise ConfigError(f"VAE nets: {err}") from None
        self.configure_ema("net", ema_decay, ema_start)

    @property
    def encoder(self) -> ConvEncoder:
        return self.net.encoder

    @property
    def decoder(self) -> ConvDecoder:
        return self.net.decoder

    @property
    def log_scale(self) -> nn.Parameter | None:
        return self.net.log_scale

    # --- math ------------------------------------------------------------------------------------
    def kl_weight(self) -> float:
        """beta, linearly warmed up from 0 over ``kl_warmup_steps`` optimizer steps."""
        if self.kl_warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, self.global_step / self.kl_warmup_steps)

    def elbo_terms(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One-sample ``(log p(x|z), KL(q(z|x) || p(z)))`` per example, both ``(B,)``; ``z`` from ``generator``.

        ``generator`` ``None``: the global RNG (training, which the CLI's ``RunState`` restores on resume).
        """
        mu, logvar = self.encoder(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * (0.5 * logvar).exp()  # reparameterisation
        return log_likelihood(x, self.decoder(z), self.likelihood, self.log_scale), kl_diag_gaussian_standard_normal(
            mu, logvar
        )

    @torch.no_grad()
    def importance_weighted_log_likelihood(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """IWAE lower bound on ``log p(x)`` with ``k`` samples, ``(B,)``, drawn from ``generator``; decodes in chunks."""
        mu, logvar = self.encoder(x)
        std = (0.5 * logvar).exp()
        chunk = max(1, 8192 // x.shape[0])
        log_w = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + eps * std  # (n, B, D)
            out = self.decoder(z.flatten(0, 1))  # (n * B, C, H, W)
            x_rep = x.expand(n, *x.shape).flatten(0, 1)
            log_px = log_likelihood(x_rep, out, self.likelihood, self.log_scale).view(n, -1)
            log_pz = log_normal_diag(z, torch.zeros_like(z), torch.zeros_like(z))
            log_qz = log_normal_diag(z, mu, logvar)
            log_w.append(log_px + log_pz - log_qz)
        return importance_weighted_bound(torch.cat(log_w))

    # --- generation API (the contract) -----------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, use_ema: bool = True) -> Tensor:
        """``n`` images in ``[0, 1]`` (the decoder's mean), ``(n, C, H, W)``; EMA weights when there are some."""
        net = self.sampling_module(use_ema)
        with eval_mode(net):
            return net.sample(n, generator)

    def reconstruct(self, x: Tensor, use_ema: bool = True) -> Tensor:  # type: ignore[override]  # fills the contract's slot
        """Decoder mean at the posterior mean: ``(B, C, H, W)`` in ``[0, 1]``."""
        net = self.sampling_module(use_ema)
        with eval_mode(net):
            return net.reconstruct(x.to(self.device))

    def export_spec(self) -> ExportSpec:
        return ExportSpec(
            builder="lightning_gen.nets.conv_vae.ConvVAE",
            kwargs=self.net.export_kwargs(),
            module="net",
            ema_module=None if self.ema is None else "ema.module",
        )

    @torch.no_grad()
    def interpolate(self, a: Tensor, b: Tensor, steps: int = 8) -> Tensor:
        """Decode ``steps`` points on the line between the posterior means of ``a`` and ``b``.

        ``a``, ``b``: ``(C, H, W)`` or ``(B, C, H, W)``; returns ``(steps, ...)`` of the same shape.
        """
        batched = a.dim() == 4
        a, b = (a, b) if batched else (a.unsqueeze(0), b.unsqueeze(0))
        mu_a, _ = self.encoder(a)
        mu_b, _ = self.encoder(b)
        t = torch.linspace(0.0, 1.0, steps, device=mu_a.device).view(steps, 1, 1)
        z = (1 - t) * mu_a + t * mu_b  # (steps, B, D)
        images = self.net.decode_mean(z.flatten(0, 1)).view(steps, a.shape[0], *self.image_shape)
        return images if batched else images[:, 0]

    # --- Lightning hooks -------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, _ = batch
        log_px, kl = self.elbo_terms(x)
        recon, kl = -log_px.mean(), kl.mean()
        loss = recon + self.kl_weight() * kl
        self.log_dict({"train/loss": loss, "train/recon": recon, "train/kl": kl}, prog_bar=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """``val/elbo``, ``val/recon``, ``val/kl``; ``z`` from :meth:`eval_generator` (one number per checkpoint)."""
        x, _ = batch
        log_px, kl = self.elbo_terms(x, self.eval_generator(batch_idx))
        self.log_dict(
            {"val/elbo": (log_px - kl).mean(), "val/recon": -log_px.mean(), "val/kl": kl.mean()},
            prog_bar=True,
            batch_size=x.shape[0],
            sync_dist=True,
        )

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """``test/elbo``, ``test/nll``, ``test/bpd``; every sample from :meth:`eval_generator`."""
        x, _ = batch
        generator = self.eval_generator(batch_idx)
        log_px, kl = self.elbo_terms(x, generator)
        nll = -self.importance_weighted_log_likelihood(x, self.iw_samples, generator).mean()
        dims = math.prod(self.image_shape)
        self.log_dict(
            {"test/elbo": (log_px - kl).mean(), "test/nll": nll, "test/bpd": nll / (dims * math.log(2))},
            batch_size=x.shape[0],
            sync_dist=True,
        )

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.reconstruct(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.net.parameters())

    # --- checkpoint ------------------------------------------------------------------------------
    def upgrade_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Checkpoints written before the contract hold ``encoder.*``, ``decoder.*``, ``log_scale``: moved under ``net.``."""
        for old in ("encoder.", "decoder.", "log_scale"):
            state_dict = rename_state_dict_prefix(state_dict, old, "net." + old)
        return state_dict
