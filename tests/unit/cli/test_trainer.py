"""The LightningCLI subclass (``lightning_gen.cli.trainer``): linked values, the precision notice, the progress bar."""

from __future__ import annotations

import pytest

from lightning_gen.cli.trainer import build_cli
from lightning_gen.runs.precision import cpu_has_bf16
from tests.helpers.paths import EXPERIMENTS

CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1"]  # GPU experiments instantiate here too


def test_image_shape_is_linked_from_the_datamodule():
    cli = build_cli(
        [
            "--model=lightning_gen.models.VAE",
            "--data=datamodules.SyntheticImageDataModule",
            "--data.init_args.image_shape=[3,12,12]",
            "--run.wandb=disabled",
        ],
        run=False,
    )
    assert cli.model.image_shape == (3, 12, 12)


def test_bf16_on_a_cpu_without_bf16_units_gets_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The GPU GPT recipe run on a CPU keeps its bf16 but says, once, that this CPU emulates it (11x slower here)."""
    gpu_recipe = [
        "--config",
        str(EXPERIMENTS / "gpt_shakespeare_char_gpu.yaml"),
        "--config",
        str(EXPERIMENTS / "debug.yaml"),
        *CPU,
    ]
    build_cli(gpu_recipe, run=False)
    notices = [line for line in capsys.readouterr().err.splitlines() if "is emulated" in line]
    assert len(notices) == (0 if cpu_has_bf16() else 1)
    build_cli([*gpu_recipe, "--trainer.precision=32-true"], run=False)
    assert "is emulated" not in capsys.readouterr().err


def test_progress_bar_only_in_an_interactive_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_gen.cli import trainer as cli

    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert cli._want_progress_bar("auto") is True
    monkeypatch.setenv("CI", "true")
    assert cli._want_progress_bar("auto") is False
    assert cli._want_progress_bar("none") is False and cli._want_progress_bar("rich") is True
