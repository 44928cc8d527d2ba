"""Synthetic images for fast tests: soft Gaussian blobs at random places, generated from a seed."""

from __future__ import annotations

import torch
from torch import Tensor

from datamodules.base import ImageDataModule
from datamodules.mnist import UInt8ImageDataset
from gen_common.errors import ConfigError


def gaussian_blobs(n: int, image_shape: tuple[int, int, int], num_classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` uint8 images ``(n, C, H, W)``: one blob each, class = which quadrant-ish band it sits in."""
    channels, height, width = image_shape
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (n,), generator=g)
    # Class fixes the blob's row band, the column is random: a structured, learnable distribution.
    centre_y = (labels.float() + 0.5) / num_classes * height
    centre_x = torch.rand(n, generator=g) * width
    sigma = 0.12 * min(height, width)
    ys = torch.arange(height).view(1, height, 1).float()
    xs = torch.arange(width).view(1, 1, width).float()
    blob = torch.exp(-((ys - centre_y.view(n, 1, 1)) ** 2 + (xs - centre_x.view(n, 1, 1)) ** 2) / (2 * sigma**2))
    colour = 0.5 + 0.5 * torch.rand(n, channels, 1, 1, generator=g)
    images = (blob.unsqueeze(1) * colour * 255).round().to(torch.uint8)
    return images, labels


class SyntheticImageDataModule(ImageDataModule):
    """Procedural images of any shape, in memory; for tests and smoke runs, never for results."""

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        num_train: int = 512,
        num_val: int = 128,
        num_test: int = 128,
        num_classes: int = 4,
        binarize: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        """
        Args:
            image_shape: ``(C, H, W)`` of the generated images.
            num_train: Training images; ``num_val``/``num_test`` likewise.
            num_classes: Distinct blob rows, also the labels.
            binarize: Threshold at 0.5 (for Bernoulli likelihoods).
            batch_size: Images per batch.
            num_workers: DataLoader workers.
            seed: Seed of the images and of the shuffling.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ConfigError(f"`data.init_args.image_shape` must be (C, H, W) with positive sizes, got {image_shape}.")
        self._image_shape = tuple(int(s) for s in image_shape)
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self._num_classes = num_classes
        self.binarize = binarize

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._image_shape

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def dataset_id(self) -> str:
        return f"synthetic-{'x'.join(map(str, self._image_shape))}-c{self._num_classes}-seed{self.seed}"

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        mode = "threshold" if self.binarize else "none"
        splits = []
        for offset, n in enumerate((self.num_train, self.num_val, self.num_test)):
            images, labels = gaussian_blobs(n, self._image_shape, self._num_classes, seed=self.seed * 1000 + offset)
            splits.append(UInt8ImageDataset(images, labels, mode))
        self.train_set, self.val_set, self.test_set = splits
