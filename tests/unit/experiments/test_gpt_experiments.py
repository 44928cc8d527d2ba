"""The shipped GPT experiment files: block sizes agree, the GPU recipe's size, the LSTM baseline chosen in YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import EXPERIMENTS

TEXT = "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n" * 80

pytestmark = pytest.mark.usefixtures("one_thread")


def test_experiment_files_parse() -> None:
    for name in ("gpt_shakespeare_char", "gpt_shakespeare_bpe", "gpt_shakespeare_char_gpu"):
        config = yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text())
        assert config["model"]["class_path"] == "lightning_gen.models.GPT"
        assert config["data"]["init_args"]["block_size"] == config["model"]["init_args"]["block_size"]
    gpu = yaml.safe_load((EXPERIMENTS / "gpt_shakespeare_char_gpu.yaml").read_text())
    assert (gpu["model"]["init_args"]["n_layer"], gpu["model"]["init_args"]["n_embd"], gpu["trainer"]["max_steps"]) == (
        6,
        384,
        5000,
    )


def test_lstm_baseline_is_chosen_in_yaml(tmp_path: Path) -> None:
    from lightning_gen.cli.trainer import build_cli
    from lightning_gen.nets.lstm import LSTMDecoder

    (tmp_path / "corpus.txt").write_text(TEXT)
    cli = build_cli(
        [
            "--config",
            str(EXPERIMENTS / "gpt_shakespeare_char.yaml"),
            "--data.init_args.text_path",
            str(tmp_path / "corpus.txt"),
            "--model.init_args.architecture=lstm",
            "--model.init_args.n_layer=1",
            "--run.wandb=disabled",
            "--run.root",
            str(tmp_path / "runs"),
        ],
        run=False,
    )
    assert isinstance(cli.model.net, LSTMDecoder)
    assert cli.model.hparams.vocab_size == cli.datamodule.vocab_size == len(set(TEXT))  # linked from the data
