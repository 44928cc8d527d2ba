"""Building blocks shared by the GAN nets: spectral norm switch, conditional BN, projection head."""
from __future__ import annotations

from typing import Literal

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

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

