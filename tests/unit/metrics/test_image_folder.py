"""Image folders for evaluation: unusable files in one paragraph, the content hash, decoding like torch-fidelity, shape warnings."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from gen_common.errors import ConfigError
from lightning_gen.metrics.image_folder import ImageFolderImages, scan_image_folder, shape_mismatch
from tests.helpers.metrics import save_crops


def test_unusable_files_are_listed_in_one_paragraph(tmp_path: Path) -> None:
    folder = save_crops(data.chelsea(), tmp_path / "fake", 4)
    Image.fromarray(data.chelsea()[:32, :32]).save(folder / "small.png")
    Image.fromarray(data.camera()[:64, :64]).save(folder / "grey.png")
    (folder / "truncated.png").write_bytes((folder / "000.png").read_bytes()[:200])
    (folder / "notes.jpg").write_text("not an image")
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    with pytest.raises(ConfigError) as err:
        scan_image_folder(folder, flag="--fake")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        f"`--fake` {folder}: 8 images checked, some cannot be used: 2 unreadable: notes.jpg "
        f"(UnidentifiedImageError), truncated.png (OSError)"
    )
    assert "channel counts differ from the majority's 3: 1 channel in 1 file: grey.png" in message
    assert "sizes differ from the majority's 64x64: 32x32 in 1 file: small.png" in message
    assert "Fix: remove or convert these files" in message


def test_content_hash_follows_bytes_not_mtimes(tmp_path: Path) -> None:
    folder = save_crops(data.astronaut(), tmp_path / "real", 3)
    first = scan_image_folder(folder)
    assert (first.channels, first.size, first.shape, len(first.paths)) == (3, (64, 64), (3, 64, 64), 3)
    os.utime(folder / "001.png", (time.time() + 100, time.time() + 100))
    assert scan_image_folder(folder).sha256 == first.sha256  # touched: same features, same key
    path = folder / "002.png"
    blob = bytearray(path.read_bytes())
    stat = path.stat()
    image = np.asarray(Image.open(path)).copy()
    image[0, 0, 0] ^= 1
    Image.fromarray(image).save(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime (cp -p / rsync -t style)
    assert path.read_bytes() != bytes(blob)
    assert scan_image_folder(folder).sha256 != first.sha256
    assert scan_image_folder(folder, limit=2).sha256 != scan_image_folder(folder).sha256


def test_folder_images_decode_like_torch_fidelity(tmp_path: Path) -> None:
    from torch_fidelity.datasets import ImagesPathDataset

    folder = save_crops(data.coffee(), tmp_path / "rgb", 3)
    scan = scan_image_folder(folder)
    ours = ImageFolderImages(scan).stack()
    theirs = torch.stack([ImagesPathDataset(list(scan.paths))[i] for i in range(3)])
    assert ours.dtype == torch.uint8 and torch.equal(ours, theirs)
    grey = scan_image_folder(save_crops(data.camera(), tmp_path / "grey", 2, grey=True))
    images = ImageFolderImages(grey)
    assert images.stack().shape == (2, 1, 64, 64)
    theirs = torch.stack([ImagesPathDataset(list(grey.paths))[i] for i in range(2)])
    assert torch.equal(images.stack().expand(-1, 3, -1, -1), theirs)  # grey repeated = PIL's L -> RGB


def test_shape_warning_is_one_line() -> None:
    assert shape_mismatch((3, 64, 64), (3, 64, 64), "a", "b") is None
    line = shape_mismatch((1, 28, 28), (3, 64, 64), "--fake f", "--real r")
    assert line is not None and "\n" not in line
    assert line.startswith("warning: --fake f (1x28x28) and --real r (3x64x64) differ in channels and size;")
