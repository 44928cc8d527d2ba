"""A training loader that resumes mid-epoch: shuffling from ``(seed, epoch)`` and a saved position.

Lightning restores a loader's position only if the loader has ``state_dict``/``load_state_dict``
(it checks ``_Stateful``); otherwise a run resumed from a mid-epoch checkpoint restarts the epoch
and sees other batches than an unbroken run. Here the order of epoch ``e`` is a permutation
seeded by ``seed + e`` (the :class:`~torch.utils.data.DistributedSampler` recipe, which Lightning
keeps under DDP because the sampler *is* one) and the loader records how many batches it yielded,
so a resumed run skips exactly those index batches without loading them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from gen_common.ranks import rank_and_world


class ResumableSampler(DistributedSampler):
    """Shuffled indices of epoch ``e`` from ``seed + e``; rank/world size read when iterating.

    Subclasses ``DistributedSampler`` so Lightning does not replace it under DDP; unlike it, the
    world size is taken from ``torch.distributed`` at iteration time (the loader is built
    before the process group exists). ``skip`` samples of the current epoch are dropped once.
    """

    def __init__(self, dataset: Dataset, seed: int = 0, drop_last: bool = True) -> None:  # noqa: D107
        self.dataset = dataset
        self.seed = seed
        self.drop_last = drop_last
        self.shuffle = True
        self.epoch = 0
        self.skip = 0  # samples of this rank already consumed in epoch `skip_epoch` (a resumed run)
        self.skip_epoch = -1

    def __len__(self) -> int:
        _, world = rank_and_world()
        n = len(self.dataset)  # type: ignore[arg-type]
        return n // world if self.drop_last else math.ceil(n / world)

    def __iter__(self) -> Iterator[int]:
        rank, world = rank_and_world()
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        indices = torch.randperm(len(self.dataset), generator=g).tolist()  # type: ignore[arg-type]
        per_rank = len(self)
        total = per_rank * world
        if total > len(indices):  # pad like DistributedSampler
            indices += indices[: total - len(indices)]
        mine = indices[:total][rank::world]
        skip = self.skip if self.epoch == self.skip_epoch else 0
        self.skip, self.skip_epoch = 0, -1
        yield from mine[skip:]


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` whose position is part of the checkpoint."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, **kwargs: Any) -> None:
        """
        Args:
            dataset: Map-style dataset.
            batch_size: Images per batch (incomplete last batches are dropped).
            seed: Seed of the per-epoch permutations.
            **kwargs: Other ``DataLoader`` arguments (``num_workers``, ``persistent_workers``...).
        """
        kwargs.pop("shuffle", None)
        kwargs.pop("drop_last", None)
        sampler = kwargs.pop("sampler", None) or ResumableSampler(dataset, seed=seed, drop_last=True)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, **kwargs)
        self.seed = seed
        self._yielded = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # A generator: this body runs at the first ``next``, after Lightning's ``set_epoch``.
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        resumed = sampler.epoch == sampler.skip_epoch
        self._yielded = sampler.skip // self.batch_size if resumed else 0  # type: ignore[operator]
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches"}``: the epoch being read and how many batches it yielded."""
        return {"epoch": self.sampler.epoch, "batches": self._yielded}  # type: ignore[attr-defined]

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume epoch ``state["epoch"]`` after ``state["batches"]`` batches (or start the next one)."""
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= len(self):
            epoch, batches = epoch + 1, 0
        sampler.set_epoch(epoch)
        sampler.skip, sampler.skip_epoch = batches * self.batch_size, epoch  # type: ignore[operator]
        self._yielded = batches
