"""A run's checkpoints: loaded with one clear error, checked against the model, written atomically.

:func:`load_checkpoint_checked` reads a checkpoint (memory-mapped) or says in one paragraph why it
cannot (missing, corrupt, another model class); :func:`state_dict_misfits` lists what keeps its
weights from loading into a model. :class:`AtomicCheckpointIO` writes them so that a crash,
kill -9 or full disk mid-write leaves the previous file intact. Two more refusals, each one
paragraph (:class:`~gen_common.errors.LightningGenError`) that leaves the previous file as it was:
a ``state_dict`` holding NaN/inf (a diverged run must never replace a good ``last.ckpt`` or best
checkpoint; :class:`~lightning_gen.runs.finite_guard.FiniteGuard`
normally stops such a run first, on every rank), and a disk or quota that is full.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor, nn

from gen_common.atomic import atomic_write
from gen_common.errors import ConfigError, LightningGenError

#: key of the run metadata a checkpoint carries (written by :class:`~lightning_gen.runs.run_state.RunState`)
CHECKPOINT_KEY = "lightning_gen"

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

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None
    ) -> None:
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
            previous = (
                f"the previous {os.path.basename(path)} is intact"
                if os.path.exists(path)
                else f"no earlier {os.path.basename(path)} existed"
            )
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
        if isinstance(err, RuntimeError) and (
            "No space left on device" in str(err) or "Disk quota exceeded" in str(err)
        ):
            return errno.ENOSPC if "No space" in str(err) else errno.EDQUOT
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
        seen += 1
    return None


def load_checkpoint_checked(
    path: str | os.PathLike, model_class_path: str | None = None, flag: str = "--ckpt_path"
) -> dict[str, Any]:
    """Load a checkpoint (memory-mapped) or raise one clear error: missing, corrupt, other model class.

    ``flag``: the option that named the file, for the advice in the messages.
    """
    path = Path(path)
    if path.is_dir() and (path / "meta.pt").is_file():  # a sharded (FSDP) checkpoint: check its metadata
        sharded, path = path, path / "meta.pt"
    else:
        sharded = None
    if not path.is_file():
        raise ConfigError(f"Checkpoint {path} does not exist; pass an existing file or `--ckpt_path last`.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=sharded is None)
    except Exception as err:  # truncated zip, garbage bytes, pickle errors
        raise LightningGenError(
            f"Checkpoint {path} is truncated or corrupt and cannot be loaded ({type(err).__name__}: {str(err)[:160]}). "
            f"Nothing was written. {_other_checkpoints_hint(path, flag)}"
        ) from None
    if not isinstance(checkpoint, dict) or ("state_dict" not in checkpoint and sharded is None):
        raise LightningGenError(f"{path} is not a Lightning checkpoint (no `state_dict`). Nothing was written.")
    saved_class = (checkpoint.get(CHECKPOINT_KEY) or {}).get("model_class")
    if model_class_path and saved_class and not _same_class(saved_class, model_class_path):
        raise ConfigError(
            f"Checkpoint {path} holds a {saved_class} but the config's model is {model_class_path}. "
            f"Use the config the checkpoint was trained with (its run dir has config.yaml) or set "
            f"`--model.class_path {saved_class}`. Nothing was written."
        )
    return checkpoint


def _other_checkpoints_hint(path: Path, flag: str) -> str:
    """What to pass instead of a broken checkpoint: the run's other checkpoints (only inside a run's
    ``checkpoints/`` folder, where they belong to the same run), and for a resume, a new run."""
    others = (
        sorted(p.name for p in path.parent.glob("*.ckpt") if p != path) if path.parent.name == "checkpoints" else []
    )
    hint = (
        f"Pass another checkpoint of that run to {flag} ({', '.join(others)})"
        if others
        else f"Pass {flag} a checkpoint that loads"
    )
    if flag == "--ckpt_path":
        return hint + f", or start a new run without {flag}."
    return hint + "."


def _same_class(a: str, b: str) -> bool:
    """Whether two import paths name one class (``pkg.VAE`` re-exports ``pkg.vae.VAE``); unimportable paths compare as text."""
    from lightning_gen.utils.imports import import_object

    def load(path: str) -> Any:
        try:
            return import_object(path, "model class")
        except ConfigError:
            return path

    return a == b or load(a) is load(b)


def state_dict_misfits(saved: dict[str, Tensor], current: dict[str, Tensor], strict: bool = True) -> list[str]:
    """Why ``saved`` cannot load into a module whose ``state_dict()`` is ``current``: one line per key.

    Shapes must agree; with ``strict`` the key sets must too (as ``load_state_dict(strict=True)``).
    """
    current = {k: v for k, v in current.items() if not isinstance(v, nn.parameter.UninitializedParameter)}
    problems = [
        f"`{k}` is {tuple(saved[k].shape)} in the checkpoint but {tuple(v.shape)} in this model"
        for k, v in current.items()
        if k in saved and hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(v.shape)
    ]
    if strict:
        problems += [f"`{k}` is missing from the checkpoint" for k in current if k not in saved]
        problems += [f"`{k}` is in the checkpoint but not in this model" for k in saved if k not in current]
    return problems
