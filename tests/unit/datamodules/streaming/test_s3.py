"""Shards in object storage: written to ``s3://`` of a moto S3 server on 127.0.0.1 (started here, dummy
credentials), read back by the datamodule through the same URL; a missing prefix and a chunk cut short in the
bucket are one paragraph each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import torch

from datamodules.streaming import ShardImageDataModule
from datamodules.streaming.store import ShardStore
from datamodules.streaming.write import ShardWriter
from gen_common.errors import CorruptDataError, DataNotFoundError
from tests.helpers.shards import folder_spec, image_ids, moto_s3, write_id_images


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The endpoint of a moto server whose bucket ``shards`` holds ``s3://shards/images`` (96 id images)."""
    folder = tmp_path_factory.mktemp("s3_shards")
    spec, datamodule = folder_spec(write_id_images(folder / "images", 96))
    with moto_s3("shards") as endpoint:
        store = ShardStore("s3://shards/images", endpoint_url=endpoint)
        ShardWriter(store, workers=2, chunk_mb=0.001, staging_dir=str(folder)).write_images(spec, datamodule)
        yield endpoint, folder


def test_shards_written_to_s3_are_read_back_from_s3(s3: tuple[str, Path], tmp_path: Path) -> None:
    endpoint, folder = s3
    assert not list(folder.glob("prepare-*"))  # the staging copy is gone after the upload
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket="shards")["Contents"]]
    assert "images/lightning_gen_shards.json" in keys and "images/train/index.json" in keys
    dm = ShardImageDataModule("s3://shards/images", batch_size=4, endpoint_url=endpoint, cache_dir=str(tmp_path))
    assert dm.image_shape == (1, 8, 8) and dm.num_classes == 3
    dm.prepare_data()
    dm.setup("fit")
    _, source = folder_spec(folder / "images")
    source.setup("fit")
    assert all(torch.equal(dm.val_set[i][0], source.val_set[i][0]) for i in range(8))
    ids = [i for x, _ in dm.train_dataloader() for i in image_ids(x)]
    assert sorted(ids) == sorted(image_ids(torch.stack([x for x, _ in source.train_set])))


def test_a_missing_prefix_and_a_truncated_chunk_in_the_bucket(s3: tuple[str, Path], tmp_path: Path) -> None:
    endpoint, _ = s3
    with pytest.raises(DataNotFoundError, match=r"The shard set s3://shards/nothing does not exist"):
        ShardImageDataModule("s3://shards/nothing", endpoint_url=endpoint).prepare_data()
    client = boto3.client("s3", endpoint_url=endpoint)
    for key in [o["Key"] for o in client.list_objects_v2(Bucket="shards", Prefix="images/")["Contents"]]:
        body = client.get_object(Bucket="shards", Key=key)["Body"].read()
        if key == "images/val/chunk-0-0.bin":
            body = body[: len(body) // 2]  # an upload that stopped half way
        client.put_object(Bucket="shards", Key=key.replace("images/", "cut/", 1), Body=body)
    with pytest.raises(CorruptDataError, match=r"s3://shards/cut is truncated: val/chunk-0-0\.bin has \d+ bytes"):
        ShardImageDataModule("s3://shards/cut", endpoint_url=endpoint, cache_dir=str(tmp_path)).prepare_data()
