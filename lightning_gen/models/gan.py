"""GANs on Lightning 2: manual optimization, ``n_critic``, four losses, mixed precision, generator EMA.

One training step is one **generator iteration**: it takes one data batch, makes ``n_critic``
discriminator steps and then one generator step. With ``critic_batches="split"`` (default) the
batch is cut into ``n_critic`` equal parts, one fresh real batch per discriminator step (the
WGAN-GP / Mimicry protocol: ``data.batch_size = n_critic * 64`` for "bs 64, n_dis 5");
``"reuse"`` shows the whole batch to every discriminator step.

How steps count generator iterations
------------------------------------
In Lightning 2 manual optimization every ``LightningOptimizer.step()`` increments
``trainer.global_step`` (it *is* ``fit_loop.epoch_loop.manual_optimization.optim_step_progress``;
the manual loop hooks ``_on_before_step``/``_on_after_step`` of every optimizer to count;
Lightning issue 17958), so a GAN with ``n_critic=5`` would count 6 steps per iteration. Here the
generator steps through its ``LightningOptimizer`` (counted: one step per iteration) while each
discriminator step calls ``trainer.strategy.optimizer_step(d_optimizer, closure)`` directly: the
very call ``LightningOptimizer.step`` makes after its counting hooks, so the precision plugin
(autocast, the fp16 ``GradScaler`` unscale/step/update, ``on_before_optimizer_step``), DDP and
other strategies behave exactly as usual; only the counter (and the profiler's
``optimizer_step`` section, replaced by ``optimizer_step_discriminator``) is skipped. Because
every training step is one batch and one iteration, the logger step (``_batches_that_stepped``),
``log_every_n_steps`` and ``val_check_interval`` count iterations too, and so do ``max_steps``
and ``ModelCheckpoint(every_n_train_steps=...)``, which read ``global_step``.

Gradient clipping (``gradient_clip_val``) happens in ``on_before_optimizer_step``: the precision
plugin calls it after the fp16 gradients were unscaled, which is where clipping must happen
(``Trainer(gradient_clip_val=...)`` is refused by Lightning under manual optimization).

Randomness of training (``z``, fake labels, the penalty's ``alpha``) comes from a private
``torch.Generator`` saved in the checkpoint, so a resumed run continues the same random stream,
whatever validation or sampling callbacks did in between. Validation draws its ``z`` and fake labels
from the contract's ``eval_generator`` (keyed by the batch and the rank), so ``val/d_fake`` of one
checkpoint is one number at the end of ``fit``, after a resume and in ``validate``.

DDP
---
Lightning wraps the whole module (G and D) in one ``DistributedDataParallel``; under manual
optimization it prepares DDP's gradient reduction before every ``manual_backward`` with that
loss. Each backward here reaches one net only: D's loss is computed on ``fake`` made without
gradients, and G's step freezes D (``toggle_optimizer``). DDP's default expects every parameter
to receive a gradient and fails at the next step ("parameters that were not used in producing
the loss"). The choice made: **one wrapper with** ``find_unused_parameters=True``
(``ddp_find_unused_parameters`` below; :mod:`lightning_gen.runs.strategy` applies it to
``--trainer.strategy=ddp``). Each backward then all-reduces the gradients of the net it reached
(D's ``n_critic`` steps, then G's step, each with gradients averaged over ranks before its
optimizer step) and leaves the other net's gradients untouched; the cost is a walk of the
autograd graph per backward. Separate wrappers per net would need a custom strategy for the
same result. Batch-norm buffers are broadcast from rank 0 at each step (DDP's default); the EMA
(the contract's ``ema``: ``configure_ema("generator", ...)``, ``update_ema()`` after the generator
step) is updated on every rank from identical weights. Each rank draws its own noise (rank 0 keeps
the single-process stream, rank r a seed derived from it), and the checkpoint holds every
rank's noise state, so a resumed DDP run continues every rank's stream.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.optimizer import do_nothing_closure
from torch import Tensor

from gen_common.errors import ConfigError
from lightning_gen.losses.gan import GAN_LOSSES, GANLoss, discriminator_loss, generator_loss, gradient_penalty
from lightning_gen.models.base import ExportSpec, ImageGenerator, MonitorMode, rename_state_dict_prefix
from lightning_gen.models.cadence import is_logging_step
from lightning_gen.nets.gan import Architecture, build_discriminator, build_generator, generator_kwargs
from lightning_gen.nets.gan_layers import DNorm


def dcgan_adam(params) -> torch.optim.Optimizer:
    """The DCGAN optimizer (Radford et al., 2016): Adam, lr 2e-4, betas (0.5, 0.999)."""
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


class GAN(ImageGenerator):
    """Unconditional or class-conditional GAN with manual optimization (see module docstring).

    Logs per generator iteration: ``train/d_loss`` (including the penalty), ``train/g_loss``,
    ``train/d_real`` and ``train/d_fake`` (mean raw discriminator outputs of the last
    discriminator step), ``train/gp`` (``wgan_gp`` only); on validation ``val/d_real``,
    ``val/d_fake``. Images from the datamodule are in ``[0, 1]`` and mapped to ``[-1, 1]`` here.

    Args:
        image_shape: ``(C, H, W)``; linked from the datamodule by the CLI.
        num_classes: Number of classes; linked from the datamodule, used only if ``conditional``.
        conditional: Class-conditional GAN: conditional BN in G, projection discriminator.
        architecture: ``dcgan`` (28/32/64 px) or ``resnet32`` (SN-GAN ResNet, 32 px).
        latent_dim: Size of ``z``.
        g_width: Generator width (DCGAN: channels of the last hidden layer; ResNet: all blocks).
        d_width: Discriminator width (DCGAN: channels of the first layer; ResNet: all blocks).
        d_norm: Discriminator normalisation: ``batch``, ``spectral`` or ``none``.
        loss: ``non_saturating``, ``hinge``, ``wgan_gp`` or ``lsgan``.
        gp_weight: Weight lambda of the gradient penalty (``wgan_gp`` only).
        n_critic: Discriminator steps per generator step.
        critic_batches: ``split`` the batch into ``n_critic`` parts or ``reuse`` it for each.
        ema_decay: Decay of the generator's exponential moving average; ``None`` disables it.
        ema_start: Warm-up: for the first ``ema_start`` generator iterations the EMA copies
            the generator, then it averages.
        gradient_clip_val: Clip each network's gradients to this norm (or value); ``None``: off.
        gradient_clip_algorithm: ``norm`` or ``value``.
        noise_seed: Seed of the training noise; ``None`` draws one from the global RNG
            (so ``seed_everything`` fixes it).
        generator_optimizer: Optimizer factory for G (default Adam 2e-4, betas (0.5, 0.999)).
        discriminator_optimizer: Optimizer factory for D (same default).
        generator_scheduler: Optional LR scheduler for G, stepped once per generator iteration.
        discriminator_scheduler: Optional LR scheduler for D, also stepped once per
            generator iteration (so ``total_iters`` counts iterations for both).
    """

    #: a GAN has no validation metric worth selecting checkpoints by: keep the latest (``last.ckpt``)
    monitor: ClassVar[tuple[str | None, MonitorMode]] = (None, "min")
    #: each backward reaches one of the two nets: DDP must not wait for the other's gradients (module doc)
    ddp_find_unused_parameters: ClassVar[bool] = True

    def __init__(
        self,
        image_shape: tuple[int, int, int] | None = None,
        num_classes: int | None = None,
        conditional: bool = False,
        architecture: Architecture = "dcgan",
        latent_dim: int = 100,
        g_width: int = 64,
        d_width: int = 64,
        d_norm: DNorm = "batch",
        loss: GANLoss = "non_saturating",
        gp_weight: float = 10.0,
        n_critic: int = 1,
        critic_batches: Literal["split", "reuse"] = "split",
        ema_decay: float | None = 0.999,
        ema_start: int = 0,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: Literal["norm", "value"] = "norm",
        noise_seed: int | None = None,
        generator_optimizer: OptimizerCallable = dcgan_adam,
        discriminator_optimizer: OptimizerCallable = dcgan_adam,
        generator_scheduler: LRSchedulerCallable | None = None,
        discriminator_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        if conditional and not num_classes:
            raise ConfigError("`conditional: true` needs labelled data: the datamodule reports no `num_classes`.")
        super().__init__(image_shape, num_classes if conditional else None)
        _check_training_options(loss, d_norm, n_critic, latent_dim, gp_weight)
        self.save_hyperparameters(
            ignore=["generator_optimizer", "discriminator_optimizer", "generator_scheduler", "discriminator_scheduler"]
        )
        self.automatic_optimization = False
        self.architecture = architecture
        self.latent_dim = latent_dim
        self.loss_name = loss
        self.gp_weight = gp_weight
        self.n_critic = n_critic
        self.critic_batches = critic_batches
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.noise_seed = noise_seed
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        self.generator_scheduler = generator_scheduler
        self.discriminator_scheduler = discriminator_scheduler
        self._build_nets(architecture, g_width, d_width, d_norm)
        # averaged weights; BN running stats / SN vectors copied from the generator (base class)
        self.configure_ema("generator", ema_decay, ema_start)
        self._noise: torch.Generator | None = None
        self._pending_noise_state: Tensor | None = None
        self._pending_noise_seed: int | None = None

    def _build_nets(self, architecture: Architecture, g_width: int, d_width: int, d_norm: DNorm) -> None:
        """G (and its export kwargs) and D for ``self.image_shape``; a shape the nets cannot take is a ConfigError."""
        try:
            self.generator_config = generator_kwargs(self.image_shape, self.latent_dim, g_width, self.num_classes)
            self.generator = build_generator(architecture, **self.generator_config)
            self.discriminator = build_discriminator(architecture, self.image_shape, d_width, d_norm, self.num_classes)
        except ValueError as err:
            raise ConfigError(f"GAN nets: {err}") from None

    # --- randomness ------------------------------------------------------------------------------
    def _training_noise(self) -> torch.Generator:
        """The private RNG of training noise, on this module's device (restored on resume); one stream per rank.

        A stateful stream saved in the checkpoint (not the base class's keyed ``noise_generator``):
        it keeps the random numbers of runs trained before the contract bitwise the same.
        """
        if self._noise is None or self._noise.device != self.device:
            if self._pending_noise_seed is not None:
                seed = self._pending_noise_seed
            else:
                seed = self.noise_seed if self.noise_seed is not None else int(torch.randint(2**62, (1,)).item())
                seed = _rank_seed(seed, self.global_rank)
            self._noise = torch.Generator(device=self.device).manual_seed(seed)
            if self._pending_noise_state is not None:
                self._noise.set_state(self._pending_noise_state)
            self._pending_noise_state = self._pending_noise_seed = None
        return self._noise

    def _z(self, n: int) -> Tensor:
        return torch.randn(n, self.latent_dim, generator=self._training_noise(), device=self.device)

    def _fake_labels(self, n: int) -> Tensor | None:
        if self.num_classes is None:
            return None
        return torch.randint(self.num_classes, (n,), generator=self._training_noise(), device=self.device)

    # --- generation API (the contract) -----------------------------------------------------------
    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None, use_ema: bool = True
    ) -> Tensor:
        """``n`` images in ``[0, 1]``, ``(n, C, H, W)``, from the EMA generator in eval mode by default.

        Conditional models sample ``labels`` (default ``arange(n) % num_classes``).
        """
        return self.sampling_module(use_ema).sample(n, generator, labels)

    def export_spec(self) -> ExportSpec:
        return ExportSpec(
            builder="lightning_gen.nets.gan.build_generator",
            kwargs={"architecture": self.architecture, **self.generator_config},
            module="generator",
            ema_module=None if self.ema is None else "ema.module",
        )

    # --- training --------------------------------------------------------------------------------
    def _critic_batches(self, x: Tensor, y: Tensor) -> list[tuple[Tensor, Tensor]]:
        if self.critic_batches == "reuse" or self.n_critic == 1:
            return [(x, y)] * self.n_critic
        if x.shape[0] % self.n_critic != 0:
            raise ConfigError(
                f"critic_batches='split' cuts each batch into n_critic={self.n_critic} equal discriminator batches, "
                f"but got a batch of {x.shape[0]}. Fix: set `data.init_args.batch_size` to a multiple of "
                f"{self.n_critic} (e.g. {self.n_critic * 64} for 64 per discriminator step), or set "
                f"`model.init_args.critic_batches: reuse`."
            )
        return list(zip(x.chunk(self.n_critic), y.chunk(self.n_critic)))

    def _discriminator_step(self, optimizer) -> None:
        """Step D through the strategy/precision plugin without counting a global step (module doc)."""
        with self.trainer.profiler.profile("optimizer_step_discriminator"):
            self.trainer.strategy.optimizer_step(optimizer.optimizer, do_nothing_closure)

    def _grad_scale(self) -> float:
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)  # only the fp16 plugins have one
        return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        x, y = batch
        x = x * 2.0 - 1.0  # [0, 1] -> [-1, 1], the range of the generator's tanh
        cond = self.num_classes is not None

        # --- n_critic discriminator steps ---
        gp = None
        for real, labels in self._critic_batches(x, y):
            n = real.shape[0]
            fake_labels = self._fake_labels(n)
            with torch.no_grad():
                fake = self.generator(self._z(n), fake_labels)
            d_real = self.discriminator(real, labels if cond else None)
            d_fake = self.discriminator(fake, fake_labels)
            d_loss = discriminator_loss(self.loss_name, d_real, d_fake)
            if self.loss_name == "wgan_gp":
                alpha = torch.rand(n, generator=self._training_noise(), device=self.device)
                critic = (lambda h, y=labels: self.discriminator(h, y)) if cond else self.discriminator
                gp = gradient_penalty(critic, real, fake, alpha=alpha, grad_scale=self._grad_scale())
                d_loss = d_loss + self.gp_weight * gp
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            self._discriminator_step(d_opt)

        # --- one generator step (the one counted step) ---
        n = x.shape[0] if self.critic_batches == "reuse" else x.shape[0] // self.n_critic
        self.toggle_optimizer(g_opt)  # D's parameters need no gradients here
        fake_labels = self._fake_labels(n)
        g_loss = generator_loss(
            self.loss_name, self.discriminator(self.generator(self._z(n), fake_labels), fake_labels)
        )
        g_opt.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        g_opt.step()
        self.untoggle_optimizer(g_opt)

        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()
        self.update_ema()

        if not is_logging_step(self.trainer, steps_done=self.global_step):  # after the G step
            return
        logs = {
            "train/d_loss": d_loss.detach(),
            "train/g_loss": g_loss.detach(),
            "train/d_real": d_real.detach().float().mean(),
            "train/d_fake": d_fake.detach().float().mean(),
        }
        if gp is not None:
            logs["train/gp"] = gp.detach()
        self.log_dict(logs, prog_bar=False, batch_size=x.shape[0])

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # The precision plugin calls this after unscaling fp16 gradients: the place to clip them.
        if self.gradient_clip_val:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.gradient_clip_val,
                gradient_clip_algorithm=self.gradient_clip_algorithm,
            )

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """``val/d_real``, ``val/d_fake``; ``z`` and fake labels from :meth:`eval_generator` (one number per checkpoint)."""
        x, y = batch
        x = x * 2.0 - 1.0
        generator, n = self.eval_generator(batch_idx), x.shape[0]
        fake_labels = (
            None
            if self.num_classes is None
            else torch.randint(self.num_classes, (n,), generator=generator, device=self.device)
        )
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        d_real = self.discriminator(x, y if self.num_classes is not None else None)
        d_fake = self.discriminator(self.generator(z, fake_labels), fake_labels)
        self.log_dict(
            {"val/d_real": d_real.float().mean(), "val/d_fake": d_fake.float().mean()},
            batch_size=x.shape[0],
            sync_dist=True,
        )

    def configure_optimizers(self):
        g_opt = self.generator_optimizer(self.generator.parameters())
        d_opt = self.discriminator_optimizer(self.discriminator.parameters())
        schedulers = []
        if self.generator_scheduler is not None:
            schedulers.append(self.generator_scheduler(g_opt))
        if self.discriminator_scheduler is not None:
            schedulers.append(self.discriminator_scheduler(d_opt))
        return [g_opt, d_opt], schedulers

    # --- checkpoint ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every rank calls this (Lightning saves on all ranks, writes on rank 0): gather each rank's noise state."""
        super().on_save_checkpoint(checkpoint)
        state = self._training_noise().get_state()
        world = self.trainer.world_size if self._trainer is not None else 1
        if world > 1:
            states = self.all_gather(state.to(self.device)).cpu()  # (world, n) uint8
            checkpoint["gan_noise_rng_states"] = list(states.unbind(0))
            state = states[0]
        checkpoint["gan_noise_rng_state"] = state  # rank 0's (the only one of a 1-process run)

    def upgrade_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Checkpoints written before the contract keep the EMA under ``generator_ema.*``: renamed to ``ema.*``."""
        return rename_state_dict_prefix(state_dict, "generator_ema.", "ema.")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore this rank's noise stream; a rank the checkpoint has no state for derives a new seed from rank 0's.

        (Checkpoints written before the contract are upgraded by :meth:`upgrade_state_dict`.)
        """
        super().on_load_checkpoint(checkpoint)
        states = checkpoint.get("gan_noise_rng_states") or [checkpoint.get("gan_noise_rng_state")]
        rank = self.global_rank
        if states[0] is None:
            return
        self._noise = None
        if rank < len(states):
            self._pending_noise_state = states[rank]
        else:
            self._pending_noise_seed = _rank_seed(
                int.from_bytes(hashlib.sha256(states[0].numpy().tobytes()).digest()[:7], "little"), rank
            )


def _check_training_options(loss: str, d_norm: str, n_critic: int, latent_dim: int, gp_weight: float) -> None:
    """The values jsonargparse cannot check: the loss against the discriminator's norm, and the ranges."""
    # jsonargparse checks the `loss` Literal of a config; this re-check stays while a test calls GAN(loss=...) directly
    if loss not in GAN_LOSSES:
        raise ConfigError(f"`model.init_args.loss` must be one of {GAN_LOSSES}, got {loss!r}.")
    if loss == "wgan_gp" and d_norm == "batch":
        raise ConfigError(
            "`loss: wgan_gp` needs a discriminator without batch norm (the gradient penalty is per example): "
            "set `model.init_args.d_norm` to 'none' or 'spectral'."
        )
    if n_critic < 1 or latent_dim < 1 or gp_weight < 0:
        raise ConfigError("`n_critic` and `latent_dim` must be >= 1, `gp_weight` >= 0.")


def _rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps ``seed`` (the single-process stream); rank r > 0 gets an independent seed derived from it."""
    if rank == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"lightning_gen.gan:{seed}:{rank}".encode()).digest()[:8], "little") & (
        (1 << 63) - 1
    )
