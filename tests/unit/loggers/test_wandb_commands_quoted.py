"""Every printed ``wandb sync`` command shell-quotes its paths: a run folder with a space stays one word."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from lightning_gen.loggers.wandb import WandbLogger, wandb_resume_kwargs, wandb_sync_command


def _command(printed: str) -> str:
    (command,) = re.findall(r"`(wandb sync [^`]*)`", printed)
    return command


@pytest.fixture
def no_wandb_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))


def test_sync_command_quotes_each_path_and_keeps_a_glob_live() -> None:
    assert wandb_sync_command(["/runs/plain"]) == "wandb sync /runs/plain"
    command = wandb_sync_command(["/runs/my exp/r1/wandb"], run_id="r1", project="my project", glob="/offline-run-*")
    assert command == "wandb sync --id r1 -p 'my project' '/runs/my exp/r1/wandb'/offline-run-*"
    assert shlex.split(command) == [
        "wandb",
        "sync",
        "--id",
        "r1",
        "-p",
        "my project",
        "/runs/my exp/r1/wandb/offline-run-*",
    ]


def test_offline_logger_prints_a_sync_command_with_the_quoted_run_dir(
    no_wandb_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_dir = tmp_path / "my runs" / "exp 1"
    save_dir.mkdir(parents=True)
    logger = WandbLogger(project="t", save_dir=str(save_dir), id="abc123")
    logger.log_metrics({"x": 1.0}, step=0)
    logger.experiment.finish()
    words = shlex.split(_command(capsys.readouterr().out))
    assert words[:2] == ["wandb", "sync"] and len(words) == 3
    assert Path(words[2]).is_dir() and Path(words[2]).parent == save_dir / "wandb"


def test_offline_resume_prints_segments_glob_that_the_shell_expands(
    no_wandb_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "my runs" / "r 1"
    segments = [run_dir / "wandb" / f"offline-run-2024010{i}_000000-r1" for i in (1, 2)]
    for segment in segments:
        segment.mkdir(parents=True)
    assert wandb_resume_kwargs("offline", "p", "r1", log_step=3, run_dir=run_dir) == {}
    command = _command(capsys.readouterr().out)
    assert command.startswith("wandb sync --id r1 -p p ")
    expanded = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {command.removeprefix('wandb sync --id r1 -p p ')}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert expanded == [str(s) for s in segments]


def test_offline_resume_without_a_run_dir_keeps_the_placeholder(
    no_wandb_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    wandb_resume_kwargs("offline", "my project", "r1", log_step=None)
    assert _command(capsys.readouterr().out) == "wandb sync --id r1 -p 'my project' <run dir>/wandb/offline-run-*"
