"""Training that goes wrong stops loudly, and no checkpoint is lost or poisoned.

Each case runs ``lightning-gen fit`` on the tiny VAE of ``tests.helpers.ops`` (2 epochs of 8 steps,
``last.ckpt`` every 2 steps), with faults injected at exact points by ``tests.helpers.ops.FaultAt``: in
this process (``tests.helpers.cli.run_main``), or where the test sends signals in a process of its own
(``tests.helpers.forked``).
"""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import pytest
import torch

from lightning_gen.runs.checkpoints import nonfinite_count
from tests.helpers.cli import run_main
from tests.helpers.forked import fork_cli
from tests.helpers.ops import REPO_ROOT, fault_at_callback, write_tiny_config

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
    proc = run_main(
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
    )
    return proc, tmp_path / "runs" / "tiny" / "r", record


def test_nonfinite_loss_stops_the_run_with_one_paragraph(tmp_path: Path) -> None:
    """What a user sees with a learning rate that diverges at once: exit 1, no checkpoint at all."""
    config = write_tiny_config(tmp_path)
    proc = run_main(
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


@pytest.mark.usefixtures("fork_server")
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
    proc = fork_cli(args, tmp_path, merge_stderr=True)
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


@pytest.mark.slow
@pytest.mark.usefixtures("fork_server")
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
    proc = fork_cli(args, tmp_path, merge_stderr=True)
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
    proc = run_main(
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
