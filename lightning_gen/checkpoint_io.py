"""Checkpoints written atomically: a crash, kill -9 or full disk mid-write leaves the previous file intact.

Two more refusals, each one paragraph (:class:`~lightning_gen.errors.LightningGenError`) that leaves
the previous file as it was: a ``state_dict`` holding NaN/inf (a diverged run must never replace a
good ``last.ckpt`` or best checkpoint; :class:`~lightning_gen.callbacks.finite_guard.FiniteGuard`
normally stops such a run first, on every rank), and a disk or quota that is full.
"""
from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from datamodules.atomic import atomic_write
from lightning_gen.errors import LightningGenError

_FULL = {errno.ENOSPC, errno.EDQUOT}


def nonfinite_count(state_dict: Mapping[str, Any]) -> int:
    """How many NaN/inf values the floating-point tensors of ``state_dict`` hold."""
    count = 0
    for value in state_dict.values():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            count += int((~torch.isfinite(value)).sum())
    return count


def _free_bytes(folder: str) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if free < 1024 or unit == "TiB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return "unknown"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temp file in the target folder, fsync, then ``os.replace`` onto the final name."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}.")
        path = os.fspath(path)
        bad = nonfinite_count(checkpoint.get("state_dict") or {})
        if bad:
            raise LightningGenError(
                f"Refusing to save {path}: the model's weights hold {bad:,} NaN or infinite values (training diverged). "
                "The previous checkpoint there, if any, is unchanged. Lower the learning rate or clip gradients and "
                "resume from the last good checkpoint."
            )
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        try:
            with atomic_write(path) as f:
                torch.save(checkpoint, f)
        except BaseException as err:
            full = _full_disk_errno(err)
            if full is None:
                raise
            previous = f"the previous {os.path.basename(path)} is intact" if os.path.exists(path) else f"no earlier {os.path.basename(path)} existed"
            raise LightningGenError(
                f"Could not save checkpoint {path}: {'the disk is full' if full == errno.ENOSPC else 'the disk quota is exceeded'} "
                f"({_free_bytes(folder)} free in {folder}); the partial file was removed and {previous}. "
                "Free some space (old runs under `run.root`, or their `checkpoints/epoch=*.ckpt`) or point "
                "`--run.root` at a larger disk, then resume with `--ckpt_path last`."
            ) from None


def _full_disk_errno(err: BaseException) -> int | None:
    """ENOSPC/EDQUOT of ``err`` or of the error it wraps (``torch.save`` wraps write errors in RuntimeError)."""
    seen = 0
    while err is not None and seen < 5:
        if isinstance(err, OSError) and err.errno in _FULL:
            return err.errno
        if isinstance(err, RuntimeError) and ("No space left on device" in str(err) or "Disk quota exceeded" in str(err)):
            return errno.ENOSPC if "No space" in str(err) else errno.EDQUOT
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
        seen += 1
    return None
