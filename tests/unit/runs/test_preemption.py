"""The preemption watchdog's line when a run does not stop within the grace period."""

from __future__ import annotations

import signal
from pathlib import Path


def test_stuck_message_says_whether_there_is_a_checkpoint_to_resume_from(tmp_path: Path) -> None:
    """A 5-minute batch (the GPU GPT recipe in emulated bf16 on a CPU) outlives the grace: the line must not
    promise a `--ckpt_path last` that does not exist, and must name the option that avoids the loss."""
    from lightning_gen.runs.preemption import stuck_message

    none_yet = stuck_message(signal.SIGTERM, 60, str(tmp_path / "last.ckpt"))
    assert "status 143" in none_yet and "--ckpt_path last" not in none_yet
    assert f"this run has no {tmp_path / 'last.ckpt'} yet" in none_yet and "`--run.stop_grace_s` above it" in none_yet
    (tmp_path / "last.ckpt").write_bytes(b"x")
    saved = stuck_message(signal.SIGINT, 2, str(tmp_path / "last.ckpt"))
    assert saved.endswith(
        f"status 130; resume with `--ckpt_path last` ({tmp_path / 'last.ckpt'}, saved before the signal)."
    )
