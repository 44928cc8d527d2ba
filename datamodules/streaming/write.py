"""Write a shard set from a datamodule (``lightning-gen prepare``): LitData's ``optimize`` with N workers.

The source is any image datamodule (MNIST, Fashion-MNIST, an image folder: its train/val/test sets,
labels and ``dataset_id``) or the text datamodule (its train and validation token ids and its
tokenizer). Each split becomes one LitData dataset; items keep the source's order, so item ``i``
of ``test/`` is item ``i`` of the source's test set. The workers are forked from the writer and
inherit its set-up datamodule (a worker started otherwise rebuilds it from its class path and
arguments); each writes its slices of a split.

The output must be new: an existing set is never touched. :data:`MANIFEST_NAME` is written first
(``complete: false``) and last (``complete: true``), so an interrupted run leaves a set that every
reader refuses as half-written. An ``s3://`` output is written locally first (``staging_dir``),
then uploaded split by split, the marker last.
"""

from __future__ import annotations

import importlib
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.streaming.manifest import MANIFEST_NAME, ShardManifest
from datamodules.streaming.store import ShardStore
from gen_common.errors import ConfigError, DataNotFoundError

#: tasks per worker and split: small enough for a live progress bar, large enough to amortise a task
TASKS_PER_WORKER = 8


@dataclass(frozen=True)
class DataSpec:
    """A datamodule as its class path and constructor arguments (what a worker process rebuilds)."""

    class_path: str
    init_args: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return json.dumps({"class_path": self.class_path, "init_args": self.init_args}, sort_keys=True, default=str)

    def build(self) -> Any:
        module, _, name = self.class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):
            raise ConfigError(f"Datamodule class {self.class_path!r} cannot be imported.") from None
        return cls(**self.init_args)


#: set-up datamodules by ``DataSpec.key()``: filled by the writer, inherited by forked workers
_READY: dict[str, Any] = {}


def _ready(key: str) -> Any:
    """The datamodule of ``DataSpec.key()``, set up (built again only in a worker that did not inherit it)."""
    if key not in _READY:
        data = json.loads(key)
        datamodule = DataSpec(data["class_path"], data["init_args"]).build()
        datamodule.setup("fit")
        _READY[key] = datamodule
    return _READY[key]


#: items written so far, one slot per worker (each worker adds to its own): set by the writer, inherited by
#: the forked workers, summed by the progress bar (LitData's own verbose output is a page of log lines)
_WRITTEN: Any = None


def _count(n: int) -> None:
    if _WRITTEN is not None:
        _WRITTEN[int(os.environ.get("DATA_OPTIMIZER_GLOBAL_RANK", 0)) % len(_WRITTEN)] += n


@contextmanager
def _progress(total: int, unit: str, workers: int, show: bool) -> Iterator[None]:
    """Count what the workers write (see :data:`_WRITTEN`); with ``show``, a rich bar polls the count."""
    global _WRITTEN
    _WRITTEN = multiprocessing.RawArray("q", max(1, workers))
    stop = threading.Event()
    try:
        if not show:
            yield
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn(f"writing {unit}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task(unit, total=total)
            poll = threading.Thread(target=_poll, args=(bar, task, stop), daemon=True)
            poll.start()
            try:
                yield
            finally:
                stop.set()
                poll.join()
                bar.update(task, completed=sum(_WRITTEN))
    finally:
        _WRITTEN = None


def _poll(bar: Any, task: Any, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        bar.update(task, completed=sum(_WRITTEN))


def _split_set(datamodule: Any, split: str) -> Any:
    if getattr(datamodule, "test_set", None) is None and split == "test":
        datamodule.setup("test")
    return getattr(datamodule, f"{split}_set")


def image_items(task: tuple[str, str, int, int]) -> Iterator[dict[str, Any]]:
    """Items ``start .. stop - 1`` of a split: ``{"index", "image" uint8 (C, H, W), "label"}``."""
    key, split, start, stop = task
    dataset = _split_set(_ready(key), split)
    for index in range(start, stop):
        image, label = dataset[index]
        pixels = (image * 255.0).round().clamp_(0, 255).to(torch.uint8).numpy()
        yield {"index": index, "image": pixels, "label": int(label)}
        _count(1)


def token_pieces(task: tuple[str, str, int, int]) -> Iterator[np.ndarray]:
    """Token ids ``start .. stop - 1`` of a split of a text datamodule, as one array (one chunk's worth)."""
    key, split, start, stop = task
    datamodule = _ready(key)
    ids = datamodule.train_tokens if split == "train" else datamodule.val_tokens  # memory-mapped
    yield np.array(ids[start:stop])
    _count(stop - start)


def claim_output(store: ShardStore) -> None:
    """Refuse (one paragraph, nothing changed) an output that already holds anything."""
    files = store.sizes()
    if not files:
        return
    marker = store.read_json(MANIFEST_NAME) if MANIFEST_NAME in files else None
    if marker is not None and marker.get("complete"):
        what = f"a complete shard set of {marker.get('dataset_id')!r}"
        fix = "use it as it is, or choose another `--out` (or delete it to write it again)"
    elif marker is not None:
        what = "a half-written shard set (an earlier `lightning-gen prepare` stopped before the end)"
        fix = "delete it and run `lightning-gen prepare` again, or choose another `--out`"
    else:
        what = f"{len(files)} file(s) that are not a lightning_gen shard set"
        fix = "choose another `--out` (a new folder or S3 prefix)"
    raise ConfigError(f"`--out` {store.url} already holds {what}. Fix: {fix}. Nothing was changed.")


def _ranges(n: int, parts: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``[0, n)`` cut into at most ``parts`` consecutive ranges whose lengths are multiples of ``multiple``."""
    step = max(multiple, math.ceil(n / max(1, parts) / multiple) * multiple)
    return [(a, min(a + step, n)) for a in range(0, n, step)]


@dataclass
class ShardWriter:
    """Writes the splits of one shard set into ``store`` (see module doc).

    Args:
        store: The output location (new).
        workers: Worker processes of ``litdata.optimize``.
        chunk_mb: Target chunk size in MB (LitData's chunk files; 64 MB suits S3).
        progress: Show LitData's progress bar.
        staging_dir: Local folder an ``s3://`` output is written to before its upload (default: the system temp dir).
    """

    store: ShardStore
    workers: int = 2
    chunk_mb: float = 64.0
    progress: bool = False
    staging_dir: str | None = None

    def _optimize(self, name: str, **kwargs: Any) -> None:
        from litdata import optimize

        local = Path(self.store.join(name)) if not self.store.remote else None
        staging = None if local else Path(tempfile.mkdtemp(prefix=f"prepare-{name}-", dir=self.staging_dir))
        out = local or staging / name
        try:
            optimize(
                output_dir=str(out),
                num_workers=self.workers,
                keep_data_ordered=True,
                reorder_files=False,
                verbose=False,  # our bar instead of LitData's log lines
                start_method="fork",  # the workers inherit the imports and the set-up datamodule
                **kwargs,
            )
            if staging is not None:
                self.store.upload(out, name)
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def _write(self, manifest: ShardManifest, jobs: dict[str, dict[str, Any]]) -> ShardManifest:
        """Write the marker (incomplete), each split's ``optimize`` job, then the marker (complete)."""
        import litdata

        manifest.litdata_version = litdata.__version__
        manifest.complete = False
        self.store.write_json(MANIFEST_NAME, manifest.to_dict())
        with _progress(sum(manifest.splits.values()), manifest.kind, self.workers, self.progress):
            for name, job in jobs.items():
                self._optimize(name, **job)
        manifest.complete = True
        self.store.write_json(MANIFEST_NAME, manifest.to_dict())
        return manifest

    def write_images(self, spec: DataSpec, datamodule: Any) -> ShardManifest:
        """The train, val and (if it is its own set) test split of an image datamodule."""
        claim_output(self.store)
        if getattr(datamodule, "binarize", "none") == "dynamic":
            raise ConfigError(
                "Shards store fixed pixels, but `data.init_args.binarize: dynamic` draws new binary pixels every "
                "epoch. Fix: prepare with `binarize: none` (the default). Nothing was written."
            )
        datamodule.setup("fit")
        if getattr(datamodule, "test_set", None) is None:
            datamodule.setup("test")
        _READY[spec.key()] = datamodule
        splits = {"train": datamodule.train_set, "val": datamodule.val_set}
        if datamodule.test_set is not None and datamodule.test_set is not datamodule.val_set:
            splits["test"] = datamodule.test_set
        c, h, w = datamodule.image_shape
        item_bytes = c * h * w + 64
        manifest = ShardManifest(
            kind="images",
            source={"class_path": spec.class_path, "init_args": spec.init_args},
            dataset_id=datamodule.dataset_id,
            splits={name: len(dataset) for name, dataset in splits.items()},
            image_shape=[c, h, w],
            num_classes=datamodule.num_classes,
            class_names=getattr(datamodule, "class_names", None),
        )
        jobs = {
            name: dict(
                fn=image_items,
                inputs=[(spec.key(), name, a, b) for a, b in _ranges(len(dataset), self.workers * TASKS_PER_WORKER)],
                chunk_size=max(1, int(self.chunk_mb * 1e6) // item_bytes),
            )
            for name, dataset in splits.items()
        }
        return self._write(manifest, jobs)

    def write_tokens(self, spec: DataSpec, datamodule: Any) -> ShardManifest:
        """The training and validation ids of a text datamodule, as chunks of whole ``block_size + 1`` windows."""
        from litdata.streaming.item_loader import TokensLoader

        claim_output(self.store)
        ids = {"train": datamodule.train_tokens, "val": datamodule.val_tokens}  # tokenizes (and caches) once
        _READY[spec.key()] = datamodule
        window = datamodule.block_size + 1
        windows_per_chunk = max(1, int(self.chunk_mb * 1e6) // (ids["train"].dtype.itemsize * window))
        chunk = window * windows_per_chunk
        manifest = ShardManifest(
            kind="tokens",
            source={"class_path": spec.class_path, "init_args": spec.init_args},
            dataset_id=datamodule.dataset_id,
            splits={name: len(split) for name, split in ids.items()},
            tokenizer=datamodule.tokenizer.to_dict(),
        )
        for name, split in ids.items():
            if len(split) < window:
                raise DataNotFoundError(
                    f"The {name} split has {len(split)} tokens, fewer than one window of block_size + 1 = {window}. "
                    "Fix: use more text, a smaller `block_size`, or another `val_fraction`. Nothing was written."
                )
        jobs = {
            name: dict(
                fn=token_pieces,
                inputs=[(spec.key(), name, a, b) for a, b in _ranges(len(split), 10**9, chunk)],
                chunk_size=chunk,
                item_loader=TokensLoader(),
            )
            for name, split in ids.items()
        }
        return self._write(manifest, jobs)
