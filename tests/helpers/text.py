"""A small text corpus for the text-data tests, and a folder of it (``.txt`` and ``.md``)."""

from __future__ import annotations

from pathlib import Path

SAMPLE = "ROMEO:\nBut, soft! what light through yonder window breaks?\n\nJULIET:\nAy me!  — ‘quoth’ she\t\n"
CORPUS = (SAMPLE + "First Citizen:\nBefore we proceed any further, hear me speak.\n\n") * 40


def write_corpus(folder: Path, text: str = CORPUS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text(text, encoding="utf-8")
    (folder / "b.md").write_text(text[::-1], encoding="utf-8")
    return folder
