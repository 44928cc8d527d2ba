"""Preemption: SIGTERM / SIGUSR1 / Ctrl-C save ``last.ckpt`` (atomically) at the next batch end and stop.

Exit status: 0 after SIGTERM/SIGUSR1 (a preemption: the scheduler or batch script decides what
next), 130 after Ctrl-C (the shell's status of an interrupted command, so ``fit ... && next`` stops).

What Lightning 2.6 does by itself: on SIGTERM it sets ``trainer.received_sigterm``, forwards the
signal to the DDP children it launched, broadcasts from rank 0 *inside the signal handler* (a
collective at whatever point each rank was interrupted: ranks signalled at different instants, as
``srun`` does, pair it with another collective and hang), and raises ``SIGTERMException`` (a
``SystemExit``) after the current batch -- without saving anything. So while a fit runs, SIGTERM's
handler is ours: it only raises a flag. Under SLURM with ``auto_requeue`` its SIGUSR1
handler saves ``hpc_ckpt_<n>.ckpt`` *inside the signal handler* (possibly mid-step) and runs
``scontrol requeue``. We keep Lightning's SIGTERM flag and exit path and add the save:

* :class:`PreemptionCheckpoint` checks the flag at every ``on_train_batch_end`` (all ranks agree
  through one boolean all-reduce under DDP), writes ``<run>/checkpoints/last.ckpt`` through the
  trainer's atomic checkpoint IO (the same point where ``ModelCheckpoint`` saves step checkpoints,
  so Lightning's restart logic applies unchanged), then raises Lightning's own SIGTERM flag on every
  rank at once, so that each logs the batch and exits (status 0) through ``SIGTERMException``.
* A signal that arrives during validation: the validation finishes (its row is logged), and the
  checkpoint is saved at the next training batch end.
* SIGUSR1 (SLURM's ``--signal=USR1@<s>`` warning) is turned into the same flag; the CLI turns
  off Lightning's SLURM auto-requeue so the requeue is the batch script's decision
  (``scripts/slurm.sbatch``), and the requeued job resumes with ``--ckpt_path last``.
* Ctrl-C (SIGINT): Lightning 2.6 lets Python raise ``KeyboardInterrupt`` wherever the main thread
  is (possibly mid optimizer step), then shuts down without saving (exit 1). Here the first Ctrl-C
  only raises the flag (one line says so); a second Ctrl-C raises ``KeyboardInterrupt`` at once
  (Lightning's shutdown, no save, exit 1).
* Then the final weights get their final validation and sample grid (``SampleGrid`` draws it at
  the validation's end), if they fit in the grace period: ``--run.stop_grace_s`` (default 60 s)
  is the time the run has after the signal, the same deadline the watchdog below enforces. Set it
  to what the scheduler allows (SLURM: ``KillWait``, or the lead of ``--signal=USR1@<s>``;
  Kubernetes: ``terminationGracePeriodSeconds``). The checkpoint is saved first; the validation
  starts only if the longest validation of this run so far (or the sanity check, per batch)
  fits in what is left less :data:`EXIT_MARGIN_S`, and a validation that runs past that point
  is stopped (every rank at the same batch). Otherwise one line says why it was skipped. The
  validation is Lightning's own, started by ``trainer.should_stop`` at this batch end, so every
  DDP rank runs the same collectives; the go/no-go and the per-batch deadline are one boolean
  all-reduce each. It is not part of the run's record: ``last.ckpt`` (and the best one) stay those
  saved before it, and its values are printed (with the grid's path) but not written to
  ``metrics.csv``, which a resume keeps exactly as the checkpoint covers it (W&B gets them, like
  any row logged after a checkpoint). On an epoch's last batch the epoch's own validation (if it
  fits) is the final one, recorded as usual.
* A process stuck in C code (a collective waiting for a dead rank) never reaches a batch end. A
  watchdog thread learns of the signal through ``signal.set_wakeup_fd`` (written by the C-level
  handler, whatever the main thread does); if the process has not exited ``exit_grace_s`` seconds
  later it prints one line and ends the process with ``os._exit(128 + signal)``.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

#: exit status of a run stopped by a preemption signal after saving its checkpoint
PREEMPTED_EXIT_CODE = 0
#: exit status of a run stopped by Ctrl-C after saving its checkpoint (128 + SIGINT, as shells report it)
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT
#: seconds of the grace period kept for stopping after the final validation (teardown, W&B's finish)
EXIT_MARGIN_S = 10.0


@dataclass
class ValidationClock:
    """How long one validation of this run takes, its sample grid included (the estimate of a final one).

    The longest full validation seen; before the first, the sanity check's time per batch times the
    validation's batches (no grid in it); ``None`` until either has run.
    """

    seconds: float | None = None
    _started: float | None = None

    def start(self) -> None:
        self._started = time.monotonic()

    def stop(self, trainer: L.Trainer) -> None:
        if self._started is None:
            return
        took, self._started = time.monotonic() - self._started, None
        if not trainer.sanity_checking:
            self.seconds = max(self.seconds or 0.0, took)
        elif self.seconds is None:
            done, full = sum(trainer.num_sanity_val_batches), sum(trainer.num_val_batches)
            if done and math.isfinite(full):
                self.seconds = took / done * full


def final_validation_skip(grace_s: float, since_signal_s: float, estimate_s: float | None) -> str | None:
    """``None`` if a final validation of ``estimate_s`` seconds fits in what is left of the grace period, else why not.

    ``grace_s`` 0 means no deadline; an unknown estimate fits while any time is left (the validation is then
    stopped at the deadline if it runs past it).
    """
    if grace_s <= 0:
        return None
    left = grace_s - since_signal_s - EXIT_MARGIN_S
    if left > 0 and (estimate_s is None or estimate_s <= left):
        return None
    took = f"a validation of this run takes {estimate_s:.1f} s, " if estimate_s is not None else ""
    return (
        f"lightning-gen: no final validation or sample grid: {took}{max(grace_s - since_signal_s, 0.0):.1f} s of "
        f"the {grace_s:g} s grace period (`--run.stop_grace_s`) are left, {EXIT_MARGIN_S:g} s of them for stopping."
    )


NO_VALIDATION_THIS_STEP = (
    "lightning-gen: no final validation or sample grid: Lightning does not validate this step "
    "(`trainer.check_val_every_n_epoch` skips this epoch, or `min_epochs`/`min_steps` is not reached)."
)


def validation_follows_stop(trainer: L.Trainer) -> bool:
    """Whether Lightning validates this step when ``should_stop`` is set at its batch end (2.6's
    ``_should_check_val_fx``: validation on, this epoch validated, ``min_epochs``/``min_steps`` reached)."""
    every = trainer.check_val_every_n_epoch
    this_epoch = every is None or (trainer.current_epoch + 1) % every == 0
    min_epochs = not trainer.min_epochs or trainer.current_epoch >= trainer.min_epochs
    min_steps = not trainer.min_steps or trainer.global_step >= trainer.min_steps
    return trainer.enable_validation and this_epoch and min_epochs and min_steps


class PreemptionCheckpoint(Callback):
    """Save ``last.ckpt`` at the first batch end after SIGTERM/SIGUSR1/SIGINT, validate the final weights if that fits
    in the grace period, then stop cleanly.

    Args:
        dirpath: Checkpoint folder of the run (``<run>/checkpoints``).
        signals: Extra signals (besides SIGTERM, which Lightning handles) that mean "preempted".
        exit_grace_s: The grace period: after a stop signal, end the process (``os._exit(128 + signal)``) if it is
            still running this many seconds later (stuck), and run the final validation only if it fits in it;
            0 turns the watchdog off (and the final validation has no deadline).
    """

    def __init__(
        self,
        dirpath: str,
        signals: tuple[str, ...] = ("SIGUSR1",),
        exit_grace_s: float = 60.0,
    ) -> None:
        super().__init__()
        self.last_path = os.path.join(dirpath, "last.ckpt")
        self.signals = tuple(getattr(signal, name) for name in signals if hasattr(signal, name))
        self.exit_grace_s = exit_grace_s
        self.clock = ValidationClock()
        self._requested = False
        self._signalled_at: float | None = None  # monotonic time of the first stop signal
        self._interrupted = False  # Ctrl-C: exit status 130 once saved
        self._deferred = False  # a stop seen on an epoch's last batch: saved after the epoch's validation
        self._final = False  # the final validation of the saved weights is running
        self._grid_before: str | None = None
        self._loggers: list[Logger] | None = None  # the trainer's loggers, CSV included, during the final validation
        self._previous: dict[int, Any] = {}
        self._watchdog: _Watchdog | None = None
        self.saved_path: str | None = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self._requested = True
        self._signalled_at = self._signalled_at or time.monotonic()

    def _sigint_handler(self, signum: int, frame: FrameType | None) -> None:
        if self._interrupted:  # the second Ctrl-C: abort now, without saving
            raise KeyboardInterrupt
        self._handler(signum, frame)
        self._interrupted = True
        print(
            "lightning-gen: Ctrl-C: saving checkpoints/last.ckpt at the end of this batch, then stopping "
            "(press Ctrl-C again to abort at once without saving).",
            file=sys.stderr,
            flush=True,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning registered its own handlers (``_run``, which calls ``on_fit_start`` before that), before
        # the first batch: its SIGTERM handler would otherwise run beside ours, collective included.
        handlers = {sig: self._handler for sig in (signal.SIGTERM, *self.signals)}  # no collective in a handler
        handlers[signal.SIGINT] = self._sigint_handler
        for sig, handler in handlers.items():
            try:
                self._previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        if self.exit_grace_s > 0 and self._previous:
            self._watchdog = _Watchdog.start(
                self.exit_grace_s, (signal.SIGTERM, signal.SIGINT, *self.signals), self.last_path
            )

    def _restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        if self._watchdog is not None:
            self._watchdog.stop_listening()
            self._watchdog = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        local = self._requested or bool(trainer.received_sigterm)
        stop = trainer.strategy.reduce_boolean_decision(local, all=False) if trainer.world_size > 1 else local
        if not stop or self.saved_path is not None or self._deferred:
            return
        self._signalled_at = self._signalled_at or time.monotonic()  # Lightning's own flag: from now
        if trainer.is_last_batch and self._skip_reason(trainer) is None:
            # The epoch's validation comes next (the final one): a checkpoint taken here would resume past it
            # (Lightning counts the epoch's training as done) and Lightning would abort that validation on its
            # SIGTERM flag, so the epoch's val row would never be logged. Let the validation run and save at the
            # epoch end instead (on_validation_end / on_train_epoch_end). Lightning 2.6 keeps the flag on its
            # signal connector; every rank reached this branch through the same decision.
            self._deferred = True
            trainer._signal_connector.received_sigterm = False
            return
        self._save(trainer)
        skip = self._skip_reason(trainer)  # after the save, which took its own share of the grace period
        if skip is None and not trainer.is_last_batch and validation_follows_stop(trainer):
            self._start_final_validation(trainer)
            return
        if trainer.enable_validation:  # (validation off: no final validation, as in the run itself)
            rank_zero_info(skip or NO_VALIDATION_THIS_STEP)
        _stop_after_this_batch(trainer)  # every rank, at the same batch: log its row, exit through SIGTERMException

    def _skip_reason(self, trainer: L.Trainer) -> str | None:
        """Why the final validation does not fit in the grace period (``None``: it fits), agreed by every rank."""
        since = time.monotonic() - (self._signalled_at or time.monotonic())
        skip = final_validation_skip(self.exit_grace_s, since, self.clock.seconds)
        if trainer.world_size > 1 and not trainer.strategy.reduce_boolean_decision(skip is None, all=True):
            return skip or (
                "lightning-gen: no final validation or sample grid: another rank has too little of the "
                f"{self.exit_grace_s:g} s grace period (`--run.stop_grace_s`) left."
            )
        return skip

    def _start_final_validation(self, trainer: L.Trainer) -> None:
        """Let Lightning validate this step (``should_stop`` at a batch end), outside the run's checkpoints."""
        self._final = True
        for checkpoint in trainer.checkpoint_callbacks:  # this step is saved: ModelCheckpoint skips a step it saved
            checkpoint._last_global_step_saved = trainer.global_step  # type: ignore[attr-defined]
        grid = _sample_grid(trainer)
        self._grid_before = grid.last_paths.get("samples") if grid is not None else None
        self._loggers = trainer.loggers  # metrics.csv: only rows a resume keeps (see the module docstring)
        trainer.loggers = [logger for logger in trainer.loggers if not isinstance(logger, CSVLogger)]
        trainer.should_stop = True

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.start()

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if not self._final or self.exit_grace_s <= 0:
            return
        late = time.monotonic() - (self._signalled_at or 0.0) > self.exit_grace_s - EXIT_MARGIN_S
        if trainer.world_size > 1:
            late = trainer.strategy.reduce_boolean_decision(late, all=False)  # every rank stops at the same batch
        if late:
            self._final = False
            self._give_loggers_back(trainer)
            rank_zero_info(
                "lightning-gen: final validation stopped: it ran past the grace period "
                f"(`--run.stop_grace_s` {self.exit_grace_s:g} s, less {EXIT_MARGIN_S:g} s for stopping)."
            )
            raise SIGTERMException

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.stop(trainer)
        if self._deferred and self.saved_path is None and not trainer.sanity_checking:
            self._save(trainer)  # the point where ModelCheckpoint saves an epoch that validated
        if self._final and not trainer.sanity_checking:
            self._final = False
            self._give_loggers_back(trainer)
            self._report_final_validation(trainer, pl_module)
            _stop_after_this_batch(trainer)  # the epoch loop raises SIGTERMException after this validation

    def _give_loggers_back(self, trainer: L.Trainer) -> None:
        if self._loggers is not None:
            trainer.loggers, self._loggers = self._loggers, None

    def _report_final_validation(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Rank 0: the grid (drawn here if ``SampleGrid``'s cadence skipped this validation) and one line."""
        if not trainer.is_global_zero:
            return
        grid = _sample_grid(trainer)
        if grid is not None and grid.last_paths.get("samples") == self._grid_before:
            grid.log_grids(trainer, pl_module)  # rank 0 alone, no collective
        monitor = (getattr(pl_module, "monitor", None) or (None, "min"))[0]
        value = trainer.callback_metrics.get(monitor) if monitor else None
        parts = [f"{monitor} {float(value):.6g}"] if value is not None else []
        if grid is not None and grid.last_paths.get("samples"):
            parts.append(f"sample grid {os.path.abspath(grid.last_paths['samples'])}")
        print(f"lightning-gen: final validation of step {trainer.global_step}: {', '.join(parts) or 'done'}.")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._deferred:
            return
        if self.saved_path is None:  # no validation ran this epoch
            self._save(trainer)
        _stop_after_this_batch(trainer)  # the fit loop stops after this epoch

    def _save(self, trainer: L.Trainer) -> None:
        # a full checkpoint (resumable), said explicitly: Lightning logs a line when weights_only is left unset
        trainer.save_checkpoint(self.last_path, weights_only=False)  # collective under DDP; atomic (AtomicCheckpointIO)
        self.saved_path = self.last_path
        rank_zero_info(
            f"lightning-gen: preempted at step {trainer.global_step}: checkpoint saved to {self.last_path}; "
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
        self._give_loggers_back(trainer)  # before Lightning finalizes them
        if isinstance(exception, SIGTERMException) and self._interrupted:
            exception.code = INTERRUPTED_EXIT_CODE  # Lightning re-raises this SystemExit: the process exits 130
        self._restore_handlers()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()


def _sample_grid(trainer: L.Trainer) -> Any:
    """The run's ``SampleGrid`` callback, or ``None``."""
    from lightning_gen.callbacks.samples import SampleGrid

    return next((c for c in trainer.callbacks if isinstance(c, SampleGrid)), None)


def _stop_after_this_batch(trainer: L.Trainer) -> None:
    """Raise Lightning's SIGTERM flag (its own handler is replaced, see the module docstring): the loops then
    stop through ``SIGTERMException`` at their next check, on every rank that reached this same decision."""
    trainer._signal_connector.received_sigterm = True


def stuck_message(sig: int, grace_s: float, last: str) -> str:
    """The watchdog's line: why the process ends now, and whether ``last`` (the run's ``last.ckpt``) exists to resume from."""
    if os.path.exists(last):
        resume = f"resume with `--ckpt_path last` ({last}, saved before the signal)."
    else:
        resume = (
            f"this run has no {last} yet, so a resume starts from step 0. If one batch takes longer than "
            f"{grace_s:g} s, set `--run.stop_grace_s` above it so the next signal saves one."
        )
    return (
        f"lightning-gen: received {signal.Signals(sig).name} but the process did not stop within {grace_s:g} s "
        f"(a batch longer than that, or stuck, e.g. in a collective waiting for another rank): exiting now with "
        f"status {128 + sig}; {resume}"
    )


class _Watchdog:
    """Ends the process if it is still alive ``grace_s`` after a stop signal (see the module docstring).

    The C-level signal handler writes the signal number to ``set_wakeup_fd`` even while the main
    thread is blocked in C code; this daemon thread reads it, waits ``grace_s`` and exits the process.
    """

    def __init__(self, grace_s: float, signals: tuple[int, ...], last_path: str) -> None:
        self.grace_s = grace_s
        self.signals = set(signals)
        self.last_path = last_path
        self._read, self._write = socket.socketpair()
        self._write.setblocking(False)
        self._previous_fd = -1

    @classmethod
    def start(cls, grace_s: float, signals: tuple[int, ...], last_path: str) -> _Watchdog | None:
        watchdog = cls(grace_s, signals, last_path)
        try:
            watchdog._previous_fd = signal.set_wakeup_fd(watchdog._write.fileno(), warn_on_full_buffer=False)
        except ValueError:  # not the main thread
            watchdog._close()
            return None
        threading.Thread(target=watchdog._run, name="lightning-gen-signal-watchdog", daemon=True).start()
        return watchdog

    def _run(self) -> None:
        while True:
            try:
                data = self._read.recv(64)
            except OSError:
                return
            if not data:  # stop_listening closed the socket
                return
            hits = [b for b in data if b in self.signals]
            if hits:
                break
        sig = hits[0]
        threading.Event().wait(self.grace_s)
        print(stuck_message(sig, self.grace_s, self.last_path), file=sys.stderr, flush=True)
        os._exit(128 + sig)

    def stop_listening(self) -> None:
        """Give the wakeup fd back; a countdown already running goes on (the process should exit before it ends)."""
        try:
            signal.set_wakeup_fd(self._previous_fd)
        except ValueError:
            pass
        self._close()

    def _close(self) -> None:
        for sock in (self._write, self._read):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
