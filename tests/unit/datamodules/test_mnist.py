"""MNIST / Fashion-MNIST sources (package, torchvision-layout data_dir, download), splits, errors."""

import gzip
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import FashionMNISTDataModule, MNISTDataModule
from datamodules.mnist import read_idx
from gen_common.errors import ConfigError, DataNotFoundError


@pytest.fixture(scope="module")
def mnist_arrays():
    return MNISTDataModule().load_arrays()


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(data)
    else:
        path.write_bytes(data)


def test_packaged_mnist_is_the_official_split(mnist_arrays):
    x_train, y_train, x_test, y_test = mnist_arrays
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and x_train.max() == 255
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_split_is_deterministic_per_seed_and_batches_keep_the_contract():
    a, b, c = MNISTDataModule(seed=1), MNISTDataModule(seed=1), MNISTDataModule(seed=2)
    for dm in (a, b, c):
        dm.setup("fit")
    assert (len(a.train_set), len(a.val_set), len(a.test_set)) == (55000, 5000, 10000)
    torch.testing.assert_close(a.val_set.images, b.val_set.images)
    assert not torch.equal(a.val_set.images, c.val_set.images)
    x, y = next(iter(a.train_dataloader()))
    assert x.shape == (128, *a.image_shape) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == torch.int64


def test_dynamic_binarization_resamples_train_and_fixes_eval():
    dm = MNISTDataModule(binarize="dynamic", seed=0)
    dm.setup("fit")
    first, second = dm.train_set[0][0], dm.train_set[0][0]
    assert set(first.unique().tolist()) <= {0.0, 1.0} and not torch.equal(first, second)
    torch.testing.assert_close(dm.val_set[3][0], dm.val_set[3][0])
    assert set(dm.val_set[3][0].unique().tolist()) <= {0.0, 1.0}


def test_data_dir_in_torchvision_layout_takes_precedence(tmp_path, mnist_arrays):
    x_train, y_train, x_test, y_test = mnist_arrays
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x_train = 255 - x_train  # distinguishable from the packaged copy
    # torchvision keeps both plain and .gz files: accept either
    for name, array in [
        ("train-images-idx3-ubyte", x_train),
        ("train-labels-idx1-ubyte", y_train),
        ("t10k-images-idx3-ubyte.gz", x_test),
        ("t10k-labels-idx1-ubyte.gz", y_test),
    ]:
        _write_idx(raw / name, array)
    got = MNISTDataModule(data_dir=str(tmp_path)).load_arrays()
    np.testing.assert_array_equal(got[0], x_train)
    np.testing.assert_array_equal(read_idx(raw / "t10k-images-idx3-ubyte.gz"), x_test)


def test_data_dir_with_wrong_files_names_the_expected_layout(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "notes.txt").write_text("not mnist")
    with pytest.raises(DataNotFoundError, match=r"torchvision layout.*train-images-idx3-ubyte.*Fix"):
        MNISTDataModule(data_dir=str(tmp_path)).setup()


def test_missing_package_names_setup_and_alternatives(monkeypatch):
    monkeypatch.setattr(MNISTDataModule, "_package_available", lambda self: False)
    with pytest.raises(DataNotFoundError, match=r"scripts/setup.sh.*data_dir.*download=true"):
        MNISTDataModule().prepare_data()


def test_download_without_network_fails_fast_with_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(MNISTDataModule, "_package_available", lambda self: False)
    start = time.monotonic()
    with pytest.raises(DataNotFoundError, match="Downloading MNIST"):
        MNISTDataModule(data_dir=str(tmp_path / "dl"), download=True, download_timeout_s=2).prepare_data()
    assert time.monotonic() - start < 60


def test_fashion_mnist_from_debian_package():
    if not FashionMNISTDataModule.debian_dir.is_dir():
        pytest.skip("Debian dataset-fashion-mnist not installed (bash scripts/setup.sh installs it)")
    x_train, y_train, x_test, y_test = FashionMNISTDataModule().load_arrays()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist() == [6000] * 10


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="val_size"):
        MNISTDataModule(val_size=0)
    with pytest.raises(ConfigError, match="batch_size"):
        MNISTDataModule(batch_size=0)
