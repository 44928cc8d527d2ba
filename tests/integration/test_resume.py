"""Fault injection: kill -9 / SIGTERM a training run, resume with --ckpt_path last, compare with an unbroken run.

Each run is a tiny VAE on synthetic blobs (2 epochs x 8 steps, ``last.ckpt`` every 2 steps). The run
that is killed or signalled has a process of its own (``tests.helpers.forked``), so a kill lands at a
real point of a real ``lightning-gen fit``; the unbroken reference and the resumes run in this process
(``tests.helpers.cli.run_main``).
"""

from __future__ import annotations

import random
import shutil
import signal
from pathlib import Path

import pytest
import torch

from tests.helpers.cli import run_main
from tests.helpers.forked import fork_and_signal, run_forked
from tests.helpers.ops import (
    assert_bitwise_equal,
    fault_at_callback,
    logged_steps,
    state_dict,
    train_rows,
    wandb_segments,
    write_tiny_config,
)

pytestmark = pytest.mark.usefixtures("fork_server")


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same run, never interrupted. Returns its run dir."""
    cwd = tmp_path_factory.mktemp("unbroken")
    config = write_tiny_config(cwd)
    proc = run_main(["fit", "--config", str(config), "--run.id", "ref"], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "runs" / "tiny" / "ref"


def _kill_and_resume(tmp_path: Path, kill_step: int, sig: int) -> tuple[Path, object]:
    config = write_tiny_config(tmp_path)
    killed = fork_and_signal(["fit", "--config", str(config)], tmp_path, "runs/tiny/*/metrics.csv", kill_step, sig)
    resumed = run_main(["fit", "--config", str(config), "--ckpt_path", "last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run_dirs = list((tmp_path / "runs" / "tiny").iterdir())
    assert len(run_dirs) == 1, run_dirs  # the resume continued the same run dir
    return run_dirs[0], killed


def _kill_at(tmp_path: Path, step: int, hook: str, epochs: int = 2) -> Path:
    """Run until ``global_step == step`` in ``hook``, kill -9 there (exact point), return the run dir."""
    config = write_tiny_config(tmp_path, epochs=epochs)
    killed = run_forked(
        ["fit", "--config", str(config), "--run.id", "k", "--trainer.callbacks+=" + fault_at_callback(step, hook)],
        tmp_path,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    return tmp_path / "runs" / "tiny" / "k"


def _resume(tmp_path: Path) -> None:
    resumed = run_main(
        ["fit", "--config", str(tmp_path / "tiny.yaml"), "--run.id", "k", "--ckpt_path", "last"], tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def _assert_same_as_unbroken(run_dir: Path, unbroken: Path, check_wandb: bool = False) -> None:
    rows, ref_rows = train_rows(run_dir / "metrics.csv"), train_rows(unbroken / "metrics.csv")
    steps = logged_steps(rows)
    assert steps == sorted(set(steps)), steps  # strictly increasing, no duplicate
    assert rows == ref_rows  # every logged value, bit for bit (as printed by the CSV logger)
    assert_bitwise_equal(
        state_dict(run_dir / "checkpoints" / "last.ckpt"), state_dict(unbroken / "checkpoints" / "last.ckpt")
    )
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

    return [
        (int(r["trainer/global_step"]), r["train/loss"]) for r in read_offline_history(segment) if "train/loss" in r
    ]


@pytest.mark.slow  # ~9 s; the default suite keeps the epoch-end resume below and the preemption signals
def test_kill9_after_a_row_past_the_epoch_end_checkpoint_then_resume_equals_unbroken(
    tmp_path: Path, unbroken: Path
) -> None:
    """The point where this test used to be flaky ("step 8 logged twice"): killed after step 8's row,
    before the step-10 checkpoint. The epoch-end ``last.ckpt`` is saved after Lightning's logger step
    moved on to 8, so a step-based cut kept the killed run's row 8 and the resume logged it again."""
    run_dir = _kill_at(tmp_path, 9, "on_train_batch_start")
    assert logged_steps(train_rows(run_dir / "metrics.csv"))[-1] == 8
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 8
    _resume(tmp_path)
    _assert_same_as_unbroken(run_dir, unbroken, check_wandb=True)


def test_resume_from_the_epoch_end_checkpoint_with_more_steps_logs_every_step_once(tmp_path: Path) -> None:
    """Killed after the epoch-end checkpoint, resumed with a new ``max_steps`` (a run extended).
    Lightning's restart bumped the logger step once more here: steps 0-7, 9-12 (CI, 2026-12-04)."""
    run_dir = _kill_at(tmp_path, 9, "on_train_batch_start", epochs=500)
    resumed = run_main(
        ["fit", "--config", str(tmp_path / "tiny.yaml"), "--run.id", "k", "--ckpt_path", "last"]
        + ["--trainer.max_steps=12"],
        tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert logged_steps(train_rows(run_dir / "metrics.csv")) == list(range(12))


@pytest.mark.slow
def test_kill9_between_the_checkpoint_rename_and_its_row_then_resume_equals_unbroken(
    tmp_path: Path, unbroken: Path
) -> None:
    """Lightning writes a batch's row after the ``on_train_batch_end`` hooks that save step
    checkpoints. A kill between the two (simulated: the row removed, or cut inside its last value)
    used to lose the row; the checkpoint now carries it."""
    run_dir = _kill_at(tmp_path, 12, "on_train_batch_start")  # last.ckpt: step 12, saved in batch 11's hooks
    csv_path = run_dir / "metrics.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    assert lines[-1].startswith("1,11,")
    csv_path.write_text("".join(lines[:-1]) + lines[-1][:-6])  # row 11 cut inside its last value
    _resume(tmp_path)
    _assert_same_as_unbroken(run_dir, unbroken)


#: exact kill points the slow property test draws from: hook -> global steps where it fires
KILL_POINTS = {
    "on_train_batch_start": list(range(1, 16)),
    "on_before_optimizer_step": list(range(0, 16)),  # mid-step: gradients computed, not applied
    "on_save_checkpoint": [2, 4, 6, 8, 10, 12, 14],  # a checkpoint being dumped, nothing written yet
    "on_validation_batch_start": [8],  # mid-validation of epoch 0
}


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_kill9_at_random_points_then_resume_equals_unbroken(tmp_path: Path, unbroken: Path, seed: int) -> None:
    rng = random.Random(seed)  # seeded: the same points every run
    hook = rng.choice(sorted(KILL_POINTS))
    step = rng.choice(KILL_POINTS[hook])
    run_dir = _kill_at(tmp_path, step, hook)
    _resume(tmp_path)
    _assert_same_as_unbroken(run_dir, unbroken)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 5))
def test_kill9_at_a_random_time_then_resume_equals_unbroken(tmp_path: Path, unbroken: Path, seed: int) -> None:
    """kill -9 from outside at whatever point the process has reached (timing-dependent point, same assertions)."""
    # not past step 10: a kill sent after the last rows can land after training ended (CI, 2026-12-04)
    kill_step = random.Random(seed).randint(1, 10)
    run_dir, _ = _kill_and_resume(tmp_path, kill_step, signal.SIGKILL)
    _assert_same_as_unbroken(run_dir, unbroken)


@pytest.mark.parametrize(
    "sig,step",
    [
        (signal.SIGTERM, 5),
        pytest.param(signal.SIGINT, 5, marks=pytest.mark.slow),  # the default suite keeps SIGTERM
        (signal.SIGTERM, 7),  # the epoch's last batch: saved after that epoch's validation, whose row must survive
        pytest.param(signal.SIGUSR1, 5, marks=pytest.mark.slow),
        pytest.param(signal.SIGINT, 7, marks=pytest.mark.slow),
    ],
    ids=["SIGTERM-mid-epoch", "SIGINT-mid-epoch", "SIGTERM-last-batch", "SIGUSR1-mid-epoch", "SIGINT-last-batch"],
)
def test_preemption_signal_saves_checkpoint_and_exits_cleanly_then_resumes(
    tmp_path: Path, unbroken: Path, sig: int, step: int
) -> None:
    """SIGTERM/SIGUSR1 (preemption) exit 0; Ctrl-C (SIGINT) exits 130 (128 + SIGINT, an interrupted command).

    The signal is sent from inside the run at the start of training batch ``step`` (8 batches per
    epoch), so the test does not depend on when an outside process gets to send it.
    """
    config = write_tiny_config(tmp_path)
    fault = fault_at_callback(step, "on_train_batch_start", f"signal:{signal.Signals(sig).name}")
    killed = run_forked(
        ["fit", "--config", str(config), "--run.id", "pre", "--trainer.callbacks+=" + fault],
        tmp_path,
    )
    assert killed.returncode == (130 if sig == signal.SIGINT else 0), killed.stderr[-3000:]
    output = killed.stdout + killed.stderr
    assert (
        f"preempted at step {step + 1}" in output
    )  # saved once this batch (and, at an epoch end, its validation) ended
    if sig == signal.SIGINT:
        assert "lightning-gen: Ctrl-C: saving checkpoints/last.ckpt at the end of this batch, then stopping" in output
        assert "KeyboardInterrupt" not in output
    last = tmp_path / "runs" / "tiny" / "pre" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == step + 1
    assert not list(last.parent.glob(".tmp-*"))  # atomic write left no temp file
    resumed = run_main(["fit", "--config", str(config), "--ckpt_path", str(last)], tmp_path)  # explicit path
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_as_unbroken(last.parent.parent, unbroken)


def _main_in_process(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from lightning_gen.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return int(exc.value.code or 0), err[-1] if err else ""  # the one-paragraph error is the last line


def _copy_run(unbroken: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "runs" / "tiny" / "old"
    shutil.copytree(unbroken, run_dir, ignore=shutil.ignore_patterns("wandb"))
    return run_dir


@pytest.mark.parametrize("explicit", [False, True])
def test_truncated_checkpoint_is_one_clear_error_and_nothing_is_written(
    tmp_path: Path, unbroken: Path, capsys: pytest.CaptureFixture, explicit: bool
) -> None:
    config = write_tiny_config(tmp_path)
    run_dir = _copy_run(unbroken, tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    code, err = _main_in_process(
        ["fit", "--config", str(config), "--ckpt_path", str(last) if explicit else "last"], capsys
    )
    assert code == 1 and "truncated or corrupt" in err and err.startswith("lightning-gen: error:")
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # nothing written or touched


def test_checkpoint_of_another_model_class_is_one_clear_error(
    tmp_path: Path, unbroken: Path, capsys: pytest.CaptureFixture
) -> None:
    config = write_tiny_config(tmp_path)
    run_dir = _copy_run(unbroken, tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    ckpt["lightning_gen"]["model_class"] = "torch.nn.Linear"
    torch.save(ckpt, last)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    code, err = _main_in_process(["fit", "--config", str(config), "--ckpt_path", str(last)], capsys)
    assert (
        code == 1
        and "holds a torch.nn.Linear but the config's model is" in err
        and err.startswith("lightning-gen: error:")
    )
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_missing_checkpoint_path_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = write_tiny_config(tmp_path)
    code, err = _main_in_process(["fit", "--config", str(config), "--ckpt_path", "nope.ckpt"], capsys)
    assert code == 1 and "does not exist" in err
    assert not (tmp_path / "runs").exists()
