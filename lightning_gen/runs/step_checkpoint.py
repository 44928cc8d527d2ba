"""``last.ckpt`` every N training steps, except on an epoch's last batch (validation comes next)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class StepCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint(every_n_train_steps=N)`` that skips the epoch's last batch.

    A checkpoint taken there, before the epoch's validation, resumes past that validation (Lightning
    counts the epoch's training as done), so a run killed during validation would lose its val row.
    The epoch-end checkpoint, written after validation, covers that step instead.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.is_last_batch:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
