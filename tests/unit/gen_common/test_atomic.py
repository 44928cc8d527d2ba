"""The atomic write keeps the old file when the writer fails mid-write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gen_common.atomic import atomic_write


def test_atomic_write_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.json"
    with atomic_write(path, "w") as f:
        f.write("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as f:
        f.write("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and os.listdir(path.parent) == ["f.json"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"
