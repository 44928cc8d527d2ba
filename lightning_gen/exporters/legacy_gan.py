"""GAN checkpoints written before the generator contract (``gan_generator_config``, no export entry).

They still export (``--format torch``: the old file format below, and every folder format), and
their old export files still load (:func:`legacy_gan_generator`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gen_common.errors import LightningGenError

#: format of GAN exports made before the contract (``gan_generator_config`` checkpoints)
LEGACY_GAN_FORMAT = "lightning_gen.gan_generator/1"


def legacy_gan_payload(checkpoint: dict[str, Any], ckpt_path: Path, use_ema: bool) -> dict[str, Any]:
    """The export of a GAN checkpoint written before the contract (``gan_generator_config``)."""
    from lightning_gen.nets.gan import build_generator

    state = checkpoint["state_dict"]
    ema_prefix, plain_prefix = "generator_ema.module.", "generator."
    if use_ema and not any(k.startswith(ema_prefix) for k in state):
        raise LightningGenError(
            f"'{ckpt_path}' has no EMA generator (trained with ema_decay: null). Fix: add `--no-ema`."
        )
    prefix = ema_prefix if use_ema else plain_prefix
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    config = dict(checkpoint["gan_generator_config"])
    architecture = config.pop("architecture")
    build_generator(architecture, **config).load_state_dict(weights)  # refuse to write a file that cannot be loaded
    return {
        "format": LEGACY_GAN_FORMAT,
        "architecture": architecture,
        "kwargs": config,
        "ema": use_ema,
        "global_step": checkpoint.get("global_step"),
        "source_checkpoint": str(ckpt_path),
        "state_dict": weights,
    }


def legacy_gan_generator(payload: dict[str, Any]) -> Any:
    """The sampling module of a pre-contract GAN export: ``sample(n)`` in ``[0, 1]``, ``info`` = the file's metadata."""
    import torch
    from torch import Tensor, nn

    from lightning_gen.nets.gan import build_generator

    class ExportedGenerator(nn.Module):
        """A generator rebuilt from an export: ``forward(z, y)`` in ``[-1, 1]``, ``sample(n)`` in ``[0, 1]``."""

        def __init__(self, net: nn.Module, latent_dim: int, num_classes: int | None, info: dict[str, Any]) -> None:
            super().__init__()
            self.net = net
            self.latent_dim = latent_dim
            self.num_classes = num_classes
            self.info = info

        def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
            return self.net(z, y)

        @torch.no_grad()
        def sample(self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
            """``n`` images ``(n, C, H, W)`` in ``[0, 1]``; conditional nets default to ``labels = arange(n) % num_classes``."""
            device = next(self.parameters()).device
            z = torch.randn(
                n, self.latent_dim, generator=generator, device="cpu" if generator is None else generator.device
            ).to(device)
            if self.num_classes is not None and labels is None:
                labels = torch.arange(n, device=device) % self.num_classes
            return ((self.net(z, labels) + 1.0) / 2.0).clamp(0.0, 1.0)

    kwargs = payload["kwargs"]
    net = build_generator(payload["architecture"], **kwargs)
    net.load_state_dict(payload["state_dict"])
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return ExportedGenerator(net, kwargs["latent_dim"], kwargs.get("num_classes"), info)
