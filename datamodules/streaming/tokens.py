"""Token windows from LitData shards (a local folder or ``s3://``), with the text datamodule's contract.

Write the shards once with ``lightning-gen prepare --config experiments/gpt_shakespeare_char.yaml --out
DIR`` (or any corpus of :class:`~datamodules.text.TextDataModule`); the tokenizer travels in the
shard set's marker. As in LitGPT, LitData's ``TokensLoader(block_size + 1)`` cuts each chunk into
consecutive windows of ``block_size + 1`` ids; batches are ``(x, y)``, int64 ``(B, block_size)``,
``y`` = ``x`` shifted by one. An epoch is one pass over every training window, shuffled by
``(seed, epoch)``; validation reads the first ``val_batches`` batches of the validation split, the
same every time. Checkpoints carry the tokenizer, so ``lightning-gen sample`` decodes without the data.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.streaming.manifest import ShardManifest, ShardSet
from datamodules.streaming.reading import ShardItems, ShardSplit, open_split, stream_loader
from datamodules.streaming.store import ShardStore
from datamodules.text.datamodule import TextDataModule
from datamodules.text.tokenizers import Tokenizer, tokenizer_from_dict
from gen_common.errors import ConfigError


def window_pair(item: Any) -> tuple[Tensor, Tensor]:
    """A window of ``block_size + 1`` ids -> ``(x, y)`` int64, ``y`` shifted by one."""
    ids = torch.from_numpy(np.asarray(item).astype(np.int64))
    return ids[:-1], ids[1:]


class ShardTokenDataModule(L.LightningDataModule):
    """Token windows from a shard set written by ``lightning-gen prepare`` from a text datamodule.

    Args:
        root: The shard set: a folder, or ``s3://bucket/prefix``.
        block_size: Tokens per window (the model's context length).
        batch_size: Windows per batch.
        val_batches: Validation batches (the first windows of the validation split).
        num_workers: DataLoader workers of the training stream.
        seed: Seed of the shuffling (chunks and windows, per epoch).
        endpoint_url: S3 endpoint of an S3-compatible server (e.g. ``http://127.0.0.1:9000``); ``None``: AWS.
        storage_options: More ``boto3`` S3 client arguments (``region_name``, keys...).
        cache_dir: Where chunks read from S3 are kept (LitData's default cache when ``None``).
    """

    def __init__(
        self,
        root: str,
        block_size: int = 64,
        batch_size: int = 12,
        val_batches: int = 50,
        num_workers: int = 0,
        seed: int = 0,
        endpoint_url: str | None = None,
        storage_options: dict[str, Any] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("block_size", block_size), ("batch_size", batch_size), ("val_batches", val_batches)):
            if value < 1:
                raise ConfigError(f"`data.init_args.{name}` must be >= 1, got {value}.")
        self.store = ShardStore(root, endpoint_url, dict(storage_options or {}))
        self.shards = ShardSet(self.store, "tokens", type(self).__name__)
        self.block_size, self.batch_size, self.val_batches = block_size, batch_size, val_batches
        self.num_workers, self.seed, self.cache_dir = num_workers, seed, cache_dir
        self._tokenizer: Tokenizer | None = None
        self._val_tokens: np.ndarray | None = None
        self.train_stream: ShardSplit | None = None
        self.val_set: ShardItems | None = None

    # --- what the model and callbacks may ask before setup ---------------------------------------
    @property
    def manifest(self) -> ShardManifest:
        return self.shards.manifest

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = tokenizer_from_dict(self.manifest.tokenizer or {})
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def dataset_id(self) -> str:
        return f"shards-{self.manifest.dataset_id}"

    @property
    def val_tokens(self) -> np.ndarray:
        """The ids of the validation windows, in order (contiguous text: chunks hold whole windows)."""
        if self._val_tokens is None:
            val_set = self._require(self.val_set)
            windows = [torch.cat([x, y[-1:]]) for x, y in (val_set[i] for i in range(len(val_set)))]
            self._val_tokens = torch.cat(windows).numpy()
        return self._val_tokens

    # --- Lightning hooks ------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.shards.check()

    def _windows(self, split: str) -> int:
        index = self.store.child(split).read_json("index.json") or {}
        return sum(int(chunk["dim"]) // (self.block_size + 1) for chunk in index.get("chunks", []))

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is not None:
            return
        self.shards.check()
        from litdata.streaming.item_loader import TokensLoader

        window = self.block_size + 1
        for split in ("train", "val"):
            if self._windows(split) < (self.batch_size if split == "train" else 1):
                raise ConfigError(
                    f"The {split} split of {self.store.url} has {self.manifest.splits[split]} tokens, too few for one "
                    f"{'batch' if split == 'train' else 'window'} of `data.init_args.block_size`={self.block_size}: use "
                    "more text, a smaller block_size or batch_size."
                )
        self.train_stream = open_split(
            self.store, "train", window_pair, True, self.seed, self.cache_dir, TokensLoader(block_size=window)
        )
        val = open_split(self.store, "val", window_pair, cache_dir=self.cache_dir, item_loader=TokensLoader(window))
        self.val_set = ShardItems(val, min(self.val_batches * self.batch_size, self._windows("val")))

    def train_dataloader(self) -> DataLoader:
        return stream_loader(self._require(self.train_stream), self.batch_size, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._require(self.val_set), batch_size=self.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def _require(self, dataset: Any) -> Any:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not run.")
        return dataset

    # Checkpoints carry the tokenizer (``lightning-gen sample`` decodes without the shards) and the dataset_id
    # (a resume on other data is refused): the text datamodule's two methods, which use only these properties.
    state_dict = TextDataModule.state_dict
    load_state_dict = TextDataModule.load_state_dict
