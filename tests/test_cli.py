"""The CLI end to end: experiments instantiate, a real MNIST run leaves its files, bad input errors."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightning_gen.cli.trainer import build_cli
from lightning_gen.loggers.wandb import read_offline_history
from lightning_gen.runs.precision import cpu_has_bf16, emulated_precision_notice

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

ALL_EXPERIMENTS = sorted(EXPERIMENTS.glob("*.yaml"))
# A standalone experiment names a model; the others (debug.yaml, *_eval.yaml) layer on one.
EXPERIMENT_FILES = [p for p in ALL_EXPERIMENTS if "model" in yaml.safe_load(p.read_text())]
LAYER_FILES = [p for p in ALL_EXPERIMENTS if p not in EXPERIMENT_FILES]
CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1"]  # GPU experiments instantiate here too


def _normalise(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.stem)
def test_every_experiment_parses_and_instantiates(path: Path):
    cli = build_cli(["--config", str(path), "--config", str(EXPERIMENTS / "debug.yaml"), *CPU], run=False)
    assert cli.model is not None and cli.datamodule is not None and cli.trainer is not None
    for key in ("image_shape", "vocab_size"):  # values the datamodule knows are linked, not typed twice
        if hasattr(cli.datamodule, key) and hasattr(cli.model.hparams, key):
            assert _normalise(getattr(cli.model.hparams, key)) == _normalise(getattr(cli.datamodule, key))


@pytest.mark.parametrize("layer", LAYER_FILES, ids=lambda p: p.stem)
def test_every_layer_file_applies_on_vae_mnist(layer: Path):
    cli = build_cli(["--config", str(EXPERIMENTS / "vae_mnist.yaml"), "--config", str(layer), *CPU], run=False)
    assert cli.trainer is not None and cli.model is not None


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


def _run(cmd: list[str], env: dict, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_cli_trains_on_real_mnist_and_leaves_checkpoint_csv_and_offline_wandb(tmp_path, cli_env, lightning_gen_cmd):
    args = [
        "fit",
        "--config",
        str(EXPERIMENTS / "vae_mnist.yaml"),
        "--config",
        str(EXPERIMENTS / "debug.yaml"),
        "--trainer.limit_train_batches=6",
        "--trainer.limit_val_batches=2",
        "--trainer.log_every_n_steps=2",
        "--run.root=runs",
        "--run.id=e2e",
    ]
    result = _run(lightning_gen_cmd + args, cli_env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "vae_mnist" / "e2e"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "run:" in (run_dir / "config.yaml").read_text() and "id: e2e" in (run_dir / "config.yaml").read_text()
    header, *rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert {"train/loss", "train/recon", "train/kl", "val/elbo"} <= set(header.split(","))
    assert len(rows) >= 3
    assert (run_dir / "samples").is_dir() and any((run_dir / "samples").glob("samples_step*.png"))
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    history = read_offline_history(offline_runs[0])
    logged = {key for row in history for key in row}
    assert {"train/loss", "train/kl", "val/elbo", "samples._type", "reconstructions._type"} <= logged
    assert list((offline_runs[0] / "files" / "media" / "images").glob("samples_*.png"))
    assert "wandb sync" in result.stdout + result.stderr


def _cli_error(argv: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``lightning-gen ARGV`` in this process from ``cwd`` (offline env); its stderr. It must fail."""
    import os

    from ops_utils import cli_env

    from lightning_gen.__main__ import main

    for key in [k for k in os.environ if k.startswith("LIGHTNING_GEN_")]:
        monkeypatch.delenv(key)
    for key, value in cli_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["lightning-gen"])
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    stderr = capsys.readouterr().err
    assert exit_.value.code not in (0, None), stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return stderr


def test_unknown_key_is_an_error_naming_the_key(tmp_path, monkeypatch, capsys):
    stderr = _cli_error(
        ["fit", "--config", str(EXPERIMENTS / "vae_mnist.yaml"), "--model.init_args.latnt_dim=3"],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert "latnt_dim" in stderr
    assert not (tmp_path / "runs").exists()


def test_mistyped_key_in_a_config_file_is_an_error(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXPERIMENTS / "vae_mnist.yaml").read_text().replace("max_epochs:", "max_epochz:"))
    assert "max_epochz" in _cli_error(["fit", "--config", str(bad)], tmp_path, monkeypatch, capsys)


def test_data_dir_with_wrong_files_is_one_paragraph_and_writes_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty" / "MNIST" / "raw").mkdir(parents=True)
    stderr = _cli_error(
        ["fit", "--config", str(EXPERIMENTS / "vae_mnist.yaml"), "--data.init_args.data_dir=empty", "--run.root=runs"],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert all(fragment in stderr for fragment in ("lightning-gen: error:", "torchvision layout", "Fix:")), stderr
    assert stderr.strip().splitlines()[-1].startswith("lightning-gen: error:")  # one paragraph, last
    assert not (tmp_path / "runs").exists()


def test_missing_dataset_without_network_is_one_paragraph(tmp_path, monkeypatch, capsys):
    stderr = _cli_error(
        [
            "fit",
            "--config",
            str(EXPERIMENTS / "vae_mnist.yaml"),
            "--data=datamodules.FashionMNISTDataModule",
            "--data.init_args.data_dir=nowhere",
            "--data.init_args.download=true",
            "--data.init_args.download_timeout_s=3",
            "--run.root=runs",
        ],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert all(
        fragment in stderr for fragment in ("lightning-gen: error:", "Downloading FashionMNIST", "no network")
    ), stderr
    assert not (tmp_path / "runs").exists()


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


def test_emulated_precision_notice_names_the_fix() -> None:
    notice = emulated_precision_notice("bf16-mixed", on_cpu=True, native_bf16=False)
    assert notice is not None and "`trainer.precision=bf16-mixed`" in notice and "--trainer.precision=32-true" in notice
    assert emulated_precision_notice("bf16-mixed", on_cpu=True, native_bf16=True) is None
    assert emulated_precision_notice("bf16-mixed", on_cpu=False, native_bf16=False) is None
    assert emulated_precision_notice("32-true", on_cpu=True, native_bf16=False) is None
