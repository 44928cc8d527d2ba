"""Denoising diffusion as a plain ``nn.Module``: a diffusers ``UNet2DModel``, a noise schedule, samplers.

No Lightning here: :class:`DenoisingDiffusion` is what ``lightning_gen.models.Diffusion`` trains and
averages (EMA), and what an export file rebuilds. Schedules and samplers are diffusers'
(``DDPMScheduler`` for training noise and DDPM ancestral sampling, ``DDIMScheduler``,
``DPMSolverMultistepScheduler`` with ``dpmsolver++``), the field's reference implementations.

Conventions: images in ``[-1, 1]``; ``alpha_bar_t = prod_{s<=t} (1 - beta_s)``;
``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``; the net predicts ``eps``
(``epsilon``) or ``v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0`` (``v_prediction``,
Salimans & Ho 2022). Class-conditional nets embed ``num_classes + 1`` labels, the last being
"no label" (classifier-free guidance, Ho & Salimans 2022).

diffusers is imported when a net or scheduler is built, not at import time (it costs ~1 s, and
every family's module is imported whenever one model class is).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gen_common.errors import ConfigError
from lightning_gen.utils.modules import eval_mode

BetaSchedule = Literal["linear", "cosine"]
PredictionType = Literal["epsilon", "v_prediction"]
SamplerName = Literal["ddpm", "ddim", "dpm_solver++"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpm_solver++")
_DIFFUSERS_BETA_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


@dataclass(frozen=True)
class UNetConfig:
    """The denoising UNet (diffusers ``UNet2DModel``), one entry per resolution level."""

    widths: tuple[int, ...] = (32, 64, 64)  # channels of level i, which works at (H, W) / 2**i
    layers_per_block: int = 1  # residual blocks per level going down (the up path has one more)
    attention: tuple[bool, ...] = (False, False, True)  # one-head self-attention after each residual block of the level
    dropout: float = 0.0  # dropout inside the residual blocks
    norm_num_groups: int = 8  # GroupNorm groups; divides every width

    def __post_init__(self) -> None:
        if not self.widths or min(self.widths) < 1:
            raise ConfigError(
                f"`model.init_args.unet.widths` must be a non-empty list of positive channel counts, got {list(self.widths)}."
            )
        if len(self.attention) != len(self.widths):
            raise ConfigError(
                f"`model.init_args.unet.attention` needs one true/false per level of `model.init_args.unet.widths` "
                f"({len(self.widths)}), got {list(self.attention)}."
            )
        if any(w % self.norm_num_groups for w in self.widths):
            raise ConfigError(
                f"`model.init_args.unet.norm_num_groups` ({self.norm_num_groups}) must divide every width in "
                f"`model.init_args.unet.widths` {list(self.widths)}."
            )
        if self.layers_per_block < 1 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(
                f"`model.init_args.unet.layers_per_block` must be >= 1 and `model.init_args.unet.dropout` in [0, "
                f"1), got {self.layers_per_block} and {self.dropout}."
            )


@dataclass(frozen=True)
class NoiseSchedule:
    """The forward process q(x_t | x_0) and what the net predicts."""

    num_train_timesteps: int = 1000  # T
    beta_schedule: BetaSchedule = (
        "linear"  # linear beta_start..beta_end (Ho et al. 2020), or cosine (Nichol & Dhariwal 2021)
    )
    beta_start: float = 1e-4  # first beta of the linear schedule
    beta_end: float = 0.02  # last beta of the linear schedule
    prediction_type: PredictionType = "epsilon"  # the net predicts the noise (epsilon) or v (v_prediction)

    def __post_init__(self) -> None:
        # jsonargparse checks this Literal in a config; the re-check stays while a test builds NoiseSchedule directly
        if self.beta_schedule not in _DIFFUSERS_BETA_SCHEDULE:
            raise ConfigError(
                f"`model.init_args.schedule.beta_schedule` must be 'linear' or 'cosine', got {self.beta_schedule!r}."
            )
        if self.num_train_timesteps < 2 or not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ConfigError(
                f"`model.init_args.schedule.num_train_timesteps` must be >= 2 and 0 < "
                f"`model.init_args.schedule.beta_start` < `model.init_args.schedule.beta_end` < 1, "
                f"got {self.num_train_timesteps}, {self.beta_start}, {self.beta_end}."
            )

    def diffusers_kwargs(self) -> dict[str, Any]:
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": _DIFFUSERS_BETA_SCHEDULE[self.beta_schedule],
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "prediction_type": self.prediction_type,
        }


@dataclass(frozen=True)
class SamplingConfig:
    """Defaults of ``sample`` (each can be overridden per call)."""

    sampler: SamplerName = "ddim"  # ddpm (ancestral), ddim, or dpm_solver++ (2nd-order multistep)
    steps: int = 50  # denoising steps (ddpm with steps = T is the original chain)
    eta: float = 0.0  # DDIM noise: 0 deterministic, 1 like DDPM
    guidance_scale: float = 1.0  # classifier-free guidance: 0 unconditional, 1 conditional, > 1 guided
    clip_sample: bool = True  # clip the predicted x_0 to [-1, 1] at each step (ddpm, ddim)

    def __post_init__(self) -> None:
        # jsonargparse checks this Literal in a config; the re-check stays while a test builds SamplingConfig directly
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"`model.init_args.sampling.sampler` must be one of {SAMPLERS}, got {self.sampler!r}.")
        if self.steps < 1 or self.eta < 0:
            raise ConfigError(
                f"`model.init_args.sampling.steps` must be >= 1 and `model.init_args.sampling.eta` >= 0, got {self.steps} and {self.eta}."
            )


def as_config(cls: type, value: Any) -> Any:
    """``value`` as dataclass ``cls`` (checkpoints and export files store the configs as dicts)."""
    if isinstance(value, cls):
        return value
    fields = dict(value or {})
    for key in ("widths", "attention"):
        if key in fields:
            fields[key] = tuple(fields[key])
    return cls(**fields)


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a dict of plain values (lists, not tuples: YAML- and weights_only-safe)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def build_unet(image_shape: tuple[int, int, int], config: UNetConfig, num_classes: int | None = None) -> nn.Module:
    """A diffusers ``UNet2DModel`` for ``image_shape``; ``num_classes``: class-conditional (+1 "no label")."""
    from diffusers import UNet2DModel

    channels, height, width = image_shape
    factor = 2 ** (len(config.widths) - 1)
    if height % factor or width % factor:
        halvings = min((height & -height).bit_length(), (width & -width).bit_length()) - 1  # times both halve evenly
        raise ConfigError(
            f"`model.init_args.unet.widths` has {len(config.widths)} levels, so images are halved {len(config.widths) - 1} times, but "
            f"{height}x{width} is not divisible by {factor}. Use at most {halvings + 1} levels for {height}x{width} images."
        )
    return UNet2DModel(
        sample_size=(height, width),
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(config.widths),
        layers_per_block=config.layers_per_block,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention)),
        attention_head_dim=None,  # one head over all channels, as in DDPM
        norm_num_groups=config.norm_num_groups,
        dropout=config.dropout,
        num_class_embeds=None if num_classes is None else num_classes + 1,
    )


def guided(uncond: Tensor, cond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)`` (0: unconditional, 1: conditional)."""
    return uncond + scale * (cond - uncond)


class DenoisingDiffusion(nn.Module):
    """UNet + noise schedule + samplers; ``sample`` returns images in ``[0, 1]`` (see module docstring).

    Args:
        image_shape: ``(C, H, W)``.
        num_classes: Classes to condition on; ``None``: unconditional.
        unet: :class:`UNetConfig` (or its dict).
        schedule: :class:`NoiseSchedule` (or its dict).
        sampling: :class:`SamplingConfig` (or its dict): the defaults of :meth:`sample`.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] | list[int],
        num_classes: int | None = None,
        unet: UNetConfig | dict | None = None,
        schedule: NoiseSchedule | dict | None = None,
        sampling: SamplingConfig | dict | None = None,
    ) -> None:
        super().__init__()
        from diffusers import DDPMScheduler

        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.unet_config: UNetConfig = as_config(UNetConfig, unet)
        self.schedule: NoiseSchedule = as_config(NoiseSchedule, schedule)
        self.sampling: SamplingConfig = as_config(SamplingConfig, sampling)
        self.net = build_unet(
            self.image_shape, self.unet_config, self.num_classes
        )  # (B, C, H, W), t, labels -> (B, C, H, W)
        self.noise_scheduler = DDPMScheduler(**self.schedule.diffusers_kwargs())  # forward process (training)

    def export_kwargs(self) -> dict[str, Any]:
        """Constructor arguments as plain values (what an export file stores)."""
        return {
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "unet": config_dict(self.unet_config),
            "schedule": config_dict(self.schedule),
            "sampling": config_dict(self.sampling),
        }

    @property
    def null_label(self) -> int:
        """The label id meaning "no label" (classifier-free guidance)."""
        if self.num_classes is None:
            raise ValueError("an unconditional model has no labels")
        return self.num_classes

    # --- forward process and training target -----------------------------------------------------
    def alphas_cumprod(self) -> Tensor:
        """``alpha_bar_t`` for t = 0..T-1 (float32, diffusers' own table)."""
        return self.noise_scheduler.alphas_cumprod

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise`` (per-example ``t``)."""
        return self.noise_scheduler.add_noise(x0, noise, t)

    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the net learns to predict: ``noise`` (epsilon) or ``v`` (v_prediction)."""
        if self.schedule.prediction_type == "epsilon":
            return noise
        return self.noise_scheduler.get_velocity(x0, noise, t)

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """The net's prediction (epsilon or v) for ``x_t`` ``(B, C, H, W)`` at steps ``t`` ``(B,)`` or a scalar.

        Conditional nets take ``labels`` ``(B,)``; ``None`` means "no label" for every example.
        """
        if self.num_classes is not None and labels is None:
            labels = torch.full((x_t.shape[0],), self.null_label, device=x_t.device, dtype=torch.long)
        return self.net(x_t, t, class_labels=labels).sample

    def loss(self, x0: Tensor, labels: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """Mean squared error of the prediction, ``t ~ U{0..T-1}`` and noise drawn from ``generator``."""
        t = torch.randint(self.schedule.num_train_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        prediction = self(self.add_noise(x0, noise, t), t, labels)
        return F.mse_loss(prediction.float(), self.target(x0, noise, t).float())

    # --- sampling --------------------------------------------------------------------------------
    def make_scheduler(self, sampler: str, steps: int, clip_sample: bool) -> Any:
        """A fresh diffusers scheduler of ``sampler`` with ``steps`` timesteps set (they keep state)."""
        from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

        if sampler not in SAMPLERS:
            raise ConfigError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}.")
        if not 1 <= steps <= self.schedule.num_train_timesteps:
            raise ConfigError(f"sampling `steps` must be in [1, {self.schedule.num_train_timesteps}], got {steps}.")
        kwargs = self.schedule.diffusers_kwargs()
        if sampler == "ddpm":
            scheduler = DDPMScheduler(**kwargs, clip_sample=clip_sample)
        elif sampler == "ddim":
            scheduler = DDIMScheduler(**kwargs, clip_sample=clip_sample)
        else:
            scheduler = DPMSolverMultistepScheduler(**kwargs, algorithm_type="dpmsolver++", solver_order=2)
        scheduler.set_timesteps(steps, device=next(self.parameters()).device)
        return scheduler

    def guided_prediction(self, x: Tensor, t: Tensor, labels: Tensor | None, guidance_scale: float) -> Tensor:
        """The net's prediction with classifier-free guidance (one forward when the scale is 0 or 1)."""
        if self.num_classes is None or guidance_scale == 1.0:
            return self(x, t, labels)
        if guidance_scale == 0.0:
            return self(x, t, None)
        null = torch.full_like(labels, self.null_label)
        cond, uncond = self(torch.cat([x, x]), t, torch.cat([labels, null])).chunk(2)
        return guided(uncond, cond, guidance_scale)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
        guidance_scale: float | None = None,
        sampler: SamplerName | None = None,
        steps: int | None = None,
        eta: float | None = None,
    ) -> Tensor:
        """``n`` images ``(n, C, H, W)`` in ``[0, 1]``; all noise from ``generator`` (``None``: global RNG).

        Conditional models sample ``labels`` (default ``arange(n) % num_classes``) with
        ``guidance_scale``; the other arguments default to :attr:`sampling`.
        """
        cfg = self.sampling
        sampler = cfg.sampler if sampler is None else sampler
        scale = cfg.guidance_scale if guidance_scale is None else float(guidance_scale)
        eta = cfg.eta if eta is None else float(eta)
        device = next(self.parameters()).device
        if self.num_classes is not None:
            labels = torch.arange(n, device=device) % self.num_classes if labels is None else labels.to(device).long()
        scheduler = self.make_scheduler(sampler, cfg.steps if steps is None else int(steps), cfg.clip_sample)
        noise_device = "cpu" if generator is None else generator.device
        x = (
            torch.randn((n, *self.image_shape), generator=generator, device=noise_device).to(device)
            * scheduler.init_noise_sigma
        )
        step_kwargs: dict[str, Any] = {"generator": generator}
        if sampler == "ddim":
            step_kwargs["eta"] = eta
        with eval_mode(self):
            for t in scheduler.timesteps:
                prediction = self.guided_prediction(scheduler.scale_model_input(x, t), t, labels, scale)
                x = scheduler.step(prediction, t, x, **step_kwargs).prev_sample
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)
