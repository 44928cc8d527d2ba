"""``lightning-gen export``: take a GAN's (EMA) generator out of a training checkpoint, alone.

    lightning-gen export --ckpt runs/dcgan_mnist/<id>/checkpoints/last.ckpt --out dcgan_G.pt

The exported file is a small ``torch.save`` dict (architecture name, constructor keyword
arguments, weights); it needs neither Lightning nor the discriminator nor optimizer state.
In Python::

    from lightning_gen.commands.export import export_generator, load_generator
    export_generator("last.ckpt", "G.pt")            # EMA weights by default
    G = load_generator("G.pt")                        # an ExportedGenerator in eval mode
    images = G.sample(16, generator=torch.Generator().manual_seed(0))  # (16, C, H, W) in [0, 1]
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_gen.errors import LightningGenError
from lightning_gen.run import load_checkpoint_checked
from lightning_gen.nets.gan import build_generator

EXPORT_FORMAT = "lightning_gen.gan_generator/1"


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
        z = torch.randn(n, self.latent_dim, generator=generator, device="cpu" if generator is None else generator.device).to(device)
        if self.num_classes is not None and labels is None:
            labels = torch.arange(n, device=device) % self.num_classes
        return ((self.net(z, labels) + 1.0) / 2.0).clamp(0.0, 1.0)


def export_generator(ckpt_path: str | Path, out_path: str | Path, use_ema: bool = True) -> Path:
    """Write the generator of GAN checkpoint ``ckpt_path`` (its EMA copy when ``use_ema`` and present) to ``out_path``."""
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise LightningGenError(f"Checkpoint '{ckpt_path}' does not exist. Fix: pass `--ckpt` a file from runs/<name>/<id>/checkpoints/.")
    checkpoint = load_checkpoint_checked(ckpt_path, flag="--ckpt")  # truncated or corrupt: one paragraph
    config = checkpoint.get("gan_generator_config")
    if config is None:
        raise LightningGenError(
            f"'{ckpt_path}' is not a lightning_gen GAN checkpoint (no 'gan_generator_config' entry); "
            f"`lightning-gen export` exports GAN generators only."
        )
    state = checkpoint["state_dict"]
    ema_prefix, plain_prefix = "generator_ema.module.", "generator."
    has_ema = any(k.startswith(ema_prefix) for k in state)
    if use_ema and not has_ema:
        raise LightningGenError(f"'{ckpt_path}' has no EMA generator (trained with ema_decay: null). Fix: add `--no-ema`.")
    prefix = ema_prefix if use_ema else plain_prefix
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    config = dict(config)
    architecture = config.pop("architecture")
    payload = {
        "format": EXPORT_FORMAT,
        "architecture": architecture,
        "kwargs": config,
        "ema": use_ema,
        "global_step": checkpoint.get("global_step"),
        "source_checkpoint": str(ckpt_path),
        "state_dict": weights,
    }
    build_generator(architecture, **config).load_state_dict(weights)  # refuse to write a file that cannot be loaded
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, out_path)
    return out_path


def load_generator(path: str | Path, map_location: str | torch.device = "cpu") -> ExportedGenerator:
    """Rebuild an exported generator (eval mode) from :func:`export_generator`'s file."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # missing, truncated, not a torch file
        raise LightningGenError(
            f"'{path}' cannot be loaded ({type(err).__name__}: {str(err)[:160]}). Fix: export the generator again with "
            "`lightning-gen export --ckpt <run>/checkpoints/last.ckpt`."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise LightningGenError(f"'{path}' is not a generator exported by `lightning-gen export` (format {EXPORT_FORMAT}).")
    kwargs = payload["kwargs"]
    net = build_generator(payload["architecture"], **kwargs)
    net.load_state_dict(payload["state_dict"])
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return ExportedGenerator(net, kwargs["latent_dim"], kwargs.get("num_classes"), info).eval()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lightning-gen export", description="Export a GAN's (EMA) generator from a checkpoint.")
    parser.add_argument("--ckpt", required=True, help="training checkpoint (.ckpt)")
    parser.add_argument("--out", default=None, help="output file (default: <ckpt>.generator.pt beside the checkpoint)")
    parser.add_argument("--no-ema", action="store_true", help="export the raw generator instead of its EMA")
    args = parser.parse_args(argv)
    out = args.out or str(Path(args.ckpt).with_suffix(".generator.pt"))
    path = export_generator(args.ckpt, out, use_ema=not args.no_ema)
    print(f"exported {'EMA ' if not args.no_ema else ''}generator to {path}")
