"""Fault injection: kill -9 / SIGTERM a training run, resume with --ckpt_path last, compare with an unbroken run.

Each run is a tiny VAE on synthetic blobs (2 epochs x 8 steps, ``last.ckpt`` every 2 steps) in a
subprocess, so a kill lands at a random point of a real ``lightning-gen fit``.
"""
from __future__ import annotations

import random
import shutil
import signal
from pathlib import Path

import pytest
import torch

from ops_utils import (
    assert_bitwise_equal,
    logged_steps,
    run_cli,
    start_and_signal,
    state_dict,
    train_rows,
    wandb_segments,
    write_tiny_config,
)


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same run, never interrupted. Returns its run dir."""
    cwd = tmp_path_factory.mktemp("unbroken")
    config = write_tiny_config(cwd)
    proc = run_cli(["fit", "--config", str(config), "--run.id", "ref"], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "runs" / "tiny" / "ref"


def _kill_and_resume(tmp_path: Path, kill_step: int, sig: int) -> tuple[Path, object]:
    config = write_tiny_config(tmp_path)
    killed = start_and_signal(["fit", "--config", str(config)], tmp_path, "runs/tiny/*/metrics.csv", kill_step, sig)
    resumed = run_cli(["fit", "--config", str(config), "--ckpt_path", "last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run_dirs = list((tmp_path / "runs" / "tiny").iterdir())
    assert len(run_dirs) == 1, run_dirs  # the resume continued the same run dir
    return run_dirs[0], killed


def _assert_same_as_unbroken(run_dir: Path, unbroken: Path, check_wandb: bool = False) -> None:
    rows, ref_rows = train_rows(run_dir / "metrics.csv"), train_rows(unbroken / "metrics.csv")
    steps = logged_steps(rows)
    assert steps == sorted(set(steps)), steps  # strictly increasing, no duplicate
    assert rows == ref_rows  # every logged value, bit for bit (as printed by the CSV logger)
    assert_bitwise_equal(state_dict(run_dir / "checkpoints" / "last.ckpt"), state_dict(unbroken / "checkpoints" / "last.ckpt"))
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    ref = torch.load(unbroken / "checkpoints" / "last.ckpt", weights_only=False)
    for a, b in zip(ckpt["optimizer_states"][0]["state"].values(), ref["optimizer_states"][0]["state"].values()):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    # one W&B run: every offline segment carries the same run id (the run dir's name)
    segments = wandb_segments(run_dir)
    assert len(segments) == 2 and all(s.name.endswith(f"-{run_dir.name}") for s in segments), segments
    if check_wandb:
        first, second = (_wandb_train_rows(seg) for seg in segments)
        (ref_segment,) = wandb_segments(unbroken)
        ref = _wandb_train_rows(ref_segment)
        # the resumed segment continues trainer/global_step right after the checkpoint, to the end
        assert second and second == [r for r in ref if r[0] >= second[0][0]]
        # the killed segment holds what wandb-core had written before the kill (often nothing)
        assert first == ref[: len(first)]


def _wandb_train_rows(segment: Path) -> list[tuple[int, float]]:
    from lightning_gen.loggers.wandb import read_offline_history

    return [(int(r["trainer/global_step"]), r["train/loss"]) for r in read_offline_history(segment) if "train/loss" in r]


@pytest.mark.parametrize("seed", [1])
def test_kill9_at_random_step_then_resume_equals_unbroken(tmp_path: Path, unbroken: Path, seed: int) -> None:
    kill_step = random.Random(seed).randint(3, 13)  # of 16; checkpoints every 2 steps
    run_dir, killed = _kill_and_resume(tmp_path, kill_step, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    _assert_same_as_unbroken(run_dir, unbroken, check_wandb=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 8))
def test_kill9_many_seeds(tmp_path: Path, unbroken: Path, seed: int) -> None:
    kill_step = random.Random(seed).randint(1, 15)
    run_dir, _ = _kill_and_resume(tmp_path, kill_step, signal.SIGKILL)
    _assert_same_as_unbroken(run_dir, unbroken)


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)], ids=["SIGTERM", "SIGUSR1"])
def test_preemption_signal_saves_checkpoint_and_exits_cleanly_then_resumes(tmp_path: Path, unbroken: Path, sig: int) -> None:
    config = write_tiny_config(tmp_path)
    killed = start_and_signal(["fit", "--config", str(config), "--run.id", "pre"], tmp_path, "runs/tiny/*/metrics.csv", 5, sig)
    assert killed.returncode == 0, killed.stdout[-3000:]
    assert "preempted at step" in killed.stdout
    last = tmp_path / "runs" / "tiny" / "pre" / "checkpoints" / "last.ckpt"
    step = torch.load(last, weights_only=False)["global_step"]
    assert 5 <= step < 16  # saved at the batch after the signal, not at a 2-step boundary only
    assert not list(last.parent.glob(".tmp-*"))  # atomic write left no temp file
    resumed = run_cli(["fit", "--config", str(config), "--ckpt_path", str(last)], tmp_path)  # explicit path
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_as_unbroken(last.parent.parent, unbroken)


def _main_in_process(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from lightning_gen.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return int(exc.value.code or 0), err[-1] if err else ""  # the one-paragraph error is the last line


def _copy_run(unbroken: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "runs" / "tiny" / "old"
    shutil.copytree(unbroken, run_dir, ignore=shutil.ignore_patterns("wandb"))
    return run_dir


@pytest.mark.parametrize("explicit", [False, True])
def test_truncated_checkpoint_is_one_clear_error_and_nothing_is_written(tmp_path: Path, unbroken: Path, capsys: pytest.CaptureFixture, explicit: bool) -> None:
    config = write_tiny_config(tmp_path)
    run_dir = _copy_run(unbroken, tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    code, err = _main_in_process(["fit", "--config", str(config), "--ckpt_path", str(last) if explicit else "last"], capsys)
    assert code == 1 and "truncated or corrupt" in err and err.startswith("lightning-gen: error:")
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # nothing written or touched


def test_checkpoint_of_another_model_class_is_one_clear_error(tmp_path: Path, unbroken: Path, capsys: pytest.CaptureFixture) -> None:
    config = write_tiny_config(tmp_path)
    run_dir = _copy_run(unbroken, tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    ckpt["lightning_gen"]["model_class"] = "torch.nn.Linear"
    torch.save(ckpt, last)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    code, err = _main_in_process(["fit", "--config", str(config), "--ckpt_path", str(last)], capsys)
    assert code == 1 and "holds a torch.nn.Linear but the config's model is" in err and err.startswith("lightning-gen: error:")
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_missing_checkpoint_path_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = write_tiny_config(tmp_path)
    code, err = _main_in_process(["fit", "--config", str(config), "--ckpt_path", "nope.ckpt"], capsys)
    assert code == 1 and "does not exist" in err
    assert not (tmp_path / "runs").exists()
