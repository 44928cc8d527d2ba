"""A config the parser refuses: one paragraph naming the file or key and the fix, no usage dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_gen.__main__ import main


def _refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "usage:" not in err and len(err.strip().splitlines()) == 1
    return err


def test_broken_yaml_names_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "my experiment.yaml"
    bad.write_text("model:\n  class_path: lightning_gen.models.VAE\n\tinit_args: {}\n")
    err = _refusal(["fit", "--config", str(bad)], capsys)
    assert f"{bad} is not valid YAML" in err and "line 3, column 1" in err and "<unicode string>" not in err


def test_unknown_model_key_names_the_class_and_what_it_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("model:\n  class_path: lightning_gen.models.VAE\n  init_args: {latent: 3}\n")
    err = _refusal(["fit", "--config", str(config)], capsys)
    assert (
        "`model` (lightning_gen.models.VAE): Option 'latent' is not accepted (VAE takes: image_shape, latent_dim" in err
    )
    assert "NoneType" not in err


def test_unknown_flag_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    err = _refusal(["fit", "--trainer.max_epochz=1"], capsys)
    assert "unrecognized arguments: --trainer.max_epochz=1" in err and "`lightning-gen fit --help`" in err
