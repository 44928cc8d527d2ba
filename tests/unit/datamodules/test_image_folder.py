"""The image-folder datamodule on real photos: splits, greyscale, a GAN trains on it, errors, corrupt files."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from datamodules import ImageFolderDataModule
from gen_common.errors import ConfigError, DataNotFoundError
from lightning_gen.models.gan import GAN

pytestmark = pytest.mark.usefixtures("one_thread")


def photos() -> dict[str, np.ndarray]:
    """Real photos shipped with scikit-image and scikit-learn (uint8 RGB, various sizes)."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    images = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")}
    china, flower = load_sample_images().images
    images.update(china=china, flower=flower)
    return images


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("photos")
    images = photos()
    for i, (name, array) in enumerate(sorted(images.items())):
        folder = root / ("a" if i % 2 else "b" / Path("nested"))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / f"{name}.{'png' if i % 3 == 0 else 'jpg'}", quality=95)
    (root / "notes.txt").write_text("not an image")
    return root, images


def test_image_folder_on_real_photos(photo_folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, images = photo_folder
    dm = ImageFolderDataModule(root=str(root), image_size=32, val_fraction=0.34, batch_size=2, num_workers=0, seed=1)
    assert dm.image_shape == (3, 32, 32) and dm.num_classes == 2  # root/a and root/b: one class each
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == 6 and len(dm.val_set) == 2
    assert not set(dm.train_set.files) & set(dm.val_set.files)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32 and set(y.tolist()) <= {0, 1}
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05  # real content, not a constant

    # each item is the centre square of its photo, resized: compare with an independent torch reference
    for path, (item, _) in zip(dm.train_set.files, dm.train_set):
        photo = torch.from_numpy(images[path.stem]).permute(2, 0, 1).float() / 255.0
        h, w = photo.shape[1:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        reference = F.interpolate(photo[None, :, top : top + side, left : left + side], size=32, mode="area")[0]
        assert (item - reference).abs().mean() < 0.03, path.name


def test_image_folder_split_is_reproducible_and_greyscale_works(photo_folder) -> None:
    root, _ = photo_folder
    a = ImageFolderDataModule(root=str(root), image_size=16, channels=1, val_fraction=0.34, seed=3)
    b = ImageFolderDataModule(root=str(root), image_size=16, channels=1, val_fraction=0.34, seed=3)
    a.setup(), b.setup()
    assert a.val_set.files == b.val_set.files
    assert a.train_set[0][0].shape == (1, 16, 16)


def test_gan_trains_on_the_photo_folder(photo_folder, tmp_path: Path) -> None:
    root, _ = photo_folder
    dm = ImageFolderDataModule(root=str(root), image_size=32, val_fraction=0.34, batch_size=2, num_workers=0)
    model = GAN(image_shape=dm.image_shape, latent_dim=8, g_width=4, d_width=4)
    trainer = L.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=str(tmp_path)
    )
    trainer.fit(model, dm)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/g_loss"])


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        ImageFolderDataModule(root=str(tmp_path / "missing")).prepare_data()
    (tmp_path / "one.png").write_bytes(b"")
    with pytest.raises(DataNotFoundError, match="at least 2"):
        ImageFolderDataModule(root=str(tmp_path)).prepare_data()
    with pytest.raises(ConfigError, match="val_fraction"):
        ImageFolderDataModule(root=str(tmp_path), val_fraction=1.5)


def test_corrupt_image_is_one_paragraph_naming_it_also_from_workers(tmp_path: Path) -> None:
    """Files are decoded lazily; a broken one stops the loader with its path, not a worker traceback."""
    from datamodules.check_images import main as check_images
    from datamodules.check_images import unreadable_images
    from gen_common.errors import CorruptDataError

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / f"{i}.jpg", quality=90)
    garbage, truncated = tmp_path / "3.jpg", tmp_path / "5.jpg"
    garbage.write_bytes(b"not an image at all")
    truncated.write_bytes(truncated.read_bytes()[:200])
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=8, val_fraction=0.2, batch_size=2, num_workers=2)
    dm.prepare_data()  # cheap: lists files, decodes none
    dm.setup("fit")
    with pytest.raises(CorruptDataError) as err:
        for loader in (dm.train_dataloader(), dm.val_dataloader()):
            for _ in loader:
                pass
    message = str(err.value)
    assert "Traceback" not in message and "\n" not in message
    assert re.match(
        rf"Image {re.escape(str(tmp_path))}/[35]\.jpg cannot be decoded \((UnidentifiedImageError|OSError): .*\)\. Fix: re-encode",
        message,
    )
    assert [p.name for p, _ in unreadable_images(sorted(tmp_path.glob("*.jpg")))] == ["3.jpg", "5.jpg"]
    assert check_images([str(tmp_path)]) == 1
