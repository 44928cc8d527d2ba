"""Atomic file writes, shared by ``datamodules`` and ``lightning_gen``.

A reader (another process, a resumed run) sees either the old file or the whole new one: the
data goes to a temp file in the target folder, is flushed and fsynced, then renamed over the
target (``os.replace``, atomic on POSIX). On any error the temp file is removed and the old
file is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", exclusive: bool = False, **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """``with atomic_write(path) as f: torch.save(obj, f)``; ``mode`` ``"w"`` for text (``newline=""`` for CSV).

    ``exclusive``: never replace an existing ``path`` (``FileExistsError``, also when another process
    created it meanwhile): the finished file is hard-linked onto the name, which fails if it exists.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are ordinary files
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
