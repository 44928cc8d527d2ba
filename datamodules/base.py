"""The contract every image datamodule keeps, so models and callbacks can rely on it.

Batches are ``(images, labels)``: ``images`` float32 in ``[0, 1]`` with shape ``(B, C, H, W)``
equal to ``(B, *image_shape)``, ``labels`` int64 of shape ``(B,)`` (zeros when unlabelled).
Models map ``[0, 1]`` to whatever range they need (a GAN's ``[-1, 1]``) themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.resumable import ResumableDataLoader
from gen_common.errors import ConfigError


class ImageDataModule(L.LightningDataModule, ABC):
    """Base class: shape contract, deterministic loaders, and the datasets split by subclasses.

    Subclasses set ``self.train_set``, ``self.val_set`` and ``self.test_set`` in ``setup`` and
    implement :attr:`image_shape` (known without loading data, so the CLI can link it into
    the model before anything is read).
    """

    def __init__(self, batch_size: int, num_workers: int, seed: int) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"`data.init_args.batch_size` must be >= 1, got {batch_size}.")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    @abstractmethod
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of every image this datamodule yields."""

    @property
    def num_classes(self) -> int | None:
        """Number of label classes, or ``None`` for unlabelled data."""
        return None

    @property
    def dataset_id(self) -> str:
        """A stable name of the data (source and preprocessing), for caches keyed by dataset."""
        return type(self).__name__

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not run for this stage.")
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        if shuffle:  # training: resumable mid-epoch (see datamodules/resumable.py)
            return ResumableDataLoader(
                dataset,
                batch_size=self.batch_size,
                seed=self.seed,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
                generator=generator,
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=generator,
            drop_last=shuffle,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
