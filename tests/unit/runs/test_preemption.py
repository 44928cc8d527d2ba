"""Preemption: the watchdog's line when a run does not stop within the grace period; the final validation of the
saved weights and whether it fits in that grace period."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback


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


def test_final_validation_fits_in_what_is_left_of_the_grace_period() -> None:
    """The go/no-go of the final validation: the estimate against the grace period less the time used and the
    margin kept for stopping; no deadline with the watchdog off; an unknown estimate goes while time is left."""
    from lightning_gen.runs.preemption import EXIT_MARGIN_S, final_validation_skip

    assert final_validation_skip(60, 2.0, 30.0) is None  # 60 - 2 - 10 = 48 s left
    assert final_validation_skip(60, 2.0, None) is None  # stopped at the deadline if it runs past it
    assert final_validation_skip(0, 1e6, 1e6) is None  # --run.stop_grace_s=0: no deadline
    late = final_validation_skip(30, 5.0, 20.0)
    assert late == (
        "lightning-gen: no final validation or sample grid: a validation of this run takes 20.0 s, 25.0 s of the "
        f"30 s grace period (`--run.stop_grace_s`) are left, {EXIT_MARGIN_S:g} s of them for stopping."
    )
    assert final_validation_skip(8, 0.5, None) is not None  # less than the margin is left


class _SignalAt(Callback):
    """Send SIGTERM to this process at the start of the batch that makes ``global_step == step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class _Validated(Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.steps.append(trainer.global_step)


def test_sigterm_saves_then_validates_the_saved_weights_outside_the_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    """A real Trainer (in this process; the watchdog off): SIGTERM during step 5 saves last.ckpt at step 5, then
    Lightning's own loop validates step 5 once (validation every 2 steps: 5 is not one of them), ModelCheckpoint
    writes nothing for it, and the run exits through Lightning's SIGTERMException (status 0)."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.demos.boring_classes import BoringModel

    from lightning_gen.runs.preemption import PreemptionCheckpoint

    checkpoints = tmp_path / "checkpoints"
    preemption, validated = PreemptionCheckpoint(str(checkpoints), exit_grace_s=0), _Validated()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=8,
        limit_val_batches=2,
        val_check_interval=2,
        num_sanity_val_steps=0,
        callbacks=[preemption, validated, _SignalAt(4), ModelCheckpoint(checkpoints, "{step}", save_last=True)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(SystemExit) as stopped:
        trainer.fit(BoringModel())
    assert stopped.value.code in (None, 0)
    assert validated.steps == [2, 4, 5]  # the final validation of the saved step, once
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["global_step"] == 5
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "step=4.ckpt"]  # nothing for step 5
    assert preemption.clock.seconds is not None and preemption.clock.seconds > 0
    assert "lightning-gen: final validation of step 5: done." in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is not preemption._handler  # handlers given back
