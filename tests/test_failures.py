"""Training that goes wrong stops loudly, and no checkpoint is lost or poisoned.

Each case runs ``lightning-gen fit`` in a subprocess on the tiny VAE of ``ops_utils`` (2 epochs of
8 steps, ``last.ckpt`` every 2 steps), with faults injected at exact points by ``ops_utils.FaultAt``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from ops_utils import CLI, REPO_ROOT, cli_env_with_tests, fault_at_callback, run_cli, write_tiny_config

from gen_common.errors import LightningGenError
from lightning_gen.runs.checkpoints import AtomicCheckpointIO, nonfinite_count

ERROR = "lightning-gen: error: "


def _error_paragraph(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fit_with_fault(tmp_path: Path, step: int, hook: str, action: str, *extra: str) -> tuple[object, Path, Path]:
    config = write_tiny_config(tmp_path)
    record = tmp_path / "sha_at_fault.txt"
    proc = run_cli(
        [
            "fit",
            "--config",
            str(config),
            "--run.id",
            "r",
            "--trainer.callbacks+=" + fault_at_callback(step, hook, action, str(record)),
            *extra,
        ],
        tmp_path,
        env=cli_env_with_tests(),
    )
    return proc, tmp_path / "runs" / "tiny" / "r", record


def test_nonfinite_loss_stops_the_run_with_one_paragraph(tmp_path: Path) -> None:
    """What a user sees with a learning rate that diverges at once: exit 1, no checkpoint at all."""
    config = write_tiny_config(tmp_path)
    proc = run_cli(
        ["fit", "--config", str(config), "--run.id", "r", "--model.init_args.optimizer.init_args.lr=1e12"], tmp_path
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    message = _error_paragraph(proc.stderr)
    assert (
        "Training stopped after" in message
        and "the training loss became NaN or infinite at step 1 (the `step` of metrics.csv)." in message
    )
    assert "No checkpoint had been saved yet" in message
    assert (
        "Lower the learning rate (`--model.init_args.optimizer.init_args.lr`), clip gradients (`--trainer.gradient_clip_val=1.0`)"
        in message
    )
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "runs" / "tiny" / "r").glob("checkpoints/*.ckpt"))


def test_nonfinite_weights_never_replace_the_last_good_checkpoint(tmp_path: Path) -> None:
    """A weight turns NaN after step 6's loss (the loss check cannot see it) and before its checkpoint:
    the save is refused on every rank and ``last.ckpt`` stays the step-4 file, byte for byte."""
    proc, run_dir, record = _fit_with_fault(tmp_path, 6, "on_train_batch_end", "nan_weight")
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    message = _error_paragraph(proc.stderr)
    assert message.startswith(
        f"{ERROR}Training stopped after 6 steps: the model's weights became NaN or infinite (1 value)."
    )
    assert (
        "The last good checkpoint is runs/tiny/r/checkpoints/last.ckpt (no non-finite checkpoint was saved)." in message
    )
    assert _sha(last) == record.read_text()  # unchanged since before the fault
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 4 and nonfinite_count(ckpt["state_dict"]) == 0
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temp file, no other checkpoint


def test_disk_full_while_saving_is_one_paragraph_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    proc, run_dir, record = _fit_with_fault(tmp_path, 4, "on_save_checkpoint", "disk_full")
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    message = _error_paragraph(proc.stderr)
    assert message.startswith(f"{ERROR}Could not save checkpoint {last}: the disk is full (")
    assert "; the partial file was removed and the previous last.ckpt is intact." in message
    assert "Traceback" not in proc.stderr
    assert _sha(last) == record.read_text() and torch.load(last, weights_only=False)["global_step"] == 2
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]


def test_sigterm_ends_a_run_stuck_in_c_code_after_the_grace_period(tmp_path: Path) -> None:
    """The main thread blocks forever at step 5 (as in a collective whose peer died): the signal
    cannot reach a batch end, so the watchdog ends the process ``stop_grace_s`` after SIGTERM."""
    config = write_tiny_config(tmp_path)
    args = [
        "fit",
        "--config",
        str(config),
        "--run.id",
        "r",
        "--run.stop_grace_s=2",
        "--trainer.callbacks+=" + fault_at_callback(5, "on_train_batch_start", "block"),
    ]
    proc = subprocess.Popen(
        [*CLI, *args],
        cwd=tmp_path,
        env=cli_env_with_tests(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        csv_path = tmp_path / "runs" / "tiny" / "r" / "metrics.csv"
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if csv_path.exists() and "\n0,4," in csv_path.read_text():  # row 4 written: the next batch blocks
                break
            time.sleep(0.1)
        time.sleep(1.0)  # inside the blocking call by now
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        waited = time.time() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert 2.0 <= waited < 30, waited
    assert (
        "lightning-gen: received SIGTERM but the process did not stop within 2 s (a batch longer than that, or stuck, "
        "e.g. in a collective waiting for another rank): exiting now with status 143; resume with `--ckpt_path last` ("
    ) in out
    assert (
        torch.load(tmp_path / "runs" / "tiny" / "r" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
        == 4
    )


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


@pytest.mark.slow
def test_second_ctrl_c_aborts_at_once_without_saving(tmp_path: Path) -> None:
    """First Ctrl-C: "saving at the end of this batch"; the batch never ends (blocked); a second
    Ctrl-C aborts through Lightning's KeyboardInterrupt shutdown (exit 1) and saves nothing."""
    config = write_tiny_config(tmp_path)
    args = [
        "fit",
        "--config",
        str(config),
        "--run.id",
        "r",
        "--trainer.callbacks+=" + fault_at_callback(5, "on_train_batch_start", "block"),
    ]
    proc = subprocess.Popen(
        [*CLI, *args],
        cwd=tmp_path,
        env=cli_env_with_tests(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        csv_path = tmp_path / "runs" / "tiny" / "r" / "metrics.csv"
        deadline = time.time() + 300
        while (
            time.time() < deadline
            and proc.poll() is None
            and not (csv_path.exists() and "\n0,4," in csv_path.read_text())
        ):
            time.sleep(0.1)
        time.sleep(1.0)
        last = tmp_path / "runs" / "tiny" / "r" / "checkpoints" / "last.ckpt"
        before = _sha(last)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out[-3000:]
    assert (
        "Ctrl-C: saving checkpoints/last.ckpt at the end of this batch" in out and "Detected KeyboardInterrupt" in out
    )
    assert _sha(last) == before and "preempted at step" not in out


@pytest.mark.slow
def test_gan_nonfinite_loss_names_the_network(tmp_path: Path) -> None:
    """Manual optimization (two optimizers): the message names the network whose loss diverged."""
    proc = run_cli(
        [
            "fit",
            "--config",
            str(REPO_ROOT / "experiments" / "dcgan_mnist.yaml"),
            "--config",
            str(REPO_ROOT / "experiments" / "debug.yaml"),
            "--run.root",
            str(tmp_path / "runs"),
            "--run.id",
            "g",
            "--model.init_args.discriminator_optimizer.init_args.lr=1e12",
        ],
        tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    message = _error_paragraph(proc.stderr)
    assert (
        "the loss of `discriminator` (optimizer 2 of 2) became NaN or infinite at step 1 (the `step` of metrics.csv)."
        in message
    )
    assert (
        "Lower the learning rate (`--model.init_args.discriminator_optimizer.init_args.lr`) or train in fp32" in message
    )


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
