"""Test fixtures: CPU only, offline W&B, every test in its own temporary working directory; the fork server of killed runs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import forked, ops


@pytest.fixture(autouse=True)
def _isolated_run_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Runs land in tmp_path; W&B is offline and quiet; no run id leaks between tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.delenv("LIGHTNING_GEN_RUN_ID", raising=False)
    # W&B exports its service socket; subprocesses would share this process's service (and its runs).
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:  # Lightning's WandbLogger reuses a live run: close it
        wandb.finish()  # W&B 0.31: no `quiet` argument (WANDB_SILENT above keeps it quiet)


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for ``lightning-gen`` subprocesses (``tests.helpers.ops.cli_env``)."""
    return ops.cli_env()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one torch thread (two threads on a busy 2-core machine run ~20x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fork_server() -> None:
    """The fork server that starts killed and signalled runs in a process of their own (``tests.helpers.forked``)."""
    forked.warm_up()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the fork server right after collection when a selected test needs it: its imports overlap the tests before."""
    if any("fork_server" in getattr(item, "fixturenames", ()) for item in session.items):
        forked.warm_up()
