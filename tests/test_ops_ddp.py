"""DDP on CPU (gloo, 2 processes): one run dir, and a killed DDP run resumes into the same run."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from ops_utils import logged_steps, run_cli, start_and_signal, train_rows, wandb_segments, write_tiny_config

DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]


def test_ddp_two_processes_write_one_run_dir(tmp_path: Path) -> None:
    config = write_tiny_config(tmp_path, epochs=1)
    proc = run_cli(["fit", "--config", str(config), *DDP], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = list((tmp_path / "runs" / "tiny").iterdir())  # rank 1 used rank 0's run id
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4  # 256 images / (32 per batch x 2 ranks)
    assert ckpt["lightning_gen"]["world_size"] == 2 and len(ckpt["lightning_gen"]["rng"]) == 2  # per-rank RNG
    assert logged_steps(train_rows(run_dir / "metrics.csv")) == [0, 1, 2, 3]
    assert len(wandb_segments(run_dir)) == 1  # rank 1 logs nowhere


@pytest.mark.slow
def test_ddp_killed_then_resumed_into_the_same_run(tmp_path: Path) -> None:
    config = write_tiny_config(tmp_path, epochs=4)
    killed = start_and_signal(["fit", "--config", str(config), *DDP], tmp_path, "runs/tiny/*/metrics.csv", 7, signal.SIGKILL, group=True)
    assert killed.returncode == -signal.SIGKILL
    resumed = run_cli(["fit", "--config", str(config), *DDP, "--ckpt_path", "last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run_dir,) = list((tmp_path / "runs" / "tiny").iterdir())
    steps = logged_steps(train_rows(run_dir / "metrics.csv"))
    assert steps == list(range(16))  # 4 epochs x 4 steps, each once
    segments = wandb_segments(run_dir)
    assert len(segments) == 2 and all(s.name.endswith(f"-{run_dir.name}") for s in segments)  # one W&B run id
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 16
