"""Send a table of strings to every active logger, whatever its kind, and keep a CSV in the run dir.

Callbacks call :func:`log_text_table`; this (with :mod:`lightning_gen.loggers.images`) is the one
place that knows logger types.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from lightning_gen.loggers.images import run_output_dir


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(value: str) -> str:
        return str(value).replace("|", "\\|").replace("\n", "<br>")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def log_text_table(trainer: L.Trainer, key: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str | None:
    """Log ``rows`` under ``key`` at the current step; returns the CSV path (rank 0 only, else ``None``).

    W&B gets a ``wandb.Table``, TensorBoard a Markdown text; every run also gets
    ``<log_dir>/samples/<key>_step<step>.csv``.
    """
    if not trainer.is_global_zero:
        return None
    step = trainer.global_step
    columns, rows = list(columns), [[str(v) for v in row] for row in rows]
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=columns, data=rows, step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(key, _markdown_table(columns, rows), global_step=step)
    out_dir = os.path.join(run_output_dir(trainer), "samples")  # not trainer.log_dir: a DDP collective
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{key.replace('/', '_')}_step{step:07d}.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return path
