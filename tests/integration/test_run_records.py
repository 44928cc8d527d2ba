"""A run's records are append-only for the run that owns them (issue 9, deliver 2).

Every case runs the CLI with a user's arguments (in this process through ``tests.helpers.cli.run_main``;
a process of its own for kill -9 and DDP) and checks, besides the message, that every file of the existing
run (W&B offline folder included) is byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch

from lightning_gen.runs.lock import LOCK_NAME, acquire_run_lock
from tests.helpers.cli import run_main
from tests.helpers.forked import fork_cli
from tests.helpers.ops import logged_steps, run_cli, train_rows, write_tiny_config

DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]


def snapshot(run_dir: Path) -> dict[str, str]:
    """Every path under ``run_dir`` -> sha256 of a file, the target of a link, or ``dir``."""
    out = {}
    for path in sorted(run_dir.rglob("*")):
        rel = str(path.relative_to(run_dir))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def error_paragraph(proc: subprocess.CompletedProcess) -> str:
    """The CLI's one-paragraph error: the last stderr line, which must be the whole message."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("lightning-gen: error: "), proc.stderr[-3000:]
    return line


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run (1 epoch = 8 steps, offline W&B), trained once for this module."""
    root = tmp_path_factory.mktemp("trained")
    config = write_tiny_config(root, epochs=1)
    proc = run_main(["fit", "--config", str(config), "--run.id", "r1"], root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.fixture
def run_copy(trained: Path, tmp_path: Path) -> Path:
    """This test's own copy of the trained run's folder (cwd = tmp_path): ``runs/tiny/r1``."""
    shutil.copytree(trained / "runs", tmp_path / "runs", symlinks=True)
    shutil.copy(trained / "tiny.yaml", tmp_path / "tiny.yaml")
    run_dir = tmp_path / "runs" / "tiny" / "r1"
    assert (run_dir / "metrics.csv").is_file() and not (run_dir / LOCK_NAME).exists()
    return run_dir


def test_test_writes_its_own_sub_run_and_leaves_the_run_untouched(run_copy: Path, tmp_path: Path) -> None:
    before = snapshot(run_copy)
    proc = run_main(
        ["test", "--config", "runs/tiny/r1/config.yaml", "--ckpt_path", "runs/tiny/r1/checkpoints/last.ckpt"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (eval_dir,) = (run_copy / "eval").iterdir()
    assert eval_dir.name.startswith("test-")
    last = proc.stdout.strip().splitlines()[-1]
    assert last == (
        f"lightning-gen: test of run r1 written to {eval_dir.relative_to(tmp_path)} (metrics.csv, config.yaml, W&B run); "
        "the run's own files are unchanged."
    )
    after = snapshot(run_copy)
    assert {k: v for k, v in after.items() if not k.startswith("eval")} == before  # byte-identical
    rows = train_rows(eval_dir / "metrics.csv")
    assert len(rows) == 1 and float(rows[0]["test/elbo"]) < 0
    assert "id: r1" in (eval_dir / "config.yaml").read_text()  # the record names the run it evaluated
    (segment,) = eval_dir.glob("wandb/offline-run-*")
    assert segment.name.endswith(f"-r1-{eval_dir.name}")  # a W&B run of its own, not the training run's id


def test_refused_commands_say_why_and_write_nothing(run_copy: Path, tmp_path: Path) -> None:
    """Six refusals, one after the other in this process: no file of the run changes.

    The lock is held by this process: flock is per open file, so the `locked` case conflicts with it
    as with another process's lock (the message names this PID)."""
    cfg = "runs/tiny/r1/config.yaml"
    cases = {
        "mismatch_fit": ["fit", "--config", cfg, "--ckpt_path", "last", "--model.init_args.latent_dim=16"],
        "mismatch_test": ["test", "--config", cfg, "--ckpt_path", "last", "--model.init_args.latent_dim=16"],
        "zero_steps": ["fit", "--config", cfg, "--ckpt_path", "last", "--trainer.max_steps=20"],
        "changed_lr": [
            "fit",
            "--config",
            cfg,
            "--ckpt_path",
            "last",
            "--trainer.max_epochs=2",
            "--model.init_args.optimizer.init_args.lr=0.0005",
        ],  # fmt: skip
        "new_run_in_old_dir": ["fit", "--config", "tiny.yaml", "--run.id", "r1"],
    }
    before = snapshot(run_copy)
    lock = acquire_run_lock(run_copy, command="lightning-gen fit")  # a live holder: this test process
    try:
        held = snapshot(run_copy)
        cases["locked"] = ["fit", "--config", cfg, "--ckpt_path", "last", "--trainer.max_epochs=2"]
        done = {k: run_main(a, tmp_path) for k, a in cases.items()}
        assert snapshot(run_copy) == held
    finally:
        lock.release()
    assert snapshot(run_copy) == before  # no eval/ folder, no .lock, every byte as it was

    ckpt = "runs/tiny/r1/checkpoints/last.ckpt"
    msg = error_paragraph(done["mismatch_fit"])
    assert msg == (
        f"lightning-gen: error: Checkpoint {ckpt} does not fit the model this config builds (3 parameter(s) differ: "
        "`net.encoder.head.weight` is (8, 256) in the checkpoint but (32, 256) in this model; `net.encoder.head.bias` is (8,) "
        "in the checkpoint but (32,) in this model; `net.decoder.fc.0.weight` is (256, 4) in the checkpoint but (256, 16) "
        "in this model). Nothing was written. Use the configuration it was trained with "
        "(`--config runs/tiny/r1/config.yaml`, without overriding model sizes), or start a new run with "
        "this model: drop `--ckpt_path` (and give it its own `--run.id`)."
    )
    assert error_paragraph(done["mismatch_test"]) == msg
    assert error_paragraph(done["zero_steps"]) == (
        f"lightning-gen: error: Resuming from {ckpt} would train 0 steps: the run has already reached `max_epochs=1` "
        "(1 epoch(s) done): raise `--trainer.max_epochs` (or set `--trainer.max_epochs=-1` so that `max_steps` alone "
        "decides). Nothing was written. Run the same command with the higher limit to continue training, or "
        "`lightning-gen test`/`validate` to evaluate the checkpoint."
    )
    changed = error_paragraph(done["changed_lr"])  # issue 23 item 2, through the CLI: refused, every byte kept
    assert "`model.init_args.optimizer.init_args.lr` 0.003 -> 0.0005" in changed and "--init_from" in changed
    assert error_paragraph(done["new_run_in_old_dir"]) == (
        "lightning-gen: error: Run dir runs/tiny/r1 already holds a run (metrics.csv, config.yaml, checkpoints, wandb); "
        "a new `fit` there would replace its records. Nothing was written. Continue that run with `--ckpt_path last`, "
        "or start a new one with another `--run.id` (or none: a new id is made)."
    )
    pid, host = os.getpid(), socket.gethostname()
    msg = error_paragraph(done["locked"])
    assert msg.startswith(
        f"lightning-gen: error: Run dir runs/tiny/r1 is being written by another process: PID {pid} on host {host} "
        f"(lightning-gen fit, started "
    )
    assert msg.endswith(
        f") holds runs/tiny/r1/{LOCK_NAME}. Two writers would interleave metrics.csv and overwrite each other's checkpoints, "
        "so this process stopped. Nothing was written. To continue this run, wait for it to finish or stop it "
        f"(`kill {pid}`: it saves last.ckpt), then run your command again with `--ckpt_path last`; to train alongside "
        "it, give this process another `--run.id`."
    )


def test_lock_left_by_a_dead_process_is_taken_over_by_the_resume(run_copy: Path, tmp_path: Path) -> None:
    """kill -9 leaves ``.lock`` naming a PID that no longer runs: ``--ckpt_path last`` takes it over and appends."""
    host = socket.gethostname()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run_copy / LOCK_NAME).write_text(
        f'{{"pid": {dead.pid}, "host": "{host}", "started": "2026-01-01 00:00:00", "command": "lightning-gen fit"}}'
    )
    proc = run_main(
        ["fit", "--config", "runs/tiny/r1/config.yaml", "--ckpt_path", "last", "--trainer.max_epochs=2"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        f"lightning-gen: took over runs/tiny/r1/{LOCK_NAME}: its holder, PID {dead.pid} on {host} "
        "(started 2026-01-01 00:00:00), no longer runs." in proc.stdout
    )
    assert logged_steps(train_rows(run_copy / "metrics.csv")) == list(range(16))  # appended: epoch 2 after epoch 1
    assert not (run_copy / LOCK_NAME).exists()  # released at exit


@pytest.mark.slow
@pytest.mark.usefixtures("fork_server")
def test_kill9_leaves_a_stale_lock_that_resume_takes_over_and_a_concurrent_fit_is_refused(tmp_path: Path) -> None:
    config = write_tiny_config(tmp_path, epochs=500)  # still training when the second process starts
    args = ["fit", "--config", str(config), "--run.id", "k"]
    run_dir = tmp_path / "runs" / "tiny" / "k"
    first = fork_cli(args, tmp_path)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (run_dir / "checkpoints" / "last.ckpt").is_file():
            time.sleep(0.2)
        second = run_main([*args, "--ckpt_path", "last"], tmp_path)  # while the first one trains
        assert first.poll() is None
        assert f"is being written by another process: PID {first.pid} on host" in error_paragraph(second)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.wait()
    assert f'"pid": {first.pid}' in (run_dir / LOCK_NAME).read_text()  # stale: its holder is gone
    step = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    resumed = run_main([*args, "--ckpt_path", "last", f"--trainer.max_steps={step + 4}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"its holder, PID {first.pid} on" in resumed.stdout
    assert logged_steps(train_rows(run_dir / "metrics.csv")) == list(range(step + 4))  # each step once
    assert not (run_dir / LOCK_NAME).exists()


@pytest.mark.slow
def test_ddp_fit_holds_one_lock_and_ddp_test_writes_a_sub_run(tmp_path: Path) -> None:
    config = write_tiny_config(tmp_path, epochs=1)
    proc = run_cli(["fit", "--config", str(config), "--run.id", "d", *DDP], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "tiny" / "d"
    assert logged_steps(train_rows(run_dir / "metrics.csv")) == [0, 1, 2, 3] and not (run_dir / LOCK_NAME).exists()
    before = snapshot(run_dir)
    test = run_cli(
        [
            "test",
            "--config",
            str(run_dir / "config.yaml"),
            "--ckpt_path",
            str(run_dir / "checkpoints" / "last.ckpt"),
            *DDP,
        ],
        tmp_path,
    )
    assert test.returncode == 0, test.stderr[-3000:]
    (eval_dir,) = (run_dir / "eval").iterdir()  # both ranks wrote into one sub-run
    assert test.stdout.count("lightning-gen: test of run d written to") == 1
    assert {k: v for k, v in snapshot(run_dir).items() if not k.startswith("eval")} == before
    assert len(train_rows(eval_dir / "metrics.csv")) == 1
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
