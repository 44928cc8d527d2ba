"""The real-feature cache: a hit does no real-image work, and an interrupted write leaves no partial file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_gen.metrics import cache as cache_mod
from lightning_gen.metrics.cache import FeatureCache, atomic_torch_save
from lightning_gen.metrics.evaluator import EvalSettings, ImageEvaluator
from tests.helpers.metrics import BlobSampler, fake_extractor, families, real_dataset


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
