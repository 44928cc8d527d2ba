"""The image-metric callbacks in a Trainer (FID/KID/PR, classifier FD/IS, Inception Score): one feature pass, cadence, refusals.

A fixed random projection (``tests.helpers.metrics``) stands in for Inception, so each runs in seconds."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from datamodules.synthetic import SyntheticImageDataModule
from gen_common.errors import ConfigError
from lightning_gen.callbacks import FID, KID, ClassifierFD, ClassifierIS, InceptionScore, PrecisionRecall
from lightning_gen.models import VAE
from tests.helpers.metrics import LABELLED_SHAPE, fake_extractor, labelled_blobs


def test_classifier_callbacks_log_named_metrics(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    common = dict(num_samples=32, num_real=32, split="val", cache_dir=str(tmp_path), classifier_epochs=1)
    callbacks = [ClassifierFD(**common), ClassifierIS(splits=2, **common)]
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=CSVLogger(tmp_path, name="", version=""),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(VAE(image_shape=LABELLED_SHAPE, latent_dim=4, widths=(8, 16)), labelled_blobs())
    assert callbacks[0].extractor is callbacks[1].extractor  # one extractor, one pass
    assert {"eval/fd_classifier", "eval/is_classifier_mean", "eval/is_classifier_std"} <= set(trainer.callback_metrics)
    assert "eval/fid" not in trainer.callback_metrics


def test_inception_score_callback_fails_at_setup_without_official_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no official weights there
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        logger=False,
        callbacks=[InceptionScore(weights="offline")],
        enable_progress_bar=False,
    )
    with pytest.raises(ConfigError, match="Inception Score needs Inception's 1008-way logits"):
        trainer.fit(VAE(image_shape=LABELLED_SHAPE, latent_dim=4, widths=(8, 16)), labelled_blobs())


# --- callbacks in a Trainer -----------------------------------------------------------------------
def _trainer_with(callbacks, tmp_path: Path, **kwargs) -> L.Trainer:
    from lightning.pytorch.loggers import CSVLogger

    options = dict(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=CSVLogger(tmp_path, name="", version=""),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    return L.Trainer(**{**options, **kwargs})


def test_callbacks_share_one_feature_pass_and_log_protocol(tmp_path: Path) -> None:
    extractor = fake_extractor()
    common = dict(
        num_samples=24, num_real=30, split="val", every_n_epochs=1, extractor=extractor, cache_dir=str(tmp_path / "c")
    )
    callbacks = [FID(**common), KID(subset_size=10, subsets=5, **common), PrecisionRecall(**common)]
    dm = SyntheticImageDataModule(image_shape=(1, 16, 16), num_train=64, num_val=32, batch_size=16)
    model = VAE(image_shape=(1, 16, 16), latent_dim=4, widths=(8, 16))
    trainer = _trainer_with(callbacks, tmp_path)
    trainer.fit(model, dm)
    assert extractor.calls == 24 + 30  # one pass for the three families, reals once
    metrics = trainer.callback_metrics
    for key in ("eval/fid", "eval/kid_mean", "eval/kid_std", "eval/precision", "eval/recall", "eval/f_score"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert callbacks[0].last_result.values["fid"] == pytest.approx(float(metrics["eval/fid"]))
    hparams = (tmp_path / "hparams.yaml").read_text()
    assert "eval_protocol" in hparams and "n_real: 30" in hparams and "weights_sha256" in hparams
    assert model.training  # the callback restored train mode after sampling in eval mode


def test_every_n_steps_cadence(tmp_path: Path) -> None:
    extractor = fake_extractor()
    cb = FID(
        num_samples=8,
        num_real=8,
        split="val",
        every_n_epochs=None,
        every_n_steps=2,
        extractor=extractor,
        cache_dir=str(tmp_path / "c"),
    )
    dm = SyntheticImageDataModule(image_shape=(1, 16, 16), num_train=96, num_val=16, batch_size=16)
    model = VAE(image_shape=(1, 16, 16), latent_dim=4, widths=(8, 16))
    trainer = _trainer_with([cb], tmp_path, limit_val_batches=0, limit_train_batches=6)
    trainer.fit(model, dm)  # 6 steps -> evaluations at steps 2, 4, 6
    assert extractor.calls == 8 + 3 * 8


@pytest.mark.slow
def test_lightning_ddp_two_cpu_processes_log_the_single_process_numbers(tmp_path: Path) -> None:
    """Trainer(devices=2, strategy="ddp_fork") on CPU/gloo: same FID/KID as one process, no hang."""
    values = {}
    for devices, strategy in ((1, "auto"), (2, "ddp_fork")):
        extractor = fake_extractor()
        common = dict(
            num_samples=25,
            num_real=30,
            split="val",
            extractor=extractor,
            cache_dir=str(tmp_path / f"c{devices}"),
            sample_chunk=4,
        )
        callbacks = [FID(**common), KID(subset_size=10, subsets=5, **common)]
        torch.manual_seed(0)
        model = VAE(image_shape=(1, 16, 16), latent_dim=4, widths=(8, 16))
        dm = SyntheticImageDataModule(image_shape=(1, 16, 16), num_train=64, num_val=32, batch_size=16)
        trainer = _trainer_with(
            callbacks, tmp_path / str(devices), devices=devices, strategy=strategy, limit_val_batches=2
        )
        trainer.validate(model, dm)  # no training: both runs evaluate the same weights
        values[devices] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("eval/")}
    assert set(values[2]) == {"eval/fid", "eval/kid_mean", "eval/kid_std"}
    assert values[2] == pytest.approx(values[1], rel=1e-9, abs=1e-12)
