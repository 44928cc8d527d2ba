"""What a checkpoint must carry so that a resumed run is the *same* run, bit for bit on CPU.

Lightning stores weights, optimizer, LR schedulers, precision scaler, loop counters and
stateful dataloaders. It does not store which run the checkpoint belongs to (run id, W&B
run, run dir: Lightning issue 5342) nor the RNG states; :class:`RunState` adds both under
``checkpoint["lightning_gen"]`` and restores the RNG when training restarts.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from lightning_gen.loggers.resumable_csv import ResumableCSVLogger
from lightning_gen.runs.checkpoints import CHECKPOINT_KEY


def class_path(obj: object) -> str:
    """``module.Class`` of an object's class."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _portable(states: dict[str, Any]) -> dict[str, Any]:
    """RNG states as tensors and plain numbers, so ``torch.load(weights_only=True)`` accepts them."""
    states = dict(states)
    if "numpy" in states:
        name, keys, pos, has_gauss, gauss = states["numpy"]
        states["numpy"] = (name, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(gauss))
    return states


def _native(states: dict[str, Any]) -> dict[str, Any]:
    states = dict(states)
    if "numpy" in states:
        import numpy as np

        name, keys, pos, has_gauss, gauss = states["numpy"]
        states["numpy"] = (name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
    return states


def saved_mid_batch(trainer: L.Trainer) -> bool:
    """Whether a checkpoint saved now is inside ``on_train_batch_end`` (before Lightning logs the batch).

    Lightning's own test for "restart on train batch end" (``_TrainingEpochLoop.update_restart_stage``).
    """
    total = trainer.fit_loop.epoch_loop.batch_progress.total
    return trainer.training and total.processed == total.completed + 1


def next_log_step(trainer: L.Trainer) -> int:
    """The logger step of the next training batch, as a run resumed from a checkpoint saved now must use it.

    Lightning bumps ``_batches_that_stepped`` after a batch's ``on_train_batch_end`` hooks and its
    in-epoch validation; a checkpoint saved before the bump (batch end, validation end) stores one
    less than the next batch's step, one saved after it (epoch end, train end) the step itself.
    Lightning's restart guesses which (``_TrainingEpochLoop.reset``) and guesses wrong for an
    epoch-end checkpoint: the resumed run skipped a step. :meth:`RunState.on_train_batch_start` sets it.
    """
    loop = trainer.fit_loop.epoch_loop
    before_bump = saved_mid_batch(trainer) or (trainer.validating and trainer.state.fn == "fit")
    steps_now = not (loop._should_accumulate() and trainer.lightning_module.automatic_optimization)
    return int(loop._batches_that_stepped) + int(before_bump and steps_now)


def pending_train_row(trainer: L.Trainer) -> dict[str, Any] | None:
    """The row Lightning writes after this batch's ``on_train_batch_end`` hooks, or ``None``.

    Mirrors ``_LoggerConnector.update_train_step_metrics`` + ``log_metrics`` (Lightning 2.6): written
    when the batch steps the optimizer and the logging cadence says so; step-level values only.
    """
    if not saved_mid_batch(trainer):
        return None
    connector = trainer._logger_connector
    loop = trainer.fit_loop.epoch_loop
    if (loop._should_accumulate() and trainer.lightning_module.automatic_optimization) or not (
        connector.should_update_logs or trainer.fast_dev_run
    ):
        return None
    metrics = convert_tensors_to_scalars(connector.metrics["log"])
    if not metrics:
        return None
    step = metrics.pop("step", None)
    metrics.setdefault("epoch", trainer.current_epoch)
    return {"step": int(step) if step is not None else int(loop._batches_that_stepped), "metrics": metrics}


class RunState(Callback):
    """Store run id, run dir, model class, logger steps and per-rank RNG states in checkpoints.

    Args:
        run_id: The run id (also the W&B run id).
        run_dir: The run directory.
        experiment: The experiment name.
    """

    def __init__(self, run_id: str, run_dir: str, experiment: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run_dir = run_dir
        self.experiment = experiment
        self._rng_to_restore: dict[str, Any] | None = None
        self._log_step_to_restore: int | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        rng = _portable(_collect_rng_states(include_cuda=True))
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            rngs: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(rngs, rng)  # dump_checkpoint runs on every rank
        else:
            rngs = [rng]
        csv_rows = None
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger) and trainer.is_global_zero:
                logger.save()  # every row up to this checkpoint is on disk before the file is
                if isinstance(logger, ResumableCSVLogger):
                    csv_rows = logger.rows_on_disk
        checkpoint[CHECKPOINT_KEY] = {
            "run_id": self.run_id,
            "run_dir": self.run_dir,
            "experiment": self.experiment,
            "model_class": class_path(pl_module),
            "log_step": int(trainer.fit_loop.epoch_loop._batches_that_stepped),
            "next_log_step": next_log_step(trainer),
            "world_size": trainer.world_size,
            "rng": rngs,
            "csv_rows": csv_rows,  # metrics.csv rows this checkpoint covers (rank 0's count)
            "csv_pending": pending_train_row(trainer),  # + the row Lightning writes right after it
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(CHECKPOINT_KEY) or {}
        rngs = meta.get("rng") or []
        if rngs:
            rank = trainer.global_rank if len(rngs) == trainer.world_size else 0
            self._rng_to_restore = _native(rngs[rank])
        if meta.get("next_log_step") is not None:
            self._log_step_to_restore = int(meta["next_log_step"])
        if trainer.is_global_zero and meta.get("run_id") == self.run_id and meta.get("csv_rows") is not None:
            for logger in trainer.loggers:  # this run's own history: cut it exactly at the checkpoint
                if isinstance(logger, ResumableCSVLogger):
                    logger.restore_rows(int(meta["csv_rows"]), meta.get("csv_pending"))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Restored here, after everything that draws random numbers at start-up (model init,
        # dataloader iterator creation), so the next training batch sees the saved state.
        if self._rng_to_restore is not None:
            _set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # The first batch after a restore, once Lightning's epoch loop reset has adjusted the counter.
        if self._log_step_to_restore is not None:
            trainer.fit_loop.epoch_loop._batches_that_stepped = self._log_step_to_restore
            self._log_step_to_restore = None
