"""Helpers of the run-management tests: a tiny config, ``python -m lightning_gen`` in a subprocess, fault
injection (:class:`FaultAt`), reading a run's CSV and checkpoints.

Where a test runs the CLI: plain CLI behaviour in this process (:func:`tests.helpers.cli.run_main`);
a run that is killed or signalled in a process forked from a warm server (:mod:`tests.helpers.forked`);
a new interpreter (:func:`run_cli`, :func:`popen_cli`) for DDP, import isolation and the command line
as a user types it.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tests.helpers.paths import REPO_ROOT

CLI = [sys.executable, "-m", "lightning_gen"]

TINY_YAML = """\
model:
  class_path: lightning_gen.models.VAE
  init_args:
    latent_dim: 4
    widths: [8, 16]
    iw_samples: 2
    kl_warmup_steps: 5
    optimizer:
      class_path: torch.optim.Adam
      init_args:
        lr: 3.0e-3
data:
  class_path: datamodules.SyntheticImageDataModule
  init_args:
    image_shape: [1, 16, 16]
    num_train: 256
    num_val: 64
    batch_size: 32
    binarize: true
trainer:
  max_epochs: {epochs}
  log_every_n_steps: 1
  num_sanity_val_steps: 0
  accelerator: cpu
  deterministic: true
  enable_model_summary: false
run:
  root: runs
  checkpoint_every_n_steps: 2
  wandb: {wandb}
"""


def write_tiny_config(folder: Path, epochs: int = 2, wandb: str = "offline", name: str = "tiny") -> Path:
    """A VAE on synthetic 16x16 blobs, 8 steps per epoch, ``last.ckpt`` every 2 steps."""
    path = folder / f"{name}.yaml"
    path.write_text(TINY_YAML.format(epochs=epochs, wandb=wandb))
    return path


def cli_env() -> dict[str, str]:
    """Environment for ``lightning-gen`` subprocesses: offline, quiet, no GPU, the repo importable (and with it
    ``tests.helpers.ops.FaultAt``, for ``--trainer.callbacks``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_GEN_") and k != "WANDB_SERVICE"}
    env.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
        PYTHONPATH=str(REPO_ROOT),
        CUDA_VISIBLE_DEVICES="",
    )
    env.pop("CI", None)
    return env


def run_cli(
    args: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, env=env or cli_env(), capture_output=True, text=True, timeout=timeout)


def fault_at_callback(
    step: int, hook: str = "on_train_batch_start", action: str = "sigkill", record: str | None = None
) -> str:
    """``--trainer.callbacks+=...`` value of :class:`FaultAt` (in this process, or a subprocess with ``env=cli_env()``)."""
    import json

    return json.dumps(
        {
            "class_path": "tests.helpers.ops.FaultAt",
            "init_args": {"step": step, "hook": hook, "action": action, "record": record},
        }
    )


try:
    from lightning.pytorch.callbacks import Callback as _Callback
except ImportError:  # pragma: no cover
    _Callback = object  # type: ignore[assignment,misc]


class FaultAt(_Callback):  # type: ignore[misc,valid-type]
    """Fault injection at an exact point of a real ``lightning-gen fit``: in ``hook``, once ``global_step == step``.

    Hooks: ``on_train_batch_start`` (before batch ``step``: every row and checkpoint of the steps
    before it are on disk), ``on_train_batch_end`` (before the step checkpoints of this batch: they
    run last), ``on_before_optimizer_step`` (mid-step), ``on_save_checkpoint`` (a checkpoint is being
    dumped, nothing written yet), ``on_validation_batch_start`` (mid-validation).

    Actions: ``sigkill`` (kill -9 this process), ``block`` (the main thread waits forever on a lock,
    as in a collective whose peer is gone; Python signal handlers still run), ``nan_weight`` (one
    weight becomes NaN, after this step's loss), ``signal:NAME`` (send this process signal NAME),
    ``disk_full`` (the next ``torch.save`` writes a few
    bytes, then fails with ENOSPC). ``record``: a file that receives the sha256 of
    ``<default_root_dir>/checkpoints/last.ckpt`` as it is at the fault ("none" if absent).
    """

    def __init__(
        self, step: int, hook: str = "on_train_batch_start", action: str = "sigkill", record: str | None = None
    ) -> None:
        self.step, self.hook, self.action, self.record = step, hook, action, record
        self._done = False

        def fire(trainer, pl_module, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if not self._done and trainer.global_step == self.step:
                self._done = True
                self._fire(trainer, pl_module)

        setattr(self, hook, fire)

    def _fire(self, trainer, pl_module) -> None:  # noqa: ANN001
        if self.record:
            import hashlib

            last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            Path(self.record).write_text(hashlib.sha256(last.read_bytes()).hexdigest() if last.exists() else "none")
        if self.action == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.action == "block":
            import threading

            lock = threading.Lock()
            lock.acquire()
            lock.acquire()  # never returns
        elif self.action.startswith("signal:"):  # e.g. signal:SIGTERM, as a scheduler would send it
            os.kill(os.getpid(), getattr(signal, self.action.split(":", 1)[1]))
        elif self.action == "nan_weight":
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = float("nan")
        elif self.action == "disk_full":
            import errno

            def full(obj, f, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
                f.write(b"PK\x03\x04 partial")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            torch.save = full
        else:
            raise ValueError(f"unknown action {self.action!r}")


def train_rows(metrics_csv: Path) -> list[dict[str, str]]:
    with open(metrics_csv, newline="") as f:
        return list(csv.DictReader(f))


def logged_steps(rows: list[dict[str, str]], key: str = "train/loss") -> list[int]:
    return [int(r["step"]) for r in rows if r.get(key)]


def popen_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    """``python -m lightning_gen ARGS`` in its own session, stderr merged into stdout."""
    return subprocess.Popen(
        [*CLI, *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def start_and_signal(
    args: list[str],
    cwd: Path,
    metrics_glob: str,
    at_step: int,
    sig: int,
    timeout: float = 300,
    group: bool = False,
    start: Callable[[list[str], Path], Any] = popen_cli,
) -> subprocess.CompletedProcess:
    """Start ``lightning-gen ARGS``; once a ``train/loss`` row at ``>= at_step`` is on disk, send ``sig``.

    ``group``: SIGKILL the whole process group (DDP children, and W&B's ``wandb-core``, which
    then loses the rows it had not written yet) instead of the training process only. ``start``:
    how the process starts (:func:`popen_cli`, or ``tests.helpers.forked``'s fork server).
    """
    proc = start(args, cwd)
    deadline = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline:
            for path in cwd.glob(metrics_glob):
                try:
                    steps = logged_steps(train_rows(path))
                except (OSError, ValueError, KeyError, csv.Error):
                    continue
                if steps and max(steps) >= at_step:
                    if group:
                        os.killpg(proc.pid, sig)  # the whole group: DDP children die too
                    else:
                        os.kill(proc.pid, sig)
                    break
            else:
                time.sleep(0.05)
                continue
            break
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.time()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def state_dict(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def wandb_segments(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("wandb/offline-run-*"))
