"""``--format transformers``: a GPT as a ``transformers`` GPT-2 folder (``GPT2LMHeadModel.from_pretrained(out)``).

    out/config.json, out/model.safetensors    GPT2LMHeadModel.save_pretrained (lm_head tied to wte)
    out/generation_config.json                no bos/eos token: generate() runs max_new_tokens
    out/tokenizer.json, tokenizer_config.json a byte-level BPE tokenizer (AutoTokenizer.from_pretrained(out))
    out/lightning_gen_tokenizer.json           every tokenizer, as ``Tokenizer.load`` reads it
    out/lightning_gen_export.json              the marker: source checkpoint, step, EMA, what the tokenizer is

The mapping (our ``lightning_gen.nets.gpt.GPT`` is nanoGPT's, which is GPT-2's layout):
GPT-2's ``Conv1D`` stores ``weight`` as ``(in, out)``, the transpose of our ``nn.Linear``; a net
trained with ``bias: false`` gets zero biases; our MLP uses exact GELU, so the config says
``activation_function: gelu`` (GPT-2's default ``gelu_new`` is the tanh approximation). Logits then
agree to float rounding. transformers is an optional extra (``pip install 'lightning-gen[export]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gen_common.errors import LightningGenError
from lightning_gen.exporters import ExportResult
from lightning_gen.exporters.source import MARKER, TOKENIZER_FILE, ExportSource, staged_folder, write_json

#: GPT-2 modules whose weights are ``Conv1D`` (``(in, out)``: our Linear weights transposed)
_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise LightningGenError(
            "`--format transformers` needs the `transformers` package, which is not installed. Fix: "
            "`pip install 'lightning-gen[export]'` (scripts/setup.sh installs it), or export with "
            "`--format safetensors`. Nothing was written."
        ) from None
    return transformers


def gpt2_config_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``GPT2Config`` arguments for our ``GPTConfig`` fields ``kwargs``."""
    return {
        "vocab_size": kwargs["vocab_size"],
        "n_positions": kwargs["block_size"],
        "n_embd": kwargs["n_embd"],
        "n_layer": kwargs["n_layer"],
        "n_head": kwargs["n_head"],
        "n_inner": 4 * kwargs["n_embd"],
        "activation_function": "gelu",  # exact GELU, as our nn.GELU(); GPT-2's gelu_new is the tanh approximation
        "resid_pdrop": kwargs["dropout"],
        "embd_pdrop": kwargs["dropout"],
        "attn_pdrop": kwargs["dropout"],
        "layer_norm_epsilon": 1e-5,  # nn.LayerNorm's default
        "tie_word_embeddings": True,
        "bos_token_id": None,  # our tokenizers have no special tokens
        "eos_token_id": None,
    }


def gpt2_state_dict(state_dict: dict[str, Tensor], n_layer: int, n_embd: int) -> dict[str, Tensor]:
    """Our GPT's ``state_dict`` under GPT2LMHeadModel's names: Conv1D weights transposed, missing biases zero."""

    def bias(name: str, size: int) -> Tensor:
        return state_dict[name] if name in state_dict else torch.zeros(size, dtype=state_dict["wte.weight"].dtype)

    out = {"transformer.wte.weight": state_dict["wte.weight"], "transformer.wpe.weight": state_dict["wpe.weight"]}
    widths = {"attn.c_attn": 3 * n_embd, "attn.c_proj": n_embd, "mlp.c_fc": 4 * n_embd, "mlp.c_proj": n_embd}
    for i in range(n_layer):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        for norm in ("ln_1", "ln_2"):
            out[f"{theirs}{norm}.weight"] = state_dict[f"{ours}{norm}.weight"]
            out[f"{theirs}{norm}.bias"] = bias(f"{ours}{norm}.bias", n_embd)
        for name in _CONV1D:
            out[f"{theirs}{name}.weight"] = state_dict[f"{ours}{name}.weight"].t().contiguous()
            out[f"{theirs}{name}.bias"] = bias(f"{ours}{name}.bias", widths[name])
    out["transformer.ln_f.weight"] = state_dict["ln_f.weight"]
    out["transformer.ln_f.bias"] = bias("ln_f.bias", n_embd)
    out["lm_head.weight"] = state_dict["wte.weight"]
    return out


def to_gpt2(source: ExportSource) -> Any:
    """The ``transformers.GPT2LMHeadModel`` (eval mode) holding the source's weights; every weight checked."""
    transformers = _import_transformers()
    net = source.build()  # refuses weights that do not fit our net
    config = transformers.GPT2Config(**gpt2_config_kwargs(source.kwargs))
    model = transformers.GPT2LMHeadModel(config)
    weights = gpt2_state_dict(net.state_dict(), source.kwargs["n_layer"], source.kwargs["n_embd"])
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:  # a transformers release with other names: refuse rather than write random weights
        raise LightningGenError(
            f"transformers {transformers.__version__}'s GPT2LMHeadModel names its weights differently (missing "
            f"{sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}). Export with `--format safetensors`. "
            "Nothing was written."
        )
    model.tie_weights()
    model.generation_config.bos_token_id = model.generation_config.eos_token_id = None
    return model.eval()


def save_tokenizer(tokenizer: dict[str, Any] | None, folder: Path, max_length: int) -> str:
    """Write the transformers tokenizer where one exists (byte-level BPE); return one line saying what was saved."""
    if tokenizer is None:
        return "no tokenizer: the checkpoint and its run dir hold none"
    write_json(folder / TOKENIZER_FILE, tokenizer)
    kind = tokenizer.get("kind")
    if kind == "bpe":
        transformers = _import_transformers()
        from tokenizers import Tokenizer as HFTokenizer

        hf = HFTokenizer.from_str(tokenizer["hf"])
        fast = transformers.PreTrainedTokenizerFast(tokenizer_object=hf, model_max_length=max_length)
        fast.save_pretrained(str(folder))
        return "tokenizer: the byte-level BPE as tokenizer.json (AutoTokenizer.from_pretrained reads it)"
    if kind == "tiktoken":
        return (
            f"tokenizer: tiktoken's {tokenizer.get('encoding')!r}, saved as {TOKENIZER_FILE} only (its files are "
            "downloaded, not built here); for 'gpt2' that is GPT-2's own tokenizer, "
            "AutoTokenizer.from_pretrained('openai-community/gpt2')"
        )
    return (
        f"tokenizer: a {kind} vocabulary has no transformers tokenizer, so it is saved as {TOKENIZER_FILE} "
        "(datamodules.text.tokenizers.Tokenizer.load reads it; its ids are the model's token ids)"
    )


def write_transformers(source: ExportSource, out_path: Path, force: bool) -> ExportResult:
    transformers = _import_transformers()
    model = to_gpt2(source)
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bar on the command's output
    try:
        with staged_folder(out_path, force) as tmp:
            model.save_pretrained(str(tmp))  # safetensors; the tied lm_head is stored once
            tokenizer_line = save_tokenizer(source.tokenizer, tmp, source.kwargs["block_size"])
            info = source.info("transformers", architecture="GPT2LMHeadModel", tokenizer=tokenizer_line)
            write_json(tmp / MARKER, info)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    what = "EMA weights" if source.ema else "weights"
    return ExportResult(
        out_path,
        f"exported the GPT {what} to {out_path} (transformers.GPT2LMHeadModel.from_pretrained reads it); {tokenizer_line}",
    )
