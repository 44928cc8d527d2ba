"""Fixed-seed sample (and reconstruction) grids, logged to whichever logger is active."""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from lightning_gen.loggers.images import log_image_grid


class SampleGrid(Callback):
    """Every ``every_n_epochs`` validation epochs, log a grid of ``pl_module.sample(num_samples)``.

    The same noise (from ``seed``, a private generator: training RNG is untouched) is used each
    time, so the grids show one set of samples evolving. Models with ``reconstruct(x)`` also get
    a grid of the first validation images (odd rows) above their reconstructions (even rows).
    Under DDP only rank 0 samples and writes, so nothing here may be a collective (no
    ``trainer.log_dir``; ``sample``/``reconstruct`` run on the bare module, not the DDP wrapper).
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 64, num_reconstructions: int = 32, nrow: int = 8, seed: int = 0) -> None:
        super().__init__()
        if every_n_epochs < 1 or num_samples < 1 or nrow < 1:
            raise ValueError("SampleGrid: every_n_epochs, num_samples and nrow must be >= 1.")
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.num_reconstructions = num_reconstructions
        self.nrow = nrow
        self.seed = seed
        self._inputs: Tensor | None = None
        self.last_paths: dict[str, str] = {}

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._inputs is None and batch_idx == 0 and dataloader_idx == 0 and self.num_reconstructions > 0:
            self._inputs = batch[0][: self.num_reconstructions].detach().clone()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs != 0 or not trainer.is_global_zero:
            return
        self.log_grids(trainer, pl_module)

    @torch.no_grad()
    def log_grids(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Sample with the fixed seed and log the grids now (also usable outside validation)."""
        was_training = pl_module.training
        pl_module.eval()
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        samples = pl_module.sample(self.num_samples, generator=generator)
        self._record("samples", log_image_grid(trainer, "samples", samples, self.nrow))
        if self._inputs is not None and callable(getattr(pl_module, "reconstruct", None)):
            nrow = min(self.nrow, len(self._inputs))
            inputs = self._inputs[: len(self._inputs) // nrow * nrow].to(pl_module.device)
            recon = pl_module.reconstruct(inputs)
            # (rows, 2, nrow, C, H, W): each row of inputs directly above its reconstructions
            pairs = torch.stack([inputs.view(-1, nrow, *inputs.shape[1:]), recon.view(-1, nrow, *recon.shape[1:])], 1)
            self._record("reconstructions", log_image_grid(trainer, "reconstructions", pairs.flatten(0, 2), nrow))
        pl_module.train(was_training)

    def _record(self, key: str, path: str | None) -> None:
        if path is not None:
            self.last_paths[key] = path
