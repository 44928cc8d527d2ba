"""LightningDataModules for lightning_gen: images and text, offline-first."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datamodules.base import ImageDataModule
    from datamodules.cifar10 import CIFAR10DataModule
    from datamodules.image_folder import ImageFolderDataModule
    from datamodules.mnist import FashionMNISTDataModule, MNISTDataModule
    from datamodules.synthetic import SyntheticImageDataModule

# Imported on first use, so `datamodules.text` helpers does not import Lightning.
_LAZY = {
    "ImageDataModule": "datamodules.base",
    "CIFAR10DataModule": "datamodules.cifar10",
    "ImageFolderDataModule": "datamodules.image_folder",
    "FashionMNISTDataModule": "datamodules.mnist",
    "MNISTDataModule": "datamodules.mnist",
    "SyntheticImageDataModule": "datamodules.synthetic",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")


__all__ = [
    "CIFAR10DataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "SyntheticImageDataModule",
]
