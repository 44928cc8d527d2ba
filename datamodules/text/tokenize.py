"""Text corpora of any size to token ids, in chunks, by worker processes, with memory flat in the corpus size.

A corpus is a list of files. Its text is what ``Path.read_text(encoding="utf-8")`` gives for each
file (universal newlines: ``\\r\\n`` and ``\\r`` become ``\\n``), joined with ``"\\n"``: exactly the
text of :class:`datamodules.text.corpus.Corpus`. It is never held whole: the files are read in
byte chunks of about ``chunk_bytes``, cut right after a ``"\\n"`` that has a letter, digit,
punctuation or symbol on both sides. No UTF-8 sequence, ``\\r\\n`` pair or GPT-2 pre-token spans
such a cut, so each chunk encodes alone to exactly the ids the whole text gives (char, byte-level
BPE and tiktoken alike; ``tests/unit/datamodules/text/test_tokenize.py`` checks it on Shakespeare).

Two streaming passes, each over ``workers`` spawned processes (in this process for ``workers <= 1``
or at most ``2 * workers`` chunks), results consumed in order with at most ``2 * workers`` chunks in flight:

1. :func:`scan_corpus`: refuses a file that is not text (invalid UTF-8, control characters, a
   binary file) in one paragraph naming the file and the fix, counts every character (the char
   vocabulary) and hashes the joined text (``fingerprint``, the same as ``Corpus.fingerprint``).
2. :func:`tokenize_to_memmap`: encodes the chunks and appends their ids to one ``.npy`` file
   (``uint16`` when the vocabulary fits, else ``uint32``), written atomically; :func:`open_token_file`
   maps it back without loading it.

Used by :class:`datamodules.text.TextDataModule` and by the streaming shard writer::

    scan = scan_corpus(paths)                       # checks, characters, fingerprint
    tokenizer = CharTokenizer(scan.chars)           # or any Tokenizer
    token_file = tokenize_to_memmap(paths, tokenizer, out_dir / "tokens.npy", scan=scan)
    ids = open_token_file(token_file.path)          # np.memmap, 1-D
"""

from __future__ import annotations

import bisect
import hashlib
import multiprocessing
import os
import re
import shlex
import threading
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.text.tokenizers import ByteLevelBPETokenizer, CharTokenizer, Tokenizer, tokenizer_from_dict
from gen_common.atomic import atomic_write
from gen_common.errors import ConfigError, CorruptDataError
from gen_common.progress import track

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "CorpusScan",
    "TokenFile",
    "check_char_coverage",
    "default_workers",
    "encode_text",
    "iter_corpus_text",
    "open_token_file",
    "scan_corpus",
    "token_dtype",
    "tokenize_to_memmap",
]

DEFAULT_CHUNK_BYTES = 4 << 20  # per chunk: a worker holds ~15x this (text, code points, ids) at most
TEXT_PATH_FLAG = "data.init_args.text_path"
_BOUNDARY_WINDOW = 64 << 10  # bytes read at a time while looking for a cut
_BPE_BATCH_CHARS = 1 << 20  # paragraphs handed to HF tokenizers at once (its encodings are ~100 B/token)
#: C0 control characters a text may not hold: all of U+0000..U+001F but \t \n \v \f \r
_STRAY_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f]")
_STRAY_CODES = tuple(c for c in range(0x20) if _STRAY_CONTROL.match(chr(c)))
#: control characters (Unicode category Cc) that are not whitespace: what a binary file is made of
_CONTROL_CODES = tuple(c for c in range(0xA0) if unicodedata.category(chr(c)) == "Cc" and not chr(c).isspace())


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding every id of a ``vocab_size`` vocabulary: uint16 or uint32."""
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


def default_workers(cap: int = 16) -> int:
    """The CPU cores this process may use, at most ``cap`` (every DDP rank scans its corpus: 8 ranks x 16 at most)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, cap)


# --- the corpus as one virtual byte stream: file, "\n", file, "\n", ..., file -------------------------------------
@dataclass(frozen=True)
class Part:
    """Bytes ``[start, end)`` of file ``file``; ``sep``: the joining ``"\\n"`` after that file follows."""

    file: int
    start: int
    end: int
    sep: bool


Chunk = tuple[Part, ...]


class _Layout:
    """The files of a corpus as one stream of bytes with a one-byte ``"\\n"`` between files."""

    def __init__(self, paths: Sequence[Path]) -> None:
        if not paths:
            raise ValueError("a corpus needs at least one file")
        self.paths = tuple(Path(p) for p in paths)
        self.stats = tuple(_stat(p) for p in self.paths)
        self.starts = np.cumsum([0] + [size + 1 for size, _ in self.stats])[:-1].tolist()
        self.total = sum(size for size, _ in self.stats) + len(self.paths) - 1

    def parts(self, lo: int, hi: int) -> Chunk:
        """The file ranges (and separators) of stream bytes ``[lo, hi)``."""
        parts = []
        for i in range(max(bisect.bisect_right(self.starts, lo) - 1, 0), len(self.paths)):
            start, size = self.starts[i], self.stats[i][0]
            if start >= hi:
                break
            end = start + size  # the separator's position, for every file but the last
            if end + 1 <= lo:
                continue
            sep = i < len(self.paths) - 1 and lo <= end < hi
            parts.append(Part(i, max(lo - start, 0), min(hi - start, size), sep))
        return tuple(parts)

    def read(self, lo: int, hi: int) -> bytes:
        """Raw stream bytes ``[lo, hi)`` (no newline translation)."""
        return b"".join(_read_part(self.paths, p) + (b"\n" if p.sep else b"") for p in self.parts(lo, hi))


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _read_part(paths: Sequence[Path], part: Part) -> bytes:
    with open(paths[part.file], "rb") as f:
        f.seek(part.start)
        return f.read(part.end - part.start)


def _is_word_char(data: bytes, start: int, end: int) -> bool:
    """Whether ``data[start:end]`` is one character that is a letter, digit, punctuation or symbol."""
    if start < 0 or end > len(data) or start >= end:
        return False
    try:
        char = data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return len(char) == 1 and unicodedata.category(char)[0] in "LNPS"


def _utf8_length(lead: int) -> int:
    return 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4


def _is_cut(data: bytes, j: int) -> bool:
    """Whether the ``"\\n"`` at ``data[j]`` has a word character on each side (then cutting after it is safe)."""
    k = j - 1
    while k > j - 4 and k > 0 and 0x80 <= data[k] < 0xC0:  # back over UTF-8 continuation bytes
        k -= 1
    return (
        _is_word_char(data, k, j)
        and j + 1 < len(data)
        and _is_word_char(data, j + 1, j + 1 + _utf8_length(data[j + 1]))
    )


def _next_cut(layout: _Layout, pos: int) -> int:
    """The first safe cut after stream position ``pos``, or the end of the stream."""
    while pos < layout.total:
        lo = max(pos - 4, 0)
        hi = min(pos + _BOUNDARY_WINDOW, layout.total)
        window = layout.read(lo, hi)
        j = window.find(b"\n", pos - lo)
        while j != -1:
            if _is_cut(window, j):
                return lo + j + 1
            j = window.find(b"\n", j + 1)
        if hi >= layout.total:
            break
        pos = hi - 4  # a newline in the last 4 bytes is looked at again with the character after it
    return layout.total


def _plan(layout: _Layout, chunk_bytes: int) -> list[Chunk]:
    """The corpus cut into chunks of about ``chunk_bytes`` (more where no safe cut is near)."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    chunks, lo = [], 0
    while lo < layout.total or not chunks:
        hi = _next_cut(layout, lo + chunk_bytes - 1) if lo + chunk_bytes < layout.total else layout.total
        chunks.append(layout.parts(lo, hi))
        lo = hi
    return chunks


# --- reading a chunk back as text ----------------------------------------------------------------------------------
def _newlines(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in data else data


def _part_text(paths: Sequence[Path], part: Part) -> str:
    """The text of a part as ``read_text`` gives it (UTF-8, universal newlines); ``UnicodeDecodeError`` if not UTF-8."""
    text = _read_part(paths, part).decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _chunk_text(paths: Sequence[Path], chunk: Chunk) -> str:
    return "".join(_part_text(paths, p) + ("\n" if p.sep else "") for p in chunk)


def iter_corpus_text(paths: Sequence[Path], chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[str]:
    """The joined text of ``paths`` in pieces (each ends after a ``"\\n"`` but the last): e.g. to train a BPE."""
    layout = _Layout(paths)
    for chunk in _plan(layout, chunk_bytes):
        yield _chunk_text(layout.paths, chunk)


# --- pass 1: checks, character counts, fingerprint ----------------------------------------------------------------
@dataclass
class _PartStats:
    """What a part holds: characters (by code point), newlines, the first stray control character, a decode error."""

    file: int
    n_chars: int = 0
    n_newlines: int = 0
    counts: dict[int, int] = field(default_factory=dict)
    first_stray: tuple[int, int, int] | None = None  # (character offset, line, column) within the part
    decode_error: tuple[int, str] | None = None  # (byte offset in the file, reason)


def _scan_part(paths: Sequence[Path], part: Part) -> _PartStats:
    raw = _read_part(paths, part)
    stats = _PartStats(part.file)
    if raw.isascii():
        data = _newlines(raw)
        counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=1)
        text = None
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            stats.decode_error = (part.start + err.start, f"can't decode byte 0x{raw[err.start]:02x}: {err.reason}")
            return stats
        text = text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
        counts = np.bincount(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), minlength=1)
    present = np.flatnonzero(counts)
    stats.counts = dict(zip(present.tolist(), counts[present].tolist()))
    stats.n_chars = int(counts.sum())
    stats.n_newlines = stats.counts.get(10, 0)
    if any(c in stats.counts for c in _STRAY_CODES):
        text = text if text is not None else data.decode("ascii")
        offset = _STRAY_CONTROL.search(text).start()
        stats.first_stray = (offset, text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1)
    return stats


def _scan_chunk(state: _WorkerState, chunk: Chunk) -> list[_PartStats]:
    return [_scan_part(state.paths, part) for part in chunk]


def _hash_corpus(paths: Sequence[Path], block: int = 1 << 20) -> str:
    """sha256 of the joined text's UTF-8 (newlines translated), read sequentially: ``Corpus.fingerprint``."""
    digest = hashlib.sha256()
    for i, path in enumerate(paths):
        if i:
            digest.update(b"\n")
        carry = b""
        with open(path, "rb") as f:
            while data := f.read(block):
                data = carry + data
                carry = b"\r" if data.endswith(b"\r") else b""  # its "\n" may start the next block
                digest.update(_newlines(data[: len(data) - len(carry)]))
        digest.update(_newlines(carry))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CorpusScan:
    """What one streaming pass learned of a corpus (:func:`scan_corpus`).

    Attributes:
        paths: The files, in corpus order.
        stats: ``(size, mtime_ns)`` of each file when scanned (a change makes :func:`tokenize_to_memmap` refuse).
        fingerprint: sha256 (16 hex digits) of the joined text, equal to ``Corpus.fingerprint`` of that text.
        char_counts: Every character of the joined text and how often it occurs.
    """

    paths: tuple[Path, ...]
    stats: tuple[tuple[int, int], ...]
    fingerprint: str
    char_counts: dict[str, int]

    @property
    def chars(self) -> str:
        """The distinct characters, sorted (a char tokenizer's vocabulary)."""
        return "".join(sorted(self.char_counts))

    @property
    def num_chars(self) -> int:
        return sum(self.char_counts.values())


def scan_corpus(
    paths: Sequence[Path],
    workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    flag: str = TEXT_PATH_FLAG,
    root: Path | None = None,
) -> CorpusScan:
    """Check that every file is text, count its characters and hash the joined text, in one streaming pass.

    Raises one paragraph (:class:`CorruptDataError`/:class:`ConfigError`) naming the file and the fix for a
    file that is not UTF-8, is mostly control characters (a binary file), or holds stray C0 control
    characters; and for a corpus that is empty, only whitespace or a single repeated character.
    ``flag`` names the option that chose the files (in messages), ``root`` the folder or file given
    there (default: the one file, or the files' common folder).
    """
    layout = _Layout(paths)
    fingerprint: list[str] = []
    hasher = threading.Thread(target=lambda: fingerprint.append(_hash_corpus(layout.paths)), daemon=True)
    hasher.start()  # sha256 and file reads release the GIL: hashing overlaps the workers' scan
    per_file: list[list[_PartStats]] = [[] for _ in layout.paths]
    chunks = _plan(layout, chunk_bytes)
    for stats in track(_ordered(_scan_chunk, chunks, layout.paths, None, workers), "Scanning text", len(chunks)):
        for part_stats in stats:
            per_file[part_stats.file].append(part_stats)
    hasher.join()
    for path, parts in zip(layout.paths, per_file):
        _check_file(path, parts, flag)
    counts: dict[str, int] = {"\n": len(layout.paths) - 1} if len(layout.paths) > 1 else {}
    for parts in per_file:
        for part_stats in parts:
            for code, n in part_stats.counts.items():
                counts[chr(code)] = counts.get(chr(code), 0) + n
    if root is None:
        root = layout.paths[0] if len(layout.paths) == 1 else Path(os.path.commonpath(layout.paths))
    _check_enough_symbols(root, counts, flag)
    return CorpusScan(layout.paths, layout.stats, fingerprint[0], counts)


def _check_file(path: Path, parts: list[_PartStats], flag: str) -> None:
    """Raise the paragraph for a file that is not UTF-8, is mostly control characters, or holds stray ones."""
    errors = [p.decode_error for p in parts if p.decode_error is not None]
    if errors:
        offset, reason = min(errors)
        raise CorruptDataError(
            f"`{flag}`: {path} is not UTF-8 text ({reason} at byte offset {offset:,}). Fix: convert it to UTF-8 "
            f"(e.g. `iconv -t UTF-8`) or remove it from the folder."
        )
    n_chars = sum(p.n_chars for p in parts)
    controls = _summed(parts, _CONTROL_CODES)
    if sum(controls.values()) > 0.01 * n_chars:
        raise CorruptDataError(
            f"`{flag}`: {path} does not look like text: {sum(controls.values()):,} of its {n_chars:,} characters "
            f"are control characters ({_listed(controls)}), and a model trained on it would learn nothing useful. "
            f"Fix: point `--{flag}` at UTF-8 text (without this file)."
        )
    stray = _summed(parts, _STRAY_CODES)
    if stray:
        _raise_stray_controls(path, parts, stray, n_chars, flag)


def _summed(parts: list[_PartStats], codes: Iterable[int]) -> dict[str, int]:
    summed = {chr(c): sum(p.counts.get(c, 0) for p in parts) for c in codes}
    return {c: n for c, n in summed.items() if n}


def _listed(kinds: dict[str, int]) -> str:
    return ", ".join(f"{c!r} x{n:,}" for c, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:5])


def _raise_stray_controls(path: Path, parts: list[_PartStats], kinds: dict[str, int], n_chars: int, flag: str) -> None:
    """The paragraph for stray C0 controls: how many, the first one's place, and a ``tr`` command that removes them.

    A tokenizer would make each of them a token without a word: the model learns to emit NULs.
    """
    before_chars = before_lines = 0
    for part in parts:  # the first part holding one; parts begin at line starts
        if part.first_stray is not None:
            local_offset, local_line, column = part.first_stray
            offset, line = before_chars + local_offset, before_lines + local_line
            break
        before_chars, before_lines = before_chars + part.n_chars, before_lines + part.n_newlines
    octal = "".join(f"\\{ord(c):03o}" for c in sorted(kinds))
    cleaned = path.with_name(f"{path.stem}.clean{path.suffix}")
    raise CorruptDataError(
        f"`{flag}`: {path} holds {sum(kinds.values()):,} control characters ({_listed(kinds)}) among its "
        f"{n_chars:,} characters, the first at character offset {offset:,} (line {line}, column {column}); a model "
        "trained on it would learn them as tokens of their own. Fix: clean the file, e.g. "
        f"`tr -d '{octal}' < {shlex.quote(str(path))} > {shlex.quote(str(cleaned))}`, and train on the cleaned copy "
        f"(move the original out of a `{flag.rsplit('.', 1)[-1]}` folder)."
    )


def _check_enough_symbols(root: Path, counts: dict[str, int], flag: str, min_symbols: int = 2) -> None:
    """Refuse a corpus that is empty, only whitespace, or has fewer than ``min_symbols`` distinct characters."""
    n_chars = sum(counts.values())
    if all(c.isspace() for c in counts):
        what = "is empty (0 characters)" if not n_chars else f"holds only whitespace ({n_chars:,} characters)"
        raise ConfigError(
            f"`{flag}` {root} {what}: there is no text to learn. "
            f"Fix: point `--{flag}` at a UTF-8 text file (or folder of them) with real text."
        )
    if len(counts) < min_symbols:
        raise ConfigError(
            f"`{flag}` {root} has {len(counts)} distinct character ({next(iter(counts))!r}, {n_chars:,} times): "
            f"a vocabulary of {len(counts)} leaves nothing to predict (at least {min_symbols} are needed). "
            f"Fix: point `--{flag}` at real text."
        )


def check_char_coverage(scan: CorpusScan, tokenizer: Tokenizer) -> None:
    """Raise one paragraph naming the characters of the corpus that a given character tokenizer lacks.

    A tokenizer built from the corpus has them all; one from ``tokenizer_path`` (a fine-tune with
    the pre-trained vocabulary) may not, and silently mapping them to other ids would change the text.
    """
    if not isinstance(tokenizer, CharTokenizer):
        return
    unknown = sorted(set(scan.char_counts) - tokenizer.stoi.keys())
    if unknown:
        listed = ", ".join(f"{c!r} ({scan.char_counts[c]} times)" for c in unknown[:20])
        raise ConfigError(
            f"The text has {len(unknown)} character(s) that the character tokenizer of `data.init_args.tokenizer_path` "
            f"({tokenizer.vocab_size} symbols) never saw: {listed}{', ...' if len(unknown) > 20 else ''}. Remove or "
            "replace them in the text, or use a tokenizer whose corpus has them."
        )


# --- pass 2: ids ---------------------------------------------------------------------------------------------------
def encode_text(text: str, tokenizer: Tokenizer) -> np.ndarray:
    """All token ids of ``text`` (in memory) as :func:`token_dtype`; what each chunk of a corpus goes through.

    Char: code points -> ids through a lookup table. Byte-level BPE: paragraph by paragraph (split at
    ``"\\n\\n"``, parallel in Rust). Others (tiktoken): ``tokenizer.encode`` of the whole text.
    """
    dtype = token_dtype(tokenizer.vocab_size)
    if isinstance(tokenizer, CharTokenizer):
        return _char_ids(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), tokenizer).astype(dtype)
    if isinstance(tokenizer, ByteLevelBPETokenizer):
        paragraphs = text.split("\n\n")
        pieces = [p + "\n\n" for p in paragraphs[:-1]] + [paragraphs[-1]]
        return np.concatenate(
            [np.zeros(0, dtype)] + [np.asarray(ids, dtype) for ids in _bpe_batches(pieces, tokenizer)]
        )
    return np.asarray(tokenizer.encode(text), dtype=dtype)


def _bpe_batches(pieces: list[str], tokenizer: ByteLevelBPETokenizer) -> Iterator[list[int]]:
    """The ids of ``pieces`` concatenated, encoded ``_BPE_BATCH_CHARS`` of text at a time (bounded memory)."""
    batch: list[str] = []
    size = 0
    for piece in pieces + [""]:
        if (size >= _BPE_BATCH_CHARS or not piece) and batch:
            yield [i for ids in tokenizer.encode_batch(batch) for i in ids]
            batch, size = [], 0
        if piece:
            batch.append(piece)
            size += len(piece)


def _char_ids(codes: np.ndarray, tokenizer: CharTokenizer) -> np.ndarray:
    """Ids (int32) of code points ``codes`` (uint8 or uint32); an unknown character raises (the corpus changed)."""
    table = _char_table(tokenizer)
    ids = table[codes if codes.dtype == np.uint8 else np.minimum(codes, np.uint32(len(table) - 1))]
    if len(ids) and ids.min() < 0:
        unknown = sorted({chr(c) for c in codes[ids < 0].tolist()})
        raise CorruptDataError(
            f"The text holds characters the character tokenizer lacks ({unknown[:20]!r}): a file changed after it "
            "was scanned. Run again (it is scanned anew)."
        )
    return ids


_TABLES: dict[str, np.ndarray] = {}


def _char_table(tokenizer: CharTokenizer) -> np.ndarray:
    """code point -> id (-1: not in the vocabulary), past the largest code point and 255; cached per tokenizer."""
    table = _TABLES.get(tokenizer.fingerprint)
    if table is None:
        table = np.full(max(max(map(ord, tokenizer.chars)) + 2, 257), -1, dtype=np.int32)
        for char, idx in tokenizer.stoi.items():
            table[ord(char)] = idx
        _TABLES[tokenizer.fingerprint] = table
    return table


def _encode_chunk(state: _WorkerState, chunk: Chunk) -> np.ndarray:
    """The ids of one chunk; pure ASCII text goes to a char tokenizer as bytes (no decoding)."""
    tokenizer = state.tokenizer
    if isinstance(tokenizer, CharTokenizer):
        raws = [_read_part(state.paths, p) for p in chunk]
        if all(raw.isascii() for raw in raws):
            data = b"".join(_newlines(raw) + (b"\n" if p.sep else b"") for raw, p in zip(raws, chunk))
            codes = np.frombuffer(data, dtype=np.uint8)
            return _char_ids(codes, tokenizer).astype(token_dtype(tokenizer.vocab_size))
    return encode_text(_chunk_text(state.paths, chunk), tokenizer)


@dataclass(frozen=True)
class TokenFile:
    """A token id file written by :func:`tokenize_to_memmap`: a 1-D ``.npy`` of ``num_tokens`` ids of ``dtype``."""

    path: Path
    num_tokens: int
    dtype: np.dtype

    def open(self) -> np.memmap:
        return open_token_file(self.path)


def tokenize_to_memmap(
    paths: Sequence[Path],
    tokenizer: Tokenizer,
    out_path: Path,
    workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    scan: CorpusScan | None = None,
) -> TokenFile:
    """Encode the joined text of ``paths`` with ``tokenizer`` into the ``.npy`` file ``out_path``, in chunks.

    The ids equal ``encode_text(Corpus text, tokenizer)`` exactly. ``workers`` processes (default:
    :func:`default_workers`; ``<= 1``: in this process) encode chunks of ``chunk_bytes``; this process
    appends their ids in order, so peak memory is about ``(2 * workers + 1)`` chunks, whatever the
    corpus size. The dtype is :func:`token_dtype` of the vocabulary. ``out_path`` appears whole or not
    at all (atomic rename); an existing file is replaced. ``scan``: the :func:`scan_corpus` of these
    files, if already done (else it runs here: bad input is refused before anything is written).
    A character tokenizer that lacks a character of the corpus is refused (:func:`check_char_coverage`).
    """
    scan = scan if scan is not None else scan_corpus(paths, workers, chunk_bytes)
    check_char_coverage(scan, tokenizer)
    layout = _Layout(paths)
    _check_unchanged(scan, layout.paths)
    dtype = token_dtype(tokenizer.vocab_size)
    chunks = _plan(layout, chunk_bytes)
    num_tokens = 0
    with atomic_write(out_path) as f:
        header_size = _write_npy_header(f, dtype, 0)
        for ids in track(_ordered(_encode_chunk, chunks, layout.paths, tokenizer, workers), "Tokenizing", len(chunks)):
            f.write(memoryview(np.ascontiguousarray(ids, dtype=dtype)).cast("B"))
            num_tokens += len(ids)
        _check_unchanged(scan, layout.paths)
        f.seek(0)
        if _write_npy_header(f, dtype, num_tokens) != header_size:
            raise RuntimeError("the .npy header changed size")  # numpy pads it for in-place growth
        f.seek(0, os.SEEK_END)
    return TokenFile(Path(out_path), num_tokens, dtype)


def _write_npy_header(f: Any, dtype: np.dtype, length: int) -> int:
    """Write the ``.npy`` header of a 1-D array of ``length`` ids at the file position; its size in bytes."""
    start = f.tell()
    np.lib.format.write_array_header_1_0(f, {"descr": dtype.str, "fortran_order": False, "shape": (length,)})
    return f.tell() - start


def _check_unchanged(scan: CorpusScan, paths: Sequence[Path]) -> None:
    if tuple(Path(p) for p in paths) != scan.paths:
        raise ValueError("scan is of other files than paths")
    changed = [str(p) for p, stat in zip(scan.paths, scan.stats) if _stat(p) != stat]
    if changed:
        raise CorruptDataError(
            f"{', '.join(changed[:5])} changed while it was tokenized (size or modification time). Fix: leave the "
            "corpus alone while it is tokenized, and run again."
        )


def open_token_file(path: Path) -> np.memmap:
    """The ids of a token file (:func:`tokenize_to_memmap`), memory-mapped read-only (nothing is loaded)."""
    try:
        ids = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:  # a truncated file cannot be mapped
        raise CorruptDataError(
            f"{path} is not a complete token file ({err}). Fix: delete it; it is written again from the corpus."
        ) from None
    if ids.ndim != 1 or ids.dtype.kind != "u":
        raise CorruptDataError(f"{path} holds {ids.dtype} of shape {ids.shape}, not token ids. Fix: delete it.")
    return ids


# --- worker processes ------------------------------------------------------------------------------------------------
@dataclass
class _WorkerState:
    paths: tuple[Path, ...]
    tokenizer: Tokenizer | None


_STATE: _WorkerState | None = None


def _init_worker(paths: tuple[Path, ...], tokenizer: dict[str, Any] | None) -> None:
    global _STATE
    _STATE = _WorkerState(paths, tokenizer_from_dict(tokenizer) if tokenizer is not None else None)


def _in_worker(task: Callable[[_WorkerState, Chunk], Any], chunk: Chunk) -> Any:
    return task(_STATE, chunk)


def _ordered(
    task: Callable[[_WorkerState, Chunk], Any],
    chunks: list[Chunk],
    paths: tuple[Path, ...],
    tokenizer: Tokenizer | None,
    workers: int | None,
) -> Iterator[Any]:
    """``task(state, chunk)`` of every chunk, in order: in ``workers`` spawned processes, at most 2 per worker in flight.

    Up to ``2 * workers`` chunks run in this process: starting the processes (~0.3 s each) would cost more.
    """
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(chunks) <= 2 * workers:
        state = _WorkerState(paths, tokenizer)
        yield from (task(state, chunk) for chunk in chunks)
        return
    initargs = (paths, tokenizer.to_dict() if tokenizer is not None else None)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: not a copy of a trainer's memory
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=initargs) as pool:
        todo = iter(chunks)
        pending: deque[Future] = deque(pool.submit(_in_worker, task, c) for c in islice(todo, 2 * workers))
        try:
            while pending:
                result = pending.popleft().result()
                pending.extend(pool.submit(_in_worker, task, c) for c in islice(todo, 1))
                yield result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
