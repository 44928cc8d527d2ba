"""DDP on CPU (gloo, 2 processes): one run dir, and a killed DDP run resumes into the same run."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest
import torch

from tests.helpers.ops import logged_steps, run_cli, start_and_signal, train_rows, wandb_segments, write_tiny_config
from tests.helpers.paths import EXPERIMENTS

DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]


@pytest.mark.slow  # minutes on 2 cores (the default suite keeps one DDP run: test_multinode)
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
    killed = start_and_signal(
        ["fit", "--config", str(config), *DDP], tmp_path, "runs/tiny/*/metrics.csv", 7, signal.SIGKILL, group=True
    )
    assert killed.returncode == -signal.SIGKILL
    resumed = run_cli(["fit", "--config", str(config), *DDP, "--ckpt_path", "last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run_dir,) = list((tmp_path / "runs" / "tiny").iterdir())
    steps = logged_steps(train_rows(run_dir / "metrics.csv"))
    assert steps == list(range(16))  # 4 epochs x 4 steps, each once
    segments = wandb_segments(run_dir)
    assert len(segments) == 2 and all(s.name.endswith(f"-{run_dir.name}") for s in segments)  # one W&B run id
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 16


STALL = '''\
import time
from lightning.pytorch.callbacks import Callback


class Stall(Callback):
    """Rank 1 stops at step 2 for 180 s (a stuck peer) while rank 0 goes on into the next collective."""

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 2 and trainer.global_rank == 1:
            time.sleep(180)
'''


@pytest.mark.slow
def test_a_rank_waiting_for_a_stuck_peer_fails_after_the_collective_timeout(tmp_path: Path) -> None:
    """``--run.collective_timeout_min=0.5``: rank 0 waits 30 s for rank 1, then fails with an error (not a hang).

    (The timeout also bounds the start-up rendezvous: 30 s leaves rank 1 time to start on a busy machine.)
    """
    import os
    import subprocess
    import time

    from tests.helpers.ops import CLI, cli_env

    (tmp_path / "stall.py").write_text(STALL)  # `python -m` puts the cwd on sys.path
    config = write_tiny_config(tmp_path, epochs=1)
    args = [
        "fit",
        "--config",
        str(config),
        *DDP,
        "--run.collective_timeout_min=0.5",
        "--trainer.callbacks+=stall.Stall",
    ]
    start = time.monotonic()
    proc = subprocess.Popen(
        [*CLI, *args],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        returncode = proc.wait(timeout=170)  # rank 0; the stuck rank 1 would keep a pipe open until it wakes
        elapsed = time.monotonic() - start
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # rank 1, still asleep
        out = proc.communicate()[0]
    assert returncode not in (0, None), out[-3000:]
    assert "timed out" in out.lower() or "timeout" in out.lower(), out[-3000:]
    assert elapsed < 170
    assert (
        "waiting for clients" not in out
        and "train/loss" in (next((tmp_path / "runs" / "tiny").iterdir()) / "metrics.csv").read_text()
    )  # at the stall, not at start-up


def _last_val_row(metrics_csv: Path) -> dict[str, str]:
    rows = [r for r in csv.DictReader(metrics_csv.open()) if any(k.startswith("val/") and v for k, v in r.items())]
    assert rows, f"no validation row in {metrics_csv}"
    return {k: v for k, v in rows[-1].items() if k.startswith("val/") and v}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["dcgan_mnist", "vae_mnist"])
def test_ddp_validation_at_the_end_of_fit_equals_ddp_validate_of_its_checkpoint(
    tmp_path: Path, experiment: str
) -> None:
    """The GAN's BatchNorm statistics used to differ per rank (its nets run outside DDP's forward): the
    fit's last ``val/d_real`` was 0.058169 and ``validate`` of the same ``last.ckpt`` gave 0.058155."""
    common = [
        "--config",
        str(EXPERIMENTS / f"{experiment}.yaml"),
        "--config",
        str(EXPERIMENTS / "debug.yaml"),
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=2",
        "--trainer.max_epochs=1",
        "--trainer.val_check_interval=2",  # the GAN counts generator steps: validate at the end of the epoch
        "--run.wandb=disabled",
        "--run.root",
        str(tmp_path / "runs"),
        *DDP,
    ]
    fit = run_cli(["fit", *common, "--run.id=r"], tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run = tmp_path / "runs" / experiment / "r"
    validate = run_cli(["validate", *common, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")], tmp_path)
    assert validate.returncode == 0, validate.stderr[-3000:]
    (sub_run,) = (run / "eval").glob("validate-*")
    assert _last_val_row(sub_run / "metrics.csv") == _last_val_row(run / "metrics.csv")
