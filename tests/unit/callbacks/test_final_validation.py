"""``FinalValidation``: a fit whose last step is not a validation step still ends with one, and a sample grid.

``ddpm_mnist.yaml`` + ``debug.yaml`` validates every 500 steps; a 3-step run used to leave no grid and no
``val/loss``. Through ``lightning-gen fit`` (in this process; the DDP case in its own processes, slow).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import run_main
from tests.helpers.ops import run_cli, train_rows
from tests.helpers.paths import EXPERIMENTS

FIT = [
    "fit",
    "--config", str(EXPERIMENTS / "ddpm_mnist.yaml"),
    "--config", str(EXPERIMENTS / "debug.yaml"),
    "--trainer.limit_train_batches=3",
    "--trainer.limit_val_batches=1",
    "--trainer.log_every_n_steps=1",
    "--data.init_args.batch_size=8",
    "--model.init_args.sampling.steps=2",
    "--run.wandb=disabled",
    "--run.id=t",
]  # fmt: skip


def _check(run: Path, out: str) -> None:
    assert [p.name for p in (run / "samples").glob("*.png")] == ["samples_step0000003.png"]
    val = [r for r in train_rows(run / "metrics.csv") if r.get("val/loss")]
    assert [int(r["step"]) for r in val] == [2]  # one validation, of the last step's weights (logger step 2 = step 3)
    assert f"sample grid: {run}" in out or "sample grid: runs" in out


@pytest.mark.usefixtures("one_thread")
def test_ddpm_mnist_debug_fit_ends_with_a_validation_and_a_grid(tmp_path: Path) -> None:
    proc = run_main(FIT, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "debug" / "ddpm_mnist" / "t"
    _check(run, proc.stdout)
    assert "val/loss: final " in proc.stdout and "resume:   lightning-gen fit" in proc.stdout


@pytest.mark.slow
def test_under_ddp_both_ranks_validate_once_and_finish(tmp_path: Path) -> None:
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    proc = run_cli([*FIT, *ddp], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "debug" / "ddpm_mnist" / "t"
    _check(run, proc.stdout)
    assert proc.stdout.count("run dir: ") == 1  # rank 0 alone prints the summary
