"""CIFAR-10: no offline copy exists, so a missing or unreadable folder is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamodules import CIFAR10DataModule
from gen_common.errors import DataNotFoundError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cifar10_missing_says_no_offline_copy_exists(tmp_path: Path) -> None:
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "nowhere"))
    assert dm.image_shape == (3, 32, 32) and dm.num_classes == 10
    with pytest.raises(DataNotFoundError, match="No offline copy of CIFAR-10 exists") as err:
        dm.prepare_data()
    assert "cifar-10-batches-py" in str(err.value) and "download=true" in str(err.value)
    with pytest.raises(DataNotFoundError, match="No offline copy"):
        dm.setup("fit")


def test_cifar10_unreadable_folder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataNotFoundError, match="readable form"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup("fit")
