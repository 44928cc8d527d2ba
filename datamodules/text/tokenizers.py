"""Tokenizers behind one small interface: ``encode``, ``decode``, ``vocab_size``, ``save``/``load``.

* :class:`CharTokenizer`: one id per character of the corpus (nanoGPT's shakespeare_char).
* :class:`TiktokenTokenizer`: a tiktoken encoding (``gpt2``...); tiktoken downloads its files, so
  it works online or with ``TIKTOKEN_CACHE_DIR`` pointing at them.
* :class:`ByteLevelBPETokenizer`: a byte-level BPE trained on the corpus with HF ``tokenizers``
  (the offline fallback of :func:`bpe_tokenizer`).

Every tokenizer serialises to one JSON document (``to_dict``/``save``), so a checkpoint or a run
directory can carry it and ``lightning-gen sample`` can rebuild it with :func:`tokenizer_from_dict`.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gen_common.atomic import atomic_write
from gen_common.errors import ConfigError, DataNotFoundError, UserError

TIKTOKEN_TIMEOUT_S = 20.0  # bound on tiktoken's download attempt; offline it fails in well under 1 s


class Tokenizer(ABC):
    """Text <-> token ids. ``fingerprint`` changes whenever the mapping changes (cache keys)."""

    kind: str

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (the inverse of :meth:`encode` on any text the tokenizer covers)."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids; every id is in ``[0, vocab_size)``."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description that :func:`tokenizer_from_dict` turns back into this tokenizer."""

    @property
    def fingerprint(self) -> str:
        """A short hash of :meth:`to_dict`: equal fingerprints encode every text identically."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``to_dict()`` as JSON to ``path`` (a file, or a folder that gets ``tokenizer.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        with atomic_write(path, "w") as f:
            f.write(json.dumps(self.to_dict()))
        return path

    @staticmethod
    def load(path: str | os.PathLike) -> Tokenizer:
        """Read a tokenizer written by :meth:`save`."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise DataNotFoundError(f"No tokenizer at {path}: pass the `tokenizer.json` a training run saved.")
        return tokenizer_from_dict(json.loads(path.read_text()))


class CharTokenizer(Tokenizer):
    """One id per character, in sorted order of the characters seen in the corpus."""

    kind = "char"

    def __init__(self, chars: str) -> None:
        if not chars:
            raise ConfigError("CharTokenizer needs a non-empty alphabet (is the corpus empty?).")
        self.chars = "".join(sorted(set(chars)))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(set(text)))

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            raise UserError(
                f"The text has characters this character-level tokenizer never saw in its corpus: {unknown!r}. "
                "Remove them from the prompt (or train on a corpus that contains them)."
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars}


class TiktokenTokenizer(Tokenizer):
    """A tiktoken encoding (e.g. ``gpt2``, vocabulary 50257); needs its files (online or ``TIKTOKEN_CACHE_DIR``).

    With ``n_vocab`` given, the files load on the first ``encode``/``decode`` only: ids made elsewhere
    (nanoGPT's ``train.bin``) train offline, and only decoding them needs the files.
    """

    kind = "tiktoken"

    def __init__(
        self, encoding: str = "gpt2", timeout_s: float = TIKTOKEN_TIMEOUT_S, n_vocab: int | None = None
    ) -> None:
        self.encoding_name, self.timeout_s, self.n_vocab = encoding, timeout_s, n_vocab
        self._encoding = None if n_vocab is not None else _load_tiktoken(encoding, timeout_s)

    @property
    def encoding(self) -> Any:
        if self._encoding is None:
            self._encoding = _load_tiktoken(self.encoding_name, self.timeout_s)
        return self._encoding

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode([int(i) for i in ids])

    @property
    def vocab_size(self) -> int:
        return self.n_vocab if self.n_vocab is not None else self.encoding.n_vocab

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "encoding": self.encoding_name}


class ByteLevelBPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2's scheme) trained with HF ``tokenizers``; covers every string, offline."""

    kind = "bpe"

    def __init__(self, hf_json: str) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.hf_json = hf_json
        self.hf = HFTokenizer.from_str(hf_json)

    @classmethod
    def train(cls, text: str | Iterable[str], vocab_size: int, min_frequency: int = 2) -> ByteLevelBPETokenizer:
        """Train on ``text`` (one pass, a few seconds for Shakespeare's 5 M characters).

        ``text``: a string, or its lines (``splitlines(keepends=True)``) as an iterable: a corpus streamed
        from disk trains in memory that grows with its distinct words, not its size.
        """
        from tokenizers import ByteLevelBPETokenizer as HFByteLevelBPE

        if vocab_size < 257:
            raise ConfigError(f"`data.init_args.bpe_vocab_size` must be > 256 (the byte alphabet), got {vocab_size}.")
        hf = HFByteLevelBPE()
        lines = text.splitlines(keepends=True) if isinstance(text, str) else text
        hf.train_from_iterator(lines, vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False)
        return cls(hf._tokenizer.to_str())

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encode many texts at once (parallel in Rust)."""
        return [e.ids for e in self.hf.encode_batch(texts)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode([int(i) for i in ids])

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "hf": self.hf_json}


def _load_tiktoken(encoding: str, timeout_s: float) -> Any:
    """``tiktoken.get_encoding`` bounded by ``timeout_s`` (its download has no overall deadline)."""
    import tiktoken

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(tiktoken.get_encoding, encoding).result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise DataNotFoundError(f"tiktoken could not load encoding {encoding!r} within {timeout_s:.0f} s.") from None
    except ValueError as err:  # unknown encoding name
        raise ConfigError(f"`data.init_args.bpe_encoding`: {err}") from None
    except Exception as err:  # network errors (requests/urllib), missing cache files
        raise DataNotFoundError(
            f"tiktoken could not load encoding {encoding!r} ({type(err).__name__}); it downloads its files, "
            "so go online once or set TIKTOKEN_CACHE_DIR to a folder holding them."
        ) from None
    finally:
        pool.shutdown(wait=False)


def bpe_tokenizer(
    text: str | Iterable[str],
    encoding: str | None = "gpt2",
    vocab_size: int = 4096,
    cache_dir: str | os.PathLike | None = None,
    timeout_s: float = TIKTOKEN_TIMEOUT_S,
    key: str | None = None,
) -> Tokenizer:
    """The tiktoken ``encoding`` when its files load, else a byte-level BPE trained on ``text``.

    The trained BPE (``vocab_size`` ids) is cached in ``cache_dir`` keyed by the text (``key``: its
    fingerprint, 16 hex digits of sha256; needed when ``text`` is an iterable of lines, read only on a
    cache miss) and size, so a corpus is trained on once. ``encoding=None`` skips tiktoken.
    """
    if encoding:
        try:
            return TiktokenTokenizer(encoding, timeout_s)
        except DataNotFoundError as err:
            print(f"lightning_gen: {err} Falling back to a byte-level BPE ({vocab_size} ids) trained on the corpus.")
    if key is None:
        if not isinstance(text, str):
            raise ValueError("bpe_tokenizer: pass `key` (the corpus fingerprint) with lines")
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"bpe-{vocab_size}-{key}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        return Tokenizer.load(path)
    tokenizer = ByteLevelBPETokenizer.train(text, vocab_size)
    if path is not None:
        tokenizer.save(path)
    return tokenizer


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from :meth:`Tokenizer.to_dict` output."""
    kind = data.get("kind")
    if kind == CharTokenizer.kind:
        return CharTokenizer(data["chars"])
    if kind == TiktokenTokenizer.kind:
        return TiktokenTokenizer(data["encoding"])
    if kind == ByteLevelBPETokenizer.kind:
        return ByteLevelBPETokenizer(data["hf"])
    raise ConfigError(f"Unknown tokenizer kind {kind!r}; expected 'char', 'tiktoken' or 'bpe'.")
