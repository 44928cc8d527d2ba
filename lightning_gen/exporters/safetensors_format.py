"""``--format safetensors``: the sampling net's weights in ``model.safetensors`` plus the JSON that rebuilds it.

    out/model.safetensors          safetensors.torch.load_file(...) -> {name: tensor}; never unpickles
    out/lightning_gen_export.json  builder, kwargs (or config_class + kwargs), tied weights, EMA, step
    out/lightning_gen_tokenizer.json  text families: the tokenizer (``Tokenizer.load`` reads it)

safetensors stores each tensor once: weights that share memory with an earlier one (the GPT's
``lm_head.weight``, tied to ``wte.weight``) are left out and listed under ``tied``;
:func:`load_safetensors` puts them back. The header's metadata repeats the JSON
(``lightning_gen_export``), so the file alone is enough.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from gen_common.errors import LightningGenError
from lightning_gen.exporters import ExportResult
from lightning_gen.exporters.source import MARKER, TOKENIZER_FILE, ExportSource, build_module, staged_folder, write_json

WEIGHTS_FILE = "model.safetensors"
FORMAT = "lightning_gen.safetensors/1"


def split_tied(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``(tensors to store, {alias: stored name})``: a tensor identical in memory to an earlier one becomes an alias.

    Tensors that share memory only in part are copied (safetensors refuses shared storage).
    """
    stored: dict[str, Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    storages: set[int] = set()
    for name, tensor in state_dict.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride())
        if key in seen:
            tied[name] = seen[key]
            continue
        seen[key] = name
        ptr = tensor.untyped_storage().data_ptr()
        shared = ptr in storages or not tensor.is_contiguous()
        storages.add(ptr)
        stored[name] = tensor.detach().clone().contiguous() if shared else tensor.detach()
    return stored, tied


def write_safetensors(source: ExportSource, out_path: Path, force: bool) -> ExportResult:
    from safetensors.torch import save_file

    source.build()  # refuse to write weights that do not load into the net
    tensors, tied = split_tied(source.state_dict)
    info = source.info("safetensors", weights=WEIGHTS_FILE, tied=tied)
    with staged_folder(out_path, force) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "lightning_gen_export": json.dumps(info)})
        write_json(tmp / MARKER, info)
        if source.tokenizer is not None:
            write_json(tmp / TOKENIZER_FILE, source.tokenizer)
    what = "EMA weights" if source.ema else "weights"
    extra = f", tokenizer {TOKENIZER_FILE}" if source.tokenizer is not None else ""
    return ExportResult(
        out_path,
        f"exported the {source.family} {what} to {out_path / WEIGHTS_FILE} (config {MARKER}{extra}); "
        "safetensors.torch.load_file reads them, lightning_gen.exporters.safetensors_format.load_safetensors "
        "rebuilds the net",
    )


def load_safetensors(folder: str | Path, map_location: str = "cpu") -> nn.Module:
    """Rebuild the net of a ``--format safetensors`` export (eval mode), tied weights restored."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        info: dict[str, Any] = json.loads((folder / MARKER).read_text())
        weights = load_file(str(folder / info.get("weights", WEIGHTS_FILE)), device=str(map_location))
    except (OSError, ValueError) as err:
        raise LightningGenError(
            f"'{folder}' is not a `--format safetensors` export ({type(err).__name__}: {str(err)[:160]}). Fix: export "
            "it again with `lightning-gen export --format safetensors`."
        ) from None
    if info.get("format") != FORMAT:
        raise LightningGenError(f"'{folder}' holds format {info.get('format')!r}, not {FORMAT}.")
    weights |= {alias: weights[name] for alias, name in info.get("tied", {}).items()}
    return build_module(info["builder"], info["kwargs"], info.get("config_class"), weights).to(map_location)
