"""Token shards of a text corpus: the text datamodule's ids, windows and tokenizer; each window once per epoch;
disjoint ranks; checkpoints carry the tokenizer; a nanoGPT ``bin_dir`` prepares the same way."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.streaming import ShardTokenDataModule
from datamodules.streaming.store import ShardStore
from datamodules.streaming.write import DataSpec, ShardWriter
from datamodules.text.datamodule import tokenizer_in_checkpoint

BLOCK = 8


def corpus(path: Path) -> Path:
    """12k random characters of 30 symbols: every window of 9 characters is distinct."""
    rng = np.random.default_rng(0)
    path.write_text("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz .,\n"), 12000)))
    return path


def prepare(folder: Path, init_args: dict) -> Path:
    spec = DataSpec("datamodules.text.TextDataModule", {"block_size": BLOCK, "tokenize_workers": 0, **init_args})
    out = folder / "tokens"
    ShardWriter(ShardStore(str(out)), workers=2, chunk_mb=0.0002).write_tokens(spec, spec.build())
    return out


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("token_shards")
    path = corpus(folder / "corpus.txt")
    return path, prepare(folder, {"text_path": str(path)})


def _windows(loader) -> list[tuple[int, ...]]:  # noqa: ANN001
    return [tuple(torch.cat([x[i], y[i, -1:]]).tolist()) for x, y in loader for i in range(len(x))]


def test_token_shards_hold_the_text_datamodule_ids_and_tokenizer(text: tuple[Path, Path]) -> None:
    from datamodules.text import TextDataModule

    path, shards = text
    ref = TextDataModule(text_path=str(path), block_size=BLOCK, tokenize_workers=0)
    dm = ShardTokenDataModule(str(shards), block_size=BLOCK, batch_size=4, val_batches=3)
    assert dm.vocab_size == ref.vocab_size and dm.tokenizer.to_dict() == ref.tokenizer.to_dict()
    assert dm.dataset_id == f"shards-{ref.dataset_id}" and dm.manifest.splits == {
        "train": len(ref.train_tokens),
        "val": len(ref.val_tokens),
    }
    dm.prepare_data()
    dm.setup("fit")
    # validation: the first 3 x 4 windows of the validation ids, contiguous
    assert np.array_equal(dm.val_tokens, np.asarray(ref.val_tokens[: 12 * (BLOCK + 1)], dtype=np.int64))
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == y.shape == (4, BLOCK) and x.dtype == torch.int64 and torch.equal(x[:, 1:], y[:, :-1])
    # an epoch: every whole window of the training ids once (chunks hold whole windows), shuffled
    train = np.asarray(ref.train_tokens, dtype=np.int64)
    n = len(train) // (BLOCK + 1)
    expected = {tuple(w) for w in train[: n * (BLOCK + 1)].reshape(n, BLOCK + 1).tolist()}
    loader = dm.train_dataloader()
    first, second = _windows(loader), _windows(loader)
    assert len(first) == len(loader) * 4 and len(expected) - len(first) < 4  # drop_last: under one batch left
    assert len(set(first)) == len(first) and set(first) <= expected and first != second
    assert dm.tokenizer.decode(list(first[0])) in path.read_text()


def test_each_rank_reads_disjoint_windows(text: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    parts = []
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))
        dm = ShardTokenDataModule(str(text[1]), block_size=BLOCK, batch_size=4)
        dm.setup("fit")
        parts.append(set(_windows(dm.train_dataloader())))
    assert parts[0] and parts[1] and not parts[0] & parts[1]


def test_checkpoint_state_carries_the_tokenizer_and_refuses_other_shards(text: tuple[Path, Path]) -> None:
    from gen_common.errors import ConfigError

    dm = ShardTokenDataModule(str(text[1]), block_size=BLOCK)
    state = dm.state_dict()
    assert tokenizer_in_checkpoint({"ShardTokenDataModule": state}).to_dict() == dm.tokenizer.to_dict()
    with pytest.raises(ConfigError, match="This checkpoint was trained on data 'other'"):
        dm.load_state_dict({**state, "dataset_id": "other"})


def test_nanogpt_bins_prepare_as_they_are(tmp_path: Path) -> None:
    """nanoGPT's train.bin/val.bin (uint16) with a char meta.pkl: the shards hold those very ids."""
    rng = np.random.default_rng(1)
    chars = sorted(set("abcdefgh \n"))
    bins = tmp_path / "bins"
    bins.mkdir()
    ids = {split: rng.integers(0, len(chars), n).astype(np.uint16) for split, n in (("train", 900), ("val", 300))}
    for split, array in ids.items():
        array.tofile(bins / f"{split}.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}
    (bins / "meta.pkl").write_bytes(pickle.dumps(meta))
    dm = ShardTokenDataModule(
        str(prepare(tmp_path, {"bin_dir": str(bins)})), block_size=BLOCK, batch_size=4, val_batches=1
    )
    dm.setup("fit")
    assert dm.vocab_size == len(chars) and dm.manifest.splits == {"train": 900, "val": 300}
    windows = set(_windows(dm.train_dataloader()))
    whole = ids["train"][: 100 * (BLOCK + 1)].astype(np.int64).reshape(100, BLOCK + 1)
    assert windows <= {tuple(w) for w in whole.tolist()} and len(windows) == 100  # 900 ids = 100 windows of 9
