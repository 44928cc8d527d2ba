"""Helpers of the shard tests: image folders whose pixels carry each image's id, a callback that records
the ids every rank trains on, a tiny conditional diffusion config, and a moto S3 server on loopback."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

try:
    from lightning.pytorch.callbacks import Callback as _Callback
except ImportError:  # pragma: no cover
    _Callback = object  # type: ignore[assignment,misc]

#: a conditional diffusion model small enough for 8x8 images and seconds of CPU
TINY_DIFFUSION = (
    "{class_path: lightning_gen.models.Diffusion, init_args: {conditional: true, "
    "unet: {widths: [8, 16], attention: [false, true], norm_num_groups: 4}, "
    "schedule: {num_train_timesteps: 100}, sampling: {sampler: ddim, steps: 2}, ema_decay: 0.9}}"
)


#: ``lightning-gen fit`` of a tiny VAE on id-image shards (``{data}``: the datamodule's init_args, YAML flow style)
SHARD_FIT_YAML = """\
model:
  class_path: lightning_gen.models.VAE
  init_args: {{latent_dim: 4, widths: [8], iw_samples: 1}}
data:
  class_path: datamodules.streaming.ShardImageDataModule
  init_args: {data}
trainer:
  max_epochs: 2
  log_every_n_steps: 1
  num_sanity_val_steps: 0
  limit_val_batches: 1
  accelerator: cpu
  enable_model_summary: false
run:
  root: runs
  checkpoint_every_n_steps: 2
  wandb: disabled
"""


def write_shard_fit_config(path: Path, **data: object) -> Path:
    """:data:`SHARD_FIT_YAML` at ``path`` with these datamodule arguments (batch size 4 unless given)."""
    args = {"batch_size": 4, **data}
    path.write_text(SHARD_FIT_YAML.format(data="{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in args.items()) + "}"))
    return path


def write_id_images(root: Path, n: int, classes: int = 3, size: int = 8) -> Path:
    """``n`` grey ``size``-square PNGs in ``root/class_<k>/``: image ``i`` in class ``i % classes``, its id
    ``i`` written into its first two pixels (``i // 256``, ``i % 256``), the rest random."""
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
        pixels[0, 0], pixels[0, 1] = i // 256, i % 256
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")
    return root


def image_ids(images: torch.Tensor) -> list[int]:
    """The ids :func:`write_id_images` wrote into a batch of ``(B, 1, H, W)`` images in [0, 1]."""
    pixels = (images[:, 0, 0, :2] * 255).round().long()
    return (pixels[:, 0] * 256 + pixels[:, 1]).tolist()


class IdRecorder(_Callback):  # type: ignore[misc,valid-type]
    """Appends ``{"rank", "epoch", "step", "ids"}`` of every training batch to ``<folder>/ids-rank<r>.jsonl``.

    Written at the start of each batch, before its step: a batch whose step a kill cut short is recorded
    too (the check keeps the batches before the checkpoint the resume started from).
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:  # noqa: ANN001
        row = {
            "rank": trainer.global_rank,
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "ids": image_ids(batch[0]),
        }
        with open(Path(self.folder) / f"ids-rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


def id_recorder_callback(folder: Path) -> str:
    """``--trainer.callbacks+=...`` value of :class:`IdRecorder`."""
    return json.dumps({"class_path": "tests.helpers.shards.IdRecorder", "init_args": {"folder": str(folder)}})


def recorded(folder: Path) -> list[dict]:
    """Every row :class:`IdRecorder` wrote under ``folder``, all ranks."""
    return [
        json.loads(line) for path in sorted(folder.glob("ids-rank*.jsonl")) for line in path.read_text().splitlines()
    ]


def epoch_ids(first: list[dict], second: list[dict], resumed_at: int, epoch: int = 0) -> Counter:
    """How often each id was trained on in ``epoch``: the killed run's batches before step ``resumed_at``
    (the resumed checkpoint's), then the resumed run's."""
    seen: Counter = Counter()
    for row in first:
        if row["epoch"] == epoch and row["step"] < resumed_at:
            seen.update(row["ids"])
    for row in second:
        if row["epoch"] == epoch:
            seen.update(row["ids"])
    return seen


@contextmanager
def moto_s3(bucket: str = "shards") -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (a free port) with ``bucket``, dummy AWS credentials in the environment;
    yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    from lightning_gen.sweeps.devices import free_loopback_port

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    port = free_loopback_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def folder_spec(root: Path, size: int = 8, val_fraction: float = 0.25) -> tuple[object, object]:
    """The ``DataSpec`` and datamodule of a grey ``size``-square image folder (as ``lightning-gen prepare`` builds them)."""
    from datamodules.streaming.write import DataSpec

    spec = DataSpec(
        "datamodules.ImageFolderDataModule",
        {"root": str(root), "image_size": size, "channels": 1, "val_fraction": val_fraction, "num_workers": 0},
    )
    return spec, spec.build()


def make_image_shards(folder: Path, n: int = 96, classes: int = 3, size: int = 8, chunk_mb: float = 0.001) -> Path:
    """``folder/shards``: shards of :func:`write_id_images`'s folder ``folder/images`` (72 train, 24 val), 2 workers."""
    from datamodules.streaming.store import ShardStore
    from datamodules.streaming.write import ShardWriter

    spec, datamodule = folder_spec(write_id_images(folder / "images", n, classes, size), size)
    ShardWriter(ShardStore(str(folder / "shards")), workers=2, chunk_mb=chunk_mb).write_images(spec, datamodule)
    return folder / "shards"
