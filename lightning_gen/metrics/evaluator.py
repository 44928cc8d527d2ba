"""One evaluation = one feature pass over ``N`` generated images, shared by several metric families.

:class:`ImageEvaluator` samples exactly ``num_samples`` images split across ranks
(:mod:`.distributed`), extracts the features every family needs in one pass, takes real-image
features from the on-disk cache (or computes them once, split across ranks, and rank 0 writes the
cache atomically while the others wait), and computes each family on rank 0. Callbacks and
``lightning-gen evaluate`` both drive it; no image is ever written to disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from gen_common.errors import ConfigError
from gen_common.progress import track
from lightning_gen.metrics.cache import FeatureCache, library_versions
from lightning_gen.metrics.distributed import (
    barrier,
    broadcast_object,
    chunk_seed,
    gather_in_order,
    owned_chunks,
    rank_and_world,
)
from lightning_gen.metrics.extractors import ImageFeatureExtractor
from lightning_gen.metrics.fidelity import MetricFamily, fid_statistics
from lightning_gen.metrics.settings import EvalSettings  # noqa: F401 (defined there, re-exported)

Sampler = Callable[[int, torch.Generator], Tensor]  # (n, generator) -> (n, C, H, W) images in [0, 1]


@dataclass
class EvalResult:
    """Numbers (rank 0's, broadcast) and, per metric family, its protocol card."""

    values: dict[str, float]
    cards: dict[str, dict[str, Any]]


_END = object()


def prefetch(items: Iterable[Any]) -> Iterator[Any]:
    """Yield ``items`` while one background thread produces the next one.

    Decoding images (a dataset's ``__getitem__``, PIL) overlaps the extractor's forward, which
    releases the GIL; the order and the values are those of ``items``.
    """
    iterator = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="lightning-gen-prefetch") as pool:
        future = pool.submit(next, iterator, _END)
        while (item := future.result()) is not _END:
            future = pool.submit(next, iterator, _END)
            yield item


def split_dataset(datamodule: Any, split: str) -> Dataset:
    """The datamodule's ``<split>_set`` after ``setup`` (the :class:`ImageDataModule` contract)."""
    if split == "folder":
        raise ConfigError(
            "`split: folder` means real images given as a folder (`lightning-gen evaluate --real DIR`); "
            "a datamodule has train, val and test."
        )
    stage = {"train": "fit", "val": "validate", "test": "test"}[split]
    dataset = getattr(datamodule, f"{split}_set", None)
    if dataset is None:
        datamodule.setup(stage)
        dataset = getattr(datamodule, f"{split}_set", None)
    if dataset is None:
        raise ConfigError(
            f"{type(datamodule).__name__} has no `{split}_set` after setup('{stage}'); choose another `split`."
        )
    return dataset


class ImageEvaluator:
    """Compute several metric families from one shared feature pass (see module doc).

    Args:
        families: Metric families; all must use ``extractor`` (same ``extractor_kind``).
        extractor: The feature extractor, with every layer the families need.
        settings: Sample counts, split, seeds, batch sizes.
        cache: Real-feature cache (``None``: no cache, always recompute).
    """

    def __init__(
        self,
        families: Sequence[MetricFamily],
        extractor: ImageFeatureExtractor,
        settings: EvalSettings,
        cache: FeatureCache | None = None,
    ) -> None:
        if not families:
            raise ValueError("ImageEvaluator needs at least one metric family.")
        self.families = list(families)
        self.extractor = extractor
        self.settings = settings
        self.cache = cache
        self.fake_layers = sorted({f.fake_layer for f in self.families})
        self.real_layers = sorted({f.real_layer for f in self.families if f.real_layer is not None})
        missing = set(self.fake_layers + self.real_layers) - set(extractor.features)
        if missing:
            raise ValueError(f"extractor {extractor.name} was built without the layers {sorted(missing)}.")

    # --- features ---------------------------------------------------------------------------------
    def _extract(self, images: Tensor, layers: list[str]) -> dict[str, Tensor]:
        out: dict[str, list[Tensor]] = {k: [] for k in layers}
        for batch in images.split(self.settings.batch_size):
            feats = self.extractor(batch)
            for k in layers:
                out[k].append(feats[k])
        return {k: torch.cat(v) for k, v in out.items()}

    def fake_features(self, sample: Sampler, device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """Features of exactly ``num_samples`` generated images, in sample order, on every rank."""
        rank, world = rank_and_world()
        n, chunk = self.settings.num_samples, self.settings.sample_chunk
        rows: dict[str, list[Tensor]] = {k: [] for k in self.fake_layers}
        index: list[Tensor] = []
        for start, stop in track(owned_chunks(n, chunk, rank, world), "generated-image features"):
            generator = torch.Generator(device=device).manual_seed(chunk_seed(self.settings.seed, start))
            images = sample(stop - start, generator)
            if images.shape[0] != stop - start:
                raise RuntimeError(f"sample({stop - start}) returned {images.shape[0]} images.")
            for k, v in self._extract(images, self.fake_layers).items():
                rows[k].append(v)
            index.append(torch.arange(start, stop))
        return self._gather(rows, index, n, self.fake_layers)

    def image_features(
        self, images: Tensor | Dataset, layers: list[str] | None = None, n: int | None = None
    ) -> dict[str, Tensor]:
        """Features of the first ``n`` images of a tensor or an ``(image, label)`` dataset, split across ranks."""
        layers = layers or self.fake_layers
        rank, world = rank_and_world()
        n = len(images) if n is None else n
        chunk = max(self.settings.batch_size, self.settings.sample_chunk)
        rows: dict[str, list[Tensor]] = {k: [] for k in layers}
        index: list[Tensor] = []

        def load(start: int, stop: int) -> Tensor:
            if isinstance(images, Tensor):
                return images[start:stop]
            loader = DataLoader(Subset(images, range(start, stop)), batch_size=stop - start, shuffle=False)
            item = next(iter(loader))
            return item[0] if isinstance(item, (tuple, list)) else item

        chunks = list(owned_chunks(n, chunk, rank, world))
        batches = prefetch(load(start, stop) for start, stop in chunks)  # decode chunk c+1 during chunk c's forward
        for (start, stop), batch in zip(track(chunks, "image features"), batches):
            for k, v in self._extract(batch, layers).items():
                rows[k].append(v)
            index.append(torch.arange(start, stop))
        return self._gather(rows, index, n, layers)

    @staticmethod
    def _gather(rows: dict[str, list[Tensor]], index: list[Tensor], n: int, layers: list[str]) -> dict[str, Tensor]:
        local = {k: torch.cat(v) if v else torch.empty(0) for k, v in rows.items()}
        local_index = torch.cat(index) if index else torch.empty(0, dtype=torch.long)
        if not index:  # a rank with no chunk still joins the collectives, with 0-row tensors of the right width
            local = {k: torch.empty(0, 0) for k in layers}
        return gather_in_order(local, local_index, n) if rank_and_world()[1] > 1 else {k: local[k] for k in layers}

    def real_key(self, dataset_id: str, n_real: int) -> dict[str, Any]:
        """Everything that changes real-image features: the cache key."""
        return {
            "dataset_id": dataset_id,
            "split": self.settings.split,
            "num_real": n_real,
            "layers": self.real_layers,
            "quantize": "uint8 round(x*255)",
            **self.extractor.describe(),
            **library_versions(),
        }

    def real_features(self, dataset: Dataset | Tensor, dataset_id: str) -> dict[str, Any] | None:
        """Real features and FID statistics on rank 0 (``None`` on other ranks); cached on disk.

        A cache hit (decided by rank 0, broadcast) does no real-image work at all. On a miss every
        rank extracts its exact share, rank 0 writes the entry atomically, the others wait.
        """
        if not self.real_layers:
            return None
        rank, _ = rank_and_world()
        n_real = len(dataset) if self.settings.num_real is None else self.settings.num_real
        if n_real > len(dataset):
            raise ConfigError(
                f"`num_real`={n_real} exceeds the {len(dataset)} images of split '{self.settings.split}'; lower it or use another split."
            )
        key = self.real_key(dataset_id, n_real)
        entry = self.cache.load(key) if (self.cache is not None and rank == 0) else None
        hit = broadcast_object(entry is not None)
        if hit:
            return entry if rank == 0 else None
        features = self.image_features(dataset, self.real_layers, n_real)
        entry = None
        if rank == 0:
            # tensors, not numpy arrays: torch.save pickles numpy as latin-1 text (1.5x larger, slower)
            # sqrt(sigma) (a d x d eigensolve) only serves FIDs where both sets outnumber d; with fewer real
            # images every FID takes its trace from the features (see frechet_distance)
            stats = {
                k: {name: torch.from_numpy(a) for name, a in fid_statistics(v, with_sqrt=n_real > v.shape[1]).items()}
                for k, v in features.items()
            }
            entry = {"features": features, "stats": stats, "n": n_real}
            if self.cache is not None:
                self.cache.store(key, entry)
        barrier()  # others wait for the entry to exist
        return entry

    # --- metrics ----------------------------------------------------------------------------------
    def compute(
        self, fake: dict[str, Tensor], real: dict[str, Any] | None, n_real: int | None, dataset_id: str | None
    ) -> EvalResult:
        """Each family's numbers and protocol card (call on rank 0)."""
        values: dict[str, float] = {}
        cards: dict[str, dict[str, Any]] = {}
        n_fake = len(next(iter(fake.values())))
        for family in self.families:
            family_values = family.compute(fake, real if family.real_layer else None)
            values.update(family_values)
            card: dict[str, Any] = {
                "metric": family.key,
                "keys": sorted(family_values),
                "n_fake": n_fake,
                "n_real": n_real if family.real_layer else None,
                "split": self.settings.split if family.real_layer else None,
                "dataset_id": dataset_id,
                "feature_layer": family.fake_layer,
                **self.extractor.describe(),
                "statistics_dtype": "float64",
                "seed": self.settings.seed,
                "sample_chunk": self.settings.sample_chunk,
                **library_versions(),
                **family.settings(),
            }
            cards[family.key] = card
        return EvalResult(values, cards)

    def evaluate(
        self,
        sample: Sampler | Tensor | Dataset,
        dataset: Dataset | Tensor | None,
        dataset_id: str | None,
        device: torch.device | str = "cpu",
    ) -> EvalResult:
        """Full evaluation; every rank must call it; every rank gets rank 0's result.

        ``sample``: a sampler ``(n, generator) -> images``, or the generated images themselves (a
        tensor, or a dataset of image tensors such as a folder's).
        """
        rank, _ = rank_and_world()
        if self.real_layers and dataset is None:
            raise ConfigError("These metrics compare with real images: a datamodule (dataset) is required.")
        real = self.real_features(dataset, dataset_id or "unknown") if self.real_layers else None
        fake = (
            self.image_features(sample) if isinstance(sample, (Tensor, Dataset)) else self.fake_features(sample, device)
        )
        result = None
        if rank == 0:
            n_real = real["n"] if real is not None else None
            result = self.compute(fake, real, n_real, dataset_id)
        result = broadcast_object(asdict(result) if result is not None else None)
        return EvalResult(**result)
