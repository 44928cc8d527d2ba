"""Text data for autoregressive models: tokenizers, corpora (Shakespeare offline, local text), token windows.

``TextDataModule`` is imported on first use, so the tokenizer's worker processes (and
``datamodules.text.tokenize`` users) do not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from datamodules.text.corpus import Corpus, markdown_play_to_text, shakespeare_corpus, text_path_corpus
from datamodules.text.tokenizers import (
    ByteLevelBPETokenizer,
    CharTokenizer,
    TiktokenTokenizer,
    Tokenizer,
    bpe_tokenizer,
    tokenizer_from_dict,
)

if TYPE_CHECKING:
    from datamodules.text.datamodule import TextDataModule


def __getattr__(name: str) -> Any:
    if name == "TextDataModule":
        return importlib.import_module("datamodules.text.datamodule").TextDataModule
    raise AttributeError(f"module 'datamodules.text' has no attribute {name!r}")


__all__ = [
    "ByteLevelBPETokenizer",
    "CharTokenizer",
    "Corpus",
    "TextDataModule",
    "TiktokenTokenizer",
    "Tokenizer",
    "bpe_tokenizer",
    "markdown_play_to_text",
    "shakespeare_corpus",
    "text_path_corpus",
    "tokenizer_from_dict",
]
