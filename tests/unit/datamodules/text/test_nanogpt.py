"""nanoGPT's train.bin / val.bin / meta.pkl, as its shakespeare_char prepare.py writes them, used as they are."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from datamodules.text import CharTokenizer, TextDataModule, TiktokenTokenizer, shakespeare_corpus
from gen_common.errors import ConfigError, CorruptDataError, DataNotFoundError
from tests.helpers.cli import run_main
from tests.helpers.ops import train_rows
from tests.helpers.paths import EXPERIMENTS


def write_like_nanogpt(folder: Path, text: str, meta: bool = True) -> tuple[str, str]:
    """The files of nanoGPT's ``data/shakespeare_char/prepare.py`` for ``text``: sorted characters as ids,
    the first 90 % of the characters train, ids saved with ``np.array(..., dtype=np.uint16).tofile``, and
    ``meta.pkl`` the pickle of ``{"vocab_size", "itos", "stoi"}``. Returns the train and val texts."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set(text))
    stoi, itos = {c: i for i, c in enumerate(chars)}, dict(enumerate(chars))
    cut = int(len(text) * 0.9)
    for name, part in (("train", text[:cut]), ("val", text[cut:])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(folder / f"{name}.bin")
    if meta:
        with open(folder / "meta.pkl", "wb") as f:
            pickle.dump({"vocab_size": len(chars), "itos": itos, "stoi": stoi}, f)
    return text[:cut], text[cut:]


@pytest.fixture(scope="module")
def tempest() -> str:
    return shakespeare_corpus(["the-tempest"]).text


def test_bin_dir_reads_the_ids_and_meta_as_they_are(tmp_path: Path, tempest: str) -> None:
    train, val = write_like_nanogpt(tmp_path / "sc", tempest)
    dm = TextDataModule(bin_dir=str(tmp_path / "sc"), block_size=32, batch_size=4)
    assert isinstance(dm.tokenizer, CharTokenizer) and dm.vocab_size == len(set(tempest))
    assert isinstance(dm.train_tokens, np.memmap) and len(dm.train_tokens) == len(train)
    assert dm.tokenizer.decode(dm.train_tokens) == train and dm.tokenizer.decode(dm.val_tokens) == val
    dm.prepare_data()
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 32) and np.array_equal(x[:, 1:], y[:, :-1])
    assert dm.dataset_id.startswith("nanogpt-sc-") and not (tmp_path / "sc" / ".lightning_gen_cache").exists()
    with pytest.raises(ConfigError, match="`data.init_args.bin_dir` reads nanoGPT's .* give one or the other"):
        TextDataModule(bin_dir=str(tmp_path / "sc"), text_path="x.txt")


def test_a_short_fit_on_nanogpt_files_lowers_the_loss(tmp_path: Path, tempest: str, one_thread) -> None:
    write_like_nanogpt(tmp_path / "sc", tempest)
    args = [
        "fit",
        "--config",
        str(EXPERIMENTS / "gpt_shakespeare_char.yaml"),
        "--config",
        str(EXPERIMENTS / "debug.yaml"),
    ]
    args += [f"--data.init_args.bin_dir={tmp_path / 'sc'}", "--run.root", str(tmp_path / "runs"), "--run.id", "r"]
    args += ["--model.init_args.n_layer=1", "--model.init_args.n_head=2", "--model.init_args.n_embd=32"]
    args += ["--model.init_args.warmup_steps=0", "--model.init_args.optimizer.init_args.lr=0.01"]
    args += ["--trainer.log_every_n_steps=1", "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false"]
    result = run_main(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = (tmp_path / "runs").rglob("metrics.csv")
    losses = [float(r["train/loss"]) for r in train_rows(metrics) if r.get("train/loss")]
    assert len(losses) == 20 and losses[0] > 3.5 and np.mean(losses[-5:]) < losses[0] - 0.6, losses


def test_without_meta_the_ids_are_gpt2_bpe(
    tmp_path: Path, tempest: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def offline(name: str):
        raise ConnectionError("no network")

    monkeypatch.setattr("tiktoken.get_encoding", offline)
    write_like_nanogpt(tmp_path / "bpe", tempest, meta=False)
    dm = TextDataModule(bin_dir=str(tmp_path / "bpe"))
    assert isinstance(dm.tokenizer, TiktokenTokenizer) and dm.vocab_size == 50257
    assert dm.state_dict()["tokenizer"] == {"kind": "tiktoken", "encoding": "gpt2"}  # sample rebuilds it online
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "its ids are GPT-2 BPE (50257 ids)" in out and "TIKTOKEN_CACHE_DIR" in out
    assert len(dm.train_tokens) == int(len(tempest) * 0.9)  # training needs no tiktoken


def refused(error: type[Exception], pattern: str, folder: Path) -> None:
    """Opening ``folder`` fails with ``error``: one paragraph matching ``pattern``."""
    with pytest.raises(error, match=pattern) as info:
        TextDataModule(bin_dir=str(folder)).prepare_data()
    assert "\n" not in str(info.value)


def test_bad_bin_dirs_get_one_paragraph(tmp_path: Path, tempest: str) -> None:
    folder = tmp_path / "sc"
    write_like_nanogpt(folder, tempest)
    data = (folder / "train.bin").read_bytes()
    (folder / "train.bin").unlink()
    refused(DataNotFoundError, re.escape(f"{folder / 'train.bin'} does not exist. nanoGPT's prepare.py writes"), folder)
    (folder / "train.bin").write_bytes(data[:-1])
    refused(CorruptDataError, f"has {len(data) - 1:,} bytes, an odd number: nanoGPT's ids are uint16", folder)
    ids = np.frombuffer(data, dtype=np.uint16).copy()
    vocab = len(set(tempest))
    ids[1234] = vocab + 5
    ids.tofile(folder / "train.bin")
    refused(
        CorruptDataError,
        rf"holds id {vocab + 5} at position 1,234, outside the vocabulary of {vocab} \(meta.pkl\)",
        folder,
    )
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": 2, "itos": {0: "a", 1: "b"}, "hook": Path("x")}, f)
    refused(CorruptDataError, r"meta.pkl is not a nanoGPT meta.pkl \(UnpicklingError: meta.pkl names pathlib", folder)
