"""The VAE LightningModule: learning, generation API, IWAE bound, configuration errors."""

import lightning as L
import pytest
import torch

from datamodules import SyntheticImageDataModule
from gen_common.errors import ConfigError
from lightning_gen.models import VAE


def _fit(model: VAE, data: SyntheticImageDataModule, epochs: int) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    trainer.fit(model, data)
    return trainer


def test_vae_fit_lowers_loss_and_raises_elbo():
    L.seed_everything(0)
    data = SyntheticImageDataModule(image_shape=(1, 16, 16), num_train=256, num_val=64, batch_size=32, binarize=True)
    model = VAE(image_shape=(1, 16, 16), latent_dim=4, widths=(8, 16), optimizer=lambda p: torch.optim.Adam(p, lr=3e-3))
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    before = trainer.validate(model, data, verbose=False)[0]["val/elbo"]
    _fit(model, data, epochs=4)
    metrics = trainer.validate(model, data, verbose=False)[0]
    assert metrics["val/elbo"] > before + 50, (before, metrics)  # nats per 256-pixel image
    assert metrics["val/kl"] > 1.0, metrics  # the latent code is used (no posterior collapse)


def test_generation_api_shapes_ranges_and_endpoints():
    torch.manual_seed(0)
    model = VAE(image_shape=(3, 28, 28), latent_dim=5, widths=(8, 16, 32)).eval()
    g = torch.Generator().manual_seed(7)
    samples = model.sample(6, generator=g)
    assert samples.shape == (6, 3, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    torch.testing.assert_close(samples, model.sample(6, generator=torch.Generator().manual_seed(7)))
    x = torch.rand(4, 3, 28, 28)
    assert model.reconstruct(x).shape == x.shape
    path = model.interpolate(x[0], x[1], steps=5)
    assert path.shape == (5, 3, 28, 28)
    torch.testing.assert_close(path[0], model.reconstruct(x[:1])[0])
    torch.testing.assert_close(path[-1], model.reconstruct(x[1:2])[0])
    assert model.interpolate(x[:2], x[2:], steps=3).shape == (3, 2, 3, 28, 28)


def test_iwae_bound_is_tighter_than_elbo():
    torch.manual_seed(0)
    model = VAE(image_shape=(1, 12, 12), latent_dim=3, widths=(4,))
    x = torch.rand(16, 1, 12, 12).bernoulli()
    log_px, kl = model.elbo_terms(x)
    elbo = (log_px - kl).mean()
    iw = model.importance_weighted_log_likelihood(x, k=200).mean()
    assert iw > elbo


def test_gaussian_likelihood_has_learned_scale_and_kl_warmup():
    model = VAE(image_shape=(1, 8, 8), likelihood="gaussian", widths=(4,), beta=2.0, kl_warmup_steps=100)
    assert model.log_scale is not None and model.log_scale.requires_grad
    assert model.kl_weight() == 0.0  # global_step 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_shape": None}, "image_shape"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"beta": -1.0}, "beta"),
    ],
)
def test_bad_configuration_is_a_clear_error(kwargs, match):
    args = {"image_shape": (1, 8, 8), "widths": (4,)} | kwargs
    with pytest.raises(ConfigError, match=match):
        VAE(**args)


def test_ema_on_samples_from_the_average_and_sits_in_the_checkpoint(tmp_path):
    """``ema_decay`` set: sample/reconstruct use the averaged nets, which the checkpoint holds under ``ema.module.*``."""
    L.seed_everything(0)
    data = SyntheticImageDataModule(image_shape=(1, 16, 16), num_train=128, num_val=32, batch_size=32, binarize=True)
    model = VAE(
        image_shape=(1, 16, 16),
        latent_dim=4,
        widths=(8, 16),
        ema_decay=0.5,
        optimizer=lambda p: torch.optim.Adam(p, lr=3e-3),
    )
    trainer = L.Trainer(
        max_steps=6,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, data)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    ema_samples = model.sample(5, generator=gen())
    torch.testing.assert_close(ema_samples, model.ema.module.sample(5, generator=gen()))
    assert not torch.allclose(ema_samples, model.sample(5, generator=gen(), use_ema=False))
    x = torch.rand(3, 1, 16, 16)
    assert not torch.allclose(model.reconstruct(x), model.reconstruct(x, use_ema=False))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    state = torch.load(tmp_path / "m.ckpt", weights_only=False)["state_dict"]
    assert torch.equal(state["ema.module.decoder.fc.0.weight"], model.ema.module.decoder.fc[0].weight)
    loaded = VAE.load_from_checkpoint(tmp_path / "m.ckpt")
    torch.testing.assert_close(loaded.sample(5, generator=gen()), ema_samples)


def test_checkpoint_from_before_the_contract_loads(tmp_path):
    """Checkpoints with top-level ``encoder.*``/``decoder.*``/``log_scale`` (before ``net``) still load."""
    torch.manual_seed(0)
    model = VAE(image_shape=(1, 16, 16), latent_dim=4, widths=(8, 16), likelihood="gaussian")
    trainer = L.Trainer(
        max_steps=0, logger=False, enable_progress_bar=False, accelerator="cpu", default_root_dir=tmp_path
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    ckpt = torch.load(tmp_path / "new.ckpt", weights_only=False)
    ckpt["state_dict"] = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items()}
    assert "log_scale" in ckpt["state_dict"] and "encoder.head.weight" in ckpt["state_dict"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    loaded = VAE.load_from_checkpoint(tmp_path / "old.ckpt")
    for (k, got), want in zip(loaded.state_dict().items(), model.state_dict().values()):
        assert torch.equal(got, want), k


def test_export_rebuilds_the_sampling_module_without_lightning(tmp_path):
    """The contract's export: the checkpoint's export entry rebuilds a ConvVAE that samples like the model."""
    from lightning_gen.models.base import export_payload, load_exported

    torch.manual_seed(0)
    model = VAE(image_shape=(1, 16, 16), latent_dim=4, widths=(8, 16), likelihood="gaussian")
    trainer = L.Trainer(
        max_steps=0, logger=False, enable_progress_bar=False, accelerator="cpu", default_root_dir=tmp_path
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    checkpoint = torch.load(tmp_path / "m.ckpt", weights_only=True)
    with pytest.raises(Exception, match="no-ema"):
        export_payload(checkpoint, use_ema=True)  # trained without EMA: says how to export the raw weights
    net = load_exported(export_payload(checkpoint, use_ema=False))
    gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    torch.testing.assert_close(net.sample(3, gen()), model.sample(3, generator=gen()))
