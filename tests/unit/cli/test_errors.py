"""Bad ``fit`` input through ``lightning_gen.__main__.main`` in this process: one paragraph, nothing written."""

import sys
from pathlib import Path

import pytest

from tests.helpers.paths import EXPERIMENTS


def _cli_error(argv: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``lightning-gen ARGV`` in this process from ``cwd`` (offline env); its stderr. It must fail."""
    import os

    from lightning_gen.__main__ import main
    from tests.helpers.ops import cli_env

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
