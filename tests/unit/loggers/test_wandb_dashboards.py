"""W&B dashboards that compare: best summaries by the contract's ``monitor``, flat short-named hyperparameters.

A real offline W&B run, trained by a real Trainer, read back from its ``.wandb`` file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_gen.loggers.wandb import (
    STEP_METRIC,
    WandbLogger,
    flat_hyperparameters,
    metric_directions,
    read_offline_summary,
)
from lightning_gen.models import VAE
from lightning_gen.models.gan import GAN
from tests.helpers.paths import EXPERIMENTS

#: per validation epoch: the monitor (max) peaks mid-run, the checkpointed one (min) dips mid-run
ELBO = [-120.0, -95.0, -110.0]
FID = [40.0, 12.0, 30.0]
OTHER = [3.0, 1.0, 2.0]


class Scripted(L.LightningModule):
    """A one-weight model whose validation metrics follow the scripts above, epoch by epoch."""

    monitor = ("val/elbo", "max")  # the generator contract's class attribute, as the VAE's

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return (self.w - batch[0].mean()) ** 2

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        epoch = self.current_epoch
        self.log_dict({"val/elbo": ELBO[epoch], "val/fid": FID[epoch], "val/other": OTHER[epoch]})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.ones(2, 1)), batch_size=1)


def _offline_run(save_dir: Path, run_id: str) -> Path:
    (run,) = save_dir.glob(f"wandb/offline-run-*-{run_id}")
    return run


def _step_metrics(run_dir: Path) -> dict[str, str]:
    """``{metric or glob: its x-axis}`` as the run's ``metric`` records define them."""
    out = subprocess.run(
        [
            shutil.which("wandb") or str(Path(sys.executable).parent / "wandb"),
            "leet",
            "inspect",
            "--json",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    records = [json.loads(line)["metric"] for line in out.splitlines() if '"type":"metric"' in line]
    return {r.get("name") or r["glob_name"]: r["step_metric"] for r in records if "step_metric" in r}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")  # Lightning's offline logger sets it too: restored after the test
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_offline_run_keeps_the_monitors_best_and_the_config_under_compares_names(offline, tmp_path):
    logger = WandbLogger(mode="offline", project="t", save_dir=str(tmp_path), id="dash")
    config = yaml.safe_load((EXPERIMENTS / "vae_mnist.yaml").read_text())
    config["model"]["init_args"]["optimizer"]["init_args"]["lr"] = 0.000731  # a number no default has
    config["config"] = [str(EXPERIMENTS / "vae_mnist.yaml")]  # the CLI's own key: --config's files
    logger.log_hyperparams({"config": config})  # what the CLI's LoggerSaveConfigCallback sends
    trainer = L.Trainer(
        max_epochs=3,
        logger=logger,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/fid", mode="min")],
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Scripted(), _loader(), _loader())
    logger.experiment.finish()

    run = read_offline_summary(_offline_run(tmp_path, "dash"))
    summary = run["summary"]
    assert summary["val/elbo"] == {"max": max(ELBO)} and max(ELBO) != ELBO[-1]  # the monitor: best, not last
    assert summary["val/fid"] == {"min": min(FID)} and min(FID) != FID[-1]  # a ModelCheckpoint's direction
    assert summary["val/other"] == OTHER[-1]  # the rest: final
    assert _step_metrics(_offline_run(tmp_path, "dash")) == {
        "*": STEP_METRIC,
        "val/elbo": STEP_METRIC,
        "val/fid": STEP_METRIC,
    }

    flat = run["config"]
    assert flat["model.optimizer.lr"] == pytest.approx(0.000731)
    assert flat["model.class_path"] == "lightning_gen.models.VAE"
    assert flat["model.latent_dim"] == 32 and flat["data.batch_size"] == 128
    assert not any(".init_args" in key for key in flat if key != "config")
    nested = flat["config"]  # the nested config is still there, whole
    assert nested["model"]["init_args"]["optimizer"]["init_args"]["lr"] == pytest.approx(0.000731)


def test_a_resumed_run_gets_the_definitions_again(offline, tmp_path):
    """Offline, a resume with the same id is a new segment: its summaries are defined anew."""
    for segment, values in enumerate(([-5.0, -1.0, -3.0], [-4.0, -2.0, -6.0])):
        logger = WandbLogger(mode="offline", project="t", save_dir=str(tmp_path / f"s{segment}"), id="again")
        logger.log_graph(
            VAE(image_shape=(1, 8, 8), latent_dim=2, widths=[4])
        )  # what the Trainer calls as a stage starts
        for step, value in enumerate(values):
            logger.log_metrics({"val/elbo": value}, step=step)
        logger.experiment.finish()
        summary = read_offline_summary(_offline_run(tmp_path / f"s{segment}", "again"))["summary"]
        assert summary["val/elbo"] == {"max": max(values)}


def test_directions_come_from_the_contract_only() -> None:
    assert metric_directions(VAE) == {"val/elbo": "max"}
    assert metric_directions(GAN) == {}  # no monitor: every summary is the last value
    assert metric_directions(object()) == {}


def test_flat_names_are_compares() -> None:
    nested = {"model": {"class_path": "m.M", "init_args": {"optimizer": {"init_args": {"lr": 0.1}}}}, "config": ["a"]}
    assert flat_hyperparameters(nested) == {"model.class_path": "m.M", "model.optimizer.lr": 0.1}
