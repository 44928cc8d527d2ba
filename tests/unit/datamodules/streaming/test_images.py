"""Image shards: the source's splits, order and labels; each epoch once; disjoint ranks; a mid-epoch loader state resumes exactly.

The shards hold a labelled folder of 96 grey 8x8 PNGs whose first pixels carry each image's id
(``tests.helpers.shards``), written by two forked workers in chunks of ~6 images.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.streaming import ShardImageDataModule
from tests.helpers.shards import folder_spec, image_ids, make_image_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_shards(tmp_path_factory.mktemp("image_shards"))


def epoch_ids(loader) -> list[int]:  # noqa: ANN001
    return [i for x, _ in loader for i in image_ids(x)]


def test_shards_hold_the_source_splits_in_order_with_labels(shards: Path) -> None:
    dm = ShardImageDataModule(str(shards), batch_size=4)
    assert dm.image_shape == (1, 8, 8) and dm.num_classes == 3
    assert dm.dataset_id == "shards-imagefolder-images-classes3-1x8-val0.25-seed0"
    assert dm.manifest.class_names == ["class_0", "class_1", "class_2"] and dm.manifest.splits == {
        "train": 72,
        "val": 24,
    }
    dm.prepare_data()
    dm.setup("fit")
    _, source = folder_spec(shards.parent / "images")
    source.setup("fit")
    for ours, theirs in ((dm.train_set, source.train_set), (dm.val_set, source.val_set)):
        assert len(ours) == len(theirs)
        for i in range(len(ours)):
            (x, y), (x_ref, y_ref) = ours[i], theirs[i]
            assert torch.equal(x, x_ref) and y.dtype == torch.int64 and int(y) == int(y_ref)
    assert dm.test_set is dm.val_set  # an image folder's test split is its validation split
    ids = image_ids(torch.stack([dm.train_set[i][0] for i in range(72)]))
    assert [int(dm.train_set[i][1]) for i in range(72)] == [i % 3 for i in ids]  # label = class folder of the id


def test_each_epoch_reads_every_training_image_once_in_a_new_order(shards: Path) -> None:
    dm = ShardImageDataModule(str(shards), batch_size=4, seed=1)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 18
    first, second = epoch_ids(loader), epoch_ids(loader)
    train = set(image_ids(torch.stack([dm.train_set[i][0] for i in range(72)])))
    assert sorted(first) == sorted(second) == sorted(train) and first != second


def test_each_rank_reads_a_disjoint_part(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LitData takes the world from WORLD_SIZE/GLOBAL_RANK as it would from torch.distributed."""
    parts = []
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))
        dm = ShardImageDataModule(str(shards), batch_size=4)
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert len(loader) == 9
        parts.append(epoch_ids(loader))
    assert not set(parts[0]) & set(parts[1]) and len(parts[0] + parts[1]) == len(set(parts[0] + parts[1])) == 72


def _read(loader, n: int) -> list[list[int]]:  # noqa: ANN001
    """``n`` batches of a new iterator, left unexhausted (as Lightning does at an epoch's ``len`` batches)."""
    it = iter(loader)
    return [image_ids(next(it)[0]) for _ in range(n)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_mid_epoch_loader_state_resumes_the_rest_of_the_epoch_exactly(shards: Path, num_workers: int) -> None:
    """What Lightning does with a mid-epoch checkpoint, without Lightning: state_dict after 7 batches, a new
    datamodule loads it and reads the 11 batches an unbroken epoch reads after those 7; the epoch after is whole."""
    dm = ShardImageDataModule(str(shards), batch_size=4, num_workers=num_workers)
    dm.setup("fit")
    loader = dm.train_dataloader()
    unbroken = [_read(loader, 18), _read(loader, 18)]

    dm = ShardImageDataModule(str(shards), batch_size=4, num_workers=num_workers)
    dm.setup("fit")
    loader = dm.train_dataloader()
    before = _read(loader, 7)
    state = loader.state_dict()

    resumed = ShardImageDataModule(str(shards), batch_size=4, num_workers=num_workers)
    resumed.setup("fit")
    loader = resumed.train_dataloader()
    loader.load_state_dict(state)
    assert before + _read(loader, 11) == unbroken[0]
    assert _read(loader, 18) == unbroken[1]  # the next epoch starts afresh, in the unbroken run's order
    assert sorted(sum(unbroken[0], [])) == sorted(sum(unbroken[1], [])) and len(set(sum(unbroken[0], []))) == 72
