"""``last.ckpt`` is refreshed by training time (``--run.checkpoint_every_min``, default 15): a run killed
without warning loses at most that much training."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lightning_gen.__main__ import main
from lightning_gen.runs.options import RunOptions

EXPERIMENTS = Path(__file__).resolve().parents[3] / "experiments"


class CrashAtStep(Callback):
    """Dies like a lost node at the start of step 4: no signal, no save."""

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        if trainer.global_step == 4:
            raise RuntimeError("node lost")


def _fit_until_crash(root: Path, every_min: str) -> Path:
    argv = [
        "fit",
        "--config", str(EXPERIMENTS / "vae_mnist.yaml"),
        "--config", str(EXPERIMENTS / "debug.yaml"),
        "--trainer.limit_train_batches=8", "--trainer.limit_val_batches=1", "--trainer.max_epochs=1",
        f"--trainer.callbacks+={CrashAtStep.__module__}.CrashAtStep",
        "--run.root", str(root), "--run.id", "r", "--run.wandb=disabled", f"--run.checkpoint_every_min={every_min}",
    ]  # fmt: skip
    with pytest.raises(RuntimeError, match="node lost"):
        main(argv)
    return root / "vae_mnist" / "r" / "checkpoints" / "last.ckpt"


def test_a_crash_without_warning_keeps_the_last_timed_checkpoint(tmp_path: Path) -> None:
    assert RunOptions().checkpoint_every_min == 15.0
    last = _fit_until_crash(tmp_path / "timed", "0.000001")  # every step is "later than the interval"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4
    assert not _fit_until_crash(tmp_path / "off", "0").exists()  # 0 turns it off: the epoch never ended
