"""A ``lightning-gen prepare`` killed with kill -9 (its workers too) leaves a shard set that is refused, in one
paragraph, by the next ``prepare`` into it and by ``fit``; nothing of it changes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers.cli import run_main
from tests.helpers.ops import popen_cli

pytestmark = pytest.mark.slow


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_a_killed_prepare_is_refused_as_half_written(tmp_path: Path) -> None:
    proc = popen_cli(["prepare", "--data=datamodules.MNISTDataModule", "--out", "shards", "--workers", "2"], tmp_path)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "shards" / "train").glob("chunk-*.bin")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its forked workers, mid-write
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = _snapshot(tmp_path)

    again = run_main(["prepare", "--data=datamodules.MNISTDataModule", "--out", "shards"], tmp_path)
    assert again.returncode == 1 and again.stderr.strip().splitlines()[-1] == (
        "lightning-gen: error: `--out` shards already holds a half-written shard set (an earlier `lightning-gen "
        "prepare` stopped before the end). Fix: delete it and run `lightning-gen prepare` again, or choose another "
        "`--out`. Nothing was changed."
    )
    fit = run_main(
        ["fit", "--model=lightning_gen.models.VAE", "--data=datamodules.streaming.ShardImageDataModule"]
        + ["--data.init_args.root=shards", "--run.wandb=disabled", "--trainer.max_steps=1"],
        tmp_path,
    )
    assert fit.returncode == 1 and "shards is a half-written shard set" in fit.stderr.strip().splitlines()[-1]
    assert _snapshot(tmp_path) == before and not (tmp_path / "runs").exists()
