"""DCGAN generator/discriminator (Radford et al., 2016) for 28x28, 32x32 and 64x64 images.

The generator starts from a ``base x base`` map (7 for 28x28, 4 for 32x32/64x64) and doubles the
size with 4x4 stride-2 transposed convs; widths halve at each step, ending at ``width`` channels
before the output conv. The discriminator mirrors it with 4x4 stride-2 convs and LeakyReLU(0.2).
Both take optional class labels (conditional BN in G, projection in D) when ``num_classes`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn.utils import parametrize

from lightning_gen.nets.gan_layers import (
    ConditionalBatchNorm2d,
    DNorm,
    ProjectionHead,
    SamplingGenerator,
    check_d_norm,
    d_norm_layer,
    maybe_sn,
)

#: spatial size -> (size of the first feature map, number of stride-2 up/down steps)
DCGAN_SIZES: dict[int, tuple[int, int]] = {28: (7, 2), 32: (4, 3), 64: (4, 4)}


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear weights ~ N(0, 0.02), BN scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _plan(image_shape: Sequence[int]) -> tuple[int, int, int]:
    channels, height, width = image_shape
    if height != width or height not in DCGAN_SIZES:
        raise ValueError(f"DCGAN nets support square images of size {sorted(DCGAN_SIZES)}, got {tuple(image_shape)}.")
    base, steps = DCGAN_SIZES[height]
    return channels, base, steps


class DCGANGenerator(SamplingGenerator):
    """``z (B, latent_dim)`` [, ``y (B,)``] -> images ``(B, C, H, W)`` in ``[-1, 1]`` (tanh)."""

    def __init__(
        self, image_shape: Sequence[int], latent_dim: int = 100, width: int = 64, num_classes: int | None = None
    ) -> None:
        super().__init__()
        channels, base, steps = _plan(image_shape)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        widths = [width * 2 ** (steps - 1 - i) for i in range(steps)]  # e.g. 32x32, width 64: [256, 128, 64]
        self.base = base
        self.fc = nn.Linear(latent_dim, widths[0] * base * base)
        self.norms = nn.ModuleList([ConditionalBatchNorm2d(widths[0], num_classes)])
        self.ups = nn.ModuleList()
        for in_ch, out_ch in zip(widths[:-1], widths[1:]):
            self.ups.append(nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1))
            self.norms.append(ConditionalBatchNorm2d(out_ch, num_classes))
        self.out = nn.ConvTranspose2d(widths[-1], channels, kernel_size=4, stride=2, padding=1)
        self.act = nn.ReLU()
        dcgan_init(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.fc(z).view(z.shape[0], -1, self.base, self.base)  # (B, widths[0], base, base)
        h = self.act(self.norms[0](h, y))
        for up, norm in zip(self.ups, self.norms[1:]):
            h = self.act(norm(up(h), y))  # spatial size doubles
        return self.out(h).tanh()  # (B, C, H, W)


class DCGANDiscriminator(nn.Module):
    """Images ``(B, C, H, W)`` in ``[-1, 1]`` [, ``y (B,)``] -> logits / critic values ``(B,)``.

    ``norm``: ``batch`` (DCGAN), ``spectral`` (SN-DCGAN: every layer spectrally normalised, no BN)
    or ``none`` (required by the gradient penalty, which is per example).
    """

    def __init__(
        self, image_shape: Sequence[int], width: int = 64, norm: DNorm = "batch", num_classes: int | None = None
    ) -> None:
        super().__init__()
        check_d_norm(norm)
        channels, base, steps = _plan(image_shape)
        sn = norm == "spectral"
        widths = [width * 2**i for i in range(steps)]  # e.g. 32x32, width 64: [64, 128, 256]
        layers: list[nn.Module] = []
        in_ch = channels
        for i, out_ch in enumerate(widths):
            layers.append(maybe_sn(nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1), sn))
            if i > 0:  # DCGAN: no normalisation on the first layer
                layers.append(d_norm_layer(norm, out_ch))
            layers.append(nn.LeakyReLU(0.2))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = ProjectionHead(widths[-1] * base * base, num_classes, sn)
        dcgan_init(self)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.features(x).flatten(1)  # (B, widths[-1] * base * base)
        return self.head(h, y)
