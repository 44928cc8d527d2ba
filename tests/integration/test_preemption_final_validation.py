"""A preempted run validates its saved weights and draws their sample grid when that fits in the grace period.

Each run is the tiny VAE of ``tests.helpers.ops`` (8 steps per epoch, validation at the epoch end) with a
``SampleGrid``, signalled from inside at the start of a training batch (``FaultAt``), in a process of its own
(forked; DDP: a new interpreter). ``--run.stop_grace_s`` is the grace period.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tests.helpers.forked import run_forked
from tests.helpers.ops import fault_at_callback, run_cli, train_rows, write_tiny_config

pytestmark = pytest.mark.usefixtures("fork_server")

GRID = json.dumps(
    {
        "class_path": "lightning_gen.callbacks.samples.SampleGrid",
        "init_args": {"num_samples": 4, "num_reconstructions": 0},
    }
)


class SlowValidation(Callback):
    """Each validation batch takes ``seconds`` more (a validation that does not fit a short grace period)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_validation_batch_end(self, *args: object) -> None:
        time.sleep(self.seconds)


def _slow(seconds: float) -> str:
    return json.dumps({"class_path": f"{__name__}.SlowValidation", "init_args": {"seconds": seconds}})


def _preempt(tmp_path: Path, step: int, *extra: str, sig: str = "SIGTERM") -> tuple[object, Path]:
    """``fit`` signalled with ``sig`` at the start of the batch after ``step``; the result and the run dir."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_tiny_config(tmp_path)
    fault = fault_at_callback(step, "on_train_batch_start", f"signal:{sig}")
    # no W&B: forked runs share the fork server's W&B media temp folder, which the first one to exit deletes
    args = ["fit", "--config", str(config), "--run.id", "pre", "--run.wandb=disabled", f"--trainer.callbacks+={GRID}"]
    result = run_forked([*args, f"--trainer.callbacks+={fault}", *extra], tmp_path)
    return result, tmp_path / "runs" / "tiny" / "pre"


def _val_rows(run_dir: Path) -> list[dict[str, str]]:
    return [row for row in train_rows(run_dir / "metrics.csv") if row.get("val/elbo")]


def test_sigterm_mid_epoch_validates_the_saved_step_and_draws_its_grid(tmp_path: Path) -> None:
    result, run_dir = _preempt(tmp_path, 4)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "preempted at step 5: checkpoint saved" in output and "`weights_only` was not set" not in output
    grid = run_dir / "samples" / "samples_step0000005.png"
    assert "lightning-gen: final validation of step 5: val/elbo " in output and f"sample grid {grid}" in output
    assert grid.is_file()
    assert not _val_rows(run_dir)  # printed, not in metrics.csv (a resume keeps the rows its checkpoint covers)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 5
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # no best from it


@pytest.mark.slow  # a validation made slow on purpose, twice (~40 s)
def test_a_final_validation_that_does_not_fit_is_skipped_or_stopped_with_one_line(tmp_path: Path) -> None:
    """A validation measured at 2 x 3 s (every 2 steps) does not fit in 14 - 10 s: skipped, one line. With no
    validation measured yet (only at the epoch end), it starts and is stopped at the deadline, every batch 3 s."""
    skipped, run_dir = _preempt(
        tmp_path / "a", 4, "--run.stop_grace_s=14", "--trainer.val_check_interval=2", f"--trainer.callbacks+={_slow(3)}"
    )
    output = skipped.stdout + skipped.stderr
    assert skipped.returncode == 0, output[-3000:]
    assert "lightning-gen: no final validation or sample grid: a validation of this run takes 6." in output
    assert "of the 14 s grace period (`--run.stop_grace_s`) are left, 10 s of them for stopping." in output
    assert not (run_dir / "samples" / "samples_step0000005.png").exists()
    assert len(_val_rows(run_dir)) == 2  # steps 2 and 4, not the saved step 5

    stopped, run_dir = _preempt(
        tmp_path / "b", 2, "--run.stop_grace_s=14", "--trainer.limit_val_batches=2", f"--trainer.callbacks+={_slow(3)}"
    )
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode == 0, output[-3000:]  # stopped through Lightning's SIGTERM exit, not the watchdog
    assert "lightning-gen: final validation stopped: it ran past the grace period" in output
    assert "did not stop within" not in output
    assert not _val_rows(run_dir) and not list((run_dir / "samples").glob("samples_step*.png"))
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3


@pytest.mark.slow  # DDP: two new interpreters
def test_ddp_ranks_signalled_together_validate_the_saved_step_and_exit(tmp_path: Path) -> None:
    """Both ranks get SIGTERM (srun's way) at step 1: they agree, save, run the final validation's collectives
    together (validation metrics synced across ranks) and exit 0; no rank is left waiting in a collective."""
    config = write_tiny_config(tmp_path, epochs=1)
    fault = fault_at_callback(1, "on_train_batch_start", "signal:SIGTERM")
    ddp = [
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--run.collective_timeout_min=1",
    ]
    args = ["fit", "--config", str(config), "--run.id", "ddp", *ddp, f"--trainer.callbacks+={GRID}"]
    result = run_cli([*args, f"--trainer.callbacks+={fault}"], tmp_path, timeout=240)  # a hang fails here
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    run_dir = tmp_path / "runs" / "tiny" / "ddp"
    assert "final validation of step 2: val/elbo" in output and output.count("final validation of step") == 1
    assert (run_dir / "samples" / "samples_step0000002.png").is_file()
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    assert not _val_rows(run_dir)
