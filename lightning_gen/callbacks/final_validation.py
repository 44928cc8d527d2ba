"""Every ``fit`` ends with a validation (and so a sample grid) of its final weights, then a short summary.

Lightning validates when ``trainer.should_stop`` is set at a batch end (early stopping, the time
limit's ``Timer``), but not when a run simply ends: ``max_steps`` in the middle of an epoch, or the
last epoch with ``val_check_interval`` in steps that does not fall on it (``ddpm_mnist.yaml`` +
``debug.yaml``: every 500 steps, 20 steps in all). :class:`FinalValidation` sets ``should_stop``
at the last batch of ``fit``, so Lightning's own loop validates that step, once, on every DDP rank
alike (the condition reads only ``global_step``, the epoch and the batch position, identical on all
ranks): no collective is left mismatched, and a step that is validated anyway is not validated
twice. ``ModelCheckpoint`` then sees the monitor, and ``SampleGrid`` draws its grid at that
validation's end. Without validation (``limit_val_batches: 0``), rank 0 draws the grid at the end.
Then rank 0 prints the run's summary (no collective: plain paths only).
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lightning_gen.callbacks.samples import SampleGrid
from lightning_gen.loggers.images import run_output_dir
from lightning_gen.models.base import TextGenerator


def is_final_batch(trainer: L.Trainer) -> bool:
    """Whether the batch that just ended is the last of ``fit`` (``max_steps`` reached, or the last batch of the last epoch)."""
    if trainer.max_steps is not None and trainer.max_steps >= 0 and trainer.global_step >= trainer.max_steps:
        return True
    epoch_loop = trainer.fit_loop.epoch_loop
    max_epochs = trainer.max_epochs
    return (
        max_epochs is not None
        and max_epochs >= 0
        and trainer.current_epoch + 1 >= max_epochs
        and bool(epoch_loop.batch_progress.is_last_batch)
    )


class FinalValidation(Callback):
    """Validate the final weights of ``fit`` (unless that step was just validated), then print a summary.

    Args:
        summary: Print the run's summary (run dir, monitor values, checkpoint and grid, next commands) on rank 0.
    """

    def __init__(self, summary: bool = True) -> None:
        super().__init__()
        self.summary = summary
        self._validated_step = -1

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:  # noqa: ANN001
        if is_final_batch(trainer):
            trainer.should_stop = True  # Lightning's loop validates this step (on every rank), then stops

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_step = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        grid = _sample_grid(trainer)
        if trainer.is_global_zero and grid is not None and self._validated_step != trainer.global_step:
            grid.log_grids(trainer, pl_module)  # no validation ran: the grid alone (rank 0, no collective)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.summary and trainer.is_global_zero:
            print(summary_text(trainer, pl_module))


def _sample_grid(trainer: L.Trainer) -> SampleGrid | None:
    return next((c for c in trainer.callbacks if isinstance(c, SampleGrid)), None)


def _value(value: Any) -> str:
    return "-" if value is None else f"{float(value):.6g}"


def summary_text(trainer: L.Trainer, pl_module: L.LightningModule) -> str:
    """The few lines a user needs after ``fit``: where the run is, how it did, what to run next."""
    run_dir = os.path.normpath(run_output_dir(trainer))
    monitor = (getattr(pl_module, "monitor", None) or (None, "min"))[0]
    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    last = (checkpoint.last_model_path if checkpoint else "") or ""
    best = (checkpoint.best_model_path if checkpoint else "") or ""
    lines = [f"run dir: {run_dir}  (step {trainer.global_step})"]
    if monitor:
        best_score = checkpoint.best_model_score if checkpoint is not None else None
        lines.append(f"{monitor}: final {_value(trainer.callback_metrics.get(monitor))}, best {_value(best_score)}")
    if last or best:
        lines.append(f"checkpoints: last {last or '-'}" + (f", best {best}" if best and best != last else ""))
    grid = _sample_grid(trainer)
    if grid is not None and grid.last_paths.get("samples"):
        lines.append(f"sample grid: {grid.last_paths['samples']}")
    if last:
        text = isinstance(pl_module, TextGenerator)
        if not text:
            lines.append(f"evaluate: lightning-gen evaluate --ckpt {last} --metrics fid kid")
        lines.append(
            f"sample:   lightning-gen sample --ckpt {last} "
            + ('--prompt "..."' if text else f"--num 64 --out {os.path.join(run_dir, 'samples', 'final.png')}")
        )
        config = os.path.join(run_dir, "config.yaml")  # it names the run id: `last` is this run's last.ckpt
        lines.append(f"resume:   lightning-gen fit --config {config} --ckpt_path last  (raise the step/epoch limit)")
    return "\n".join(lines)
