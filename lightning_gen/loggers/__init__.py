"""Loggers and the logger-agnostic image logging used by callbacks."""

from lightning_gen.loggers.images import log_image_grid
from lightning_gen.loggers.tables import log_text_table
from lightning_gen.loggers.wandb import WandbLogger, resolve_wandb_mode

__all__ = ["WandbLogger", "log_image_grid", "log_text_table", "resolve_wandb_mode"]
