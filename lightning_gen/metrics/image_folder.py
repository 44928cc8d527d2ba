"""A folder of images as an evaluation input: checked once, hashed by content, decoded lazily.

:func:`scan_image_folder` reads every file once: it hashes names and bytes (the cache key of a real
folder's features) and decodes each image fully, so that every unusable file (unreadable or
truncated; a channel count or size other than the folder's) is reported in ONE paragraph before
any feature is computed. Hashing the bytes costs about one read of the folder (SHA-256 runs at
hundreds of MB/s; decoding and Inception cost far more per image), and unlike names, sizes and
mtimes it never serves stale features for an edited file nor recomputes for a copied folder.

:class:`ImageFolderImages` then decodes the files again, per item, as uint8 ``(C, H, W)``, the way
torch-fidelity reads a folder (``PIL.Image.open(path).convert(mode)``, files sorted by path).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from gen_common.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
_LISTED = 20  # file names listed per problem before "and N more"


def image_channels(mode: str) -> int:
    """Channel count of a PIL mode as the metrics see it: 1 (grey), 3 (colour) or 4 (with alpha)."""
    if mode in _GREY_MODES:
        return 1
    return 4 if mode in ("RGBA", "RGBa", "PA") else 3


@dataclass(frozen=True)
class ImageFolderScan:
    """What :func:`scan_image_folder` found: the usable files and their common shape.

    Attributes:
        folder: The folder.
        paths: Image files, sorted by name (torch-fidelity's order).
        sha256: Hash of the names and bytes of ``paths`` (the real-feature cache key).
        channels: Channel count of every image (see :func:`image_channels`).
        size: ``(height, width)`` of every image.
    """

    folder: str
    paths: tuple[str, ...]
    sha256: str
    channels: int
    size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1 if self.channels == 1 else 3, *self.size)

    def describe(self) -> str:
        kind = {1: "grey", 3: "RGB", 4: "RGBA (alpha dropped)"}[self.channels]
        return f"{len(self.paths)} {kind} {self.size[0]}x{self.size[1]} images"


def _names(paths: list[str]) -> str:
    shown = ", ".join(Path(p).name for p in paths[:_LISTED])
    return shown + (f" and {len(paths) - _LISTED} more" if len(paths) > _LISTED else "")


def _minority(groups: dict[object, list[str]], label: str) -> tuple[object, list[str]]:
    """The most common value of a property, and a sentence listing the files that differ from it."""
    common = max(groups, key=lambda k: len(groups[k]))
    others = [
        f"{label(k)} in {len(v)} file{'s' if len(v) > 1 else ''}: {_names(v)}" for k, v in groups.items() if k != common
    ]
    return common, others


def scan_image_folder(folder: str | Path, limit: int | None = None, flag: str = "--images") -> ImageFolderScan:
    """Check, hash and measure the first ``limit`` images of ``folder`` (sorted by name).

    Raises one :class:`ConfigError` paragraph listing every unusable file: unreadable ones, and
    those whose channel count or size differs from the folder's majority.
    """
    from PIL import Image

    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"`{flag}` {folder} is not a folder of images.")
    paths = sorted(str(p) for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None:
        paths = paths[:limit]
    if len(paths) < 2:
        raise ConfigError(
            f"`{flag}` {folder} holds {len(paths)} images ({'/'.join(IMAGE_SUFFIXES)}); at least 2 are needed."
        )
    digest = hashlib.sha256()
    unreadable: list[str] = []
    by_channels: dict[int, list[str]] = {}
    by_size: dict[tuple[int, int], list[str]] = {}
    for path in paths:
        blob = Path(path).read_bytes()
        digest.update(Path(path).name.encode() + b"\0" + len(blob).to_bytes(8, "little") + blob)
        try:
            with Image.open(io.BytesIO(blob)) as image:
                image.load()  # full decode: a truncated file fails here, not mid-evaluation
                mode, (width, height) = image.mode, image.size
        except Exception as err:  # noqa: BLE001 - PIL raises many types for bad files
            unreadable.append(f"{Path(path).name} ({type(err).__name__})")
            continue
        by_channels.setdefault(image_channels(mode), []).append(path)
        by_size.setdefault((height, width), []).append(path)
    problems: list[str] = []
    if unreadable:
        shown = ", ".join(unreadable[:_LISTED]) + (
            f" and {len(unreadable) - _LISTED} more" if len(unreadable) > _LISTED else ""
        )
        problems.append(f"{len(unreadable)} unreadable: {shown}")
    channels, size = 0, (0, 0)
    if by_channels:
        channels, others = _minority(by_channels, lambda c: f"{c} channel{'s' if c > 1 else ''}")
        if others:
            problems.append(f"channel counts differ from the majority's {channels}: " + "; ".join(others))
        size, others = _minority(by_size, lambda s: f"{s[0]}x{s[1]}")
        if others:
            problems.append(f"sizes differ from the majority's {size[0]}x{size[1]}: " + "; ".join(others))
    if problems:
        raise ConfigError(
            f"`{flag}` {folder}: {len(paths)} images checked, some cannot be used: "
            + "; ".join(problems)
            + ". Fix: remove or convert these files so that every image of the folder decodes and has one channel "
            "count and one size (the metrics compare sets of equally shaped images), then run again."
        )
    return ImageFolderScan(str(folder), tuple(paths), digest.hexdigest(), channels, size)


class ImageFolderImages(Dataset):
    """The scanned files as uint8 ``(C, H, W)`` tensors, grey (``C=1``) or RGB (``C=3``).

    Args:
        scan: A :func:`scan_image_folder` result.
        channels: 1 or 3 (default: the folder's own, alpha dropped as torch-fidelity does).
    """

    def __init__(self, scan: ImageFolderScan, channels: int | None = None) -> None:
        self.scan = scan
        self.channels = channels or scan.shape[0]
        self.mode = "L" if self.channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.scan.paths)

    def __getitem__(self, i: int) -> Tensor:
        from PIL import Image

        with Image.open(self.scan.paths[i]) as image:
            array = np.asarray(image.convert(self.mode))
        x = torch.from_numpy(array.copy())
        return x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1).contiguous()

    def stack(self) -> Tensor:
        """All images as one ``(N, C, H, W)`` uint8 tensor."""
        return torch.stack([self[i] for i in range(len(self))])


def shape_mismatch(a: tuple[int, int, int], b: tuple[int, int, int], name_a: str, name_b: str) -> str | None:
    """A one-line warning when two image sets differ in channels or size, else ``None``."""
    if a == b:
        return None
    what = [w for w, differs in (("channels", a[0] != b[0]), ("size", a[1:] != b[1:])) if differs]
    return (
        f"warning: {name_a} ({a[0]}x{a[1]}x{a[2]}) and {name_b} ({b[0]}x{b[1]}x{b[2]}) differ in {' and '.join(what)}; "
        "FID compares them anyway (Inception sees every image resized to 299x299 RGB), but such a difference alone moves FID."
    )
