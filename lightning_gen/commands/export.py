"""``lightning-gen export``: take a model's (EMA) sampling network out of a training checkpoint, alone.

    lightning-gen export --ckpt runs/ddpm_mnist/<id>/checkpoints/last.ckpt --out ddpm.pt

Works for every family that writes the contract's export entry
(:data:`~lightning_gen.models.base.EXPORT_KEY`, from ``export_spec()``): the file is
:func:`~lightning_gen.models.base.export_payload`'s small dict (builder, its keyword arguments,
weights); it needs neither Lightning nor the optimizer state. GAN checkpoints written before the
contract (``gan_generator_config``) still export, in their old format. In Python::

    from lightning_gen.commands.export import export_generator, load_generator
    export_generator("last.ckpt", "G.pt")            # EMA weights by default
    G = load_generator("G.pt")                        # the sampling module, in eval mode
    images = G.sample(16, generator=torch.Generator().manual_seed(0))  # (16, C, H, W) in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen_common.errors import LightningGenError
from lightning_gen.utils.options import parse_options

#: format of GAN exports made before the contract (``gan_generator_config`` checkpoints)
LEGACY_GAN_FORMAT = "lightning_gen.gan_generator/1"


@dataclass
class ExportOptions:
    """Export a checkpoint's (EMA) sampling network, loadable without Lightning.

    Args:
        ckpt: Training checkpoint (``.ckpt``).
        out: Output file (default: ``<ckpt>.generator.pt`` beside the checkpoint).
        ema: Export the EMA weights (``--no_ema``: the raw trained weights).
        force: Replace an existing output file (without it, an existing ``--out`` is refused).
    """

    ckpt: str
    out: str | None = None
    ema: bool = True
    force: bool = False


def check_output(out_path: Path, force: bool) -> None:
    """Refuse, in one paragraph, an output that is a folder, or an existing file unless ``force``."""
    if out_path.is_dir():
        raise LightningGenError(
            f"`--out` {out_path} is a folder; pass a file path such as {out_path / 'generator.pt'}. Nothing was written."
        )
    if out_path.exists() and not force:
        raise LightningGenError(
            f"`--out` {out_path} already exists; an export never replaces a file silently. Pass another `--out`, "
            "or add `--force` to replace it. Nothing was written."
        )


def export_generator(ckpt_path: str | Path, out_path: str | Path, use_ema: bool = True, force: bool = False) -> Path:
    """Write the sampling network of checkpoint ``ckpt_path`` (its EMA copy when ``use_ema``) to ``out_path``.

    An existing ``out_path`` is refused unless ``force`` (:func:`check_output`).
    """
    import torch

    from gen_common.atomic import atomic_write
    from lightning_gen.models.base import EXPORT_KEY, export_payload, load_exported
    from lightning_gen.runs.checkpoints import load_checkpoint_checked

    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    check_output(out_path, force)
    if not ckpt_path.is_file():
        raise LightningGenError(
            f"Checkpoint '{ckpt_path}' does not exist. Fix: pass `--ckpt` a file from runs/<name>/<id>/checkpoints/."
        )
    checkpoint = load_checkpoint_checked(ckpt_path, flag="--ckpt")  # truncated or corrupt: one paragraph
    if EXPORT_KEY in checkpoint or "gan_generator_config" not in checkpoint:
        payload = export_payload(checkpoint, use_ema=use_ema, source=str(ckpt_path))
        load_exported(payload)  # refuse to write a file that cannot be loaded
    else:
        payload = _legacy_gan_payload(checkpoint, ckpt_path, use_ema)
    with atomic_write(out_path) as f:
        torch.save(payload, f)
    return out_path


def _legacy_gan_payload(checkpoint: dict[str, Any], ckpt_path: Path, use_ema: bool) -> dict[str, Any]:
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


def _legacy_gan_generator(payload: dict[str, Any]) -> Any:
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


def load_generator(path: str | Path, map_location: Any = "cpu") -> Any:
    """Rebuild an exported sampling module (``nn.Module``, eval mode) from :func:`export_generator`'s file."""
    import torch

    from lightning_gen.models.base import load_exported

    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # missing, truncated, not a torch file
        raise LightningGenError(
            f"'{path}' cannot be loaded ({type(err).__name__}: {str(err)[:160]}). Fix: export it again with "
            "`lightning-gen export --ckpt <run>/checkpoints/last.ckpt`."
        ) from None
    if isinstance(payload, dict) and payload.get("format") == LEGACY_GAN_FORMAT:
        return _legacy_gan_generator(payload).to(map_location).eval()
    return load_exported(payload, map_location)


def main(argv: list[str]) -> None:
    args = parse_options(ExportOptions, argv, "lightning-gen export", aliases={"--no-ema": "--no_ema"})
    out = args.out or str(Path(args.ckpt).with_suffix(".generator.pt"))
    path = export_generator(args.ckpt, out, use_ema=args.ema, force=args.force)
    print(f"exported {'EMA ' if args.ema else ''}generator to {path}")
