"""Denoising diffusion (DDPM training; DDPM / DDIM / DPM-Solver++ sampling; classifier-free guidance).

Built only on the generator contract (:mod:`lightning_gen.models.base`): the callbacks, ``evaluate``
and ``compare`` know nothing of this family. The net, schedules and samplers are
:class:`~lightning_gen.nets.diffusion.DenoisingDiffusion` (diffusers' ``UNet2DModel`` and schedulers);
this module adds training: the loss, label dropout, EMA, logging and checkpoints.

Randomness of training (timesteps, noise, dropped labels) comes from
:meth:`~lightning_gen.models.base.GenerativeModel.noise_generator` keyed by
``(global_step, batch_idx)``; validation and test noise come from the contract's
:meth:`~lightning_gen.models.base.GenerativeModel.eval_generator` (a fixed seed, the rank and
``batch_idx``), so ``val/loss`` is the same measurement at every validation, in ``validate`` and in
every run. A resumed run therefore draws exactly what the unbroken
run drew (the UNet's dropout uses the global RNG, which the CLI's ``RunState`` restores).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from gen_common.errors import ConfigError
from lightning_gen.models.base import ExportSpec, ImageGenerator, MonitorMode
from lightning_gen.nets.diffusion import (
    DenoisingDiffusion,
    NoiseSchedule,
    SamplerName,
    SamplingConfig,
    UNetConfig,
    as_config,
    config_dict,
)

_TRAIN_NOISE = 0  # noise stream of noise_generator


def ddpm_adam(params) -> torch.optim.Optimizer:
    """The DDPM optimizer (Ho et al., 2020): Adam, lr 2e-4."""
    return torch.optim.Adam(params, lr=2e-4)


class Diffusion(ImageGenerator):
    """Unconditional or class-conditional denoising diffusion model on images.

    Logs ``train/loss`` (MSE of the epsilon or v prediction, every step), ``val/loss`` (the same
    with fixed noise and timesteps, of the sampling weights: the EMA when on) and, with EMA,
    ``val/loss_raw`` (the trained weights); ``test/loss`` likewise. Images from the datamodule
    are in ``[0, 1]`` and mapped to ``[-1, 1]`` here.

    Args:
        image_shape: ``(C, H, W)``; linked from the datamodule by the CLI.
        num_classes: Number of classes; linked from the datamodule, used only if ``conditional``.
        conditional: Class-conditional model trained for classifier-free guidance.
        unet: The UNet: ``widths`` per level, ``layers_per_block``, ``attention`` per level,
            ``dropout``, ``norm_num_groups``.
        schedule: ``num_train_timesteps``, ``beta_schedule`` (linear | cosine), ``beta_start``,
            ``beta_end``, ``prediction_type`` (epsilon | v_prediction).
        sampling: Defaults of ``sample``: ``sampler`` (ddpm | ddim | dpm_solver++), ``steps``,
            ``eta`` (DDIM), ``guidance_scale`` (0 unconditional, 1 conditional), ``clip_sample``.
        cond_drop_prob: Probability that a training label is replaced by "no label", so one
            net learns both the conditional and the unconditional model (guidance needs both).
        ema_decay: Decay of the weights' exponential moving average (DDPM: 0.9999); ``None``: off.
        ema_start: Warm-up: for the first ``ema_start`` optimizer steps the EMA copies the weights.
        noise_seed: Seed of the training noise; ``None`` draws one from the global RNG (so
            ``seed_everything`` fixes it). Stored in the checkpoint. (Validation noise has a fixed seed.)
        optimizer: Optimizer factory (default Adam, lr 2e-4).
        lr_scheduler: Optional LR scheduler factory, stepped every optimizer step (e.g.
            ``torch.optim.lr_scheduler.LinearLR`` for DDPM's 5000-step warm-up).
    """

    monitor: ClassVar[tuple[str | None, MonitorMode]] = ("val/loss", "min")

    def __init__(
        self,
        image_shape: tuple[int, int, int] | None = None,
        num_classes: int | None = None,
        conditional: bool = False,
        unet: UNetConfig = UNetConfig(),
        schedule: NoiseSchedule = NoiseSchedule(),
        sampling: SamplingConfig = SamplingConfig(),
        cond_drop_prob: float = 0.1,
        ema_decay: float | None = 0.9999,
        ema_start: int = 0,
        noise_seed: int | None = None,
        optimizer: OptimizerCallable = ddpm_adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        # checkpoints hold the configs as dicts (weights_only loads): accept both
        unet, schedule, sampling = (
            as_config(UNetConfig, unet),
            as_config(NoiseSchedule, schedule),
            as_config(SamplingConfig, sampling),
        )
        if conditional and not num_classes:
            raise ConfigError("`conditional: true` needs labelled data: the datamodule reports no `num_classes`.")
        if not 0.0 <= cond_drop_prob < 1.0:
            raise ConfigError(f"`model.init_args.cond_drop_prob` must be in [0, 1), got {cond_drop_prob}.")
        super().__init__(image_shape, num_classes if conditional else None)
        self.save_hyperparameters(
            {
                "image_shape": list(self.image_shape),
                "num_classes": num_classes,
                "conditional": conditional,
                "unet": config_dict(unet),
                "schedule": config_dict(schedule),
                "sampling": config_dict(sampling),
                "cond_drop_prob": cond_drop_prob,
                "ema_decay": ema_decay,
                "ema_start": ema_start,
                "noise_seed": noise_seed,
            }
        )
        self.cond_drop_prob = cond_drop_prob
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.diffusion = DenoisingDiffusion(self.image_shape, self.num_classes, unet, schedule, sampling)
        self.configure_ema("diffusion", ema_decay, ema_start)
        self.set_noise_seed(noise_seed)

    # --- generation API (the contract) -----------------------------------------------------------
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
        guidance_scale: float | None = None,
        sampler: SamplerName | None = None,
        steps: int | None = None,
        eta: float | None = None,
        use_ema: bool = True,
    ) -> Tensor:
        """``n`` images ``(n, C, H, W)`` in ``[0, 1]`` from the EMA weights (``use_ema``), in eval mode.

        ``labels`` (conditional models; default ``arange(n) % num_classes``), ``guidance_scale``,
        ``sampler``, ``steps`` and ``eta`` default to the ``sampling`` config. All noise comes
        from ``generator``: one seed, one set of images.
        """
        return self.sampling_module(use_ema).sample(n, generator, labels, guidance_scale, sampler, steps, eta)

    def export_spec(self) -> ExportSpec:
        return ExportSpec(
            builder="lightning_gen.nets.diffusion.DenoisingDiffusion",
            kwargs=self.diffusion.export_kwargs(),
            module="diffusion",
            ema_module=None if self.ema is None else "ema.module",
        )

    # --- training --------------------------------------------------------------------------------
    def _training_labels(self, y: Tensor, generator: torch.Generator) -> Tensor | None:
        """Labels with a ``cond_drop_prob`` share replaced by "no label"; ``None`` if unconditional."""
        if self.num_classes is None:
            return None
        drop = torch.rand(y.shape[0], generator=generator, device=y.device) < self.cond_drop_prob
        return torch.where(drop, torch.full_like(y, self.diffusion.null_label), y)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        generator = self.noise_generator(_TRAIN_NOISE, self.global_step, batch_idx)
        labels = self._training_labels(y, generator)
        loss = self.diffusion.loss(x * 2.0 - 1.0, labels, generator)
        self.log("train/loss", loss, batch_size=x.shape[0])
        return loss

    def _eval_losses(self, batch: tuple[Tensor, Tensor], batch_idx: int, split: str) -> None:
        x, y = batch
        x0, labels = x * 2.0 - 1.0, (y if self.num_classes is not None else None)
        logs = {f"{split}/loss": self.sampling_module().loss(x0, labels, self.eval_generator(batch_idx))}
        if self.ema is not None:  # the same noise for the trained weights
            logs[f"{split}/loss_raw"] = self.diffusion.loss(x0, labels, self.eval_generator(batch_idx))
        self.log_dict(logs, batch_size=x.shape[0], sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_losses(batch, batch_idx, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_losses(batch, batch_idx, "test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(self.diffusion.parameters())
        if self.lr_scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.lr_scheduler(optimizer), "interval": "step"}}
