"""The GAN architecture registry: one name -> a (generator, discriminator) pair of plain modules.

The GAN LightningModule and the generator export both build nets through these two functions,
so an exported generator can be rebuilt from its name and keyword arguments alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from torch import nn

from lightning_gen.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from lightning_gen.nets.gan_layers import DNorm, SamplingGenerator
from lightning_gen.nets.sngan import ResNetDiscriminator32, ResNetGenerator32

Architecture = Literal["dcgan", "resnet32"]
ARCHITECTURES: tuple[str, ...] = ("dcgan", "resnet32")


def generator_kwargs(
    image_shape: Sequence[int], latent_dim: int, width: int, num_classes: int | None
) -> dict[str, Any]:
    """The keyword arguments every generator takes (stored with an exported generator)."""
    return {
        "image_shape": [int(s) for s in image_shape],
        "latent_dim": latent_dim,
        "width": width,
        "num_classes": num_classes,
    }


def build_generator(
    architecture: str, image_shape: Sequence[int], latent_dim: int, width: int, num_classes: int | None = None
) -> SamplingGenerator:
    """``z (B, latent_dim)`` [, ``y``] -> ``(B, *image_shape)`` in ``[-1, 1]``; ``sample(n, generator, labels)`` in ``[0, 1]``.

    The GAN family's export builder (its :class:`~lightning_gen.models.base.ExportSpec`).
    """
    if architecture == "dcgan":
        return DCGANGenerator(image_shape, latent_dim, width, num_classes)
    if architecture == "resnet32":
        return ResNetGenerator32(image_shape, latent_dim, width, num_classes)
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}.")


def build_discriminator(
    architecture: str, image_shape: Sequence[int], width: int, norm: DNorm, num_classes: int | None = None
) -> nn.Module:
    """``(B, *image_shape)`` [, ``y``] -> ``(B,)`` logits / critic values."""
    if architecture == "dcgan":
        return DCGANDiscriminator(image_shape, width, norm, num_classes)
    if architecture == "resnet32":
        if norm == "batch":
            raise ValueError("The resnet32 discriminator has no batch norm: use d_norm 'spectral' (SN-GAN) or 'none'.")
        return ResNetDiscriminator32(image_shape, width, norm == "spectral", num_classes)
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}.")
