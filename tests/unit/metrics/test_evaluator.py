"""The image evaluator with a tiny deterministic feature extractor: batch-size independence, FID of a set with itself, settings.

Inception itself is tested in ``test_inception.py`` (few images); here a fixed random projection
(``tests.helpers.metrics``) stands in for it."""

from __future__ import annotations

import pytest
import torch

from gen_common.errors import ConfigError
from lightning_gen.metrics.evaluator import EvalSettings, ImageEvaluator, prefetch
from lightning_gen.metrics.fidelity import FIDFamily, KIDFamily
from tests.helpers.metrics import BlobSampler, fake_extractor, families, real_dataset


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


def test_prefetch_keeps_order_and_raises() -> None:
    assert list(prefetch(iter(range(7)))) == list(range(7))

    def broken():
        yield 1
        raise ValueError("decode failed")

    with pytest.raises(ValueError, match="decode failed"):
        list(prefetch(broken()))
