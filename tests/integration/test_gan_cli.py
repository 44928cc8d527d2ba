"""``lightning-gen fit`` of ``dcgan_mnist.yaml`` + ``debug.yaml``, then ``export`` of its EMA generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_gen.__main__ import main
from lightning_gen.commands.export import load_generator
from tests.helpers.paths import EXPERIMENTS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_dcgan_mnist_fit_then_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main(
        [
            "fit",
            "--config", str(EXPERIMENTS / "dcgan_mnist.yaml"),
            "--config", str(EXPERIMENTS / "debug.yaml"),
            "--trainer.limit_train_batches=4",
            "--trainer.val_check_interval=2",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
            "--run.wandb=disabled",
            "--run.id=t",
        ]
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "debug" / "dcgan_mnist" / "t"
    assert sorted(p.name for p in (run_dir / "samples").glob("*.png")) == [
        "samples_step0000002.png",
        "samples_step0000004.png",
    ]
    last = run_dir / "checkpoints" / "last.ckpt"
    main(["export", "--ckpt", str(last), "--out", str(tmp_path / "G.pt")])
    assert "exported EMA generator" in capsys.readouterr().out
    generator = load_generator(tmp_path / "G.pt")
    assert torch.load(tmp_path / "G.pt", weights_only=True)["global_step"] == 4
    assert generator.sample(3).shape == (3, 1, 28, 28)
