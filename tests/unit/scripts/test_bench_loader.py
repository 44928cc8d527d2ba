"""scripts/bench_loader.py runs against today's code: both loaders read the same training images, the table adds up."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.scripts import load_script


def test_bench_loader_times_both_loaders_on_the_same_images(tmp_path: Path) -> None:
    lines = load_script("bench_loader").run(n=60, workers=1, batch=8, epochs=1, folder=tmp_path)
    assert lines[0].startswith("60 MNIST images (28x28 PNG, 57 in the training split), 1 workers, batch 8, 1 epochs")
    rates = {line.split("  ")[0]: line.split()[-3] for line in lines[2:4]}
    assert set(rates) == {"ImageFolderDataModule (PNG decode)", "ShardImageDataModule (LitData)"}
    assert re.fullmatch(r"shards / folder \(median\): x\d+\.\d\d", lines[4])
    assert len(list((tmp_path / "images").rglob("*.png"))) == 60 and (tmp_path / "shards" / "train").is_dir()
