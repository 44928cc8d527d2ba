"""FID's trace term from the smallest matrix at hand equals torch-fidelity's own ``fid_statistics_to_metric``."""

from __future__ import annotations

import pytest
import torch
from torch_fidelity.metric_fid import fid_statistics_to_metric

from lightning_gen.metrics.fidelity import fid_statistics, frechet_distance


@pytest.mark.parametrize("n_fake,n_real", [(20, 30), (30, 20), (10, 500), (100, 200)])
def test_every_route_gives_torch_fidelitys_fid(n_fake: int, n_real: int) -> None:
    """64-d features: fewer images than dimensions on one side (cross-product singular values), on the fake
    side with sqrt(sigma_real) (Gram matrix), on neither (S sigma_fake S), and without any shortcut."""
    g = torch.Generator().manual_seed(n_fake)
    fake = torch.randn(n_fake, 64, generator=g) * 1.3 + 0.2
    real = torch.rand(n_real, 64, generator=g) ** 2
    stats_fake, stats_real = fid_statistics(fake), fid_statistics(real)
    reference = fid_statistics_to_metric(stats_fake, stats_real, verbose=False)["frechet_inception_distance"]
    with_root = fid_statistics(real, with_sqrt=True)
    routes = {
        "features": frechet_distance(stats_fake, stats_real, fake, real),
        "root": frechet_distance(stats_fake, with_root, fake),
        "root, no features": frechet_distance(stats_fake, with_root),
        "torch-fidelity": frechet_distance(stats_fake, stats_real),
    }
    assert reference > 10
    for route, value in routes.items():
        assert value == pytest.approx(reference, rel=1e-7), route


@pytest.mark.parametrize("n_real,has_root", [(12, False), (40, True)])
def test_real_statistics_carry_sqrt_sigma_only_when_the_real_set_outnumbers_the_dimension(
    n_real: int, has_root: bool
) -> None:
    """16-d features: 12 real images never need sqrt(sigma_real) (every FID takes the features route), 40 may."""
    from lightning_gen.metrics.evaluator import EvalSettings, ImageEvaluator
    from lightning_gen.metrics.fidelity import FIDFamily
    from tests.helpers.metrics import fake_extractor, real_dataset

    evaluator = ImageEvaluator([FIDFamily()], fake_extractor(), EvalSettings(num_samples=8, num_real=n_real))
    entry = evaluator.real_features(real_dataset(40), "blobs")
    assert ("sqrt_sigma" in entry["stats"]["2048"]) is has_root
