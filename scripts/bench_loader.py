"""Benchmark: training images/s of the LitData shard loader against ImageFolderDataModule on the same images.

    .venv/bin/python scripts/bench_loader.py                      # 20k MNIST PNGs, 2 workers, 3 epochs each
    .venv/bin/python scripts/bench_loader.py --n 2000 --epochs 2  # quicker
    .venv/bin/python scripts/bench_loader.py --record             # append the table to results/benchmarks.jsonl

The first ``--n`` MNIST training images (from the packaged copy) are written as PNGs into a labelled
folder ``<tmp>/images/<label>/<i>.png`` under /tmp; ``lightning-gen prepare``'s writer turns that
folder into shards (timed: prepare images/s). Both datamodules then read the same training split
(the folder's, by seed) with ``--workers`` DataLoader workers and batch ``--batch``, for ``--epochs``
epochs; each epoch is timed from its first ``next`` to its last batch (the first epoch includes the
workers' start). The folder decodes a PNG per image and item; the shards hold decoded uint8 arrays,
read from memory-mapped chunks. The temporary folder is deleted at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datamodules.image_folder import ImageFolderDataModule  # noqa: E402
from datamodules.mnist import MNISTDataModule  # noqa: E402
from datamodules.streaming import ShardImageDataModule  # noqa: E402
from datamodules.streaming.store import ShardStore  # noqa: E402
from datamodules.streaming.write import DataSpec, ShardWriter  # noqa: E402
from lightning_gen.utils.provenance import add_record_argument, recorded  # noqa: E402


def write_pngs(root: Path, n: int) -> Path:
    """The first ``n`` MNIST training images as ``root/<label>/<i>.png``."""
    x, y, _, _ = MNISTDataModule().load_arrays()
    if n > len(x):
        raise SystemExit(f"--n {n} exceeds the {len(x)} MNIST training images")
    for label in np.unique(y[:n]):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(x[i]).save(root / str(y[i]) / f"{i:05d}.png")
    return root


def epoch_rates(loader, epochs: int) -> list[float]:  # noqa: ANN001
    """Images/s of each epoch of ``loader``."""
    rates = []
    for _ in range(epochs):
        start, images = time.perf_counter(), 0
        for x, _ in loader:
            images += len(x)
        rates.append(images / (time.perf_counter() - start))
    return rates


def run(n: int, workers: int, batch: int, epochs: int, folder: Path) -> list[str]:
    """Write the images and the shards, time both loaders; the table's lines."""
    t0 = time.perf_counter()
    images = write_pngs(folder / "images", n)
    png_s = time.perf_counter() - t0
    folder_args = {"root": str(images), "image_size": 28, "channels": 1, "num_workers": workers, "batch_size": batch}
    spec = DataSpec("datamodules.ImageFolderDataModule", folder_args)
    t0 = time.perf_counter()
    ShardWriter(ShardStore(str(folder / "shards")), workers=workers).write_images(spec, spec.build())
    prepare_s = time.perf_counter() - t0
    loaders = {
        "ImageFolderDataModule (PNG decode)": ImageFolderDataModule(**folder_args),
        "ShardImageDataModule (LitData)": ShardImageDataModule(
            str(folder / "shards"), batch_size=batch, num_workers=workers
        ),
    }
    rates = {}
    for name, datamodule in loaders.items():
        datamodule.setup("fit")
        rates[name] = epoch_rates(datamodule.train_dataloader(), epochs)
    width = max(map(len, rates))
    lines = [
        f"{n} MNIST images (28x28 PNG, {len(loaders['ImageFolderDataModule (PNG decode)'].train_set)} in the training "
        f"split), {workers} workers, batch {batch}, {epochs} epochs",
        f"{'loader':<{width}}  {'median images/s':>16}  {'first epoch':>12}  {'best':>10}",
    ]
    for name, values in rates.items():
        lines.append(
            f"{name:<{width}}  {statistics.median(values):>16,.0f}  {values[0]:>12,.0f}  {max(values):>10,.0f}"
        )
    folder_rate, shard_rate = (statistics.median(v) for v in rates.values())
    lines.append(f"shards / folder (median): x{shard_rate / folder_rate:.2f}")
    lines.append(
        f"writing the PNGs: {png_s:.1f} s; prepare (decode + write shards, {workers} workers): {prepare_s:.1f} s, "
        f"{n / prepare_s:,.0f} images/s"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="MNIST images written as PNGs")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (and prepare's)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    add_record_argument(parser, REPO)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench_loader_", dir="/tmp"))
    try:
        with recorded(args.record, "bench_loader", REPO):
            print("\n".join(run(args.n, args.workers, args.batch, args.epochs, folder)))
    finally:
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
