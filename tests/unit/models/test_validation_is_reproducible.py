"""Validation of one checkpoint gives one number: its noise is keyed by (fixed seed, rank, batch), not the global RNG."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_gen.models import VAE, Diffusion
from lightning_gen.models.base import GenerativeModel
from lightning_gen.models.gan import GAN
from lightning_gen.nets.diffusion import SamplingConfig, UNetConfig
from tests.helpers.cli import run_main
from tests.helpers.paths import EXPERIMENTS

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_UNET = UNetConfig(widths=(16, 32), layers_per_block=1, attention=(False, True), norm_num_groups=8)


def _gan() -> tuple[GAN, tuple[torch.Tensor, torch.Tensor]]:
    model = GAN(image_shape=(1, 28, 28), latent_dim=8, g_width=4, d_width=4, noise_seed=0)
    return model, (torch.rand(6, 1, 28, 28), torch.zeros(6, dtype=torch.long))


def _conditional_gan() -> tuple[GAN, tuple[torch.Tensor, torch.Tensor]]:
    model = GAN(image_shape=(1, 28, 28), num_classes=3, conditional=True, latent_dim=8, g_width=4, d_width=4)
    return model, (torch.rand(6, 1, 28, 28), torch.arange(6) % 3)


def _vae() -> tuple[VAE, tuple[torch.Tensor, torch.Tensor]]:
    model = VAE(image_shape=(1, 12, 12), latent_dim=3, widths=(4,), iw_samples=7)
    return model, (torch.rand(5, 1, 12, 12).bernoulli(), torch.zeros(5, dtype=torch.long))


def _diffusion() -> tuple[Diffusion, tuple[torch.Tensor, torch.Tensor]]:
    model = Diffusion(image_shape=(1, 16, 16), unet=TINY_UNET, sampling=SamplingConfig(steps=2), noise_seed=0)
    return model, (torch.rand(3, 1, 16, 16), torch.zeros(3, dtype=torch.long))


FAMILIES: dict[str, Callable[[], tuple[GenerativeModel, tuple[torch.Tensor, torch.Tensor]]]] = {
    "gan": _gan,
    "conditional_gan": _conditional_gan,
    "vae": _vae,
    "diffusion": _diffusion,
}


def _logged(model: GenerativeModel, step: str, batch, batch_idx: int, monkeypatch: pytest.MonkeyPatch) -> dict:
    """What ``validation_step`` / ``test_step`` logs (``log_dict`` captured: no trainer here)."""
    logged: dict[str, float] = {}
    monkeypatch.setattr(model, "log_dict", lambda d, **_: logged.update({k: float(v) for k, v in d.items()}))
    with torch.no_grad():
        getattr(model, step)(batch, batch_idx)
    assert logged
    return logged


#: every random validation / test step (the GAN has no test_step; GPT's validation draws nothing)
STEPS = [(f, "validation_step") for f in FAMILIES] + [("vae", "test_step"), ("diffusion", "test_step")]


def test_the_steps_checked_are_every_random_eval_step() -> None:
    defined = {
        (f, step)
        for f, make in FAMILIES.items()
        for step in ("validation_step", "test_step")
        if getattr(type(make()[0]), step) is not getattr(L.LightningModule, step)
    }
    assert defined == set(STEPS)


@pytest.mark.parametrize(("family", "step"), STEPS)
def test_eval_step_ignores_and_keeps_the_global_rng(family: str, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model, batch = FAMILIES[family]()
    model.eval()
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = _logged(model, step, batch, 3, monkeypatch)
    assert torch.equal(torch.get_rng_state(), state), "a validation step advanced the global RNG"
    torch.manual_seed(2)
    second = _logged(model, step, batch, 3, monkeypatch)
    assert first == second
    assert _logged(model, step, batch, 4, monkeypatch) != first  # the batch index is part of the key


def test_gan_validation_leaves_the_training_noise_stream_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    model, batch = _gan()
    _logged(model.eval(), "validation_step", batch, 0, monkeypatch)
    assert model._noise is None  # the stateful training stream was not even created


def test_eval_generator_is_keyed_by_rank_and_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = _vae()
    draw = lambda batch_idx: torch.randn(4, generator=model.eval_generator(batch_idx))  # noqa: E731
    rank0 = draw(0)
    assert torch.equal(rank0, draw(0)) and not torch.equal(rank0, draw(1))
    monkeypatch.setattr(VAE, "global_rank", property(lambda self: 1))
    rank1 = draw(0)
    assert not torch.equal(rank0, rank1) and torch.equal(rank1, draw(0))  # ranks differ, each reproducible


def _gan_run(root: Path, max_epochs: int, seed: int, ckpt_path: str | None = None) -> tuple[GAN, L.Trainer]:
    """A tiny conditional GAN, 4 iterations per epoch, validated (2 batches) after each epoch."""
    L.seed_everything(seed)  # the global RNG differs between the runs; validation must not care
    model = GAN(image_shape=(1, 28, 28), num_classes=3, conditional=True, latent_dim=8, g_width=4, d_width=4)
    model.noise_seed = 0  # training noise: the same stream in every run
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(64, 1, 28, 28, generator=g), torch.randint(3, (64,), generator=g))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=2,
        default_root_dir=str(root),
        callbacks=[ModelCheckpoint(dirpath=root / "ckpt", save_last=True)],
    )
    trainer.fit(model, DataLoader(data, batch_size=16), DataLoader(data, batch_size=16), ckpt_path=ckpt_path)
    return model, trainer


def test_gan_val_d_fake_of_a_resumed_run_and_of_validate_equals_the_unbroken_run(tmp_path: Path) -> None:
    unbroken, t_full = _gan_run(tmp_path / "full", max_epochs=2, seed=0)
    _gan_run(tmp_path / "half", max_epochs=1, seed=0)
    _, t_resumed = _gan_run(tmp_path / "resumed", 2, seed=5, ckpt_path=str(tmp_path / "half" / "ckpt" / "last.ckpt"))
    keys = ("val/d_real", "val/d_fake")
    at_end = {k: float(t_full.callback_metrics[k]) for k in keys}
    assert {k: float(t_resumed.callback_metrics[k]) for k in keys} == at_end
    torch.manual_seed(7)
    fresh = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, limit_val_batches=2)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(64, 1, 28, 28, generator=g), torch.randint(3, (64,), generator=g))
    (validated,) = fresh.validate(
        GAN(image_shape=(1, 28, 28), num_classes=3, conditional=True, latent_dim=8, g_width=4, d_width=4),
        DataLoader(data, batch_size=16),
        ckpt_path=str(tmp_path / "full" / "ckpt" / "last.ckpt"),
        verbose=False,
    )
    assert {k: validated[k] for k in keys} == at_end


def _last_val(metrics_csv: Path, key: str) -> float:
    rows = [r for r in csv.DictReader(metrics_csv.open()) if r.get(key)]
    assert rows, f"no {key} row in {metrics_csv}"
    return float(rows[-1][key])


def test_vae_val_elbo_at_the_end_of_fit_equals_validate_of_its_checkpoint(tmp_path: Path) -> None:
    common = [
        "--config",
        str(EXPERIMENTS / "vae_mnist.yaml"),
        "--config",
        str(EXPERIMENTS / "debug.yaml"),
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=2",
        "--trainer.max_epochs=1",
        "--run.wandb=disabled",
        "--run.root",
        str(tmp_path / "runs"),
    ]
    fit = run_main(["fit", *common, "--run.id=r"], tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run = tmp_path / "runs" / "vae_mnist" / "r"
    checkpoint = run / "checkpoints" / "last.ckpt"
    validate = run_main(["validate", *common, "--ckpt_path", str(checkpoint)], tmp_path)
    assert validate.returncode == 0, validate.stderr[-3000:]
    (sub_run,) = (run / "eval").glob("validate-*")
    at_fit, in_validate = _last_val(run / "metrics.csv", "val/elbo"), _last_val(sub_run / "metrics.csv", "val/elbo")
    assert at_fit == in_validate, (at_fit, in_validate)
