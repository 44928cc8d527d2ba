"""``lightning-gen sample`` and the text datamodule find a checkpoint's tokenizer the same way."""

from __future__ import annotations

from pathlib import Path

import torch


def test_tokenizer_lookup_is_shared_by_sample_and_the_datamodule(tmp_path: Path) -> None:
    from datamodules.text.datamodule import load_tokenizer, tokenizer_in_checkpoint
    from datamodules.text.tokenizers import CharTokenizer
    from lightning_gen.commands.sample import tokenizer_for

    tokenizer = CharTokenizer.from_text("abc ROMEO:")
    checkpoint = {"state_dict": {}, "TextDataModule": {"tokenizer": tokenizer.to_dict()}}
    torch.save(checkpoint, tmp_path / "last.ckpt")
    for found in (
        tokenizer_in_checkpoint(checkpoint),
        load_tokenizer(tmp_path / "last.ckpt"),
        tokenizer_for(checkpoint, tmp_path / "last.ckpt"),
    ):
        assert found.encode("ROMEO:") == tokenizer.encode("ROMEO:")
    assert tokenizer_in_checkpoint({"state_dict": {}}) is None
