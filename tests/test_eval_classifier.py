"""Classifier-based metrics (FD-classifier, IS-classifier) and ``lightning-gen evaluate`` on small images."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from PIL import Image

from datamodules.synthetic import SyntheticImageDataModule
from gen_common.errors import ConfigError
from lightning_gen.callbacks import ClassifierFD, ClassifierIS, InceptionScore
from lightning_gen.metrics.cache import FeatureCache
from lightning_gen.metrics.classifier import EXTRACTOR_NAME, build_classifier_extractor, ensure_classifier
from lightning_gen.metrics.evaluator import EvalSettings, ImageEvaluator
from lightning_gen.metrics.fidelity import ClassifierFDFamily, ClassifierISFamily
from lightning_gen.models import VAE

SHAPE = (1, 16, 16)


def datamodule() -> SyntheticImageDataModule:
    return SyntheticImageDataModule(
        image_shape=SHAPE, num_train=256, num_val=64, num_test=64, num_classes=4, batch_size=32
    )


def test_classifier_is_trained_once_cached_and_registered(tmp_path: Path) -> None:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    dm = datamodule()
    path, meta = ensure_classifier(dm, tmp_path, epochs=10)
    assert meta["test_accuracy"] > 0.5  # 4 classes: well above chance
    mtime = path.stat().st_mtime_ns
    path2, _ = ensure_classifier(datamodule(), tmp_path, epochs=10)
    assert path2 == path and path.stat().st_mtime_ns == mtime  # cached, not retrained
    assert EXTRACTOR_NAME in FEATURE_EXTRACTORS_REGISTRY


def test_classifier_metrics_equal_torch_fidelity_and_self_fd_is_zero(tmp_path: Path) -> None:
    import torch_fidelity

    dm = datamodule()
    extractor = build_classifier_extractor(dm, ("penultimate", "logits"), tmp_path, epochs=2)
    real = (dm.test_set.images[:64]).clone()  # uint8 (64, 1, 16, 16)
    fake = SyntheticImageDataModule(image_shape=SHAPE, num_train=64, num_val=64, num_test=64, num_classes=4, seed=7)
    fake.setup("test")
    fake_images = fake.test_set.images.clone()
    fams = [ClassifierFDFamily(), ClassifierISFamily(splits=4)]
    ev = ImageEvaluator(
        fams, extractor, EvalSettings(num_samples=64, num_real=64, batch_size=10), FeatureCache(tmp_path / "real")
    )
    ours = ev.evaluate(fake_images.float() / 255.0, dm.test_set, dm.dataset_id).values

    class U8(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    ref = torch_fidelity.calculate_metrics(
        input1=U8(fake_images),
        input2=U8(real),
        fid=True,
        isc=True,
        isc_splits=4,
        feature_extractor=EXTRACTOR_NAME,
        feature_extractor_weights_path=extractor.weights["path"],
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
        batch_size=64,
    )
    assert ours["fd_classifier"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)
    assert ours["is_classifier_mean"] == pytest.approx(ref["inception_score_mean"], rel=1e-4)
    assert 1.0 <= ours["is_classifier_mean"] <= 4.0  # IS is bounded by the number of classes
    same = ImageEvaluator([ClassifierFDFamily()], extractor, EvalSettings(num_samples=64, num_real=64)).evaluate(
        real.float() / 255.0, dm.test_set, dm.dataset_id
    )
    assert abs(same.values["fd_classifier"]) < 1e-6
    assert (
        same.cards["fd_classifier"]["extractor"] == EXTRACTOR_NAME
        and same.cards["fd_classifier"]["weights_test_accuracy"] is not None
    )


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
    trainer.fit(VAE(image_shape=SHAPE, latent_dim=4, widths=(8, 16)), datamodule())
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
        trainer.fit(VAE(image_shape=SHAPE, latent_dim=4, widths=(8, 16)), datamodule())


def test_evaluate_command_on_checkpoint_and_image_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lightning_gen.__main__ import main

    model = VAE(image_shape=SHAPE, latent_dim=4, widths=(8, 16))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule())
    ckpt = tmp_path / "vae.ckpt"
    trainer.save_checkpoint(ckpt)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"class_path": "lightning_gen.models.VAE"},
                "data": {
                    "class_path": "datamodules.SyntheticImageDataModule",
                    "init_args": {
                        "image_shape": list(SHAPE),
                        "num_train": 256,
                        "num_val": 64,
                        "num_test": 64,
                        "num_classes": 4,
                    },
                },
            }
        )
    )
    common = [
        "--config",
        str(config),
        "--metrics",
        "fd_classifier",
        "is_classifier",
        "--num_real",
        "40",
        "--cache_dir",
        str(tmp_path / "cache"),
        "--classifier_epochs",
        "1",
    ]
    main(["evaluate", "--ckpt", str(ckpt), "--num_samples", "30", "--out", str(tmp_path / "ckpt.json"), *common])
    report = json.loads((tmp_path / "ckpt.json").read_text())
    assert set(report["values"]) == {"fd_classifier", "is_classifier_mean", "is_classifier_std"}
    assert report["cards"]["fd_classifier"]["n_fake"] == 30 and report["cards"]["fd_classifier"]["n_real"] == 40
    assert "fd_classifier" in capsys.readouterr().out  # the rich table
    # the same samples written as PNGs and evaluated as a folder give the same numbers
    from lightning_gen.commands.evaluate import generated_images

    images = generated_images(model.eval(), 30, 100, 0, "cpu")
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img[0].numpy()).save(folder / f"{i:03d}.png")
    main(["evaluate", "--images", str(folder), "--out", str(tmp_path / "folder.json"), *common])
    folder_report = json.loads((tmp_path / "folder.json").read_text())
    assert folder_report["values"] == pytest.approx(report["values"], rel=1e-9)


def test_evaluate_command_errors_are_one_paragraph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lightning_gen.__main__ import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--images", str(tmp_path), "--metrics", "fid"])
    assert "No real images: pass `--real DIR` (a folder of real images) or `--config`" in capsys.readouterr().err
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  class_path: datamodules.SyntheticImageDataModule\n")
    with pytest.raises(SystemExit):
        main(["evaluate", "--images", str(tmp_path), "--config", str(config), "--metrics", "fidd"])
    assert "`--metrics` ['fidd'] unknown" in capsys.readouterr().err
