"""``lightning-gen sample`` of image checkpoints: tiny VAE, conditional GAN and conditional diffusion models,
each fitted for two steps through ``lightning-gen fit``, sampled through the CLI (in this process).

The PNGs must hold the model's own samples under the same seed (``generated_images``: chunk noise from
the seed), a grid the run's grid layout, a folder what ``evaluate --fake`` reads; each bad request is one
paragraph that writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gen.metrics.distributed import chunk_seed
from lightning_gen.metrics.extractors import ImageFeatureExtractor
from tests.helpers.cli import run_main
from tests.helpers.metrics import ProjectionExtractor

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = """\
data:
  class_path: datamodules.SyntheticImageDataModule
  init_args: {{image_shape: {shape}, num_train: 32, num_val: 8, num_test: 8, num_classes: 4, batch_size: 16}}
trainer:
  max_steps: 2
  limit_val_batches: 0
  num_sanity_val_steps: 0
  accelerator: cpu
  enable_model_summary: false
  enable_progress_bar: false
  logger: false
run: {{root: runs, wandb: disabled}}
"""
MODELS = {
    "vae": ("[1, 16, 16]", "{class_path: lightning_gen.models.VAE, init_args: {latent_dim: 4, widths: [8, 16]}}"),
    "gan": (
        "[1, 28, 28]",
        "{class_path: lightning_gen.models.GAN, init_args: {conditional: true, latent_dim: 8, g_width: 8, d_width: 8}}",
    ),
    "diffusion": (
        "[1, 8, 8]",
        "{class_path: lightning_gen.models.Diffusion, init_args: {conditional: true, "
        "unet: {widths: [8, 16], attention: [false, true], norm_num_groups: 4}, "
        "schedule: {num_train_timesteps: 100}, sampling: {sampler: ddim, steps: 3}, ema_decay: 0.9}}",
    ),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``last.ckpt`` of each tiny family after two steps of ``lightning-gen fit``."""
    cwd = tmp_path_factory.mktemp("fits")
    out = {}
    for name, (shape, model) in MODELS.items():
        (cwd / f"{name}.yaml").write_text(f"model: {model}\n" + DATA.format(shape=shape))
        proc = run_main(["fit", "--config", f"{name}.yaml", "--run.id", name], cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = cwd / "runs" / name / name / "checkpoints" / "last.ckpt"
    return out


@pytest.fixture
def projection(monkeypatch: pytest.MonkeyPatch) -> None:
    """``evaluate`` builds a fixed random projection instead of Inception (seconds instead of a minute)."""

    def build(layers, weights="auto", cache_dir=None, precision="fp32"):  # noqa: ANN001, ANN202
        return ImageFeatureExtractor(
            ProjectionExtractor(), "projection", {"source": "test", "sha256": "0" * 64}, "none", rgb=True
        )

    monkeypatch.setattr("lightning_gen.metrics.extractors.build_inception_extractor", build)


def _model(ckpt: Path, cls_path: str):  # noqa: ANN202 - any family
    from lightning_gen.utils.imports import import_object

    return import_object(cls_path, "model").load_from_checkpoint(ckpt, map_location="cpu").eval()


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _sample(args: list[str], cwd: Path) -> str:
    proc = run_main(["sample", *args], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _refused(args: list[str], cwd: Path) -> str:
    proc = run_main(["sample", *args], cwd)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lightning-gen: error: "), proc.stderr
    return lines[0]


def _expected(model, n: int, seed: int, **kwargs) -> np.ndarray:  # noqa: ANN001, ANN003
    """The model's own samples, (n, H, W) uint8: one chunk, its noise seeded as ``generated_images`` seeds it."""
    g = torch.Generator().manual_seed(chunk_seed(seed, 0))
    with torch.no_grad():
        x = model.sample(n, generator=g, **kwargs)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()


def test_vae_grid_and_folder_hold_the_models_samples(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    ckpt = checkpoints["vae"]
    out = _sample(["--ckpt", str(ckpt), "--num", "6", "--out", "grid.png", "--seed", "3", "--nrow", "3"], tmp_path)
    assert out.strip() == "wrote a grid of 6 images to grid.png"
    expected = _expected(_model(ckpt, "lightning_gen.models.VAE"), 6, seed=3)
    grid = _png(tmp_path / "grid.png")
    assert grid.shape == (2 + 2 * 18, 2 + 3 * 18)  # 2 rows x 3 columns of 16 px, 2 px padding
    for i in range(6):
        r, c = divmod(i, 3)
        assert np.array_equal(grid[2 + 18 * r : 18 + 18 * r, 2 + 18 * c : 18 + 18 * c], expected[i])
    _sample(["--ckpt", str(ckpt), "--num", "6", "--out", "imgs", "--seed", "3"], tmp_path)
    files = sorted((tmp_path / "imgs").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(6)]
    assert all(Image.open(f).mode == "L" and np.array_equal(_png(f), expected[i]) for i, f in enumerate(files))


def test_conditional_gan_labels_and_a_folder_that_evaluate_reads(
    checkpoints: dict[str, Path], tmp_path: Path, projection: None
) -> None:
    ckpt = checkpoints["gan"]
    _sample(["--ckpt", str(ckpt), "--num", "8", "--labels", "1", "3", "--out", "odd", "--batch_size", "4"], tmp_path)
    files = sorted((tmp_path / "odd").iterdir())
    assert [f.name for f in files] == [f"{i:06d}-label{(1, 3)[i % 2]}.png" for i in range(8)]
    model = _model(ckpt, "lightning_gen.models.GAN")
    # first chunk of --batch_size 4: labels 1 3 1 3, noise seeded by chunk_seed(0, 0)
    expected = _expected(model, 4, seed=0, labels=torch.tensor([1, 3, 1, 3]))
    assert all(np.array_equal(_png(f), expected[i]) for i, f in enumerate(files[:4]))
    assert _png(files[0]).shape == (28, 28)
    assert not np.array_equal(expected, _expected(model, 4, seed=0, labels=torch.zeros(4, dtype=torch.long)))
    # default labels (0 1 2 3 0 ...) and chunks: the very images `evaluate --ckpt` measures with the same seed
    _sample(["--ckpt", str(ckpt), "--num", "8", "--out", "fake"], tmp_path)
    real = tmp_path / "real"
    real.mkdir()
    for i in range(8):
        Image.fromarray((np.random.default_rng(i).random((28, 28)) * 255).astype(np.uint8)).save(real / f"{i}.png")
    common = ["--real", "real", "--metrics", "fid", "kid", "--kid_subset_size", "4"]
    values = []
    for source in (["--fake", "fake"], ["--ckpt", str(ckpt), "--num_samples", "8"]):
        proc = run_main(["evaluate", *source, *common, "--out", f"{len(values)}.json"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        record = json.loads((tmp_path / f"{len(values)}.json").read_text())
        assert record["cards"]["fid"]["n_fake"] == 8
        values.append(record["values"])
    assert values[0] == values[1] and np.isfinite(values[0]["fid"])


def test_conditional_diffusion_with_labels_guidance_and_sampler(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    ckpt = checkpoints["diffusion"]
    args = ["--ckpt", str(ckpt), "--num", "4", "--labels", "2", "--guidance_scale", "2.5", "--sampler", "dpm++"]
    _sample([*args, "--steps", "2", "--out", "g.png", "--seed", "5"], tmp_path)
    model = _model(ckpt, "lightning_gen.models.Diffusion")
    kwargs = {"labels": torch.full((4,), 2), "guidance_scale": 2.5, "sampler": "dpm_solver++", "steps": 2}
    expected = _expected(model, 4, seed=5, **kwargs)
    grid = _png(tmp_path / "g.png")
    assert grid.shape == (2 + 10, 2 + 4 * 10)  # one row of four 8x8 images
    assert all(np.array_equal(grid[2:10, 2 + 10 * i : 10 + 10 * i], expected[i]) for i in range(4))
    assert not np.array_equal(expected, _expected(model, 4, seed=5, **(kwargs | {"guidance_scale": 0.0})))


def test_bad_requests_are_one_paragraph_each(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    vae, gan, diffusion = (str(checkpoints[k]) for k in ("vae", "gan", "diffusion"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.png").write_bytes(b"")
    (tmp_path / "old.png").write_bytes(b"keep")
    cases = {
        ("--ckpt", vae, "--labels", "1", "--out", "a"): "holds an unconditional lightning_gen.models.vae.VAE",
        ("--ckpt", gan, "--labels", "4", "--out", "a"): "`--labels` [4] out of range: ",
        ("--ckpt", gan, "--labels", "0", "1", "2", "--num", "2", "--out", "a"): "gives 3 labels for 2 images",
        ("--ckpt", gan, "--sampler", "ddim", "--out", "a"): "`--sampler` choose a diffusion model's denoising sampler",
        ("--ckpt", gan, "--guidance_scale", "2", "--out", "a"): "only conditional diffusion models have",
        ("--ckpt", vae, "--out", "full"): "already exists (a folder holding 1 entries)",
        ("--ckpt", vae, "--out", "old.png"): "already exists (a file)",
        ("--ckpt", vae, "--out", "g.jpg"): "names a .jpg file",
        ("--ckpt", vae, "--prompt", "ROMEO:", "--out", "a"): "but `--prompt` is a flag of text models",
        ("--ckpt", diffusion, "--steps", "0", "--out", "a"): "`--steps` must be >= 1, got 0.",
    }
    for args, words in cases.items():
        assert words in _refused(list(args), tmp_path), args
    assert not (tmp_path / "a").exists() and (tmp_path / "old.png").read_bytes() == b"keep"
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["x.png"]


def test_unconditional_diffusion_refuses_labels_and_guidance(tmp_path: Path) -> None:
    """A checkpoint as the family writes it, without a fit: the refusals need only the loaded model."""
    from lightning.pytorch import Trainer

    from lightning_gen.models.diffusion import Diffusion

    model = Diffusion(
        [1, 8, 8],
        unet={"widths": [8, 16], "attention": [False, True], "norm_num_groups": 4},
        schedule={"num_train_timesteps": 10},
    )
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    trainer.strategy.connect(model)
    ckpt = tmp_path / "checkpoints" / "u.ckpt"
    trainer.save_checkpoint(ckpt)
    config = tmp_path / "config.yaml"  # the run's config names the class when the checkpoint does not
    config.write_text("model: {class_path: lightning_gen.models.Diffusion}\n")
    assert "trained with `conditional: false`" in _refused(["--ckpt", str(ckpt), "--labels", "1"], tmp_path)
    assert "there is nothing to guide" in _refused(["--ckpt", str(ckpt), "--guidance_scale", "3"], tmp_path)
