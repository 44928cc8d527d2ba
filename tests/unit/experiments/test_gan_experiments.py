"""The shipped GAN experiment files: they instantiate as their papers ask, and CIFAR-10 without data fails clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_gen.__main__ import main
from lightning_gen.cli.trainer import build_cli
from lightning_gen.models.gan import GAN
from tests.helpers.paths import EXPERIMENTS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dcgan_mnist", dict(architecture="dcgan", loss="non_saturating", n_critic=1, image_shape=(1, 28, 28))),
        ("wgan_gp_mnist", dict(architecture="dcgan", loss="wgan_gp", n_critic=5, image_shape=(1, 28, 28))),
        ("dcgan_cifar10", dict(architecture="dcgan", loss="non_saturating", n_critic=1, image_shape=(3, 32, 32))),
        ("sngan_cifar10", dict(architecture="resnet32", loss="hinge", n_critic=5, image_shape=(3, 32, 32))),
    ],
)
def test_experiment_configs_instantiate(name: str, expected: dict) -> None:
    cli = build_cli(["--config", str(EXPERIMENTS / f"{name}.yaml"), "--run.wandb=disabled"], run=False)
    model = cli.model
    assert isinstance(model, GAN)
    for key, value in expected.items():
        assert getattr(model.hparams, key) == value if key != "image_shape" else model.image_shape == value, key
    if model.n_critic > 1:  # Mimicry / WGAN-GP: 64 real images per critic step
        assert cli.datamodule.batch_size == 64 * model.n_critic
    g_opt, d_opt = model.configure_optimizers()[0]
    assert g_opt.defaults["lr"] in (1e-4, 2e-4)


def test_sngan_protocol_schedule_decays_linearly_to_zero() -> None:
    cli = build_cli(["--config", str(EXPERIMENTS / "sngan_cifar10.yaml"), "--run.wandb=disabled"], run=False)
    (g_opt, d_opt), (g_sched, d_sched) = cli.model.configure_optimizers()
    assert g_opt.defaults["betas"] == (0.0, 0.9) and cli.trainer.max_steps == 100_000
    for _ in range(50_000):
        g_sched.step()
    assert g_opt.param_groups[0]["lr"] == pytest.approx(1e-4, rel=1e-3)


def test_cifar10_experiment_without_data_fails_with_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--config",
                str(EXPERIMENTS / "sngan_cifar10.yaml"),
                f"--data.init_args.data_dir={tmp_path / 'none'}",
                "--run.wandb=disabled",
            ]
        )
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "No offline copy of CIFAR-10 exists" in err and "Traceback" not in err
