"""Every experiment file (and every layer file on ``vae_mnist.yaml``) parses and instantiates through the CLI."""

from pathlib import Path

import pytest
import yaml

from lightning_gen.cli.trainer import build_cli
from tests.helpers.paths import EXPERIMENTS

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
