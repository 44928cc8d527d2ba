"""CIFAR-10 (50k train / 10k test, 32x32 colour, 10 classes) in torchvision layout.

No offline copy of CIFAR-10 exists on PyPI or Debian: either point ``data_dir`` at a folder
holding ``cifar-10-batches-py/`` (the extracted ``cifar-10-python.tar.gz``), or set
``download: true`` on a machine with network (the download is time-boxed: no network means a
clear error, not a hang).
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import torch

from datamodules.base import ImageDataModule
from datamodules.mnist import UInt8ImageDataset
from gen_common.errors import ConfigError, DataNotFoundError

CIFAR10_FOLDER = "cifar-10-batches-py"


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 from ``<data_dir>/cifar-10-batches-py`` (torchvision's ``CIFAR10`` reader)."""

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        download_timeout_s: float = 30.0,
        batch_size: int = 64,
        val_size: int = 0,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        """
        Args:
            data_dir: Folder that holds (or will hold, with ``download``) ``cifar-10-batches-py/``.
            download: Download into ``data_dir`` when the data is not there (needs network).
            download_timeout_s: Socket time-out of the download.
            batch_size: Images per batch.
            val_size: Training images held out for validation (chosen by ``seed``); ``0`` (the
                GAN protocol: train on all 50k) validates on the 10k test set instead.
            num_workers: DataLoader workers.
            seed: Seed of the split and of the shuffling.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if not 0 <= val_size < 50000:
            raise ConfigError(f"`data.init_args.val_size` must be in [0, 50000), got {val_size}.")
        self.data_dir = data_dir
        self.download = download
        self.download_timeout_s = download_timeout_s
        self.val_size = val_size

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, 32, 32)

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def dataset_id(self) -> str:
        return f"CIFAR10-val{self.val_size}-seed{self.seed}"

    def _present(self) -> bool:
        return (Path(self.data_dir) / CIFAR10_FOLDER).is_dir()

    def _missing_error(self, detail: str = "") -> DataNotFoundError:
        folder = Path(self.data_dir) / CIFAR10_FOLDER
        return DataNotFoundError(
            f"CIFAR-10 was not found in '{folder}'{detail}. No offline copy of CIFAR-10 exists (no PyPI or Debian "
            f"package ships it), so it must come from you or from the network. Fix: extract "
            f"cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) so that '{folder}' holds "
            f"data_batch_1..5 and test_batch, and set `--data.init_args.data_dir` to its parent; or add "
            f"`--data.init_args.download=true` on a machine with network."
        )

    def _dataset(self, train: bool, download: bool):
        from torchvision.datasets import CIFAR10

        return CIFAR10(self.data_dir, train=train, download=download)

    def _download(self) -> None:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(self.download_timeout_s)
        try:
            self._dataset(train=True, download=True)
            self._dataset(train=False, download=True)
        except Exception as err:  # noqa: BLE001 - any network/IO failure needs the same fix
            raise self._missing_error(f" and downloading it failed ({type(err).__name__}: {err})") from None
        finally:
            socket.setdefaulttimeout(previous)

    def prepare_data(self) -> None:
        # Fails fast, before loggers or checkpoints write anything.
        if not self._present():
            if not self.download:
                raise self._missing_error()
            self._download()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if not self._present():
            raise self._missing_error()
        try:
            train, test = self._dataset(train=True, download=False), self._dataset(train=False, download=False)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise self._missing_error(f" in a readable form ({err})") from None
        images = (
            torch.from_numpy(np.ascontiguousarray(train.data)).permute(0, 3, 1, 2).contiguous()
        )  # (50000, 3, 32, 32)
        labels = torch.tensor(train.targets, dtype=torch.int64)
        test_set = UInt8ImageDataset(
            torch.from_numpy(np.ascontiguousarray(test.data)).permute(0, 3, 1, 2).contiguous(),
            torch.tensor(test.targets, dtype=torch.int64),
        )
        if self.val_size == 0:
            self.train_set, self.val_set = UInt8ImageDataset(images, labels), test_set
        else:
            perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
            val_idx, train_idx = perm[: self.val_size], perm[self.val_size :]
            self.train_set = UInt8ImageDataset(images[train_idx], labels[train_idx])
            self.val_set = UInt8ImageDataset(images[val_idx], labels[val_idx])
        self.test_set = test_set
