"""Training straight from object storage: a moto S3 server on 127.0.0.1 (started by the test, dummy credentials),
``lightning-gen prepare --out s3://...``, then ``lightning-gen fit`` from the ``s3://`` URL with 2 DataLoader workers,
in one process and in 2-process DDP: each epoch trains on every image once, each rank on its own part."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import run_main
from tests.helpers.ops import cli_env, run_cli
from tests.helpers.shards import id_recorder_callback, moto_s3, recorded, write_id_images, write_shard_fit_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The endpoint of a moto server holding ``s3://shards/ids`` (72 train, 24 val id images), and a work folder."""
    folder = tmp_path_factory.mktemp("s3_fit")
    images = write_id_images(folder / "images", 96)
    with moto_s3("shards") as endpoint:
        proc = run_main(
            ["prepare", "--data=datamodules.ImageFolderDataModule", f"--data.root={images}", "--data.image_size=8"]
            + ["--data.channels=1", "--data.val_fraction=0.25", "--out", "s3://shards/ids", "--endpoint_url", endpoint]
            + ["--chunk_mb", "0.001", "--staging_dir", str(folder)],
            folder,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield endpoint, folder


@pytest.mark.parametrize("ddp", [False, True], ids=["one-process", "ddp"])
def test_fit_streams_from_s3_each_image_once_per_epoch(s3: tuple[str, Path], tmp_path: Path, ddp: bool) -> None:
    endpoint, _ = s3
    data = dict(root="s3://shards/ids", endpoint_url=endpoint, cache_dir=str(tmp_path / "cache"), num_workers=2)
    write_shard_fit_config(tmp_path / "s3.yaml", **data)
    args = ["fit", "--config", "s3.yaml", "--trainer.callbacks+=" + id_recorder_callback(tmp_path)]
    if ddp:
        env = {**cli_env(), **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}}
        proc = run_cli([*args, "--trainer.strategy=ddp", "--trainer.devices=2"], tmp_path, env=env)
    else:
        proc = run_main(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = recorded(tmp_path)
    assert len(rows) == (2 * 2 * 9 if ddp else 2 * 18)  # epochs x ranks x steps
    for epoch in (0, 1):
        seen = Counter(i for r in rows if r["epoch"] == epoch for i in r["ids"])
        assert len(seen) == 72 and set(seen.values()) == {1}
        ranks = [{i for r in rows if r["epoch"] == epoch and r["rank"] == rank for i in r["ids"]} for rank in (0, 1)]
        assert not ranks[0] & ranks[1]
    assert list((tmp_path / "cache").rglob("chunk-*.bin"))  # chunks came through LitData's cache
