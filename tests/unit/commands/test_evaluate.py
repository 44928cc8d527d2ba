"""``lightning-gen evaluate``: a checkpoint or an image folder, the content-hash cache, warnings, one-paragraph errors.

Most tests swap Inception for the tiny projection extractor of ``tests.helpers.metrics``."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import yaml
from PIL import Image
from skimage import data

from gen_common.errors import ConfigError
from lightning_gen.__main__ import main
from lightning_gen.commands import evaluate
from lightning_gen.metrics.evaluator import EvalSettings, ImageEvaluator
from lightning_gen.metrics.extractors import ImageFeatureExtractor
from lightning_gen.metrics.fidelity import FIDFamily
from lightning_gen.metrics.image_folder import ImageFolderImages, scan_image_folder
from lightning_gen.models import VAE
from tests.helpers.cli import run_main
from tests.helpers.metrics import LABELLED_SHAPE, ProjectionExtractor, fake_extractor, labelled_blobs, save_crops


def test_evaluate_command_on_checkpoint_and_image_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lightning_gen.__main__ import main

    model = VAE(image_shape=LABELLED_SHAPE, latent_dim=4, widths=(8, 16))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, labelled_blobs())
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
                        "image_shape": list(LABELLED_SHAPE),
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


def args_for(*argv: str) -> object:
    return evaluate.parse_args(list(argv))


@pytest.fixture
def projection(monkeypatch: pytest.MonkeyPatch) -> list[ImageFeatureExtractor]:
    """``evaluate`` builds the projection extractor instead of Inception; the built ones are listed."""
    built: list[ImageFeatureExtractor] = []

    def build(layers, weights="auto", cache_dir=None, precision="fp32"):
        extractor = ImageFeatureExtractor(
            ProjectionExtractor(),
            "projection",
            {"source": "test", "sha256": "0" * 64},
            "none",
            rgb=True,
            precision=precision,
        )
        built.append(extractor)
        return extractor

    monkeypatch.setattr("lightning_gen.metrics.extractors.build_inception_extractor", build)
    return built


def test_two_folders_without_config_use_the_content_cache(tmp_path: Path, projection, capsys) -> None:
    real = save_crops(data.chelsea(), tmp_path / "real", 6)
    fake = save_crops(data.astronaut(), tmp_path / "fake", 5, size=48)
    argv = [
        "--real",
        str(real),
        "--fake",
        str(fake),
        "--metrics",
        "fid",
        "kid",
        "pr",
        "--kid_subset_size",
        "4",
        "--cache_dir",
        str(tmp_path / "cache"),
    ]
    report = evaluate.run(args_for(*argv))
    assert report["source"]["dataset_id"].startswith("folder-sha256:")
    card = report["cards"]["fid"]
    assert (card["n_fake"], card["n_real"], card["split"], card["autocast"]) == (5, 6, "folder", "off")
    assert report["warnings"] == [capsys.readouterr().err.strip()]
    assert "(3x48x48) and --real" in report["warnings"][0] and "differ in size;" in report["warnings"][0]
    # the same numbers as the evaluator on the decoded tensors
    evaluator = ImageEvaluator([FIDFamily()], fake_extractor(), EvalSettings(num_samples=5, split="folder"))
    direct = evaluator.evaluate(
        ImageFolderImages(scan_image_folder(fake)).stack(), ImageFolderImages(scan_image_folder(real)).stack(), "x"
    )
    assert report["values"]["fid"] == pytest.approx(direct.values["fid"], rel=1e-9)
    again = evaluate.run(args_for(*argv))  # cache hit: no real image through the extractor
    assert projection[-1].calls == 5 and projection[0].calls == 11
    assert again["values"] == report["values"]
    Image.fromarray(data.coffee()[:64, :64]).save(real / "000.png")  # new content: new entry
    changed = evaluate.run(args_for(*argv))
    assert projection[-1].calls == 11 and changed["values"]["fid"] != report["values"]["fid"]
    assert len(list((tmp_path / "cache" / "real_features").glob("real-*.pt"))) == 2


def test_folders_against_a_config_warn_and_classifier_needs_one(tmp_path: Path, projection, capsys) -> None:
    real = save_crops(data.chelsea(), tmp_path / "real", 3)
    fake = save_crops(data.astronaut(), tmp_path / "fake", 3)
    config = tmp_path / "c.yaml"
    config.write_text(
        "data:\n  class_path: datamodules.SyntheticImageDataModule\n  init_args: {image_shape: [1, 16, 16], num_train: 8, num_val: 8}\n"
    )
    report = evaluate.run(
        args_for(
            "--real",
            str(real),
            "--fake",
            str(fake),
            "--config",
            str(config),
            "--metrics",
            "fid",
            "--cache_dir",
            str(tmp_path / "c"),
        )
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("warning: ") for line in lines)
    assert "--fake" in lines[0] and "the dataset of --config" in lines[0] and "differ in channels and size" in lines[0]
    assert report["cards"]["fid"]["split"] == "folder"
    with pytest.raises(
        ConfigError, match=r"`fd_classifier`/`is_classifier` use a classifier trained on a dataset: pass `--config`"
    ):
        evaluate.run(args_for("--real", str(real), "--fake", str(fake), "--metrics", "fd_classifier"))
    with pytest.raises(ConfigError, match=r"No real images: pass `--real DIR`"):
        evaluate.run(args_for("--fake", str(fake), "--metrics", "fid"))


def test_cli_reports_bad_images_of_both_folders_without_traceback(tmp_path: Path) -> None:
    real = save_crops(data.chelsea(), tmp_path / "real", 3)
    fake = save_crops(data.astronaut(), tmp_path / "fake", 3)
    (real / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    Image.fromarray(data.camera()[:64, :64]).save(fake / "grey.png")
    before = {p: p.read_bytes() for p in [*real.iterdir(), *fake.iterdir()]}
    proc = run_main(["evaluate", "--real", str(real), "--fake", str(fake), "--metrics", "fid"], cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"`--fake` {fake}: 4 images checked" in proc.stderr and "1 channel in 1 file: grey.png" in proc.stderr
    assert f"`--real` {real}: 4 images checked" in proc.stderr and "1 unreadable: broken.png" in proc.stderr
    assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "evaluation.json").exists()


def test_images_folder_with_config_reports_a_corrupt_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lightning_gen.__main__ import main

    fake = save_crops(data.camera(), tmp_path / "samples", 3, size=16, grey=True)
    (fake / "003.png").write_bytes((fake / "000.png").read_bytes()[:60])
    config = tmp_path / "c.yaml"
    config.write_text(
        "data:\n  class_path: datamodules.SyntheticImageDataModule\n  init_args: {image_shape: [1, 16, 16], num_train: 8, num_val: 8}\n"
    )
    with pytest.raises(SystemExit):
        main(["evaluate", "--images", str(fake), "--config", str(config), "--metrics", "fid"])
    err = capsys.readouterr().err
    assert (
        f"`--images` {fake}: 4 images checked, some cannot be used: 1 unreadable: 003.png" in err
        and "Traceback" not in err
    )


def test_evaluate_needs_exactly_one_source(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--metrics", "fid"])
    assert exc.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "lightning-gen: error: Give exactly one of `--ckpt CKPT` (a checkpoint to sample) and `--images DIR` "
        "(`--fake DIR`: generated images)."
    )
