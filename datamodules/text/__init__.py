"""Text data for autoregressive models: tokenizers, corpora (Shakespeare offline, local text), token windows."""

from datamodules.text.corpus import Corpus, markdown_play_to_text, shakespeare_corpus, text_path_corpus
from datamodules.text.datamodule import TextDataModule
from datamodules.text.tokenizers import (
    ByteLevelBPETokenizer,
    CharTokenizer,
    TiktokenTokenizer,
    Tokenizer,
    bpe_tokenizer,
    tokenizer_from_dict,
)

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
