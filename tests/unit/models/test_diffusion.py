"""The Diffusion LightningModule: the generator contract, its settings, training, EMA and export."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from datamodules import SyntheticImageDataModule
from gen_common.errors import ConfigError
from lightning_gen.models import Diffusion
from lightning_gen.models.base import EXPORT_KEY, ImageGenerator, export_payload, load_exported
from lightning_gen.nets.diffusion import DenoisingDiffusion, SamplingConfig, UNetConfig
from tests.helpers.paths import EXPERIMENTS

TINY_UNET = UNetConfig(widths=(16, 32), layers_per_block=1, attention=(False, True), norm_num_groups=8)


# --- the family on the contract ------------------------------------------------------------------------
def test_diffusion_meets_the_image_generator_contract() -> None:
    assert issubclass(Diffusion, ImageGenerator)
    assert Diffusion.monitor == ("val/loss", "min")
    assert Diffusion.reconstruct is None  # SampleGrid draws no reconstruction grid
    m = Diffusion(image_shape=(1, 16, 16), num_classes=4, unet=TINY_UNET, sampling=SamplingConfig(steps=2))
    assert m.num_classes is None  # linked but unconditional
    assert m.image_shape == (1, 16, 16)
    assert all(not p.requires_grad for p in m.ema.parameters())  # DDP waits for no EMA gradient


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"image_shape": (1, 28, 28), "unet": UNetConfig(widths=(8, 16, 16, 16), attention=(False,) * 4)},
            "not divisible by 8",
        ),
        ({"image_shape": (1, 16, 16), "conditional": True}, "needs labelled data"),
        ({"image_shape": (1, 16, 16), "cond_drop_prob": 1.0}, "cond_drop_prob"),
        ({"image_shape": (1, 16, 16), "ema_decay": 1.0}, "ema_decay"),
        ({"image_shape": None}, "needs `image_shape`"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Diffusion(**{"unet": TINY_UNET, **kwargs})


class _Losses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Diffusion, Path, list[float]]:
    """A conditional tiny diffusion model trained 64 steps on blobs; its checkpoint and train losses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = tmp_path_factory.mktemp("trained")
        L.seed_everything(0)
        data = SyntheticImageDataModule(image_shape=(1, 16, 16), num_train=512, num_val=64, batch_size=32)
        model = Diffusion(
            image_shape=data.image_shape, num_classes=data.num_classes, conditional=True, unet=TINY_UNET,
            sampling=SamplingConfig(steps=4), ema_decay=0.9, ema_start=10,
            optimizer=lambda p: torch.optim.Adam(p, lr=2e-3),
        )  # fmt: skip
        losses = _Losses()
        trainer = L.Trainer(
            max_steps=64, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=1, callbacks=[losses], default_root_dir=folder,
        )  # fmt: skip
        trainer.fit(model, datamodule=data)
        ckpt = folder / "last.ckpt"
        trainer.save_checkpoint(ckpt)
        return model, ckpt, losses.losses
    finally:
        torch.set_num_threads(threads)


def test_training_loss_falls_on_a_tiny_dataset(trained: tuple[Diffusion, Path, list[float]]) -> None:
    _, _, losses = trained
    assert len(losses) == 64
    first, last = sum(losses[:8]) / 8, sum(losses[-16:]) / 16
    assert last < 0.5 * first, (first, last)


def test_ema_sits_in_the_checkpoint_and_sampling_uses_it(
    trained: tuple[Diffusion, Path, list[float]], one_thread: None
) -> None:
    model, ckpt_path, _ = trained
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    ema_keys = [k for k in state if k.startswith("ema.module.")]
    assert ema_keys and len(ema_keys) == len([k for k in state if k.startswith("diffusion.")])
    assert int(state["ema.n_averaged"]) == 64 - 10  # copies until ema_start, then averages
    key = "net.conv_in.weight"
    assert not torch.equal(state[f"ema.module.{key}"], state[f"diffusion.{key}"])
    loaded = Diffusion.load_from_checkpoint(ckpt_path, map_location="cpu")
    assert torch.equal(loaded.ema.module.state_dict()[key], state[f"ema.module.{key}"])

    def g():
        return torch.Generator().manual_seed(0)

    default = loaded.sample(4, g())
    assert torch.equal(default, loaded.sample(4, g(), use_ema=True))
    assert not torch.equal(default, loaded.sample(4, g(), use_ema=False))
    assert torch.equal(default, model.sample(4, g()))  # the same weights as before saving


def test_export_payload_rebuilds_the_sampler_without_lightning(
    trained: tuple[Diffusion, Path, list[float]], tmp_path: Path, one_thread: None
) -> None:
    model, ckpt_path, _ = trained
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ckpt[EXPORT_KEY]["builder"] == "lightning_gen.nets.diffusion.DenoisingDiffusion"
    torch.save(export_payload(ckpt, use_ema=True, source=str(ckpt_path)), tmp_path / "G.pt")
    exported = load_exported(tmp_path / "G.pt")
    assert isinstance(exported, DenoisingDiffusion) and not exported.training

    def g():
        return torch.Generator().manual_seed(0)

    labels = torch.tensor([0, 1, 2, 3])
    assert torch.equal(
        exported.sample(4, g(), labels=labels, guidance_scale=2.0),
        model.sample(4, g(), labels=labels, guidance_scale=2.0),
    )
    raw = load_exported(export_payload(ckpt, use_ema=False))
    assert torch.equal(raw.sample(2, g()), model.sample(2, g(), use_ema=False))


FIT_ARGS = [
    "fit",
    "--config", str(EXPERIMENTS / "ddpm_mnist.yaml"),
    "--config", str(EXPERIMENTS / "debug.yaml"),
    "--trainer.limit_train_batches=4",
    "--trainer.val_check_interval=2",
    "--trainer.limit_val_batches=1",
    "--trainer.log_every_n_steps=1",
    "--model.init_args.sampling.steps=2",  # the grid's sampler: 2 DDIM steps instead of 50
    "--run.wandb=disabled",
    "--run.id=t",
]  # fmt: skip
