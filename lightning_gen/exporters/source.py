"""What every export format reads from a checkpoint (:class:`ExportSource`), and how a format's folder is written.

The source is the sampling net (EMA weights by default) as a builder, its keyword arguments and its
``state_dict``: image families from the contract's export entry (or a GAN checkpoint from before
it), text families from the checkpoint's ``hyper_parameters`` (the GPT family has no export entry).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from gen_common.errors import LightningGenError
from lightning_gen.utils.imports import import_object

#: the file every folder export holds (format, family, how to rebuild); ``--force`` replaces only folders with it
MARKER = "lightning_gen_export.json"
#: our tokenizer (``Tokenizer.to_dict()``, readable by ``datamodules.text.tokenizers.Tokenizer.load``) in text exports
TOKENIZER_FILE = "lightning_gen_tokenizer.json"

#: family of a contract builder (the export entry's ``builder``)
_BUILDER_FAMILY = {
    "lightning_gen.nets.diffusion.DenoisingDiffusion": "diffusion",
    "lightning_gen.nets.conv_vae.ConvVAE": "vae",
    "lightning_gen.nets.gan.build_generator": "gan",
}
_TEXT_BUILDERS = {
    "gpt": ("lightning_gen.nets.gpt.GPT", "lightning_gen.nets.gpt.GPTConfig"),
    "lstm": ("lightning_gen.nets.lstm.LSTMDecoder", "lightning_gen.nets.lstm.LSTMConfig"),
}
_TEXT_FIELDS = {
    "gpt": ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias"),
    "lstm": ("vocab_size", "n_layer", "n_embd", "dropout"),
}


@dataclass
class ExportSource:
    """The sampling net of a checkpoint, as plain values."""

    family: str  # a key of lightning_gen.exporters.FAMILY_FORMATS
    builder: str  # dotted path of the nn.Module class (or factory) under lightning_gen.
    kwargs: dict[str, Any]  # its keyword arguments (of ``config_class`` when that is set)
    state_dict: dict[str, Tensor]  # the net's weights, prefix removed
    ema: bool  # the EMA weights (else the trained ones)
    global_step: int | None
    checkpoint: str  # path of the source checkpoint
    config_class: str | None = None  # the builder takes one config object: ``builder(config_class(**kwargs))``
    tokenizer: dict[str, Any] | None = field(default=None, repr=False)  # text families: ``Tokenizer.to_dict()``

    def build(self) -> nn.Module:
        """The net, with these weights, in eval mode (weights checked: every key, every shape)."""
        return build_module(self.builder, self.kwargs, self.config_class, self.state_dict)

    def info(self, fmt: str, **extra: Any) -> dict[str, Any]:
        """The marker file's content."""
        return {
            "format": f"lightning_gen.{fmt}/1",
            "family": self.family,
            "builder": self.builder,
            "config_class": self.config_class,
            "kwargs": self.kwargs,
            "ema": self.ema,
            "global_step": self.global_step,
            "source_checkpoint": self.checkpoint,
            **extra,
        }


def build_module(
    builder: str, kwargs: dict[str, Any], config_class: str | None, state_dict: dict[str, Tensor] | None
) -> nn.Module:
    """``builder(**kwargs)`` (or ``builder(config_class(**kwargs))``) with ``state_dict`` loaded, in eval mode."""
    for name in (builder, config_class):
        if name is not None and not name.startswith("lightning_gen."):
            raise LightningGenError(f"The export names builder {name!r}; only lightning_gen classes are rebuilt.")
    factory = import_object(builder, "export builder")
    module = factory(import_object(config_class, "export config")(**kwargs)) if config_class else factory(**kwargs)
    if state_dict is not None:
        module.load_state_dict(state_dict)
    return module.eval()


def read_source(ckpt_path: Path, use_ema: bool) -> ExportSource:
    """The :class:`ExportSource` of checkpoint ``ckpt_path``; one paragraph when it has none."""
    from lightning_gen.models.base import EXPORT_KEY, export_payload
    from lightning_gen.runs.checkpoints import load_checkpoint_checked

    if not ckpt_path.is_file():
        raise LightningGenError(
            f"Checkpoint '{ckpt_path}' does not exist. Fix: pass `--ckpt` a file from runs/<name>/<id>/checkpoints/."
        )
    checkpoint = load_checkpoint_checked(ckpt_path, flag="--ckpt")
    text_family = text_family_of(checkpoint)
    if text_family is not None:
        return _text_source(checkpoint, ckpt_path, text_family, use_ema)
    if EXPORT_KEY in checkpoint or "gan_generator_config" not in checkpoint:
        payload = export_payload(checkpoint, use_ema=use_ema, source=str(ckpt_path))
    else:
        from lightning_gen.exporters.legacy_gan import legacy_gan_payload

        payload = legacy_gan_payload(checkpoint, ckpt_path, use_ema)
        payload["builder"] = "lightning_gen.nets.gan.build_generator"
        payload["kwargs"] = {"architecture": payload["architecture"], **payload["kwargs"]}
    return ExportSource(
        family=_BUILDER_FAMILY.get(payload["builder"], "image"),
        builder=payload["builder"],
        kwargs=dict(payload["kwargs"]),
        state_dict=payload["state_dict"],
        ema=use_ema,
        global_step=checkpoint.get("global_step"),
        checkpoint=str(ckpt_path),
    )


def text_family_of(checkpoint: dict[str, Any]) -> str | None:
    """``"gpt"`` or ``"lstm"`` for a checkpoint of ``lightning_gen.models.GPT``; ``None`` for anything else."""
    from lightning_gen.models.base import EXPORT_KEY
    from lightning_gen.runs.checkpoints import CHECKPOINT_KEY

    if EXPORT_KEY in checkpoint:
        return None
    hparams = checkpoint.get("hyper_parameters") or {}
    model_class = str((checkpoint.get(CHECKPOINT_KEY) or {}).get("model_class") or "")
    state = checkpoint.get("state_dict") or {}
    looks_like_text = model_class.endswith("GPT") or ("vocab_size" in hparams and "net.wte.weight" in state)
    architecture = hparams.get("architecture", "gpt")
    return architecture if looks_like_text and architecture in _TEXT_BUILDERS else None


def _text_source(checkpoint: dict[str, Any], ckpt_path: Path, family: str, use_ema: bool) -> ExportSource:
    hparams = checkpoint.get("hyper_parameters") or {}
    missing = [k for k in _TEXT_FIELDS[family] if k not in hparams]
    if missing:
        raise LightningGenError(
            f"{ckpt_path} has no `hyper_parameters` {missing}: it was not saved by lightning_gen.models.GPT. Nothing was written."
        )
    prefix = "ema.module." if use_ema else "net."
    state = checkpoint.get("state_dict") or {}
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if use_ema and not weights:
        raise LightningGenError(f"{ckpt_path} has no EMA weights (trained with ema_decay: null). Fix: add `--no-ema`.")
    if not weights:
        raise LightningGenError(f"{ckpt_path} holds no weights under '{prefix}*'.")
    builder, config_class = _TEXT_BUILDERS[family]
    return ExportSource(
        family=family,
        builder=builder,
        kwargs={k: hparams[k] for k in _TEXT_FIELDS[family]},
        state_dict=weights,
        ema=use_ema,
        global_step=checkpoint.get("global_step"),
        checkpoint=str(ckpt_path),
        config_class=config_class,
        tokenizer=_tokenizer_dict(checkpoint, ckpt_path),
    )


def _tokenizer_dict(checkpoint: dict[str, Any], ckpt_path: Path) -> dict[str, Any] | None:
    """The run's tokenizer as ``Tokenizer.to_dict()`` (the datamodule's state, else the run dir's ``tokenizer.json``).

    Read as plain JSON, not rebuilt: rebuilding a tiktoken tokenizer would try to download it.
    """
    for value in checkpoint.values():
        if isinstance(value, dict) and isinstance(value.get("tokenizer"), dict):
            return dict(value["tokenizer"])
    for candidate in (ckpt_path.parent / "tokenizer.json", ckpt_path.parent.parent / "tokenizer.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


# --- output folders ------------------------------------------------------------------------------
def check_folder_output(out_path: Path, force: bool) -> None:
    """Refuse, in one paragraph, a file, a non-empty folder unless ``force``, and with ``force`` any folder that is
    not a previous export (so ``--force`` never deletes a folder of other things)."""
    if out_path.is_file():
        raise LightningGenError(
            f"`--out` {out_path} is a file; this format writes a folder. Pass a folder path such as "
            f"{out_path.with_suffix('')}-export. Nothing was written."
        )
    if not out_path.is_dir() or not any(out_path.iterdir()):
        return
    if not force:
        raise LightningGenError(
            f"`--out` {out_path} already exists; an export never replaces a folder silently. Pass another `--out`, "
            "or add `--force` to replace it. Nothing was written."
        )
    if not (out_path / MARKER).is_file():
        raise LightningGenError(
            f"`--out` {out_path} is a folder without {MARKER}, so not an earlier export: `--force` replaces only "
            "those. Pass another `--out`. Nothing was written."
        )


@contextmanager
def staged_folder(out_path: Path, force: bool) -> Iterator[Path]:
    """A temp folder beside ``out_path`` to write into; renamed onto ``out_path`` at the end, removed on error.

    A reader never sees half an export, and a failed export leaves an earlier one as it was.
    """
    check_folder_output(out_path, force)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out_path.name}.", dir=out_path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; this is an ordinary folder
        if out_path.exists():
            shutil.rmtree(out_path)  # empty, or an earlier export (checked above)
        os.replace(tmp, out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
