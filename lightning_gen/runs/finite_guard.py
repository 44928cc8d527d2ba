"""Stop a run whose training loss is not finite, and never checkpoint non-finite weights.

Every loss that is backpropagated (``on_before_backward``: automatic optimization, and each
``manual_backward`` of a GAN's discriminator and generator) is tested with ``isfinite`` on its
device and folded into a small tensor, attributed to the optimizer that steps next; nothing is
copied to the host per step. The tensor is read at the trainer's logging cadence (where Lightning
synchronises anyway to write the losses), on the last batch of an epoch and before every checkpoint
save. Under DDP it is all-reduced at those points on every rank, so all ranks stop together.

Before a checkpoint is written, its ``state_dict`` is also scanned: a non-finite weight stops the
run even if no loss showed it. A stopped run raises :class:`NonFiniteError` (one paragraph: the
step, which loss, the last good checkpoint); the CLI prints it and exits with status 1.

With a ``GradScaler`` (fp16 mixed precision) a non-finite loss is expected now and then (the scaler
skips that step and lowers its scale), so only the weights are checked there.
"""

from __future__ import annotations

import glob
import inspect
import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from gen_common.errors import LightningGenError
from lightning_gen.models.cadence import is_logging_step
from lightning_gen.runs.checkpoints import nonfinite_count

_NONE = 0  # "no non-finite loss" in the per-optimizer record; otherwise _FAR - first bad step (max-reduce = earliest)
_FAR = 2**62


class NonFiniteError(LightningGenError):
    """Training produced a non-finite loss or weights; the run was stopped."""


class FiniteGuard(Callback):
    """Raise :class:`NonFiniteError` once a training loss or a weight about to be saved is NaN/inf.

    Args:
        dirpath: The run's checkpoint folder, named in the message (its newest file is the last good one).
    """

    def __init__(self, dirpath: str) -> None:
        super().__init__()
        self.dirpath = dirpath
        self._pending: Tensor | None = None  # any non-finite loss since the last optimizer step
        self._first_bad: Tensor | None = None  # per optimizer: _FAR - first global step with a non-finite loss
        self._names: list[str] = []

    # --- recording (no host sync) ---------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._names = _optimizer_names(trainer, pl_module)
        self._first_bad = torch.full((len(self._names),), _NONE, dtype=torch.int64, device=pl_module.device)
        self._pending = None

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        if _scaler_enabled(trainer):
            return
        bad = ~torch.isfinite(loss.detach()).all()
        self._pending = bad if self._pending is None else self._pending | bad

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._pending is None or self._first_bad is None:
            return
        index = next(
            (
                i
                for i, opt in enumerate(trainer.optimizers)
                if opt is optimizer or getattr(optimizer, "optimizer", None) is opt
            ),
            0,
        )
        record = self._first_bad[index]
        mark = torch.where(self._pending & (record == _NONE), _FAR - trainer.global_step, record)
        self._first_bad[index] = mark
        self._pending = None

    # --- checking (one reduction at the logging cadence and at saves) ---------------------------
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if is_logging_step(trainer, steps_done=trainer.global_step):
            self._check(trainer, weights_nonfinite=0)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # dump_checkpoint runs on every rank, before anything is written: stopping here writes nothing.
        if trainer.state.fn != "fit":
            return
        self._check(trainer, weights_nonfinite=nonfinite_count(checkpoint.get("state_dict") or {}))

    def _check(self, trainer: L.Trainer, weights_nonfinite: int) -> None:
        if self._first_bad is None:
            return
        local = torch.cat([self._first_bad, self._first_bad.new_tensor([weights_nonfinite])])
        if trainer.world_size > 1:
            local = trainer.strategy.reduce(local.clone(), reduce_op="max")  # collective: every rank is here
        values = local.tolist()
        losses, weights = values[:-1], int(values[-1])
        if not any(losses) and not weights:
            return
        raise NonFiniteError(self._message(trainer, losses, weights))

    def _message(self, trainer: L.Trainer, losses: list[int], weights: int) -> str:
        bad = [(int(_FAR - v), self._names[i]) for i, v in enumerate(losses) if v != _NONE]
        if bad:
            first, name = min(bad)
            what = f"{name} became NaN or infinite at step {first} (the `step` of metrics.csv)"
        else:
            name = ""
            what = f"the model's weights became NaN or infinite ({weights:,} value{'s' if weights != 1 else ''})"
        module = trainer.lightning_module
        last_good = _newest_checkpoint(self.dirpath)
        kept = (
            f"The last good checkpoint is {last_good} (no non-finite checkpoint was saved)."
            if last_good
            else f"No checkpoint had been saved yet (none was written to {self.dirpath})."
        )
        lr = _lr_flag(module, name)
        clip = ", clip gradients (`--trainer.gradient_clip_val=1.0`)" if module.automatic_optimization else ""
        return (
            f"Training stopped after {trainer.global_step} steps: {what}. {kept} Lower the learning rate{f' ({lr})' if lr else ''}"
            f"{clip} or train in fp32 (`--trainer.precision=32-true`), then resume with `--ckpt_path` on that "
            "checkpoint or start a new run."
        )


def _scaler_enabled(trainer: L.Trainer) -> bool:
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return scaler is not None and scaler.is_enabled()


def _optimizer_names(trainer: L.Trainer, pl_module: L.LightningModule) -> list[str]:
    """ "the training loss" for one optimizer; else the loss of the sub-module each optimizer trains."""
    optimizers = trainer.optimizers or [None]
    if len(optimizers) == 1:
        return ["the training loss"]
    owner = {id(p): name.split(".", 1)[0] for name, p in pl_module.named_parameters()}
    names = []
    for i, opt in enumerate(optimizers):
        params = [p for group in opt.param_groups for p in group["params"]]
        module = owner.get(id(params[0]), "?") if params else "?"
        names.append(f"the loss of `{module}` (optimizer {i + 1} of {len(optimizers)})")
    return names


def _lr_flag(module: L.LightningModule, loss_name: str) -> str | None:
    """The CLI flag of the learning rate that trains the diverged loss (``optimizer`` arguments of the model)."""
    try:
        params = [p for p in inspect.signature(type(module).__init__).parameters if "optimizer" in p]
    except (TypeError, ValueError):
        return None
    match = [p for p in params if p.split("_optimizer")[0] in loss_name] or params
    return f"`--model.init_args.{match[0]}.init_args.lr`" if match else None


def _newest_checkpoint(dirpath: str) -> str | None:
    files = [f for f in glob.glob(os.path.join(dirpath, "*.ckpt")) if os.path.isfile(f)]
    return max(files, key=os.path.getmtime) if files else None
