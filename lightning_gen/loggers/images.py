"""Send an image grid to every active logger, whatever its kind, and keep a PNG in the run dir.

Callbacks call :func:`log_image_grid`; this is the one place that knows logger types.
"""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid


def run_output_dir(trainer: L.Trainer) -> str:
    """``trainer.log_dir`` without its DDP broadcast, for code that runs on rank 0 alone.

    ``trainer.log_dir`` is a collective under DDP: read on one rank only, it waits for peers that
    never come (or meets their next, different collective). The folder is the same: the first
    logger's directory, else ``default_root_dir``.
    """
    if trainer.loggers:
        first = trainer.loggers[0]
        folder = first.log_dir if isinstance(first, (TensorBoardLogger, CSVLogger)) else first.save_dir
        if folder:
            return str(folder)
    return str(trainer.default_root_dir)


def to_uint8_grid(images: Tensor, nrow: int = 8) -> np.ndarray:
    """``(N, C, H, W)`` floats in ``[0, 1]`` -> one ``(H', W', C)`` uint8 grid (C = 1 or 3)."""
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
    grid = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return grid[..., :1] if images.shape[1] == 1 else grid


def log_image_grid(trainer: L.Trainer, key: str, images: Tensor, nrow: int = 8) -> str | None:
    """Log ``images`` as one grid under ``key`` at the current step; returns the PNG path (rank 0).

    W&B gets a ``wandb.Image`` (uint8: a float tensor would be saved black), TensorBoard an
    ``add_image``; the PNG lands in ``<run dir>/samples/``. No collective: rank 0 may call it alone.
    """
    if not trainer.is_global_zero:
        return None
    grid = to_uint8_grid(images, nrow)
    pil = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    step = trainer.global_step
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[pil], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, torch.from_numpy(grid).permute(2, 0, 1), global_step=step)
    out_dir = os.path.join(run_output_dir(trainer), "samples")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{key.replace('/', '_')}_step{step:07d}.png")
    pil.save(path)
    return path
