"""Stand-ins of the evaluation tests: a tiny deterministic feature extractor (a fixed random projection,
in place of Inception), a stand-in generator, small real image sets, and photo crops written as PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from datamodules.synthetic import SyntheticImageDataModule
from lightning_gen.metrics.extractors import ImageFeatureExtractor
from lightning_gen.metrics.fidelity import FIDFamily, KIDFamily, PrecisionRecallFamily


class ProjectionExtractor(FeatureExtractorBase):
    """Per-image features: a fixed random projection of 4x4-pooled pixels (16-d), batch independent."""

    def __init__(self, name: str = "projection", features_list: tuple[str, ...] = ("2048",), dim: int = 16) -> None:
        super().__init__(name, list(features_list))
        self.proj = torch.nn.Parameter(
            torch.randn(3 * 16, dim, generator=torch.Generator().manual_seed(0)), requires_grad=False
        )

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x.float() / 255.0, 4).flatten(1)  # (B, 48)
        f = pooled.double() @ self.proj.double()
        return tuple(f.float() for _ in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("2048", "logits_unbiased")


def fake_extractor() -> ImageFeatureExtractor:
    return ImageFeatureExtractor(
        ProjectionExtractor(), "projection", {"source": "test", "sha256": "0" * 64}, "none", rgb=True
    )


class BlobSampler:
    """A stand-in generator: images are a deterministic function of the generator's noise."""

    def __init__(self) -> None:
        self.drawn = 0

    def __call__(self, n: int, generator: torch.Generator) -> Tensor:
        self.drawn += n
        return torch.rand(n, 1, 16, 16, generator=generator)


def real_dataset(n: int = 40):
    dm = SyntheticImageDataModule(image_shape=(1, 16, 16), num_train=64, num_val=n, num_test=n)
    dm.setup("test")
    return dm.test_set


def families():
    return [FIDFamily(), KIDFamily(subsets=10, subset_size=20), PrecisionRecallFamily()]


def save_crops(photo: np.ndarray, folder: Path, n: int, size: int = 64, seed: int = 0, grey: bool = False) -> Path:
    """``n`` PNG crops of a skimage photo (a small real image set)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        y, x = int(rng.integers(0, photo.shape[0] - size)), int(rng.integers(0, photo.shape[1] - size))
        crop = photo[y : y + size, x : x + size]
        Image.fromarray(crop).convert("L" if grey else "RGB").save(folder / f"{i:03d}.png")
    return folder


LABELLED_SHAPE = (1, 16, 16)


def labelled_blobs() -> SyntheticImageDataModule:
    return SyntheticImageDataModule(
        image_shape=LABELLED_SHAPE, num_train=256, num_val=64, num_test=64, num_classes=4, batch_size=32
    )
