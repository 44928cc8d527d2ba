"""``--format transformers``: GPT2LMHeadModel's logits and greedy ``generate`` equal our GPT's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_gen.exporters import export_folder
from tests.helpers.exports import TEXT, text_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
transformers = pytest.importorskip("transformers", reason="the `export` extra (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def bpe() -> object:
    from datamodules.text.tokenizers import ByteLevelBPETokenizer

    return ByteLevelBPETokenizer.train(TEXT, 300)


@pytest.mark.parametrize("bias", [False, True])
def test_gpt2_logits_and_greedy_generate_equal_ours(tmp_path: Path, bpe: object, bias: bool) -> None:
    ckpt, model = text_checkpoint(tmp_path / "last.ckpt", bpe, bias=bias)
    result = export_folder(ckpt, tmp_path / "gpt2", "transformers", use_ema=False)
    assert "GPT2LMHeadModel.from_pretrained" in result.message and "byte-level BPE" in result.message
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").eval()
    assert hf.config.activation_function == "gelu" and hf.lm_head.weight is hf.transformer.wte.weight

    ids = torch.tensor(bpe.encode(TEXT))
    batch = torch.stack([ids[i : i + 32] for i in (0, 40, 80)])  # full context (block_size 32)
    with torch.no_grad():
        assert (hf(batch).logits - model(batch)).abs().max().item() <= 1e-4

    prompt = torch.tensor([bpe.encode("ROMEO:\nBut")] * 2)
    prompt[1, -1] = 7  # two different prompts of one length
    ours = model.generate(prompt, max_new_tokens=20, temperature=0.0)  # our greedy sample
    theirs = hf.generate(prompt, max_new_tokens=20, do_sample=False)
    assert torch.equal(theirs, ours) and len(set(ours[0, -20:].tolist())) > 3  # equal, and not one token repeated

    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "gpt2")
    assert tokenizer.encode("But, soft! Juliet") == bpe.encode("But, soft! Juliet")
    assert tokenizer.decode(ours[0].tolist()) == bpe.decode(ours[0].tolist())


def test_char_vocabulary_is_saved_as_our_tokenizer_json(tmp_path: Path) -> None:
    from datamodules.text.tokenizers import CharTokenizer, Tokenizer

    chars = CharTokenizer.from_text(TEXT)
    ckpt, _ = text_checkpoint(tmp_path / "last.ckpt", chars)
    result = export_folder(ckpt, tmp_path / "gpt2", "transformers", use_ema=False)
    assert "a char vocabulary has no transformers tokenizer, so it is saved as lightning_gen_tokenizer.json" in (
        result.message
    )
    assert not (tmp_path / "gpt2" / "tokenizer.json").exists()
    assert Tokenizer.load(tmp_path / "gpt2" / "lightning_gen_tokenizer.json").encode("Romeo") == chars.encode("Romeo")
    marker = json.loads((tmp_path / "gpt2" / "lightning_gen_export.json").read_text())
    assert marker["family"] == "gpt" and marker["global_step"] == 7 and not marker["ema"]
