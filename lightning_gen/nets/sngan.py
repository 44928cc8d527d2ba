"""ResNet SN-GAN pair for 32x32 images (Miyato et al., 2018; the Mimicry/StudioGAN CIFAR-10 nets).

Generator: ``z -> linear -> (ch, 4, 4) -> 3 up-blocks -> BN, ReLU, conv3x3, tanh``.
Discriminator: an optimized first down-block, two down-blocks, one plain block, ReLU, global sum
pooling and a (projection) linear head; every conv/linear layer is spectrally normalised
(``spectral_norm=False`` turns that off, e.g. for WGAN-GP). Widths follow Mimicry's SNGAN32:
``g_width=256``, ``d_width=128``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gen.nets.gan_layers import ConditionalBatchNorm2d, ProjectionHead, SamplingGenerator, maybe_sn


def _conv(in_ch: int, out_ch: int, kernel: int, sn: bool = False, gain: float = 1.0) -> nn.Module:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=kernel, padding=kernel // 2)
    nn.init.xavier_uniform_(conv.weight, gain)  # Mimicry: sqrt(2) on residual convs, 1 on shortcuts
    nn.init.zeros_(conv.bias)
    return maybe_sn(conv, sn)


class GBlock(nn.Module):
    """Residual up-block: ``BN, ReLU, up x2, conv3x3, BN, ReLU, conv3x3`` + ``up x2, conv1x1`` shortcut."""

    def __init__(self, in_ch: int, out_ch: int, num_classes: int | None = None) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(in_ch, num_classes)
        self.conv1 = _conv(in_ch, out_ch, 3, gain=math.sqrt(2))
        self.bn2 = ConditionalBatchNorm2d(out_ch, num_classes)
        self.conv2 = _conv(out_ch, out_ch, 3, gain=math.sqrt(2))
        self.shortcut = _conv(in_ch, out_ch, 1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))  # (B, out_ch, 2H, 2W)


class DBlock(nn.Module):
    """Residual down-block: ``ReLU, conv3x3, ReLU, conv3x3[, avgpool]`` + ``conv1x1[, avgpool]`` shortcut.

    ``optimized=True`` is the first block (no leading ReLU; the shortcut pools first).
    """

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, sn: bool, optimized: bool = False) -> None:
        super().__init__()
        self.downsample = downsample
        self.optimized = optimized
        self.conv1 = _conv(in_ch, out_ch, 3, sn, math.sqrt(2))
        self.conv2 = _conv(out_ch, out_ch, 3, sn, math.sqrt(2))
        self.shortcut = _conv(in_ch, out_ch, 1, sn) if (downsample or in_ch != out_ch or optimized) else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x if self.optimized else F.relu(x))
        h = self.conv2(F.relu(h))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.shortcut is not None:
            if self.optimized:
                s = self.shortcut(F.avg_pool2d(s, 2))
            else:
                s = self.shortcut(s)
                s = F.avg_pool2d(s, 2) if self.downsample else s
        return h + s


class ResNetGenerator32(SamplingGenerator):
    """``z (B, latent_dim)`` [, ``y (B,)``] -> images ``(B, C, 32, 32)`` in ``[-1, 1]``."""

    def __init__(
        self,
        image_shape: Sequence[int] = (3, 32, 32),
        latent_dim: int = 128,
        width: int = 256,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        channels, height, w = image_shape
        if (height, w) != (32, 32):
            raise ValueError(f"The SN-GAN ResNet generator makes 32x32 images, got image_shape {tuple(image_shape)}.")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.width = width
        self.fc = nn.Linear(latent_dim, 4 * 4 * width)
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        self.blocks = nn.ModuleList([GBlock(width, width, num_classes) for _ in range(3)])  # 4 -> 8 -> 16 -> 32
        self.bn = nn.BatchNorm2d(width)
        self.out = _conv(width, channels, 3)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.fc(z).view(z.shape[0], self.width, 4, 4)  # (B, width, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return self.out(F.relu(self.bn(h))).tanh()  # (B, C, 32, 32)


class ResNetDiscriminator32(nn.Module):
    """Images ``(B, C, 32, 32)`` [, ``y (B,)``] -> logits / critic values ``(B,)``."""

    def __init__(
        self,
        image_shape: Sequence[int] = (3, 32, 32),
        width: int = 128,
        spectral_norm: bool = True,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        channels, height, w = image_shape
        if (height, w) != (32, 32):
            raise ValueError(
                f"The SN-GAN ResNet discriminator takes 32x32 images, got image_shape {tuple(image_shape)}."
            )
        self.blocks = nn.Sequential(
            DBlock(channels, width, downsample=True, sn=spectral_norm, optimized=True),  # 32 -> 16
            DBlock(width, width, downsample=True, sn=spectral_norm),  # 16 -> 8
            DBlock(width, width, downsample=False, sn=spectral_norm),
            DBlock(width, width, downsample=False, sn=spectral_norm),
        )
        self.head = ProjectionHead(width, num_classes, spectral_norm)
        nn.init.xavier_uniform_(
            self.head.linear.parametrizations.weight.original if spectral_norm else self.head.linear.weight
        )

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling: (B, width)
        return self.head(h, y)
