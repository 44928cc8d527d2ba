"""Building blocks shared by the GAN nets: spectral norm switch, conditional BN, projection head."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from lightning_gen.utils.modules import eval_mode

DNorm = Literal["batch", "spectral", "none"]


def maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    """``module`` with spectral normalisation of its weight (Miyato et al., 2018) when ``enabled``."""
    return spectral_norm(module) if enabled else module


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (de Vries et al., 2017; Miyato & Koyama, 2018).

    ``num_classes=None`` gives a plain affine ``BatchNorm2d`` (``y`` is then ignored).
    """

    def __init__(self, num_features: int, num_classes: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(num_features, affine=num_classes is None)
        if num_classes is not None:
            self.gamma = nn.Embedding(num_classes, num_features)
            self.beta = nn.Embedding(num_classes, num_features)
            nn.init.ones_(self.gamma.weight)
            nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.bn(x)
        if self.num_classes is None:
            return h
        if y is None:
            raise ValueError("A class-conditional generator needs labels `y`.")
        return self.gamma(y)[:, :, None, None] * h + self.beta(y)[:, :, None, None]  # (B, C, H, W)


class ProjectionHead(nn.Module):
    """``features (B, F)`` -> logits ``(B,)``: ``linear(h) [+ <embed(y), h>]`` (projection D, Miyato & Koyama, 2018)."""

    def __init__(self, in_features: int, num_classes: int | None = None, sn: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.linear = maybe_sn(nn.Linear(in_features, 1), sn)
        self.embed = maybe_sn(nn.Embedding(num_classes, in_features), sn) if num_classes is not None else None

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        out = self.linear(h).squeeze(1)  # (B,)
        if self.embed is not None:
            if y is None:
                raise ValueError("A projection discriminator needs labels `y`.")
            out = out + (self.embed(y) * h).sum(1)
        return out


def d_norm_layer(norm: DNorm, channels: int) -> nn.Module:
    """The per-layer normalisation of a DCGAN discriminator (spectral norm wraps the conv instead)."""
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


def check_d_norm(norm: str) -> None:
    if norm not in ("batch", "spectral", "none"):
        raise ValueError(f"discriminator norm must be 'batch', 'spectral' or 'none', got {norm!r}.")


class SamplingGenerator(nn.Module):
    """Base of GAN generators: ``forward(z, y)`` in ``[-1, 1]`` plus the contract's ``sample`` in ``[0, 1]``.

    The GAN family samples through this method and ``export`` rebuilds the bare generator
    (:func:`lightning_gen.nets.gan.build_generator`), so both draw the same images from one seed.
    Subclasses set ``latent_dim`` and ``num_classes``.
    """

    latent_dim: int
    num_classes: int | None

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """``n`` images ``(n, C, H, W)`` in ``[0, 1]``; conditional nets default to ``labels = arange(n) % num_classes``.

        ``z`` is drawn on ``generator``'s device (CPU for ``None``), so one seed gives the same
        images on any device. Runs in eval mode (batch-norm statistics untouched), mode restored.
        """
        device = next(self.parameters()).device
        z = torch.randn(
            n, self.latent_dim, generator=generator, device="cpu" if generator is None else generator.device
        ).to(device)
        if self.num_classes is not None and labels is None:
            labels = torch.arange(n, device=device) % self.num_classes
        with eval_mode(self):
            images = self(z, None if labels is None else labels.to(device))
        return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)
