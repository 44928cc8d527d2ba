"""Rich progress for long work outside the Trainer (feature extraction, sweeps): shown only in an
interactive terminal on rank 0, silent in CI, pipes and other ranks (the Trainer's own bar is
chosen by ``run.progress`` in the CLI, with the same rule)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from gen_common.ranks import global_rank

T = TypeVar("T")


def interactive() -> bool:
    """True in a terminal that a person watches: a tty, not CI, rank 0."""
    return sys.stderr.isatty() and not os.environ.get("CI") and global_rank() == 0


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """``items`` unchanged, with a transient rich bar when :func:`interactive`."""
    if not interactive():
        yield from items
        return
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, transient=True, console=None)
