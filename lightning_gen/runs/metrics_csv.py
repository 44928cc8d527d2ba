"""A run's metrics.csv read as far as it is whole: a crash can leave its last line cut short.

Plain ``csv`` (no Lightning), so ``compare`` reads runs without importing the Trainer.
"""

from __future__ import annotations

import csv


def row_step(row: dict[str, str]) -> int | None:
    """The row's ``step`` as an int, ``None`` when it is missing or not a number."""
    try:
        return int(float(row.get("step") or "nan"))
    except ValueError:
        return None


def read_complete_rows(path: str) -> tuple[list[str], list[dict[str, str]], int]:
    """Header, the complete rows of a metrics CSV, and how many rows were left out as cut.

    A line cut short by a crash either lacks fields or, cut inside its last value, the line end.
    """
    with open(path, newline="") as f:
        text = f.read()
    cut = 0
    if text.count("\n") and not text.endswith("\n"):
        text, cut = text[: text.rfind("\n") + 1], 1  # the last line was being written when the process died
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = list(reader.fieldnames or [])
    rows = list(reader)
    complete = [row for row in rows if None not in row.values() and None not in row and row_step(row) is not None]
    return header, complete, cut + len(rows) - len(complete)
