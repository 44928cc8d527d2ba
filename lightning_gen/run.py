"""Run management: where a run writes (``runs/<name>/<id>/``) and which loggers it gets.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.csv`` + ``hparams.yaml``
(CSV logger), ``wandb/`` (the W&B run, online or offline), ``checkpoints/`` and ``samples/``.
"""
from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from lightning_gen.loggers.wandb import WandbLogger

RUN_ID_ENV = "LIGHTNING_GEN_RUN_ID"  # shared with DDP child processes, so every rank uses one run dir


@dataclass
class RunOptions:
    """The ``run:`` section of a config: run directory and default loggers.

    Args:
        root: Folder that holds all runs.
        name: Experiment name; default: the stem of the first ``--config`` file.
        id: Run id (directory name and W&B run id); default: a new ``YYYYmmdd-HHMMSS-xxxx``.
        wandb: ``auto`` (online with an API key and network, else offline), ``online``,
            ``offline`` or ``disabled``.
        project: W&B project.
        group: W&B group (default: the experiment name).
        tags: W&B tags.
        tensorboard: Also log to TensorBoard in ``<run dir>/tensorboard``.
    """

    root: str = "runs"
    name: str | None = None
    id: str | None = None
    wandb: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = "lightning_gen"
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    tensorboard: bool = False


def new_run_id() -> str:
    """A sortable, unique run id, or the one the launching process chose (DDP children)."""
    return os.environ.get(RUN_ID_ENV) or f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_directory(options: RunOptions, name: str, run_id: str) -> Path:
    return Path(options.root) / name / run_id


def default_loggers(options: RunOptions, name: str, run_id: str) -> list[Logger]:
    """W&B (unless disabled) first, so ``trainer.log_dir`` is the run dir; CSV always; TensorBoard on request."""
    run_dir = run_directory(options, name, run_id)
    loggers: list[Logger] = []
    if options.wandb != "disabled":
        loggers.append(
            WandbLogger(
                mode=options.wandb,
                project=options.project,
                name=f"{name}/{run_id}",
                id=run_id,
                save_dir=str(run_dir.resolve()),  # W&B resolves relative dirs from its own service's cwd
                group=options.group or name,
                tags=list(options.tags) or None,
                job_type="train",
            )
        )
    loggers.append(CSVLogger(save_dir=str(run_dir), name="", version=""))
    if options.tensorboard:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    return loggers
