"""Fixed-seed sample (and reconstruction) grids, logged to whichever logger is active."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from gen_common.errors import ConfigError
from lightning_gen.callbacks.cadence import Cadence
from lightning_gen.loggers.images import log_image_grid
from lightning_gen.models.base import ImageGenerator


class SampleGrid(Callback):
    """Log a grid of ``pl_module.sample(num_samples)`` at the :mod:`~lightning_gen.callbacks.cadence`.

    The same noise (from ``seed``, a private generator: training RNG is untouched) is used each
    time, so the grids show one set of samples evolving. Models whose ``reconstruct`` is not
    ``None`` (the contract's slot; the VAE) also get a grid of the first validation images (odd
    rows) above their reconstructions (even rows). Under DDP only rank 0 samples and writes, so
    nothing here may be a collective (no ``trainer.log_dir``; ``sample``/``reconstruct`` run on the
    bare module, not the DDP wrapper).

    Args:
        every_n_epochs: After every n-th validation epoch (``None``: never then).
        every_n_steps: After every n-th optimizer step (``None``: never then).
        num_samples: Images in the sample grid.
        num_reconstructions: Validation images (and reconstructions) in the reconstruction grid; 0: none.
        nrow: Images per grid row.
        seed: Seed of the fixed noise.
    """

    def __init__(
        self,
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        num_samples: int = 64,
        num_reconstructions: int = 32,
        nrow: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_samples < 1 or nrow < 1 or num_reconstructions < 0:
            raise ConfigError(
                f"SampleGrid: `num_samples` and `nrow` must be >= 1 and `num_reconstructions` >= 0, "
                f"got {num_samples}, {nrow} and {num_reconstructions}."
            )
        self.cadence = Cadence(every_n_epochs, every_n_steps, "SampleGrid")
        self.every_n_epochs = every_n_epochs
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.num_reconstructions = num_reconstructions
        self.nrow = nrow
        self.seed = seed
        self._inputs: Tensor | None = None
        self.last_paths: dict[str, str] = {}

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: ImageGenerator, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._inputs is None and batch_idx == 0 and dataloader_idx == 0 and self.num_reconstructions > 0:
            self._inputs = batch[0][: self.num_reconstructions].detach().clone()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: ImageGenerator) -> None:
        if self.cadence.at_validation_end(trainer) and trainer.is_global_zero:
            self.log_grids(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: ImageGenerator, outputs, batch, batch_idx: int) -> None:
        if self.cadence.at_train_batch_end(trainer) and trainer.is_global_zero:
            self.log_grids(trainer, pl_module)

    @torch.no_grad()
    def log_grids(self, trainer: L.Trainer, pl_module: ImageGenerator) -> None:
        """Sample with the fixed seed and log the grids now (also usable outside validation)."""
        with pl_module.eval_mode():
            generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
            samples = pl_module.sample(self.num_samples, generator=generator)
            self._record("samples", log_image_grid(trainer, "samples", samples, self.nrow))
            if self._inputs is not None and pl_module.reconstruct is not None:
                nrow = min(self.nrow, len(self._inputs))
                inputs = self._inputs[: len(self._inputs) // nrow * nrow].to(pl_module.device)
                recon = pl_module.reconstruct(inputs)
                # (rows, 2, nrow, C, H, W): each row of inputs directly above its reconstructions
                pairs = torch.stack(
                    [inputs.view(-1, nrow, *inputs.shape[1:]), recon.view(-1, nrow, *recon.shape[1:])], 1
                )
                self._record("reconstructions", log_image_grid(trainer, "reconstructions", pairs.flatten(0, 2), nrow))

    def _record(self, key: str, path: str | None) -> None:
        if path is not None:
            self.last_paths[key] = path
