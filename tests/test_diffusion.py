"""The diffusion family: forward-process math, samplers, guidance, training, EMA, export, and the CLI.

Tiny UNets on 16x16 synthetic blobs keep the default tests cheap; the shipped experiment files
run through the real CLI (subprocess) with a few steps.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from conftest import EXPERIMENTS
from ops_utils import run_cli, train_rows

from datamodules import SyntheticImageDataModule
from gen_common.errors import ConfigError
from lightning_gen.models import Diffusion
from lightning_gen.models.base import EXPORT_KEY, ImageGenerator, export_payload, load_exported
from lightning_gen.nets.diffusion import DenoisingDiffusion, NoiseSchedule, SamplingConfig, UNetConfig
from lightning_gen.utils.modules import eval_mode

TINY_UNET = UNetConfig(widths=(16, 32), layers_per_block=1, attention=(False, True), norm_num_groups=8)


def tiny_diffusion(conditional: bool = False, **kwargs) -> DenoisingDiffusion:
    torch.manual_seed(0)
    return DenoisingDiffusion((1, 16, 16), 4 if conditional else None, TINY_UNET, **kwargs)


# --- the forward process and the parameterisations, against closed forms -------------------------------
def test_linear_schedule_alphas_cumprod_is_the_closed_form() -> None:
    d = tiny_diffusion(
        schedule=NoiseSchedule(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    )
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    torch.testing.assert_close(d.alphas_cumprod().double(), torch.cumprod(1 - betas, 0), rtol=1e-5, atol=1e-7)


def test_cosine_schedule_alphas_cumprod_is_the_closed_form() -> None:
    d = tiny_diffusion(schedule=NoiseSchedule(beta_schedule="cosine"))

    def f(t):
        return math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # Nichol & Dhariwal (2021), eq. 17

    expected = torch.tensor([f(t + 1) / f(0) for t in range(1000)], dtype=torch.float64)
    # betas are capped at 0.999 near t = T only; compare where the cap is inactive
    torch.testing.assert_close(d.alphas_cumprod().double()[:990], expected[:990], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("t", [0, 250, 999])
def test_q_sample_is_the_closed_form_with_its_mean_and_variance(t: int) -> None:
    d = tiny_diffusion()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, 16, 16, generator=g) * 2 - 1
    noise = torch.randn(20000, 1, 16, 16, generator=g)
    ab = d.alphas_cumprod()[t].double()
    x_t = d.add_noise(x0.expand_as(noise), noise, torch.full((noise.shape[0],), t)).double()
    torch.testing.assert_close(x_t, ab.sqrt() * x0.double() + (1 - ab).sqrt() * noise.double(), rtol=1e-5, atol=1e-5)
    # q(x_t | x_0) = N(sqrt(ab) x_0, (1 - ab) I): 20000 draws, 256 pixels; bounds >= 6 standard errors
    se_mean = math.sqrt((1 - ab) / 20000)
    assert (x_t.mean(0) - ab.sqrt() * x0.double()).abs().max() < 6 * se_mean
    assert (x_t.var(0) / (1 - ab) - 1).abs().max() < 6 * math.sqrt(2 / 20000)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_eps_x0_v_conversions_agree_with_the_samplers(prediction_type: str) -> None:
    """The training target, fed back as a perfect prediction, gives back x_0 (and eps) in diffusers' DDIM step."""
    d = tiny_diffusion(schedule=NoiseSchedule(prediction_type=prediction_type))
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1
    eps = torch.randn(4, 1, 16, 16, generator=g)
    scheduler = d.make_scheduler("ddim", 50, clip_sample=False)
    t = scheduler.timesteps[10]  # 780
    ab = d.alphas_cumprod()[t]
    x_t = d.add_noise(x0, eps, torch.full((4,), int(t)))
    target = d.target(x0, eps, torch.full((4,), int(t)))
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
    torch.testing.assert_close(target, eps if prediction_type == "epsilon" else v, rtol=1e-5, atol=1e-5)
    # x0 = sqrt(ab) x_t - sqrt(1-ab) v ;  eps = sqrt(1-ab) x_t + sqrt(ab) v ;  x0 = (x_t - sqrt(1-ab) eps) / sqrt(ab)
    torch.testing.assert_close(ab.sqrt() * x_t - (1 - ab).sqrt() * v, x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close((1 - ab).sqrt() * x_t + ab.sqrt() * v, eps, rtol=1e-4, atol=1e-4)
    out = scheduler.step(target, t, x_t, eta=0.0)
    torch.testing.assert_close(out.pred_original_sample, x0, rtol=1e-4, atol=1e-4)
    # DDIM (eta 0) moves to x_{t'} = sqrt(ab') x0 + sqrt(1 - ab') eps with the same eps
    ab_prev = d.alphas_cumprod()[scheduler.timesteps[11]]
    torch.testing.assert_close(out.prev_sample, ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps, rtol=1e-4, atol=1e-4)


# --- sampling ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm_solver++"])
def test_sampling_is_deterministic_under_a_seed_and_uses_only_the_given_generator(
    sampler: str, one_thread: None
) -> None:
    d = tiny_diffusion(sampling=SamplingConfig(sampler=sampler, steps=5, eta=0.0))
    torch.manual_seed(123)
    a = d.sample(3, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(456)  # the global RNG must not matter
    b = d.sample(3, generator=torch.Generator().manual_seed(7))
    c = d.sample(3, generator=torch.Generator().manual_seed(8))
    assert a.shape == (3, 1, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_ddim_eta_adds_noise_from_the_generator(one_thread: None) -> None:
    d = tiny_diffusion(sampling=SamplingConfig(sampler="ddim", steps=4))

    def g():
        return torch.Generator().manual_seed(3)

    assert torch.equal(d.sample(2, g(), eta=1.0), d.sample(2, g(), eta=1.0))
    assert not torch.equal(d.sample(2, g(), eta=1.0), d.sample(2, g(), eta=0.0))


def test_guidance_scale_zero_is_the_unconditional_sample(one_thread: None) -> None:
    d = tiny_diffusion(conditional=True, sampling=SamplingConfig(steps=4))
    with torch.no_grad():  # make the class embedding matter
        d.net.class_embedding.weight.normal_(0, 3)

    def g():
        return torch.Generator().manual_seed(5)

    labels_a, labels_b = torch.tensor([0, 1, 2]), torch.tensor([3, 3, 1])
    uncond = d.sample(3, g(), labels=torch.full((3,), d.null_label), guidance_scale=1.0)  # the "no label" model
    assert torch.equal(d.sample(3, g(), labels=labels_a, guidance_scale=0.0), uncond)
    assert torch.equal(d.sample(3, g(), labels=labels_b, guidance_scale=0.0), uncond)
    assert not torch.equal(d.sample(3, g(), labels=labels_a, guidance_scale=1.0), uncond)


def test_guided_prediction_is_uncond_plus_scale_times_difference() -> None:
    d = tiny_diffusion(conditional=True)
    with torch.no_grad():
        d.net.class_embedding.weight.normal_(0, 3)
    x, t, labels = torch.randn(2, 1, 16, 16), torch.tensor(500), torch.tensor([1, 2])
    with eval_mode(d), torch.no_grad():
        cond, uncond = d(x, t, labels), d(x, t, None)
        torch.testing.assert_close(
            d.guided_prediction(x, t, labels, 3.0), uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-4
        )


def test_sampling_restores_training_mode_even_on_error() -> None:
    d = tiny_diffusion()
    d.train()
    d.net.conv_in.eval()  # a mixed-mode module keeps each submodule's own mode
    with pytest.raises(ConfigError, match="sampling `steps`"):
        d.sample(1, steps=0)
    assert d.training and d.net.training and not d.net.conv_in.training
    with pytest.raises(RuntimeError, match="boom"), eval_mode(d):
        assert not d.training
        raise RuntimeError("boom")
    assert d.training and not d.net.conv_in.training


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


def test_config_dataclasses_check_their_fields() -> None:
    with pytest.raises(ConfigError, match="norm_num_groups"):
        UNetConfig(widths=(12, 16), attention=(False, False), norm_num_groups=8)
    with pytest.raises(ConfigError, match="one true/false per level"):
        UNetConfig(widths=(8, 16), attention=(False,))
    with pytest.raises(ConfigError, match="sampler"):
        SamplingConfig(sampler="euler")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="beta_schedule"):
        NoiseSchedule(beta_schedule="sigmoid")  # type: ignore[arg-type]


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


# --- the shipped experiment files ----------------------------------------------------------------------
def test_cifar10_experiment_is_the_35_7m_ddpm_unet(tmp_path: Path) -> None:
    from lightning_gen.cli.trainer import build_cli

    cli = build_cli(
        [
            "--config",
            str(EXPERIMENTS / "ddpm_cifar10.yaml"),
            "--run.wandb=disabled",
            f"--data.init_args.data_dir={tmp_path}",
            "--trainer.accelerator=cpu",
        ],
        run=False,
    )
    params = sum(p.numel() for p in cli.model.diffusion.parameters())
    assert abs(params - 35.7e6) / 35.7e6 < 0.02, params
    assert cli.model.image_shape == (3, 32, 32) and cli.model.ema is not None
    schedule = cli.model.diffusion.schedule
    assert (schedule.beta_schedule, schedule.num_train_timesteps, schedule.beta_start, schedule.beta_end) == (
        "linear",
        1000,
        1e-4,
        0.02,
    )


@pytest.mark.parametrize(
    ("name", "conditional"), [("ddpm_mnist", False), ("ddpm_fashion_mnist", False), ("ddpm_mnist_cfg", True)]
)
def test_cpu_experiments_build(name: str, conditional: bool) -> None:
    from lightning_gen.cli.trainer import build_cli

    cli = build_cli(
        ["--config", str(EXPERIMENTS / f"{name}.yaml"), "--run.wandb=disabled", "--trainer.accelerator=cpu"], run=False
    )
    assert cli.model.image_shape == (1, 28, 28)
    assert cli.model.num_classes == (10 if conditional else None)
    assert (
        yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text())["trainer"]["callbacks"][0]["class_path"]
        == "lightning_gen.callbacks.SampleGrid"
    )


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


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ddpm_mnist.yaml`` + ``debug.yaml``, 4 steps, through the CLI in a subprocess; its run dir."""
    cwd = tmp_path_factory.mktemp("ddpm_mnist")
    proc = run_cli(FIT_ARGS, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "runs" / "debug" / "ddpm_mnist" / "t"


@pytest.mark.slow  # minutes on 2 cores (the default suite keeps one DDP run: test_experiments_matrix)
def test_cli_fit_of_ddpm_mnist_leaves_checkpoint_metrics_and_grids(mnist_run: Path) -> None:
    assert (mnist_run / "checkpoints" / "last.ckpt").is_file()
    rows = train_rows(mnist_run / "metrics.csv")
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == [0, 1, 2, 3]
    val = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert len(val) == 2 and all(0 < v < 10 for v in val)
    assert sorted(p.name for p in (mnist_run / "samples").glob("*.png")) == [
        "samples_step0000002.png",
        "samples_step0000004.png",
    ]
    ckpt = torch.load(mnist_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4 and any(k.startswith("ema.module.") for k in ckpt["state_dict"])


@pytest.mark.slow
def test_evaluate_ckpt_of_a_diffusion_run(mnist_run: Path) -> None:
    out = mnist_run / "eval.json"
    proc = run_cli(
        ["evaluate", "--ckpt", str(mnist_run / "checkpoints" / "last.ckpt"), "--metrics", "fid", "kid",
         "--num_samples", "16", "--num_real", "16", "--kid_subset_size", "8", "--sample_chunk", "8", "--out", str(out)],
        mnist_run, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    values = json.loads(out.read_text())["values"]
    assert values["fid"] > 0 and math.isfinite(values["fid"]) and math.isfinite(values["kid_mean"])


def test_bad_unet_for_the_image_size_is_one_paragraph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lightning_gen.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(
            [
                *FIT_ARGS,
                "--model.init_args.unet.widths=[8,16,16,16]",
                "--model.init_args.unet.attention=[false,false,false,false]",
            ]
        )
    err = capsys.readouterr().err
    assert exc.value.code == 1
    assert (
        "lightning-gen: error: `model.init_args.unet.widths` has 4 levels" in err
        and "Use at most 3 levels for 28x28 images." in err
    )
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("*.ckpt"))
