"""Every rank validates with the buffers its checkpoint holds: rank 0's.

DDP broadcasts buffers (BatchNorm running statistics) from rank 0 only inside the wrapped module's ``forward``.
A manually optimized model (the GAN) calls its nets directly, so each rank's running statistics drift apart, and
a DDP validation averaged ranks whose discriminators differed from the checkpoint (rank 0's): ``val/d_real`` at
the end of a 2-process ``fit`` was 0.058169 where ``validate`` of its ``last.ckpt`` gave 0.058155.
"""

from __future__ import annotations

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback


class BroadcastBuffers(Callback):
    """Before each validation under DDP, copy rank 0's buffers to every rank (a collective on all ranks)."""

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            for buffer in pl_module.buffers():
                dist.broadcast(buffer.data, src=0)
