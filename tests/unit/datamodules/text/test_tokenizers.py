"""Tokenizers: characters, byte-level BPE (trained and cached), tiktoken and its offline fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

import datamodules.text.tokenizers as toks
from datamodules.text import (
    ByteLevelBPETokenizer,
    CharTokenizer,
    Tokenizer,
    bpe_tokenizer,
    tokenizer_from_dict,
)
from gen_common.errors import ConfigError, UserError
from tests.helpers.text import CORPUS, SAMPLE


def test_char_tokenizer_round_trips_and_saves(tmp_path: Path) -> None:
    tok = CharTokenizer.from_text(CORPUS)
    ids = tok.encode(SAMPLE)
    assert tok.decode(ids) == SAMPLE and max(ids) < tok.vocab_size == len(set(CORPUS))
    loaded = Tokenizer.load(tok.save(tmp_path))
    assert loaded.encode(SAMPLE) == ids and loaded.fingerprint == tok.fingerprint
    with pytest.raises(UserError, match=r"never saw.*\['Z'\]"):
        tok.encode("Z")


def test_byte_level_bpe_round_trips_any_text_and_is_cached(tmp_path: Path) -> None:
    tok = bpe_tokenizer(CORPUS, encoding=None, vocab_size=300, cache_dir=tmp_path)
    assert isinstance(tok, ByteLevelBPETokenizer) and tok.vocab_size == 300
    unseen = "Zebra 🦓 naïve  spaces\n\ttab"
    for text in (SAMPLE, unseen, ""):
        assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(SAMPLE)) < len(SAMPLE)  # merges learned from the corpus compress it
    cached = list(tmp_path.glob("bpe-300-*.json"))
    assert len(cached) == 1
    again = bpe_tokenizer(CORPUS, encoding=None, vocab_size=300, cache_dir=tmp_path)
    assert again.fingerprint == tok.fingerprint
    assert tokenizer_from_dict(tok.to_dict()).encode(unseen) == tok.encode(unseen)
    with pytest.raises(ConfigError, match="bpe_vocab_size"):
        ByteLevelBPETokenizer.train(CORPUS, 100)


def test_tiktoken_offline_falls_back_to_trained_bpe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def offline(name: str):
        raise ConnectionError("no network")

    monkeypatch.setattr("tiktoken.get_encoding", offline)
    tok = bpe_tokenizer(CORPUS, encoding="gpt2", vocab_size=280, cache_dir=tmp_path)
    assert isinstance(tok, ByteLevelBPETokenizer)
    out = capsys.readouterr().out
    assert "TIKTOKEN_CACHE_DIR" in out and "Falling back" in out and out.count("\n") == 1


def test_tiktoken_is_used_when_its_files_load(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeEncoding:  # stands in for tiktoken's Encoding (its files need the network here)
        n_vocab = 50257

        def encode_ordinary(self, text: str) -> list[int]:
            return [ord(c) for c in text]

        def decode(self, ids: list[int]) -> str:
            return "".join(map(chr, ids))

    monkeypatch.setattr("tiktoken.get_encoding", lambda name: FakeEncoding())
    tok = bpe_tokenizer(CORPUS, encoding="gpt2")
    assert isinstance(tok, toks.TiktokenTokenizer) and tok.vocab_size == 50257
    assert tok.decode(tok.encode(SAMPLE)) == SAMPLE and tok.to_dict() == {"kind": "tiktoken", "encoding": "gpt2"}
