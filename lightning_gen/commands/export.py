"""``lightning-gen export``: take a model's (EMA) sampling network out of a training checkpoint, alone.

    lightning-gen export --ckpt runs/ddpm_mnist/<id>/checkpoints/last.ckpt --out ddpm.pt
    lightning-gen export --ckpt .../last.ckpt --format diffusers --out ddpm-diffusers/      # DDPMPipeline folder
    lightning-gen export --ckpt .../last.ckpt --format transformers --out gpt2/             # GPT2LMHeadModel folder
    lightning-gen export --ckpt .../last.ckpt --format safetensors --out net/               # any family, no pickle

``--format torch`` (the default) is described here; the folder formats (``safetensors``,
``diffusers``, ``transformers``) and which family supports which are in
:mod:`lightning_gen.exporters`. A folder ``--out`` is replaced (``--force``) only when it holds an
earlier export's marker file, so a folder of other things is never deleted.

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
from typing import Any, Literal

from gen_common.errors import LightningGenError
from lightning_gen.exporters.legacy_gan import LEGACY_GAN_FORMAT, legacy_gan_generator, legacy_gan_payload
from lightning_gen.utils.options import parse_options


@dataclass
class ExportOptions:
    """Export a checkpoint's (EMA) sampling network, loadable without Lightning.

    Args:
        ckpt: Training checkpoint (``.ckpt``).
        out: Output file for ``torch`` (default ``<ckpt>.generator.pt``), output folder for the other formats
            (default ``<ckpt>.<format>``), beside the checkpoint.
        format: ``torch`` (our file, image families), ``safetensors`` (weights + JSON, every family),
            ``diffusers`` (diffusion: a DDPMPipeline folder), ``transformers`` (GPT: a GPT2LMHeadModel folder).
        ema: Export the EMA weights (``--no_ema``: the raw trained weights).
        force: Replace an existing output file, or a folder holding an earlier export (without it, an existing
            ``--out`` is refused).
    """

    ckpt: str
    out: str | None = None
    format: Literal["torch", "safetensors", "diffusers", "transformers"] = "torch"
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
    from lightning_gen.exporters import check_format
    from lightning_gen.exporters.source import text_family_of
    from lightning_gen.models.base import EXPORT_KEY, export_payload, load_exported
    from lightning_gen.runs.checkpoints import load_checkpoint_checked

    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    check_output(out_path, force)
    if not ckpt_path.is_file():
        raise LightningGenError(
            f"Checkpoint '{ckpt_path}' does not exist. Fix: pass `--ckpt` a file from runs/<name>/<id>/checkpoints/."
        )
    checkpoint = load_checkpoint_checked(ckpt_path, flag="--ckpt")  # truncated or corrupt: one paragraph
    family = text_family_of(checkpoint)
    if family is not None:  # a language model: refused in one paragraph naming its formats
        check_format(family, "torch", str(ckpt_path))
    if EXPORT_KEY in checkpoint or "gan_generator_config" not in checkpoint:
        payload = export_payload(checkpoint, use_ema=use_ema, source=str(ckpt_path))
        load_exported(payload)  # refuse to write a file that cannot be loaded
    else:
        payload = legacy_gan_payload(checkpoint, ckpt_path, use_ema)
    with atomic_write(out_path) as f:
        torch.save(payload, f)
    return out_path


def load_generator(path: str | Path, map_location: Any = "cpu") -> Any:
    """Rebuild an exported sampling module (``nn.Module``, eval mode) from :func:`export_generator`'s file,
    or from a ``--format safetensors`` folder (read without unpickling)."""
    import torch

    from lightning_gen.models.base import load_exported

    if Path(path).is_dir():
        from lightning_gen.exporters.safetensors_format import load_safetensors

        return load_safetensors(path, map_location)

    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # missing, truncated, not a torch file
        raise LightningGenError(
            f"'{path}' cannot be loaded ({type(err).__name__}: {str(err)[:160]}). Fix: export it again with "
            "`lightning-gen export --ckpt <run>/checkpoints/last.ckpt`."
        ) from None
    if isinstance(payload, dict) and payload.get("format") == LEGACY_GAN_FORMAT:
        return legacy_gan_generator(payload).to(map_location).eval()
    return load_exported(payload, map_location)


def main(argv: list[str]) -> None:
    args = parse_options(ExportOptions, argv, "lightning-gen export", aliases={"--no-ema": "--no_ema"})
    if args.format == "torch":
        out = args.out or str(Path(args.ckpt).with_suffix(".generator.pt"))
        path = export_generator(args.ckpt, out, use_ema=args.ema, force=args.force)
        print(f"exported {'EMA ' if args.ema else ''}generator to {path}")
        return
    from lightning_gen.exporters import export_folder

    out = args.out or str(Path(args.ckpt).with_suffix(f".{args.format}"))
    print(export_folder(args.ckpt, out, args.format, use_ema=args.ema, force=args.force).message)
