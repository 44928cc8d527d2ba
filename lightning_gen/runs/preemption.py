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
* A process stuck in C code (a collective waiting for a dead rank) never reaches a batch end. A
  watchdog thread learns of the signal through ``signal.set_wakeup_fd`` (written by the C-level
  handler, whatever the main thread does); if the process has not exited ``exit_grace_s`` seconds
  later it prints one line and ends the process with ``os._exit(128 + signal)``.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

#: exit status of a run stopped by a preemption signal after saving its checkpoint
PREEMPTED_EXIT_CODE = 0
#: exit status of a run stopped by Ctrl-C after saving its checkpoint (128 + SIGINT, as shells report it)
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT


class PreemptionCheckpoint(Callback):
    """Save ``last.ckpt`` at the first batch end after SIGTERM/SIGUSR1/SIGINT, then stop cleanly.

    Args:
        dirpath: Checkpoint folder of the run (``<run>/checkpoints``).
        signals: Extra signals (besides SIGTERM, which Lightning handles) that mean "preempted".
        exit_grace_s: After a stop signal, end the process (``os._exit(128 + signal)``) if it is
            still running this many seconds later (stuck); 0 turns the watchdog off.
    """

    def __init__(self, dirpath: str, signals: tuple[str, ...] = ("SIGUSR1",), exit_grace_s: float = 60.0) -> None:
        super().__init__()
        self.last_path = os.path.join(dirpath, "last.ckpt")
        self.signals = tuple(getattr(signal, name) for name in signals if hasattr(signal, name))
        self.exit_grace_s = exit_grace_s
        self._requested = False
        self._interrupted = False  # Ctrl-C: exit status 130 once saved
        self._deferred = False  # a stop seen on an epoch's last batch: saved after the epoch's validation
        self._previous: dict[int, Any] = {}
        self._watchdog: _Watchdog | None = None
        self.saved_path: str | None = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self._requested = True

    def _sigint_handler(self, signum: int, frame: FrameType | None) -> None:
        if self._interrupted:  # the second Ctrl-C: abort now, without saving
            raise KeyboardInterrupt
        self._interrupted = self._requested = True
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
        if trainer.is_last_batch:
            # The epoch's validation comes next: a checkpoint taken here would resume past it (Lightning
            # counts the epoch's training as done) and Lightning would abort that validation on its
            # SIGTERM flag, so the epoch's val row would never be logged. Let the validation run and save
            # at the epoch end instead (on_validation_end / on_train_epoch_end). Lightning 2.6 keeps the
            # flag on its signal connector; every rank reached this branch through the same decision.
            self._deferred = True
            trainer._signal_connector.received_sigterm = False
            return
        self._save(trainer)
        _stop_after_this_batch(trainer)  # every rank, at the same batch: log its row, exit through SIGTERMException

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._deferred and self.saved_path is None and not trainer.sanity_checking:
            self._save(trainer)  # the point where ModelCheckpoint saves an epoch that validated

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._deferred:
            return
        if self.saved_path is None:  # no validation ran this epoch
            self._save(trainer)
        _stop_after_this_batch(trainer)  # the fit loop stops after this epoch

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.last_path)  # collective under DDP; atomic through AtomicCheckpointIO
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
        if isinstance(exception, SIGTERMException) and self._interrupted:
            exception.code = INTERRUPTED_EXIT_CODE  # Lightning re-raises this SystemExit: the process exits 130
        self._restore_handlers()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()


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
