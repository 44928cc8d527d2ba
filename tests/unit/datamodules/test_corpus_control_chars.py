"""A text corpus with stray control characters (NUL among the text) is refused in one paragraph with the fix."""

from __future__ import annotations

import random
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from datamodules.text import TextDataModule, text_path_corpus
from gen_common.errors import CorruptDataError


def _prose(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler"]
    lines: list[str] = []
    while sum(map(len, lines)) < n:
        lines.append(" ".join(rng.choice(words) for _ in range(9)).capitalize() + ".\n")
    return "".join(lines)[:n]


def _with_nuls(n_chars: int, n_nul: int) -> tuple[str, int]:
    """Prose of ``n_chars`` characters with ``n_nul`` of them NUL, spread through it; the first NUL's offset."""
    chars = list(_prose(n_chars))
    offsets = sorted(random.Random(1).sample(range(1000, n_chars), n_nul))
    for i in offsets:
        chars[i] = "\0"
    return "".join(chars), offsets[0]


def test_nul_bytes_among_text_are_refused_naming_file_count_offset_and_fix(tmp_path: Path) -> None:
    text, first = _with_nuls(411_000, 410)  # the report: 410 NULs in 411k characters
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CorruptDataError) as info:
        text_path_corpus(path)
    message = str(info.value)
    line = text.count("\n", 0, first) + 1
    assert "\n" not in message  # one paragraph
    assert str(path) in message
    assert "410 control characters ('\\x00' x410) among its 411,000 characters" in message
    assert f"the first at character offset {first:,} (line {line}," in message
    assert f"`tr -d '\\000' < {path} > {tmp_path / 'corpus.clean.txt'}`" in message


def test_the_printed_fix_cleans_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "my texts"  # a space: the printed command quotes the paths
    folder.mkdir()
    path = folder / "a.txt"
    path.write_text(_prose(5000)[:2000] + "\0\x1b[0m\x1f" + _prose(3000, seed=2) + "\t\r\n\f\v", encoding="utf-8")
    with pytest.raises(CorruptDataError) as info:
        text_path_corpus(folder)
    message = str(info.value)
    assert "3 control characters" in message and "'\\x1b' x1" in message
    assert "the first at character offset 2,000" in message
    command = re.search(r"`(tr -d [^`]*)`", message).group(1)
    assert shlex.split(command)[4] == str(path)  # one word, though the path holds a space
    subprocess.run(command, shell=True, check=True)
    path.unlink()  # "move the original out of a `text_path` folder"
    corpus = text_path_corpus(folder)
    assert "\0" not in corpus.text and "\x1b" not in corpus.text
    assert corpus.text.endswith("\t\n\f\v")  # tabs, line breaks (read_text folds \r\n), form and vertical feeds


@pytest.mark.parametrize("char", ["\x01", "\x08", "\x0e", "\x1c", "\x1f"])
def test_every_c0_control_but_whitespace_is_refused(tmp_path: Path, char: str) -> None:
    path = tmp_path / "t.txt"
    path.write_text(_prose(3000) + char, encoding="utf-8")
    with pytest.raises(CorruptDataError, match=re.escape(f"1 control characters ({char!r} x1)")):
        text_path_corpus(path)


def test_clean_text_with_whitespace_controls_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("a\tb\r\nc\fd\ve\n" * 50, encoding="utf-8")
    assert text_path_corpus(path).text == path.read_text(encoding="utf-8")


def test_a_binary_file_keeps_its_own_message(tmp_path: Path) -> None:
    path = tmp_path / "zeros.txt"
    path.write_bytes(b"\0" * 5000)
    with pytest.raises(CorruptDataError, match=r"does not look like text: 5,000 of its 5,000 characters"):
        text_path_corpus(path)


def test_the_datamodule_refuses_before_any_cache(tmp_path: Path) -> None:
    text, _ = _with_nuls(20_000, 5)
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    data = TextDataModule(text_path=str(path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(CorruptDataError, match="5 control characters"):
        data.prepare_data()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
