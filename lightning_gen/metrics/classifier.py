"""A small dataset classifier as a feature extractor, for domain metrics on small images.

Inception on 28x28 digits is a poor (and, on CPU, slow) judge. Instead: train once a small CNN
on the datamodule's train split (cached on disk, keyed by dataset and recipe), then report
"FD-classifier" (Fréchet distance of its penultimate features) and "IS-classifier" (the
Inception-Score formula on its logits). The network is registered with torch-fidelity as the
feature extractor ``lightning-gen-classifier``, so ``torch_fidelity.calculate_metrics`` can use it
too (``feature_extractor="lightning-gen-classifier"``, ``feature_extractor_weights_path=<file>``).
These numbers are comparable only between runs that use the same classifier file (its SHA-256
is in every protocol card), never with FID.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from gen_common.errors import ConfigError, LightningGenError
from lightning_gen.metrics.cache import atomic_torch_save, cache_key, default_cache_dir, library_versions
from lightning_gen.metrics.distributed import rank_and_world
from lightning_gen.metrics.extractors import ImageFeatureExtractor
from lightning_gen.metrics.inception import file_sha256

EXTRACTOR_NAME = "lightning-gen-classifier"


@dataclass(frozen=True)
class ClassifierConfig:
    """The classifier recipe (part of its cache key)."""

    image_shape: tuple[int, int, int]  # (C, H, W) of the dataset
    num_classes: int
    width: int = 16  # channels of the first conv block (the second has 2x); small: CPU-friendly
    feature_dim: int = 128  # size of the penultimate features (FD-classifier space)
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0


class SmallClassifier(nn.Module):
    """Two conv blocks (conv-conv-maxpool), a ``feature_dim`` penultimate layer, linear logits."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        c, w = config.image_shape[0], config.width
        self.body = nn.Sequential(
            nn.Conv2d(c, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )  # (B, 2w * 16)
        self.penultimate = nn.Sequential(nn.Linear(2 * w * 16, config.feature_dim), nn.ReLU())
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` float ``[0, 1]`` -> ``(penultimate (B, feature_dim), logits (B, num_classes))``."""
        h = self.penultimate(self.body(x))
        return h, self.head(h)


class FeatureExtractorClassifier(FeatureExtractorBase):
    """torch-fidelity wrapper: uint8 ``(B, C, H, W)`` -> ``penultimate`` and/or ``logits``."""

    def __init__(
        self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ConfigError(
                f"Feature extractor {EXTRACTOR_NAME!r} needs `feature_extractor_weights_path` (a file written by train_classifier)."
            )
        checkpoint = torch.load(feature_extractor_weights_path, map_location="cpu", weights_only=False)
        self.config = ClassifierConfig(
            **{**checkpoint["config"], "image_shape": tuple(checkpoint["config"]["image_shape"])}
        )
        self.net = SmallClassifier(self.config)
        self.net.load_state_dict(checkpoint["state_dict"])
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[1:]) != self.config.image_shape:
            raise ValueError(
                f"{EXTRACTOR_NAME} expects uint8 images of shape (B, {self.config.image_shape}), got {x.dtype} {tuple(x.shape)}."
            )
        penultimate, logits = self.net(x.float() / 255.0)
        features = {"penultimate": penultimate, "logits": logits}
        return tuple(features[k].float() for k in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("penultimate", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "penultimate", "kid": "penultimate", "prc": "penultimate"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        raise NotImplementedError


if EXTRACTOR_NAME not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(EXTRACTOR_NAME, FeatureExtractorClassifier)


@torch.no_grad()
def _accuracy(net: SmallClassifier, dataset: Any, batch_size: int = 512) -> float:
    net.eval()
    correct = total = 0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        correct += int((net(x)[1].argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def train_classifier(
    train_set: Any, test_set: Any | None, config: ClassifierConfig, path: str | Path, log: Any = print
) -> dict[str, Any]:
    """Train the classifier (plain PyTorch loop, CPU-friendly) and write its checkpoint atomically."""
    torch.manual_seed(config.seed)
    net = SmallClassifier(config)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    loader = DataLoader(
        train_set, batch_size=config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(config.seed)
    )
    start = time.perf_counter()
    for epoch in range(config.epochs):
        net.train()
        for x, y in loader:
            loss = F.cross_entropy(net(x)[1], y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        log(f"classifier epoch {epoch + 1}/{config.epochs}: last batch loss {loss.item():.4f}")
    accuracy = _accuracy(net, test_set) if test_set is not None else None
    checkpoint = {
        "config": asdict(config),
        "state_dict": net.state_dict(),
        "test_accuracy": accuracy,
        "train_seconds": time.perf_counter() - start,
        "versions": library_versions(),
    }
    atomic_torch_save(checkpoint, path)
    return checkpoint


def ensure_classifier(
    datamodule: Any, cache_dir: str | Path | None = None, epochs: int = 1, seed: int = 0, log: Any = print
) -> tuple[Path, dict[str, Any]]:
    """The cached classifier of this datamodule (trained on its train split on first use).

    Under DDP only rank 0 trains; the caller makes the other ranks wait (the callbacks' ``setup``
    builds extractors on rank 0 first, then on the others after a barrier).
    """
    num_classes = getattr(datamodule, "num_classes", None)
    if not num_classes:
        raise ConfigError(
            f"Classifier metrics need a labelled datamodule (`num_classes`); {type(datamodule).__name__} has none. Use FID/KID instead."
        )
    config = ClassifierConfig(
        image_shape=tuple(datamodule.image_shape), num_classes=int(num_classes), epochs=epochs, seed=seed
    )
    key = cache_key({"dataset_id": datamodule.dataset_id, **asdict(config), **library_versions()})
    path = Path(cache_dir or default_cache_dir()) / "classifiers" / f"classifier-{key}.pt"
    rank, _ = rank_and_world()
    if rank == 0 and not path.is_file():
        datamodule.setup("fit")
        if getattr(datamodule, "test_set", None) is None:
            datamodule.setup("test")
        log(f"Training the {datamodule.dataset_id} classifier for FD-classifier/IS-classifier (once; cached in {path})")
        train_classifier(datamodule.train_set, getattr(datamodule, "test_set", None), config, path, log)
    if not path.is_file():
        raise LightningGenError(
            f"Rank {rank}: the classifier {path} does not exist; rank 0 trains it first (is the cache dir shared by all ranks?)."
        )
    meta = torch.load(path, map_location="cpu", weights_only=False)
    return path, {"test_accuracy": meta.get("test_accuracy"), "config": meta["config"]}


def build_classifier_extractor(
    datamodule: Any,
    features: list[str] | tuple[str, ...] = ("penultimate", "logits"),
    cache_dir: str | Path | None = None,
    epochs: int = 1,
    seed: int = 0,
) -> ImageFeatureExtractor:
    """The dataset classifier as an :class:`ImageFeatureExtractor` (trains it on first use)."""
    from torch_fidelity.utils import create_feature_extractor

    path, meta = ensure_classifier(datamodule, cache_dir, epochs, seed)
    module = create_feature_extractor(
        EXTRACTOR_NAME, list(features), cuda=False, feature_extractor_weights_path=str(path), verbose=False
    )
    weights = {
        "source": f"classifier:{datamodule.dataset_id}",
        "sha256": file_sha256(path),
        "test_accuracy": meta["test_accuracy"],
        "path": str(path),
    }
    return ImageFeatureExtractor(
        module, EXTRACTOR_NAME, weights, resize="none (native resolution), uint8 round(x*255)", rgb=False
    )
