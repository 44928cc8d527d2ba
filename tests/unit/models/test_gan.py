"""The GAN LightningModule: step counting with n_critic, EMA, bf16, clipping, learning, resume, export."""

from __future__ import annotations

import csv
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from gen_common.errors import ConfigError
from lightning_gen.commands.export import export_generator, load_generator
from lightning_gen.models.gan import GAN

SHAPE = (1, 28, 28)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gan(**kwargs) -> GAN:
    defaults = dict(image_shape=SHAPE, latent_dim=8, g_width=4, d_width=4, noise_seed=0)
    return GAN(**{**defaults, **kwargs})


def loader(n: int, batch_size: int, seed: int = 0, num_classes: int = 3) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *SHAPE, generator=g)
    y = torch.randint(num_classes, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False, drop_last=True)


def trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        deterministic=True,
    )
    return L.Trainer(**{**defaults, **kwargs})


def adam_steps(optimizer: torch.optim.Optimizer) -> set[int]:
    return {int(s["step"]) for s in optimizer.state.values()}


def test_n_critic_steps_count_generator_iterations(tmp_path: Path) -> None:
    """n_critic=5, N=4: D stepped 20 times, G 4 times, global_step == logged steps == iterations."""
    model = tiny_gan(n_critic=5)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1, filename="{step}")
    t = trainer(
        tmp_path,
        max_steps=4,
        logger=CSVLogger(tmp_path, name="", version=""),
        log_every_n_steps=1,
        enable_checkpointing=True,
        callbacks=[ckpt],
        limit_val_batches=1,
        val_check_interval=2,
    )
    t.fit(model, loader(400, batch_size=20), loader(20, batch_size=20))  # 20 images -> 5 critic batches of 4
    g_opt, d_opt = (o.optimizer for o in model.optimizers())
    assert t.global_step == 4
    assert adam_steps(g_opt) == {4}
    assert adam_steps(d_opt) == {20}
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    train_steps = [int(r["step"]) for r in rows if r["train/d_loss"]]
    assert train_steps == [0, 1, 2, 3]  # one logged row per generator iteration
    val_steps = [int(r["step"]) for r in rows if r.get("val/d_real")]
    assert val_steps == [1, 3]  # val_check_interval=2 counts iterations
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step=2.ckpt", "step=4.ckpt"]


def test_split_refuses_a_batch_that_n_critic_does_not_divide(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="multiple of 5"):
        trainer(tmp_path, max_steps=1).fit(tiny_gan(n_critic=5), loader(64, batch_size=16))


def test_reuse_shows_the_whole_batch_to_each_critic_step(tmp_path: Path) -> None:
    model = tiny_gan(n_critic=3, critic_batches="reuse")
    t = trainer(tmp_path, max_steps=2, limit_val_batches=0)
    t.fit(model, loader(64, batch_size=16))
    assert t.global_step == 2 and adam_steps(model.optimizers()[1].optimizer) == {6}


class RecordGenerator(Callback):
    """Copies of the generator's parameters after every training batch (after the EMA update)."""

    def __init__(self) -> None:
        self.params: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.params.append([p.detach().clone() for p in pl_module.generator.parameters()])


@pytest.mark.parametrize("ema_start", [0, 2])
def test_ema_equals_analytic_average(tmp_path: Path, ema_start: int) -> None:
    decay, k = 0.8, 5
    model = tiny_gan(ema_decay=decay, ema_start=ema_start)
    record = RecordGenerator()
    trainer(tmp_path, max_steps=k, callbacks=[record], limit_val_batches=0).fit(model, loader(128, batch_size=16))
    assert len(record.params) == k
    expected = None
    for t, theta in enumerate(record.params, start=1):
        if t <= max(1, ema_start):  # warm-up (and the first update): a copy
            expected = [p.clone() for p in theta]
        else:
            expected = [decay * e + (1 - decay) * p for e, p in zip(expected, theta)]
    ema = list(model.ema.module.parameters())
    for got, want in zip(ema, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(ema, model.generator.parameters()))
    # buffers (BN running stats) follow the generator
    for got, want in zip(model.ema.module.buffers(), model.generator.buffers()):
        torch.testing.assert_close(got, want)


def test_sample_uses_ema_generator_and_leaves_bn_stats_alone(tmp_path: Path) -> None:
    model = tiny_gan(ema_decay=0.5)
    trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(model, loader(64, batch_size=16))
    model.train()
    before = [b.clone() for b in model.generator.buffers()]
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    images = model.sample(6, generator=gen())
    assert images.shape == (6, *SHAPE) and images.min() >= 0 and images.max() <= 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.generator.buffers()))
    assert model.ema.module.training  # mode restored
    torch.testing.assert_close(images, model.sample(6, generator=gen()))  # fixed noise -> same grid
    assert not torch.allclose(images, model.sample(6, generator=gen(), use_ema=False))


class RecordDtypes(Callback):
    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.discriminator.register_forward_hook(lambda m, i, o: self.dtypes.add(o.dtype))


def test_bf16_mixed_manual_optimization_runs_on_cpu(tmp_path: Path) -> None:
    model = tiny_gan(loss="wgan_gp", d_norm="none", n_critic=2)
    record = RecordDtypes()
    t = trainer(tmp_path, max_steps=3, precision="bf16-mixed", callbacks=[record], limit_val_batches=0)
    t.fit(model, loader(64, batch_size=16))
    assert torch.bfloat16 in record.dtypes  # the forward passes ran under autocast
    assert t.global_step == 3
    for key in ("train/d_loss", "train/g_loss", "train/gp", "train/d_real", "train/d_fake"):
        assert torch.isfinite(t.callback_metrics[key]), key
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


def test_gradient_clipping_bounds_every_update(tmp_path: Path) -> None:
    clip = 1e-3
    model = tiny_gan(
        gradient_clip_val=clip,
        generator_optimizer=partial(torch.optim.SGD, lr=1.0),
        discriminator_optimizer=partial(torch.optim.SGD, lr=1.0),
    )
    g0 = torch.cat([p.detach().flatten().clone() for p in model.generator.parameters()])
    d0 = torch.cat([p.detach().flatten().clone() for p in model.discriminator.parameters()])
    trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, loader(32, batch_size=16))
    g1 = torch.cat([p.detach().flatten() for p in model.generator.parameters()])
    d1 = torch.cat([p.detach().flatten() for p in model.discriminator.parameters()])
    assert 0 < (g1 - g0).norm() <= clip * 1.0001
    assert 0 < (d1 - d0).norm() <= clip * 1.0001


def test_lr_schedulers_step_once_per_generator_iteration(tmp_path: Path) -> None:
    sched = partial(torch.optim.lr_scheduler.LinearLR, start_factor=1.0, end_factor=0.0, total_iters=10)
    model = tiny_gan(n_critic=2, generator_scheduler=sched, discriminator_scheduler=sched)
    trainer(tmp_path, max_steps=4, limit_val_batches=0).fit(model, loader(256, batch_size=16))
    g_opt, d_opt = (o.optimizer for o in model.optimizers())
    assert g_opt.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.6)
    assert d_opt.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.6)


def two_mode_loader(n: int = 512, batch_size: int = 32) -> DataLoader:
    """Images that are flat grey at 0.15 or at 0.85 (half each), plus a little noise."""
    g = torch.Generator().manual_seed(0)
    level = torch.where(torch.rand(n, generator=g) < 0.5, 0.15, 0.85)
    x = (level.view(n, 1, 1, 1) + 0.02 * torch.randn(n, *SHAPE, generator=g)).clamp(0, 1)
    return DataLoader(
        TensorDataset(x, torch.zeros(n, dtype=torch.int64)),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=g,
    )


def mode_error(images: torch.Tensor) -> tuple[float, float]:
    """Mean distance of each sample's mean pixel to the nearest mode, and the share of the bright mode."""
    means = images.flatten(1).mean(1)
    dist = torch.minimum((means - 0.15).abs(), (means - 0.85).abs())
    return dist.mean().item(), (means > 0.5).float().mean().item()


def test_tiny_gan_learns_two_modes(tmp_path: Path) -> None:
    """200 iterations move the samples from grey (0.5) onto the two data modes, producing both."""
    L.seed_everything(0)
    adam = partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999))
    model = tiny_gan(g_width=8, d_width=8, ema_decay=None, generator_optimizer=adam, discriminator_optimizer=adam)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    before, _ = mode_error(model.sample(256, generator=gen()))
    trainer(tmp_path, max_steps=200, limit_val_batches=0).fit(model, two_mode_loader())
    after, bright = mode_error(model.sample(256, generator=gen()))
    assert before > 0.25  # untrained: grey images, ~0.3 from either mode (measured 0.30)
    assert after < 0.5 * before, (before, after)  # samples moved onto the modes (measured 0.13)
    assert 0.25 < bright < 0.75, bright  # and both modes are produced (measured 0.57 bright)


def params_and_state(model: GAN) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def resumable_run(tmp_path: Path, max_epochs: int, ckpt_path: str | None = None) -> tuple[GAN, L.Trainer]:
    L.seed_everything(0)
    sched = partial(torch.optim.lr_scheduler.LinearLR, start_factor=1.0, end_factor=0.1, total_iters=8)
    model = tiny_gan(
        n_critic=2,
        loss="wgan_gp",
        d_norm="none",
        ema_decay=0.9,
        ema_start=1,
        generator_scheduler=sched,
        discriminator_scheduler=sched,
    )
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    t = trainer(tmp_path, max_epochs=max_epochs, enable_checkpointing=True, callbacks=[ckpt], limit_val_batches=0)
    t.fit(model, loader(64, batch_size=16), ckpt_path=ckpt_path)  # 4 iterations per epoch
    return model, t


def test_resume_from_checkpoint_equals_unbroken_run(tmp_path: Path) -> None:
    unbroken, t_full = resumable_run(tmp_path / "full", max_epochs=2)
    _, t_half = resumable_run(tmp_path / "half", max_epochs=1)
    assert t_half.global_step == 4
    resumed, t_resumed = resumable_run(
        tmp_path / "resumed", max_epochs=2, ckpt_path=str(tmp_path / "half" / "ckpt" / "last.ckpt")
    )
    assert t_full.global_step == t_resumed.global_step == 8
    full, again = params_and_state(unbroken), params_and_state(resumed)
    assert full.keys() == again.keys()
    for key in full:
        assert torch.equal(full[key], again[key]), key
    for a, b in zip(t_full.optimizers, t_resumed.optimizers):
        assert a.param_groups[0]["lr"] == b.param_groups[0]["lr"]


def test_export_generator_alone_and_sample(tmp_path: Path) -> None:
    model, _ = resumable_run(tmp_path, max_epochs=1)
    out = export_generator(tmp_path / "ckpt" / "last.ckpt", tmp_path / "G.pt")
    generator = load_generator(out)
    payload = torch.load(out, weights_only=True)
    assert (
        payload["ema"]
        and payload["global_step"] == 4
        and payload["builder"] == "lightning_gen.nets.gan.build_generator"
    )
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    torch.testing.assert_close(generator.sample(5, generator=gen()), model.sample(5, generator=gen()))
    raw = load_generator(export_generator(tmp_path / "ckpt" / "last.ckpt", tmp_path / "G_raw.pt", use_ema=False))
    torch.testing.assert_close(raw.sample(5, generator=gen()), model.sample(5, generator=gen(), use_ema=False))
    assert out.stat().st_size < (tmp_path / "ckpt" / "last.ckpt").stat().st_size / 2


def test_checkpoint_from_before_the_contract_loads(tmp_path: Path) -> None:
    """A checkpoint whose EMA sits under ``generator_ema.*`` (before the contract) loads, EMA included."""
    model, _ = resumable_run(tmp_path, max_epochs=1)
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    ckpt["state_dict"] = {
        k.replace("ema.", "generator_ema.", 1) if k.startswith("ema.") else k: v for k, v in ckpt["state_dict"].items()
    }
    assert any(k.startswith("generator_ema.module.") for k in ckpt["state_dict"])
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    loaded = GAN.load_from_checkpoint(old)
    for got, want in zip(loaded.ema.module.state_dict().values(), model.ema.module.state_dict().values()):
        assert torch.equal(got, want)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    torch.testing.assert_close(loaded.sample(4, generator=gen()), model.sample(4, generator=gen()))


def test_conditional_gan_samples_requested_classes(tmp_path: Path) -> None:
    model = tiny_gan(conditional=True, num_classes=3, d_norm="spectral", loss="hinge")
    trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(model, loader(64, batch_size=16))
    labels = torch.tensor([0, 0, 2, 2])
    z_gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = model.sample(4, generator=z_gen(), labels=labels)
    b = model.sample(4, generator=z_gen(), labels=torch.tensor([1, 1, 1, 1]))
    assert a.shape == (4, *SHAPE) and not torch.allclose(a, b)  # labels change the images


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(loss="wgan"), "model.init_args.loss"),
        (dict(loss="wgan_gp", d_norm="batch"), "d_norm"),
        (dict(conditional=True, num_classes=None), "num_classes"),
        (dict(image_shape=(1, 30, 30)), "28, 32, 64"),
        (dict(architecture="resnet32", image_shape=(3, 32, 32), d_norm="batch"), "spectral"),
        (dict(image_shape=None), "image_shape"),
    ],
)
def test_bad_configuration_is_a_config_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tiny_gan(**kwargs)


class CountingGradScaler(torch.amp.GradScaler):
    """A GradScaler that counts its ``step`` calls (one per optimizer step that goes through AMP)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.steps = 0

    def step(self, optimizer, *args, **kwargs):
        self.steps += 1
        return super().step(optimizer, *args, **kwargs)


def test_fp16_gradscaler_path_steps_every_optimizer_and_clips_unscaled_grads(tmp_path: Path) -> None:
    """16-mixed with a GradScaler (fp16 autocast runs on CPU when the plugin is given explicitly; the
    Trainer flag would switch CPU to bf16): every D and G step goes through the scaler, global_step
    still counts iterations, and clipping sees unscaled gradients (updates of exactly the clip norm)."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    clip = 1e-3
    sgd = partial(torch.optim.SGD, lr=1.0)
    model = tiny_gan(
        loss="wgan_gp",
        d_norm="none",
        n_critic=2,
        gradient_clip_val=clip,
        generator_optimizer=sgd,
        discriminator_optimizer=sgd,
    )
    scaler = CountingGradScaler("cpu", init_scale=2.0**10)
    record = RecordDtypes()
    g0 = torch.cat([p.detach().flatten().clone() for p in model.generator.parameters()])
    t = trainer(
        tmp_path,
        max_steps=2,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler)],
        callbacks=[record],
        limit_val_batches=0,
    )
    t.fit(model, loader(64, batch_size=16))
    assert torch.float16 in record.dtypes
    assert t.global_step == 2 and scaler.steps == 2 * 2 + 2  # n_critic D steps + 1 G step per iteration
    assert scaler.get_scale() == 2.0**10  # no overflow at this scale: no step was skipped
    g2 = torch.cat([p.detach().flatten() for p in model.generator.parameters()])
    # two SGD(lr=1) steps of clipped norm 1e-3 each; had clipping seen scaled gradients, updates would be ~1e-3 / 1024
    assert clip < (g2 - g0).norm() <= 2 * clip * 1.0001
    assert torch.isfinite(t.callback_metrics["train/gp"])


def mid_epoch_run(root: Path, ckpt_path: str | None = None, max_steps: int = -1) -> tuple[GAN, L.Trainer]:
    from datamodules import SyntheticImageDataModule

    L.seed_everything(0)
    model = tiny_gan(n_critic=2, noise_seed=None)  # the noise seed comes from the global RNG
    dm = SyntheticImageDataModule(image_shape=SHAPE, num_train=128, batch_size=32)  # shuffled, 4 iterations per epoch
    ckpt = ModelCheckpoint(dirpath=root / "ckpt", save_last=True, every_n_train_steps=1)
    t = trainer(
        root, max_epochs=2, max_steps=max_steps, enable_checkpointing=True, callbacks=[ckpt], limit_val_batches=0
    )
    t.fit(model, dm, ckpt_path=ckpt_path)
    return model, t


def test_mid_epoch_resume_with_shuffled_datamodule_equals_unbroken_run(tmp_path: Path) -> None:
    """Checkpoint at iteration 3 of a 4-iteration epoch, resume to 8: same weights as 8 unbroken iterations."""
    unbroken, t_full = mid_epoch_run(tmp_path / "full")
    mid_epoch_run(tmp_path / "half", max_steps=3)
    resumed, t_resumed = mid_epoch_run(tmp_path / "resumed", ckpt_path=str(tmp_path / "half" / "ckpt" / "last.ckpt"))
    assert t_full.global_step == t_resumed.global_step == 8
    for (key, a), b in zip(unbroken.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key
