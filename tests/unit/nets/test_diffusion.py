"""The denoising network and its schedule: forward-process math against closed forms, samplers, guidance, configs.

Tiny UNets on 16x16 inputs keep these cheap."""

from __future__ import annotations

import math

import pytest
import torch

from gen_common.errors import ConfigError
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


def test_config_dataclasses_check_their_fields() -> None:
    with pytest.raises(ConfigError, match="norm_num_groups"):
        UNetConfig(widths=(12, 16), attention=(False, False), norm_num_groups=8)
    with pytest.raises(ConfigError, match="one true/false per level"):
        UNetConfig(widths=(8, 16), attention=(False,))
    with pytest.raises(ConfigError, match="sampler"):
        SamplingConfig(sampler="euler")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="beta_schedule"):
        NoiseSchedule(beta_schedule="sigmoid")  # type: ignore[arg-type]
