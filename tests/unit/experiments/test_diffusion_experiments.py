"""The shipped diffusion experiment files: the CIFAR-10 UNet's size, the CPU files build, their grids."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import EXPERIMENTS


# --- the shipped experiment files ----------------------------------------------------------------------
def test_cifar10_experiment_is_the_35_7m_ddpm_unet(tmp_path: Path) -> None:
    from lightning_gen.cli.trainer import build_cli

    cli = build_cli(
        [
            "--config",
            str(EXPERIMENTS / "ddpm_cifar10.yaml"),
            "--run.wandb=disabled",
            f"--data.init_args.data_dir={tmp_path}",
            "--trainer.accelerator=cpu",
        ],
        run=False,
    )
    params = sum(p.numel() for p in cli.model.diffusion.parameters())
    assert abs(params - 35.7e6) / 35.7e6 < 0.02, params
    assert cli.model.image_shape == (3, 32, 32) and cli.model.ema is not None
    schedule = cli.model.diffusion.schedule
    assert (schedule.beta_schedule, schedule.num_train_timesteps, schedule.beta_start, schedule.beta_end) == (
        "linear",
        1000,
        1e-4,
        0.02,
    )


@pytest.mark.parametrize(
    ("name", "conditional"), [("ddpm_mnist", False), ("ddpm_fashion_mnist", False), ("ddpm_mnist_cfg", True)]
)
def test_cpu_experiments_build(name: str, conditional: bool) -> None:
    from lightning_gen.cli.trainer import build_cli

    cli = build_cli(
        ["--config", str(EXPERIMENTS / f"{name}.yaml"), "--run.wandb=disabled", "--trainer.accelerator=cpu"], run=False
    )
    assert cli.model.image_shape == (1, 28, 28)
    assert cli.model.num_classes == (10 if conditional else None)
    assert (
        yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text())["trainer"]["callbacks"][0]["class_path"]
        == "lightning_gen.callbacks.SampleGrid"
    )
