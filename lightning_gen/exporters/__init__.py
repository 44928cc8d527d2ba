"""Export formats other libraries load: ``lightning-gen export --format safetensors | diffusers | transformers``.

============  ==============================  =====================================================================
format        families                        what ``--out`` becomes
============  ==============================  =====================================================================
torch         vae, gan, diffusion             our own ``torch.save`` dict (:mod:`lightning_gen.commands.export`)
safetensors   every family                    a folder: ``model.safetensors`` (the sampling net's weights,
                                              ``safetensors.torch.load_file`` reads it without unpickling) and
                                              ``lightning_gen_export.json`` (builder + keyword arguments to rebuild it)
diffusers     diffusion                       a folder ``diffusers.DDPMPipeline.from_pretrained`` opens (``unet/``,
                                              ``scheduler/``, ``model_index.json``); class-conditional models get
                                              ``unet/`` and ``scheduler/`` only (the pipeline passes no labels)
transformers  gpt (architecture ``gpt``)      a folder ``transformers.GPT2LMHeadModel.from_pretrained`` opens, with
                                              the tokenizer when it is a byte-level BPE that builds offline
============  ==============================  =====================================================================

Every folder holds ``lightning_gen_export.json`` (format, family, source checkpoint, step, EMA or
not); ``--force`` replaces only a folder that holds one, so it never deletes anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gen_common.errors import LightningGenError

#: every value of ``--format``; ``torch`` is the default (our own file)
FORMATS: tuple[str, ...] = ("torch", "safetensors", "diffusers", "transformers")
#: the formats each family supports, in the order the refusal names them
FAMILY_FORMATS: dict[str, tuple[str, ...]] = {
    "vae": ("torch", "safetensors"),
    "gan": ("torch", "safetensors"),
    "diffusion": ("torch", "safetensors", "diffusers"),
    "image": ("torch", "safetensors"),  # a contract family this table does not know by name
    "gpt": ("safetensors", "transformers"),
    "lstm": ("safetensors",),
}
#: what the refusal calls each family
FAMILY_NAMES = {
    "vae": "a VAE",
    "gan": "a GAN generator",
    "diffusion": "a diffusion model",
    "image": "an image model",
    "gpt": "a GPT (architecture gpt)",
    "lstm": "an LSTM language model (architecture lstm)",
}


@dataclass(frozen=True)
class ExportResult:
    """Where an export went and the line ``lightning-gen export`` prints about it."""

    path: Path
    message: str


def check_format(family: str, fmt: str, source: str) -> None:
    """Refuse, in one paragraph, a format the family has no mapping to, naming those it supports."""
    if fmt not in FORMATS:
        raise LightningGenError(f"`--format` must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    supported = FAMILY_FORMATS[family]
    if fmt not in supported:
        why = {
            "diffusers": " (diffusers pipelines hold diffusion models only)",
            "transformers": " (transformers' GPT2LMHeadModel holds a GPT-2 style transformer only)",
            "torch": " (the torch format rebuilds image generators only)",
        }[fmt]
        raise LightningGenError(
            f"{source} holds {FAMILY_NAMES[family]}, which does not export as `--format {fmt}`{why}. "
            f"Its formats: {', '.join(f'`--format {f}`' for f in supported)}. Nothing was written."
        )


def export_folder(
    ckpt_path: str | Path, out_path: str | Path, fmt: str, use_ema: bool = True, force: bool = False
) -> ExportResult:
    """Write checkpoint ``ckpt_path`` as folder ``out_path`` in format ``fmt`` (safetensors, diffusers, transformers)."""
    from lightning_gen.exporters.source import check_folder_output, read_source

    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    check_folder_output(out_path, force)
    source = read_source(ckpt_path, use_ema)
    check_format(source.family, fmt, str(ckpt_path))
    if fmt == "safetensors":
        from lightning_gen.exporters.safetensors_format import write_safetensors

        return write_safetensors(source, out_path, force)
    if fmt == "diffusers":
        from lightning_gen.exporters.diffusers_format import write_diffusers

        return write_diffusers(source, out_path, force)
    from lightning_gen.exporters.transformers_format import write_transformers

    return write_transformers(source, out_path, force)
