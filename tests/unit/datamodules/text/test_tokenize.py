"""Chunked tokenization: the ids, characters and fingerprint equal the in-memory path (the one before streaming)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from datamodules.text import ByteLevelBPETokenizer, CharTokenizer, TextDataModule, shakespeare_corpus, text_path_corpus
from datamodules.text.tokenize import (
    iter_corpus_text,
    open_token_file,
    scan_corpus,
    tokenize_to_memmap,
)
from datamodules.text.tokenizers import TiktokenTokenizer, Tokenizer
from gen_common.errors import ConfigError, CorruptDataError

PLAYS = ["the-tempest", "macbeth"]


def reference_ids(text: str, tokenizer: Tokenizer) -> np.ndarray:
    """``encode_corpus`` as it was before chunking (commit 7008c80): the whole text, in memory."""
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
    if isinstance(tokenizer, CharTokenizer):
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        table = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
        for char, idx in tokenizer.stoi.items():
            if ord(char) < len(table):
                table[ord(char)] = idx
        return table[codes].astype(dtype)
    if isinstance(tokenizer, ByteLevelBPETokenizer):
        paragraphs = text.split("\n\n")
        pieces = [p + "\n\n" for p in paragraphs[:-1]] + [paragraphs[-1]]
        return np.fromiter((i for ids in tokenizer.encode_batch(pieces) for i in ids), dtype=dtype)
    return np.asarray(tokenizer.encode(text), dtype=dtype)


def tricky_files(folder: Path) -> list[Path]:
    """Files that join into a text with CRLF, lone CR, an empty file, no final newline, emoji and accents."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = [
        "a\r\nb\rc\n\n\nDéjà vu 😀 f\n",
        "",
        "x\ny\n\n\n\nz",
        "\r",
        "ROMEO:\nBut, soft!\n  indented\n\n" * 40 + "end",
        "Καλημέρα κόσμε\n日本語のテキスト\n中文\n" * 30,
    ]
    paths = [folder / f"{i}.txt" for i in range(len(texts))]
    for path, text in zip(paths, texts):
        path.write_bytes(text.encode("utf-8"))
    return paths


def test_shakespeare_char_ids_equal_the_in_memory_path(tmp_path: Path) -> None:
    dm = TextDataModule(cache_dir=str(tmp_path), tokenize_workers=2)  # 5 MB: two 4 MiB chunks, in this process
    corpus = shakespeare_corpus()
    tokenizer = CharTokenizer.from_text(corpus.text)
    expected = reference_ids(corpus.text, tokenizer)
    assert dm.scan.fingerprint == corpus.fingerprint and dm.scan.num_chars == len(corpus.text) == 4_986_943
    assert dm.tokenizer.to_dict() == tokenizer.to_dict()
    assert isinstance(dm.tokens, np.memmap) and dm.tokens.dtype == np.uint16
    np.testing.assert_array_equal(dm.tokens, expected)
    assert dm.dataset_id == f"shakespeare-{corpus.fingerprint}-char-{tokenizer.fingerprint}"
    small = tokenize_to_memmap(dm.scan.paths, tokenizer, tmp_path / "small.npy", workers=2, chunk_bytes=500_000)
    np.testing.assert_array_equal(small.open(), expected)  # 10 chunks, 2 processes


def test_bpe_ids_and_vocabulary_equal_the_in_memory_path(tmp_path: Path) -> None:
    dm = TextDataModule(
        plays=PLAYS, tokenizer="bpe", bpe_encoding=None, bpe_vocab_size=400, cache_dir=str(tmp_path / "dm")
    )
    text = shakespeare_corpus(PLAYS).text
    trained = ByteLevelBPETokenizer.train(text, 400)  # on the whole string, as before
    assert dm.tokenizer.to_dict() == trained.to_dict()  # trained from streamed lines
    np.testing.assert_array_equal(dm.tokens, reference_ids(text, trained))
    ids = tokenize_to_memmap(dm.scan.paths, trained, tmp_path / "c.npy", workers=2, chunk_bytes=20_000)
    np.testing.assert_array_equal(ids.open(), reference_ids(text, trained))  # ~10 cuts inside paragraphs


def test_tiktoken_gpt2_pattern_gives_the_whole_text_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real tiktoken Encoding with GPT-2's pre-token pattern (its merge files need the network: a few merges here)."""
    import tiktoken
    from tiktoken_ext.openai_public import r50k_pat_str

    merges = [b"\n\n", b" \n", b"th", b"the", b" the", b"in", b"an", b"er", b"ou", b"\n\n\n"]
    ranks = {bytes([i]): i for i in range(256)} | {m: 256 + i for i, m in enumerate(merges)}
    encoding = tiktoken.Encoding("gpt2-like", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={})
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: encoding)
    tokenizer = TiktokenTokenizer("gpt2-like")
    paths = tricky_files(tmp_path / "t")
    text = "\n".join(p.read_text(encoding="utf-8") for p in paths)
    for chunk_bytes in (7, 300, 1 << 20):
        out = tokenize_to_memmap(paths, tokenizer, tmp_path / f"{chunk_bytes}.npy", workers=0, chunk_bytes=chunk_bytes)
        np.testing.assert_array_equal(out.open(), encoding.encode_ordinary(text))


@pytest.mark.parametrize("chunk_bytes", [1, 5, 64, 1 << 20])
def test_cuts_keep_crlf_files_and_characters(tmp_path: Path, chunk_bytes: int) -> None:
    paths = tricky_files(tmp_path / "t")
    text = "\n".join(p.read_text(encoding="utf-8") for p in paths)  # read_text folds \r\n and \r
    scan = scan_corpus(paths, workers=0, chunk_bytes=chunk_bytes)
    assert (
        scan.fingerprint
        == hashlib.sha256(text.encode()).hexdigest()[:16]
        == text_path_corpus(tmp_path / "t").fingerprint
    )
    assert scan.chars == "".join(sorted(set(text))) and scan.num_chars == len(text)
    assert "".join(iter_corpus_text(paths, chunk_bytes)) == text
    char = CharTokenizer(scan.chars)
    bpe = ByteLevelBPETokenizer.train(text, 300)
    for tokenizer in (char, bpe):
        out = tokenize_to_memmap(paths, tokenizer, tmp_path / "ids.npy", workers=0, chunk_bytes=chunk_bytes, scan=scan)
        np.testing.assert_array_equal(open_token_file(out.path), reference_ids(text, tokenizer))
        assert tokenizer.decode(out.open()) == text


def test_a_large_vocabulary_writes_uint32(tmp_path: Path) -> None:
    path = tmp_path / "wide.txt"
    text = "".join(chr(0x20000 + i) for i in range(66_000)) + "\nabc"  # CJK extension planes: 66,005 symbols
    path.write_text(text, encoding="utf-8")
    scan = scan_corpus([path], workers=0)
    tokenizer = CharTokenizer(scan.chars)
    out = tokenize_to_memmap([path], tokenizer, tmp_path / "ids.npy", workers=0, scan=scan)
    assert tokenizer.vocab_size > 65_536 and out.dtype == np.uint32
    np.testing.assert_array_equal(out.open(), reference_ids(text, tokenizer))


def test_invalid_utf8_is_refused_naming_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    good = "Some text, line after line.\n" * 10_000  # 280,000 bytes: the bad byte is in a later chunk
    path.write_bytes(good.encode() + b"\xff\xfe binary \x00\x01" + good.encode())
    out = tmp_path / "ids.npy"
    with pytest.raises(CorruptDataError) as info:
        tokenize_to_memmap([path], CharTokenizer("abc"), out, workers=2, chunk_bytes=50_000)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "is not UTF-8 text (can't decode byte 0xff: invalid start byte at byte offset 280,000)" in message
    assert "Fix: convert it to UTF-8 (e.g. `iconv -t UTF-8`)" in message
    assert list(tmp_path.iterdir()) == [path]  # nothing written


def test_stray_controls_in_a_later_chunk_are_placed_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    text = "To be, or not to be.\n" * 5_000 + "that is\x1b the question\x00\n" + "Whether 'tis nobler.\n" * 100
    path.write_text(text, encoding="utf-8")
    first = text.index("\x1b")
    with pytest.raises(CorruptDataError) as info:
        scan_corpus([path], workers=0, chunk_bytes=10_000)
    assert (
        f"2 control characters ('\\x00' x1, '\\x1b' x1) among its {len(text):,} characters, the first at character "
        f"offset {first:,} (line 5001, column 8)"
    ) in str(info.value)


def test_a_char_tokenizer_lacking_characters_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("abc abc\nXYZ\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"3 character\(s\) .* \(5 symbols\) never saw: 'X' \(1 times\), 'Y'"):
        tokenize_to_memmap([path], CharTokenizer("abc \n"), tmp_path / "ids.npy", workers=0)
    assert not (tmp_path / "ids.npy").exists()


def test_a_file_changed_after_its_scan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("abc\n" * 100, encoding="utf-8")
    scan = scan_corpus([path], workers=0)
    path.write_text("abc\n" * 101, encoding="utf-8")
    with pytest.raises(CorruptDataError, match="changed while it was tokenized"):
        tokenize_to_memmap([path], CharTokenizer(scan.chars), tmp_path / "ids.npy", workers=0, scan=scan)
    assert not (tmp_path / "ids.npy").exists()


def test_a_truncated_token_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("abcd\n" * 1000, encoding="utf-8")
    out = tokenize_to_memmap([path], CharTokenizer("abcd\n"), tmp_path / "ids.npy", workers=0)
    assert out.num_tokens == 5000 and len(out.open()) == 5000
    out.path.write_bytes(out.path.read_bytes()[:5000])
    with pytest.raises(CorruptDataError, match="is not a complete token file .* Fix: delete it"):
        open_token_file(out.path)
