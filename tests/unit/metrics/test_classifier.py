"""The dataset classifier of the classifier metrics (FD-classifier, IS-classifier): trained once, cached, equal to torch-fidelity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.synthetic import SyntheticImageDataModule
from lightning_gen.metrics.cache import FeatureCache
from lightning_gen.metrics.classifier import EXTRACTOR_NAME, build_classifier_extractor, ensure_classifier
from lightning_gen.metrics.evaluator import EvalSettings, ImageEvaluator
from lightning_gen.metrics.fidelity import ClassifierFDFamily, ClassifierISFamily
from tests.helpers.metrics import LABELLED_SHAPE, labelled_blobs


def test_classifier_is_trained_once_cached_and_registered(tmp_path: Path) -> None:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    dm = labelled_blobs()
    path, meta = ensure_classifier(dm, tmp_path, epochs=10)
    assert meta["test_accuracy"] > 0.5  # 4 classes: well above chance
    mtime = path.stat().st_mtime_ns
    path2, _ = ensure_classifier(labelled_blobs(), tmp_path, epochs=10)
    assert path2 == path and path.stat().st_mtime_ns == mtime  # cached, not retrained
    assert EXTRACTOR_NAME in FEATURE_EXTRACTORS_REGISTRY


def test_classifier_metrics_equal_torch_fidelity_and_self_fd_is_zero(tmp_path: Path) -> None:
    import torch_fidelity

    dm = labelled_blobs()
    extractor = build_classifier_extractor(dm, ("penultimate", "logits"), tmp_path, epochs=2)
    real = (dm.test_set.images[:64]).clone()  # uint8 (64, 1, 16, 16)
    fake = SyntheticImageDataModule(
        image_shape=LABELLED_SHAPE, num_train=64, num_val=64, num_test=64, num_classes=4, seed=7
    )
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
