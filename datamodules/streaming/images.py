"""Labelled images from LitData shards (a local folder or ``s3://``), with the :class:`ImageDataModule` contract.

Write the shards once with ``lightning-gen prepare`` (from MNIST, Fashion-MNIST or an image folder),
then train from them: images are stored decoded, as uint8 ``(C, H, W)`` at their final size, so an
epoch re-decodes nothing. Batches are ``(images, labels)`` as for every image datamodule; the
splits are the source's (MNIST's train/val split by its seed, its official test set).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.base import ImageDataModule
from datamodules.streaming.manifest import ShardManifest, ShardSet
from datamodules.streaming.reading import ShardItems, ShardSplit, open_split, stream_loader
from datamodules.streaming.store import ShardStore


def image_pair(item: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """A stored item -> ``(image float (C, H, W) in [0, 1], label int64)``."""
    image = torch.from_numpy(np.ascontiguousarray(item["image"])).float().div_(255.0)
    return image, torch.tensor(int(item["label"]), dtype=torch.int64)


class ShardImageDataModule(ImageDataModule):
    """Images and labels from a shard set written by ``lightning-gen prepare``."""

    def __init__(
        self,
        root: str,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        endpoint_url: str | None = None,
        storage_options: dict[str, Any] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        """
        Args:
            root: The shard set: a folder, or ``s3://bucket/prefix``.
            batch_size: Images per batch.
            num_workers: DataLoader workers (each reads its own chunks).
            seed: Seed of the shuffling (chunks and items, per epoch).
            endpoint_url: S3 endpoint of an S3-compatible server (e.g. ``http://127.0.0.1:9000``); ``None``: AWS.
            storage_options: More ``boto3`` S3 client arguments (``region_name``, keys...); credentials
                otherwise come from the usual AWS environment variables and files.
            cache_dir: Where chunks read from S3 are kept (LitData's default cache when ``None``).
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.store = ShardStore(root, endpoint_url, dict(storage_options or {}))
        self.shards = ShardSet(self.store, "images", type(self).__name__)
        self.cache_dir = cache_dir
        self._train_stream: ShardSplit | None = None

    @property
    def manifest(self) -> ShardManifest:
        """What the shard set holds (read once; the chunks are checked in :meth:`prepare_data`/:meth:`setup`)."""
        return self.shards.manifest

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.manifest.image_shape or ()
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int | None:
        return self.manifest.num_classes

    @property
    def dataset_id(self) -> str:
        return f"shards-{self.manifest.dataset_id}"

    def prepare_data(self) -> None:
        self.shards.check()

    def _items(self, split: str) -> ShardItems:
        return ShardItems(
            open_split(self.store, split, image_pair, cache_dir=self.cache_dir), self.manifest.splits[split]
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = self.shards.check().splits
        self._train_stream = open_split(
            self.store, "train", image_pair, shuffle=True, seed=self.seed, cache_dir=self.cache_dir
        )
        self.train_set = self._items("train")  # random access: the classifier metrics train on it
        self.val_set = self._items("val")
        self.test_set = self._items("test") if "test" in splits else self.val_set

    def train_dataloader(self) -> DataLoader:
        if self._train_stream is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not run for this stage.")
        return stream_loader(self._train_stream, self.batch_size, self.num_workers)
