"""nanoGPT's prepared data, as it is: ``train.bin``/``val.bin`` (uint16 ids, no header) and an optional ``meta.pkl``.

nanoGPT's ``data/<name>/prepare.py`` writes ``np.array(ids, dtype=np.uint16).tofile("train.bin")`` (and
``val.bin``); a character vocabulary also gets ``meta.pkl``, the pickle of ``{"vocab_size": int, "itos":
{id: char}, "stoi": {char: id}}``. Without ``meta.pkl`` the ids are GPT-2 BPE (tiktoken ``gpt2``, 50257
ids), as nanoGPT's ``train.py`` and ``sample.py`` assume: training needs nothing more, decoding them
(samples, text metrics) needs tiktoken's files (downloaded once, or ``TIKTOKEN_CACHE_DIR``).
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.text.tokenizers import CharTokenizer, TiktokenTokenizer, Tokenizer
from gen_common.errors import ConfigError, CorruptDataError, DataNotFoundError

GPT2_VOCAB_SIZE = 50257  # tiktoken's gpt2: what nanoGPT assumes without meta.pkl
BIN_FLAG = "data.init_args.bin_dir"
SPLITS = ("train", "val")
_MAX_BLOCK = 1 << 24  # ids checked at a time (32 MiB of uint16)


class _PlainUnpickler(pickle.Unpickler):
    """Loads dicts, lists, strings and numbers only: a meta.pkl that names a class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"meta.pkl names {module}.{name}; nanoGPT's holds plain dicts only")


def read_meta(bin_dir: Path) -> dict[str, Any] | None:
    """nanoGPT's ``meta.pkl`` of ``bin_dir`` (plain data only), or ``None`` when there is none."""
    path = Path(bin_dir) / "meta.pkl"
    if not path.is_file():
        return None
    try:
        meta = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as err:  # not a pickle, truncated, or names a class
        raise CorruptDataError(
            f"`{BIN_FLAG}`: {path} is not a nanoGPT meta.pkl ({type(err).__name__}: {err}). Fix: write it again with "
            "nanoGPT's prepare.py, or delete it to read the ids as GPT-2 BPE."
        ) from None
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("vocab_size"), int)
        or not isinstance(meta.get("itos"), dict)
    ):
        raise CorruptDataError(
            f"`{BIN_FLAG}`: {path} lacks nanoGPT's `vocab_size` (int) and `itos` (id -> character). Fix: write it again "
            "with nanoGPT's prepare.py, or delete it to read the ids as GPT-2 BPE."
        )
    return meta


def nanogpt_tokenizer(bin_dir: Path) -> Tokenizer:
    """The tokenizer of a nanoGPT data dir: the characters of ``meta.pkl``, else GPT-2 BPE (loaded on first use)."""
    meta = read_meta(bin_dir)
    if meta is None:
        return TiktokenTokenizer("gpt2", n_vocab=GPT2_VOCAB_SIZE)
    itos, size = meta["itos"], meta["vocab_size"]
    chars = [itos.get(i) for i in range(size)]
    if len(itos) != size or not all(isinstance(c, str) and len(c) == 1 for c in chars) or chars != sorted(chars):
        raise ConfigError(
            f"`{BIN_FLAG}`: {Path(bin_dir) / 'meta.pkl'} is not a character vocabulary as nanoGPT's shakespeare_char "
            f"prepare.py writes it (`itos` must map 0..{size - 1} to single characters in sorted order). "
            "Fix: write it with that script, or train from the text with `--data.init_args.text_path`."
        )
    return CharTokenizer("".join(chars))


def open_split(bin_dir: Path, split: str, vocab_size: int) -> np.memmap:
    """``<bin_dir>/<split>.bin`` as uint16 ids, memory-mapped; refused in one paragraph if missing, odd or out of range."""
    path = Path(bin_dir) / f"{split}.bin"
    if not path.is_file():
        raise DataNotFoundError(
            f"`{BIN_FLAG}`: {path} does not exist. nanoGPT's prepare.py writes train.bin and val.bin (and meta.pkl "
            "for characters) into one folder: point `--data.init_args.bin_dir` at that folder."
        )
    size = path.stat().st_size
    if size % 2 or size == 0:
        raise CorruptDataError(
            f"`{BIN_FLAG}`: {path} has {size:,} bytes, {'an odd number' if size else 'none'}: nanoGPT's ids are "
            "uint16, 2 bytes each, so the file is truncated or not a nanoGPT .bin. Fix: write it again with the "
            "prepare.py that made it."
        )
    ids = np.memmap(path, dtype=np.uint16, mode="r")
    for start in range(0, len(ids), _MAX_BLOCK):  # in blocks: a file of any size, in flat memory
        block = ids[start : start + _MAX_BLOCK]
        if int(block.max()) >= vocab_size:
            where = start + int(np.argmax(block >= vocab_size))
            raise CorruptDataError(
                f"`{BIN_FLAG}`: {path} holds id {int(ids[where])} at position {where:,}, outside the vocabulary of "
                f"{vocab_size} ({'meta.pkl' if (Path(bin_dir) / 'meta.pkl').is_file() else 'GPT-2 BPE: no meta.pkl'}). "
                "Fix: put the meta.pkl written with these ids beside them (nanoGPT's char prepare.py writes one)."
            )
    return ids


def bin_fingerprint(bin_dir: Path, sample: int = 1 << 20) -> str:
    """16 hex digits of sha256 over each split's size, first and last ``sample`` bytes, and meta.pkl.

    Cheap for files of any size; it names the data in checkpoints (a resume on other data is refused).
    """
    digest = hashlib.sha256()
    for name in (*(f"{s}.bin" for s in SPLITS), "meta.pkl"):
        path = Path(bin_dir) / name
        if path.is_file():
            size = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(sample)
                f.seek(max(size - sample, 0))
                digest.update(f"{name}:{size}:".encode() + head + f.read(sample))
    return digest.hexdigest()[:16]
