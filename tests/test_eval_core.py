"""Evaluation machinery with a tiny deterministic feature extractor: exact DDP split, cache, callbacks.

Inception itself is tested in test_eval_inception.py (few images); here a fixed random projection
stands in for it so that the split/gather/cache/callback logic runs in seconds, also under a real
2-process gloo process group (forked workers: they inherit the imports, so the test takes seconds).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from datamodules.synthetic import SyntheticImageDataModule
from gen_common.errors import ConfigError
from lightning_gen.callbacks import FID, KID, PrecisionRecall
from lightning_gen.metrics import cache as cache_mod
from lightning_gen.metrics.cache import FeatureCache, atomic_torch_save
from lightning_gen.metrics.distributed import owned_chunks
from lightning_gen.metrics.evaluator import EvalSettings, ImageEvaluator
from lightning_gen.metrics.extractors import ImageFeatureExtractor
from lightning_gen.metrics.fidelity import FIDFamily, KIDFamily, PrecisionRecallFamily
from lightning_gen.models import VAE


class ProjectionExtractor(FeatureExtractorBase):
    """Per-image features: a fixed random projection of 4x4-pooled pixels (16-d), batch independent."""

    def __init__(self, name: str = "projection", features_list: tuple[str, ...] = ("2048",), dim: int = 16) -> None:
        super().__init__(name, list(features_list))
        self.proj = torch.nn.Parameter(
            torch.randn(3 * 16, dim, generator=torch.Generator().manual_seed(0)), requires_grad=False
        )

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x.float() / 255.0, 4).flatten(1)  # (B, 48)
        f = pooled.double() @ self.proj.double()
        return tuple(f.float() for _ in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("2048", "logits_unbiased")


def fake_extractor() -> ImageFeatureExtractor:
    return ImageFeatureExtractor(
        ProjectionExtractor(), "projection", {"source": "test", "sha256": "0" * 64}, "none", rgb=True
    )


class BlobSampler:
    """A stand-in generator: images are a deterministic function of the generator's noise."""

    def __init__(self) -> None:
        self.drawn = 0

    def __call__(self, n: int, generator: torch.Generator) -> Tensor:
        self.drawn += n
        return torch.rand(n, 1, 16, 16, generator=generator)


def real_dataset(n: int = 40):
    dm = SyntheticImageDataModule(image_shape=(1, 16, 16), num_train=64, num_val=n, num_test=n)
    dm.setup("test")
    return dm.test_set


def families():
    return [FIDFamily(), KIDFamily(subsets=10, subset_size=20), PrecisionRecallFamily()]


@pytest.mark.parametrize("n,chunk,world", [(10, 3, 2), (7, 100, 4), (100, 7, 3), (2, 1, 5)])
def test_owned_chunks_tile_exactly(n: int, chunk: int, world: int) -> None:
    items = [i for r in range(world) for a, b in owned_chunks(n, chunk, r, world) for i in range(a, b)]
    assert sorted(items) == list(range(n))  # no padding, no duplicates


def test_batch_size_does_not_change_results() -> None:
    results = []
    for batch_size in (3, 64):
        ev = ImageEvaluator(
            families(),
            fake_extractor(),
            EvalSettings(num_samples=30, num_real=40, sample_chunk=7, batch_size=batch_size),
        )
        results.append(ev.evaluate(BlobSampler(), real_dataset(), "synthetic").values)
    assert results[0] == pytest.approx(results[1], rel=1e-9, abs=1e-12)


def test_fid_of_a_set_with_itself_is_zero() -> None:
    images = torch.rand(40, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    ev = ImageEvaluator([FIDFamily()], fake_extractor(), EvalSettings(num_samples=40, num_real=40))

    class Same(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 40

        def __getitem__(self, i: int):
            return images[i], 0

    assert abs(ev.evaluate(images, Same(), "same").values["fid"]) < 1e-6


def test_cache_hit_does_no_real_image_work(tmp_path: Path) -> None:
    settings = EvalSettings(num_samples=20, num_real=40, sample_chunk=8)
    first = fake_extractor()
    cache = FeatureCache(tmp_path / "cache")
    r1 = ImageEvaluator(families(), first, settings, cache).evaluate(BlobSampler(), real_dataset(), "synthetic")
    assert first.calls == 20 + 40 and cache.misses == 1
    second = fake_extractor()
    cache2 = FeatureCache(tmp_path / "cache")
    r2 = ImageEvaluator(families(), second, settings, cache2).evaluate(BlobSampler(), real_dataset(), "synthetic")
    assert second.calls == 20  # only the generated images went through the extractor
    assert cache2.hits == 1 and r1.values == r2.values
    # anything in the protocol changes the key: here the number of real images
    third = fake_extractor()
    ImageEvaluator(families(), third, EvalSettings(num_samples=20, num_real=39, sample_chunk=8), cache2).evaluate(
        BlobSampler(), real_dataset(), "synthetic"
    )
    assert third.calls == 20 + 39


def test_interrupted_atomic_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "entry.pt"

    def dying_save(obj, f):
        f.write(b"half a tensor")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(cache_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"x": torch.ones(3)}, target)
    assert list(tmp_path.iterdir()) == []  # neither the entry nor a temp file
    monkeypatch.undo()
    atomic_torch_save({"x": torch.ones(3)}, target)
    assert torch.equal(torch.load(target)["x"], torch.ones(3))


def test_kid_subset_size_is_clipped_and_recorded() -> None:
    ev = ImageEvaluator([KIDFamily(subset_size=1000)], fake_extractor(), EvalSettings(num_samples=12, num_real=30))
    result = ev.evaluate(BlobSampler(), real_dataset(), "synthetic")
    assert result.cards["kid"]["kid_subset_size"] == 12
    assert result.cards["kid"]["n_fake"] == 12 and result.cards["kid"]["n_real"] == 30


def test_settings_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="num_samples"):
        EvalSettings(num_samples=1)
    with pytest.raises(ConfigError, match="split"):
        EvalSettings(split="validation")
    with pytest.raises(ConfigError, match="num_real"):
        ImageEvaluator([FIDFamily()], fake_extractor(), EvalSettings(num_samples=4, num_real=41)).evaluate(
            BlobSampler(), real_dataset(), "s"
        )


# --- 2-process DDP (gloo) ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str, cache_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        extractor = fake_extractor()
        sampler = BlobSampler()
        ev = ImageEvaluator(
            families(),
            extractor,
            EvalSettings(num_samples=23, num_real=37, sample_chunk=4, batch_size=5),
            FeatureCache(cache_dir),
        )
        result = ev.evaluate(sampler, real_dataset(), "synthetic")
        # second evaluation: cache warm on rank 0, others do no real work either
        calls_before = extractor.calls
        again = ev.evaluate(sampler, real_dataset(), "synthetic")
        record = {
            "values": result.values,
            "again": again.values,
            "drawn": sampler.drawn,
            "calls": calls_before,
            "calls_second": extractor.calls - calls_before,
        }
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    single = ImageEvaluator(
        families(), fake_extractor(), EvalSettings(num_samples=23, num_real=37, sample_chunk=4, batch_size=5)
    )
    reference = single.evaluate(BlobSampler(), real_dataset(), "synthetic").values
    mp.start_processes(
        _ddp_worker,
        args=(2, _free_port(), str(tmp_path), str(tmp_path / "cache")),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rec in ranks:
        assert rec["values"] == pytest.approx(reference, rel=1e-9, abs=1e-12)  # same numbers on every rank
        assert rec["again"] == rec["values"]
    # exact split: 23 = 12 + 11 generated images (chunks of 4: 0,8,16 | 4,12,20), real 37 likewise
    assert sorted(r["drawn"] for r in ranks) == [2 * 11, 2 * 12]
    assert sum(r["calls"] for r in ranks) == 23 + 37
    assert sum(r["calls_second"] for r in ranks) == 23  # cache hit: no real images anywhere


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
