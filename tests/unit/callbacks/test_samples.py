"""SampleGrid logs the same fixed-seed grid to every logger kind, and leaves training RNG alone."""

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from PIL import Image

from datamodules import SyntheticImageDataModule
from lightning_gen.callbacks import SampleGrid
from lightning_gen.models import VAE


def test_grids_reach_tensorboard_and_png_and_are_not_blank(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    L.seed_everything(0)
    data = SyntheticImageDataModule(image_shape=(1, 16, 16), num_train=64, num_val=32, batch_size=16)
    model = VAE(image_shape=(1, 16, 16), latent_dim=4, widths=(8,))
    grid = SampleGrid(num_samples=16, num_reconstructions=12, nrow=4)
    tensorboard = TensorBoardLogger(str(tmp_path), name="tb", version="")
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=[CSVLogger(str(tmp_path), name="", version=""), tensorboard],
        callbacks=[grid],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, data)
    samples = np.asarray(Image.open(grid.last_paths["samples"]))
    recon = np.asarray(Image.open(grid.last_paths["reconstructions"]))
    assert samples.dtype == np.uint8 and samples.std() > 5  # a real picture, not a black or flat frame
    assert recon.shape[0] == 6 * 16 + 7 * 2  # 3 rows of inputs + 3 of reconstructions, 16 px + 2 px padding
    assert len(list((tmp_path / "samples").glob("samples_step*.png"))) == 2  # one per epoch
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert {"samples", "reconstructions"} <= set(events.Tags()["images"])


def test_sampling_uses_a_private_generator():
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, widths=(4,))
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    grid = SampleGrid(num_samples=4, nrow=2)
    first = model.sample(4, generator=torch.Generator().manual_seed(grid.seed))
    torch.testing.assert_close(torch.rand(3), expected_next)  # global RNG untouched
    torch.testing.assert_close(first, model.sample(4, generator=torch.Generator().manual_seed(grid.seed)))


def test_eval_mode_is_restored_when_sampling_fails(tmp_path, monkeypatch):
    """An error inside SampleGrid's sampling leaves the model (and each submodule) in its mode."""
    import pytest

    model = VAE(image_shape=(1, 8, 8), latent_dim=2, widths=(4,)).train()
    seen = []

    def fail(n, generator=None):
        seen.append(model.training)
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "sample", fail)
    trainer = L.Trainer(logger=False, accelerator="cpu", enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        SampleGrid(num_samples=4, nrow=2).log_grids(trainer, model)
    assert seen == [False] and model.training and model.net.training
