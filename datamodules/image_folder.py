"""Any folder of images (e.g. CelebA's ``img_align_celeba``): centre-crop to a square, resize, split by seed.

Images are found recursively by extension, sorted by path (so the split is reproducible), and
decoded lazily by the DataLoader. A folder laid out as ``root/<class>/...`` (torchvision's
``ImageFolder`` convention: sub-folders and no image directly in ``root``) is labelled: the classes
are the sub-folders in sorted order, label ``k`` the ``k``-th, so class-conditional models train on
it. A flat folder is unlabelled (labels all zero, ``num_classes`` ``None``); ``labels`` forces either.

Files are not checked up front (decoding a 200k-image folder takes minutes): a file that does not
decode stops training with a :class:`CorruptDataError` naming it, also from DataLoader workers.
``python -m datamodules.check_images ROOT`` lists every unreadable image at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.base import ImageDataModule
from gen_common.errors import ConfigError, CorruptDataError, DataNotFoundError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# what PIL raises for unreadable files: unknown/truncated data (OSError), broken headers (SyntaxError, ValueError...)
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    Image.DecompressionBombError,
)


def load_square_image(path: str | Path, size: int, channels: int) -> Tensor:
    """Decode ``path``, centre-crop the largest square, resize to ``size`` (bicubic); float ``(C, size, size)`` in [0, 1]."""
    with Image.open(path) as img:
        img = img.convert("RGB" if channels == 3 else "L")
        img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))
        array = np.asarray(img, dtype=np.uint8)
    x = torch.from_numpy(array.copy())
    x = x.permute(2, 0, 1) if x.dim() == 3 else x.unsqueeze(0)
    return x.float().div_(255.0)


class ImageFileDataset(Dataset):
    """Items ``(image (C, size, size) in [0, 1], label)`` decoded from a list of files (labels: all 0 if not given)."""

    def __init__(self, files: Sequence[Path], size: int, channels: int, labels: Sequence[int] | None = None) -> None:
        self.files = list(files)
        self.size = size
        self.channels = channels
        self.labels = list(labels) if labels is not None else [0] * len(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        path = self.files[index]
        try:
            image = load_square_image(path, self.size, self.channels)
        except DECODE_ERRORS as err:
            raise CorruptDataError(
                f"Image {path} cannot be decoded ({type(err).__name__}: {err}). Fix: re-encode that file (the run keeps "
                "its data split, so `--ckpt_path last` resumes) or delete it and start a new run; "
                f"`python -m datamodules.check_images {path.parent}` lists every unreadable image under a folder."
            ) from None
        return image, torch.tensor(self.labels[index], dtype=torch.int64)


class ImageFolderDataModule(ImageDataModule):
    """Images from ``root`` (recursively), centre-cropped and resized to ``image_size`` squares."""

    def __init__(
        self,
        root: str,
        image_size: int = 64,
        channels: int = 3,
        val_fraction: float = 0.05,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        labels: Literal["auto", "folders", "none"] = "auto",
        batch_size: int = 64,
        num_workers: int = 2,
        seed: int = 0,
    ) -> None:
        """
        Args:
            root: Folder searched recursively for images.
            image_size: Side of the square images yielded (after centre crop and resize).
            channels: 3 (RGB) or 1 (greyscale).
            val_fraction: Share of the files held out for validation (and test), chosen by ``seed``.
            extensions: File name endings that count as images (case-insensitive).
            labels: ``folders``: one class per sub-folder of ``root`` (sorted names; every one must hold
                images); ``none``: unlabelled; ``auto``: ``folders`` when ``root`` has sub-folders and no
                image of its own, else ``none``.
            batch_size: Images per batch.
            num_workers: DataLoader workers (decoding JPEGs is the cost).
            seed: Seed of the split and of the shuffling.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if image_size < 1 or channels not in (1, 3):
            raise ConfigError(
                f"`data.init_args.image_size` must be >= 1 and `channels` 1 or 3, got {image_size} and {channels}."
            )
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"`data.init_args.val_fraction` must be in (0, 1), got {val_fraction}.")
        self.root = root
        self.image_size = image_size
        self.channels = channels
        self.val_fraction = val_fraction
        self.extensions = tuple(e.lower() for e in extensions)
        self.labels = labels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def class_names(self) -> list[str] | None:
        """The class sub-folders of a labelled folder, sorted (label ``k`` is ``class_names[k]``); else ``None``."""
        root = Path(self.root)
        if self.labels == "none" or not root.is_dir():
            return None
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if self.labels == "auto" and (
            not folders or any(p.is_file() and p.suffix.lower() in self.extensions for p in root.iterdir())
        ):
            return None
        return folders

    @property
    def num_classes(self) -> int | None:
        names = self.class_names
        return len(names) if names is not None else None

    @property
    def dataset_id(self) -> str:
        name = Path(self.root).resolve().name + (f"-classes{self.num_classes}" if self.num_classes is not None else "")
        return f"imagefolder-{name}-{self.channels}x{self.image_size}-val{self.val_fraction}-seed{self.seed}"

    def _images_under(self, folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in self.extensions)

    def list_labelled_files(self) -> tuple[list[Path], list[int]]:
        """All image files under ``root`` (sorted) and their labels; one paragraph for a missing, empty or
        too small folder, or a class folder without images."""
        root = Path(self.root)
        if not root.is_dir():
            raise DataNotFoundError(
                f"Image folder '{root}' does not exist. Fix: set `--data.init_args.root` to a folder of images."
            )
        names = self.class_names
        if names is None:
            files = self._images_under(root)
            labels = [0] * len(files)
        else:
            per_class = [self._images_under(root / name) for name in names]
            empty = [name for name, found in zip(names, per_class) if not found]
            if empty:
                raise DataNotFoundError(
                    f"Image folder '{root}' is labelled by its sub-folders (one class each), but the class folder(s) "
                    f"{', '.join(repr(n) for n in empty[:10])} hold no image with extensions {self.extensions}. Fix: put "
                    f"images in them or remove them (the labels of the other classes would change), or set "
                    f"`--data.init_args.labels=none` to train unlabelled. Nothing was written."
                )
            files = [p for found in per_class for p in found]
            labels = [k for k, found in enumerate(per_class) for _ in found]
        if len(files) < 2:
            raise DataNotFoundError(
                f"Image folder '{root}' holds {len(files)} image(s) with extensions {self.extensions}; at least 2 are needed "
                f"(one for training, one for validation). Fix: point `--data.init_args.root` at the images or extend "
                f"`--data.init_args.extensions`."
            )
        return files, labels

    def list_files(self) -> list[Path]:
        """All image files under ``root``, sorted; raises :class:`DataNotFoundError` when there are none."""
        return self.list_labelled_files()[0]

    def prepare_data(self) -> None:
        self.list_labelled_files()  # fail fast

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        files, labels = self.list_labelled_files()
        n_val = min(len(files) - 1, max(1, round(self.val_fraction * len(files))))
        perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(self.seed)).tolist()
        val_idx, train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])
        self.train_set = ImageFileDataset(
            [files[i] for i in train_idx], self.image_size, self.channels, [labels[i] for i in train_idx]
        )
        self.val_set = ImageFileDataset(
            [files[i] for i in val_idx], self.image_size, self.channels, [labels[i] for i in val_idx]
        )
        self.test_set = self.val_set
