"""Preemption: SIGTERM / SIGUSR1 save ``last.ckpt`` (atomically) at the next batch end and exit 0.

What Lightning 2.6 does by itself: on SIGTERM it sets ``trainer.received_sigterm``, forwards the
signal to the DDP children it launched, and raises ``SIGTERMException`` (a ``SystemExit``) after
the current batch -- without saving anything. Under SLURM with ``auto_requeue`` its SIGUSR1
handler saves ``hpc_ckpt_<n>.ckpt`` *inside the signal handler* (possibly mid-step) and runs
``scontrol requeue``. We keep Lightning's SIGTERM flag and exit path and add the save:

* :class:`PreemptionCheckpoint` checks the flag at every ``on_train_batch_end`` (all ranks agree
  through one boolean all-reduce under DDP), writes ``<run>/checkpoints/last.ckpt`` through the
  trainer's atomic checkpoint IO (the same point where ``ModelCheckpoint`` saves step checkpoints,
  so Lightning's restart logic applies unchanged), and lets Lightning log the batch and exit
  (status 0) through its ``SIGTERMException`` after the batch.
* A signal that arrives during validation: Lightning 2.6 stops the validation loop at once
  (``SIGTERMException``) before any training batch ends, so no new checkpoint is written; the run
  resumes from the previous ``last.ckpt`` (at most ``run.checkpoint_every_n_steps`` steps, or one
  epoch, are redone).
* SIGUSR1 (SLURM's ``--signal=USR1@<s>`` warning) is turned into the same flag; the CLI turns
  off Lightning's SLURM auto-requeue so the requeue is the batch script's decision
  (``scripts/slurm.sbatch``), and the requeued job resumes with ``--ckpt_path last``.
"""
from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

#: exit status of a run stopped by a preemption signal after saving its checkpoint
PREEMPTED_EXIT_CODE = 0


class PreemptionCheckpoint(Callback):
    """Save ``last.ckpt`` at the first batch end after SIGTERM/SIGUSR1, then stop cleanly.

    Args:
        dirpath: Checkpoint folder of the run (``<run>/checkpoints``).
        signals: Extra signals (besides SIGTERM, which Lightning handles) that mean "preempted".
    """

    def __init__(self, dirpath: str, signals: tuple[str, ...] = ("SIGUSR1",)) -> None:
        super().__init__()
        self.dirpath = dirpath
        self.signals = tuple(getattr(signal, name) for name in signals if hasattr(signal, name))
        self._requested = False
        self._previous: dict[int, Any] = {}
        self.saved_path: str | None = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self._requested = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning registered its own handlers (``_run``), before the first batch.
        for sig in self.signals:
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass

    def _restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        local = self._requested or bool(trainer.received_sigterm)
        stop = trainer.strategy.reduce_boolean_decision(local, all=False) if trainer.world_size > 1 else local
        if not stop or self.saved_path is not None:
            return
        self._save(trainer)
        if not trainer.received_sigterm:
            # SIGUSR1, or a DDP rank the signal did not reach: raise Lightning's own SIGTERM flag,
            # so every rank logs this batch's row and then exits through SIGTERMException.
            signal.raise_signal(signal.SIGTERM)

    def _save(self, trainer: L.Trainer) -> None:
        path = os.path.join(self.dirpath, "last.ckpt")
        trainer.save_checkpoint(path)  # collective under DDP; atomic through AtomicCheckpointIO
        self.saved_path = path
        rank_zero_info(
            f"lightning-gen: preempted at step {trainer.global_step}: checkpoint saved to {path}; "
            "resume with the same command plus `--ckpt_path last`."
        )

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # SIGTERM that landed after this batch's hook: Lightning stops at the next batch or epoch
        # boundary, where the state is consistent, so save there (single process; under DDP the
        # save is a collective that other ranks may no longer join).
        if (
            isinstance(exception, SIGTERMException)
            and self.saved_path is None
            and trainer.world_size == 1
            and not (trainer.validating or trainer.sanity_checking)
        ):
            self._save(trainer)
        self._restore_handlers()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()
