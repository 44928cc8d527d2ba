"""The resumable loader continues mid-epoch with the same batches, and an epoch-end state starts the next epoch."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from datamodules.resumable import ResumableDataLoader


def _epoch(loader: ResumableDataLoader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    return [batch[0].tolist() for batch in loader]


def test_resumable_loader_continues_mid_epoch_with_the_same_batches() -> None:
    data = TensorDataset(torch.arange(40))
    full = ResumableDataLoader(data, batch_size=4, seed=3)
    epoch0, epoch1 = _epoch(full, 0), _epoch(full, 1)
    assert epoch0 != epoch1 and sorted(sum(epoch0, [])) == list(range(40))  # a permutation per epoch

    partial = ResumableDataLoader(data, batch_size=4, seed=3)
    partial.sampler.set_epoch(1)
    it = iter(partial)
    seen = [next(it)[0].tolist() for _ in range(3)]
    state = partial.state_dict()
    assert state == {"epoch": 1, "batches": 3}

    resumed = ResumableDataLoader(data, batch_size=4, seed=3)
    resumed.load_state_dict(state)
    assert seen + _epoch(resumed, 1) == epoch1  # the rest of epoch 1, nothing repeated or skipped
    assert _epoch(resumed, 2) == _epoch(full, 2)  # later epochs unaffected


def test_resumable_loader_state_at_epoch_end_starts_the_next_epoch() -> None:
    data = TensorDataset(torch.arange(12))
    loader = ResumableDataLoader(data, batch_size=4, seed=0)
    loader.load_state_dict({"epoch": 0, "batches": 3})
    assert loader.sampler.epoch == 1 and len(_epoch(loader, 1)) == 3
