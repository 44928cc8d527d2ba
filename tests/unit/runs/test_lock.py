"""The run dir's lock: a second writer waits for a live holder only when asked (``--run.lock_wait_s``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lightning_gen.runs.lock import LOCK_NAME, acquire_run_lock


def test_lock_waits_for_a_live_holder_only_when_asked(tmp_path: Path) -> None:
    """``--run.lock_wait_s`` (a retried sweep trial): the second writer waits for the first to release."""
    import threading

    from lightning_gen.runs.lock import RunLockedError

    first = acquire_run_lock(tmp_path / "run")
    with pytest.raises(RunLockedError, match=f"PID {os.getpid()} on host"):
        acquire_run_lock(tmp_path / "run")  # flock is per open file: this process conflicts with itself
    timer = threading.Timer(0.5, first.release)
    timer.start()
    second = acquire_run_lock(tmp_path / "run", wait_s=30)
    timer.join()
    assert first._fd is None and (tmp_path / "run" / LOCK_NAME).is_file()
    second.release()
    assert not (tmp_path / "run" / LOCK_NAME).exists()
