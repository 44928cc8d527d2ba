"""Reading one split of a shard set with LitData: a shuffled stream for training, random access for the rest.

Training reads a :class:`~litdata.StreamingDataset` through a :class:`~litdata.StreamingDataLoader`:
LitData gives each rank (and each worker) its own chunks, shuffles chunks and items from
``(seed, epoch)``, and its loader's ``state_dict`` records how many samples were yielded, which
Lightning saves in the fit loop state of every checkpoint and hands back on resume: a run resumed
from a mid-epoch ``last.ckpt`` reads exactly the samples of that epoch it had not read yet.

Validation, test, ``lightning-gen evaluate`` and the classifier metrics index a split instead
(:class:`ShardItems`, a map-style dataset), as they do with every other datamodule: Lightning's
distributed sampler splits it across ranks, and the first ``n`` items are always the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from datamodules.streaming.store import ShardStore, allow_plain_http

try:
    from litdata import StreamingDataLoader, StreamingDataset
except ImportError as err:  # pragma: no cover - the `stream` extra
    raise ImportError(
        "datamodules.streaming needs LitData: `pip install 'lightning-gen[stream]'` (or `bash scripts/setup.sh`)."
    ) from err


class ShardSplit(StreamingDataset):
    """One split's ``StreamingDataset``; also lets the process that reads reach an ``http://`` S3 endpoint."""

    def _reach(self) -> None:
        endpoint = (self.storage_options or {}).get("endpoint_url")
        if endpoint:
            allow_plain_http(endpoint)  # DataLoader workers started with spawn import litdata afresh

    def __iter__(self) -> ShardSplit:
        self._reach()
        return super().__iter__()

    def __getitem__(self, index: Any) -> Any:
        self._reach()
        return super().__getitem__(index)


def open_split(
    store: ShardStore,
    split: str,
    transform: Callable[[Any], Any],
    shuffle: bool = False,
    seed: int = 0,
    cache_dir: str | None = None,
    item_loader: Any = None,
) -> ShardSplit:
    """The ``StreamingDataset`` of ``split``; build it where it is read (it notes the rank at construction)."""
    return ShardSplit(
        store.join(split),
        cache_dir=cache_dir,
        item_loader=item_loader,
        shuffle=shuffle,
        drop_last=True if shuffle else None,
        seed=seed,
        storage_options=store.litdata_options(),
        transform=transform,
    )


class ShardLoader(StreamingDataLoader):
    """LitData's loader, whose resumed epoch also ends when Lightning stops reading at ``len`` batches.

    LitData 0.2.76 leaves "restore" mode (replay from the loaded state) only when its iterator runs
    to exhaustion, but Lightning stops asking for batches once it has the epoch's ``len`` (or
    ``limit_train_batches``) of them. Left as it is, the epoch after a resumed one would replay the
    resumed state again instead of starting afresh (it yielded nothing in our test). Here the next
    ``iter`` after a resumed epoch always starts a new epoch, however the resumed one ended.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resumed_epoch_started = False

    def __iter__(self) -> Any:
        if self.restore and self._resumed_epoch_started:  # the resumed epoch is over: this is the next one
            self.restore = False
        self._resumed_epoch_started = self.restore
        yield from super().__iter__()

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        self._resumed_epoch_started = False
        super().load_state_dict(obj)


def stream_loader(dataset: ShardSplit, batch_size: int, num_workers: int) -> ShardLoader:
    """The training loader: full batches only, so every rank takes the same number of steps."""
    # LitData gives each worker its own chunks and counts them in ``len``: Lightning's caveat does not apply
    warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
    return ShardLoader(dataset, batch_size=batch_size, num_workers=num_workers, drop_last=True)


class ShardItems(Dataset):
    """Items ``0 .. length - 1`` of a split by index: a map-style view for validation, test, evaluation, samplers.

    ``length`` comes from the shard set's own count (``len`` of a ``StreamingDataset`` is this rank's share).
    """

    def __init__(self, split: ShardSplit, length: int) -> None:
        self.split = split
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        return self.split[int(index)]
