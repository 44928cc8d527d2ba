"""Convolutional encoder/decoder pair for VAEs on small images (28x28, 32x32, 64x64)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _activation(name: str) -> nn.Module:
    activations = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}
    if name not in activations:
        raise ValueError(f"activation must be one of {sorted(activations)}, got {name!r}.")
    return activations[name]()


class ConvEncoder(nn.Module):
    """``x (B, C, H, W)`` -> ``(mu, logvar)``, each ``(B, latent_dim)``.

    Each width adds a stride-2 4x4 conv (halving H and W, rounding down), then a linear head.
    """

    def __init__(
        self, image_shape: Sequence[int], widths: Sequence[int], latent_dim: int, activation: str = "relu"
    ) -> None:
        super().__init__()
        channels, height, width = image_shape
        layers: list[nn.Module] = []
        self.feature_sizes: list[tuple[int, int]] = [(height, width)]  # spatial size before each conv
        in_ch = channels
        for out_ch in widths:
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1), _activation(activation)]
            height, width = height // 2, width // 2
            if height < 1 or width < 1:
                raise ValueError(
                    f"{len(widths)} stride-2 layers shrink a {tuple(image_shape)} image below 1 pixel; use fewer widths."
                )
            self.feature_sizes.append((height, width))
            in_ch = out_ch
        self.conv = nn.Sequential(*layers)
        self.out_shape = (in_ch, height, width)
        self.head = nn.Linear(in_ch * height * width, 2 * latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.conv(x).flatten(1)  # (B, C' * H' * W')
        mu, logvar = self.head(h).chunk(2, dim=-1)  # (B, latent_dim) each
        return mu, logvar


class ConvDecoder(nn.Module):
    """``z (B, latent_dim)`` -> per-pixel distribution parameters ``(B, C, H, W)``.

    Mirrors :class:`ConvEncoder`; transposed convs are given the encoder's feature sizes so odd
    sizes (28 -> 14 -> 7) come back exactly.
    """

    def __init__(
        self, image_shape: Sequence[int], widths: Sequence[int], latent_dim: int, activation: str = "relu"
    ) -> None:
        super().__init__()
        probe = ConvEncoder(image_shape, widths, latent_dim)
        self.start_shape = probe.out_shape
        self.target_sizes = list(reversed(probe.feature_sizes[:-1]))
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, int(torch.tensor(self.start_shape).prod())), _activation(activation)
        )
        out_widths = list(reversed(widths))[1:] + [image_shape[0]]
        self.deconvs = nn.ModuleList()
        self.acts = nn.ModuleList()
        in_ch = self.start_shape[0]
        for i, out_ch in enumerate(out_widths):
            self.deconvs.append(nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1))
            self.acts.append(_activation(activation) if i < len(out_widths) - 1 else nn.Identity())
            in_ch = out_ch

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z).view(z.shape[0], *self.start_shape)  # (B, C', H', W')
        for deconv, act, size in zip(self.deconvs, self.acts, self.target_sizes):
            h = act(deconv(h, output_size=size))
        return h  # (B, C, H, W): logits (Bernoulli) or means (Gaussian)


class ConvVAE(nn.Module):
    """Encoder, decoder and (Gaussian likelihood) log-scale of a VAE, with the contract's sampling.

    What ``lightning_gen.models.VAE`` trains and averages (EMA), and what ``export`` rebuilds from
    :meth:`export_kwargs`: ``sample(n, generator)`` decodes ``z ~ N(0, I)`` to the decoder's mean
    in ``[0, 1]``; ``reconstruct(x)`` decodes the posterior mean.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        widths: Sequence[int],
        latent_dim: int,
        activation: str = "relu",
        likelihood: str = "bernoulli",
    ) -> None:
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}.")
        self.config = {
            "image_shape": [int(s) for s in image_shape],
            "widths": [int(w) for w in widths],
            "latent_dim": int(latent_dim),
            "activation": activation,
            "likelihood": likelihood,
        }
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        self.encoder = ConvEncoder(image_shape, widths, latent_dim, activation)
        self.decoder = ConvDecoder(image_shape, widths, latent_dim, activation)
        self.log_scale = nn.Parameter(torch.zeros(1)) if likelihood == "gaussian" else None

    def export_kwargs(self) -> dict:
        """Plain keyword arguments that rebuild this module (stored in checkpoints and exports)."""
        return dict(self.config)

    def decode_mean(self, z: Tensor) -> Tensor:
        """Mean of ``p(x|z)`` in ``[0, 1]``, ``(B, C, H, W)``."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out.clamp(0.0, 1.0)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images in ``[0, 1]`` (the decoder's mean at ``z ~ N(0, I)`` drawn on ``generator``'s device)."""
        z = torch.randn(
            n, self.latent_dim, generator=generator, device="cpu" if generator is None else generator.device
        )
        return self.decode_mean(z.to(next(self.parameters()).device))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoder mean at the posterior mean: ``(B, C, H, W)`` in ``[0, 1]``."""
        mu, _ = self.encoder(x)
        return self.decode_mean(mu)
