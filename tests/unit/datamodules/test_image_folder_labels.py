"""Labelled image folders (``root/<class>/...``, torchvision's ImageFolder convention): classes, labels, a
conditional model trains on one; a flat folder stays unlabelled; an empty class folder is one paragraph."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import ImageFolderDataModule
from gen_common.errors import DataNotFoundError
from tests.helpers.cli import run_main
from tests.helpers.shards import TINY_DIFFUSION, image_ids, write_id_images


def test_class_folders_give_sorted_classes_and_labels(tmp_path: Path) -> None:
    root = write_id_images(tmp_path / "pets", 30, classes=3)
    (root / "class_1" / "more").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "class_1" / "more" / "nested.png")
    (root / "README.txt").write_text("not an image")  # a non-image file beside the classes changes nothing
    dm = ImageFolderDataModule(str(root), image_size=8, channels=1, val_fraction=0.2, batch_size=4, num_workers=0)
    assert dm.class_names == ["class_0", "class_1", "class_2"] and dm.num_classes == 3
    assert dm.dataset_id == "imagefolder-pets-classes3-1x8-val0.2-seed0"
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == 31
    for dataset in (dm.train_set, dm.val_set):
        for path, label in zip(dataset.files, dataset.labels):
            assert path.relative_to(root).parts[0] == dm.class_names[label]
    x, y = dm.train_set[0]
    assert y.dtype == torch.int64 and int(y) == image_ids(x[None])[0] % 3


def test_flat_folder_and_labels_none_stay_unlabelled(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for path in write_id_images(tmp_path / "classes", 6, classes=2).rglob("*.png"):
        flat.mkdir(exist_ok=True)
        path.rename(flat / path.name)
    dm = ImageFolderDataModule(str(flat), image_size=8, channels=1)
    assert dm.num_classes is None and dm.dataset_id == "imagefolder-flat-1x8-val0.05-seed0"
    dm.setup("fit")
    assert {int(y) for _, y in dm.train_set} == {0}
    labelled = write_id_images(tmp_path / "again", 6, classes=2)
    assert ImageFolderDataModule(str(labelled), labels="none").num_classes is None
    assert ImageFolderDataModule(str(flat), labels="folders").num_classes == 0  # no class folder: refused below
    with pytest.raises(DataNotFoundError, match="holds 0 image"):
        ImageFolderDataModule(str(flat), labels="folders").prepare_data()


def test_an_empty_class_folder_is_one_paragraph_and_fit_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = write_id_images(tmp_path / "images", 12, classes=3)
    (root / "class_9").mkdir()
    (root / "class_9" / "notes.txt").write_text("no image here")
    with pytest.raises(DataNotFoundError) as err:
        ImageFolderDataModule(str(root)).prepare_data()
    assert re.fullmatch(
        rf"Image folder '{re.escape(str(root))}' is labelled by its sub-folders \(one class each\), but the class "
        r"folder\(s\) 'class_9' hold no image with extensions .*\. Fix: put images in them or remove them .*, or set "
        r"`--data.init_args.labels=none` to train unlabelled\. Nothing was written\.",
        str(err.value),
    )
    proc = run_main(
        ["fit", "--model", TINY_DIFFUSION, "--data=datamodules.ImageFolderDataModule", f"--data.init_args.root={root}"]
        + ["--run.root", "runs", "--run.wandb=disabled", "--trainer.max_steps=1"],
        tmp_path,
    )
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == f"lightning-gen: error: {err.value}"
    assert not (tmp_path / "runs").exists()


def test_a_conditional_model_trains_on_a_labelled_folder(tmp_path: Path) -> None:
    root = write_id_images(tmp_path / "images", 24, classes=3)
    args = ["fit", "--model", TINY_DIFFUSION, "--data=datamodules.ImageFolderDataModule"]
    args += [f"--data.init_args.{k}={v}" for k, v in dict(root=root, image_size=8, channels=1, batch_size=8).items()]
    args += ["--data.init_args.num_workers=0", "--trainer.max_steps=2", "--trainer.limit_val_batches=1"]
    args += ["--trainer.num_sanity_val_steps=0", "--trainer.enable_model_summary=false", "--trainer.logger=false"]
    proc = run_main([*args, "--run.root", "runs", "--run.wandb=disabled", "--run.id", "c"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ckpt,) = (tmp_path / "runs").glob("*/c/checkpoints/last.ckpt")
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert saved["global_step"] == 2 and saved["hyper_parameters"]["num_classes"] == 3
    assert saved["hyper_parameters"]["conditional"] is True
