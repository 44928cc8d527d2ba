"""The atomic checkpoint IO: non-finite weights are refused and a full disk is one paragraph, the old file kept."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from gen_common.errors import LightningGenError
from lightning_gen.runs.checkpoints import AtomicCheckpointIO


def test_checkpoint_io_refuses_nonfinite_weights_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()
    with pytest.raises(
        LightningGenError, match=r"Refusing to save .*last.ckpt: the model's weights hold 2 NaN or infinite values"
    ):
        io.save_checkpoint({"state_dict": {"w": torch.tensor([1.0, float("nan"), float("inf")])}}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
def test_checkpoint_io_full_disk_is_one_paragraph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()

    def full(obj: object, f: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(torch, "save", full)
    what = "the disk is full" if code == errno.ENOSPC else "the disk quota is exceeded"
    with pytest.raises(
        LightningGenError,
        match=rf"Could not save checkpoint .*last.ckpt: {what} \(.* free in .*\); the partial file was removed and "
        rf"the previous last.ckpt is intact",
    ):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
