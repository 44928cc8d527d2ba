"""The generator contract: what the CLI, callbacks, ``evaluate``, ``export`` and ``compare`` may rely on.

An image family subclasses :class:`ImageGenerator`, a text family :class:`TextGenerator`; both
extend :class:`GenerativeModel`. Tools and callbacks read a model through these names and nothing else:

================================  ======================================================================
member                            read by
================================  ======================================================================
``monitor``                       the CLI (``ModelCheckpoint``: best by it), ``compare`` (direction of "best");
                                  a class attribute, so ``compare`` reads it without building the model
``image_shape``                   linked from ``data.image_shape`` by the CLI; ``(C, H, W)`` of every sample
``num_classes``                   linked from ``data.num_classes``; ``None`` when the model is unconditional
``sample``                        ``SampleGrid``, the FID/KID/PR/IS callbacks, ``evaluate --ckpt``
``reconstruct``                   ``SampleGrid``'s reconstruction grid, when not ``None``
``eval_mode``                     anything that samples outside ``training_step``
``eval_generator``                every family's ``validation_step`` / ``test_step`` (their only randomness)
EMA                               ``sample`` uses the averaged weights by default; ``export`` writes them
``export_spec``                   ``export`` (stored in every checkpoint under :data:`EXPORT_KEY`)
``ddp_find_unused_parameters``    ``lightning_gen.runs.strategy``: True when a backward pass leaves some
                                  trained parameters without gradient (the GAN's do)
``generate``, ``max_context``      text families: ``TextMetrics``, ``lightning-gen sample``
================================  ======================================================================

Validation and test randomness: a family's ``validation_step`` and ``test_step`` draw every random
number (a GAN's ``z`` and fake labels, a VAE's posterior samples, diffusion timesteps and noise)
from :meth:`GenerativeModel.eval_generator`, a fresh private ``torch.Generator`` seeded from
``(EVAL_NOISE_SEED, global rank, batch_idx)``: never from the global RNG, whose state a validation
step leaves untouched. So one checkpoint gives one validation number at the end of ``fit``, after
a resume and in ``validate`` or ``test``; each DDP rank draws its own noise (rank 0 that of a
1-process run), reproducibly; and training randomness and bitwise resume do not depend on when
or how often validation ran.

Export: :func:`export_payload` turns a checkpoint *dict* into a small file (builder, its keyword
arguments, the EMA or raw weights) and :func:`load_exported` rebuilds the sampling module from it
with neither Lightning nor the training state; that module offers the same
``sample(n, generator=None, **conditioning)`` as the family.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning as L
import torch
from lightning.fabric.plugins.precision.amp import _optimizer_handles_unscaling
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gen_common.errors import ConfigError, LightningGenError
from lightning_gen.utils.imports import import_object
from lightning_gen.utils.modules import eval_mode
from lightning_gen.utils.sampling import SamplingOptions
from lightning_gen.utils.seeding import keyed_generator

#: checkpoint entry holding :class:`ExportSpec` (as a dict)
EXPORT_KEY = "lightning_gen_export"
#: checkpoint entry holding the seed of the training noise (see :meth:`GenerativeModel.noise_generator`)
NOISE_SEED_KEY = "lightning_gen_noise_seed"
#: fixed seed of validation and test noise (see :meth:`GenerativeModel.eval_generator`); never change it:
#: it would change every family's validation numbers
EVAL_NOISE_SEED = 0x6C67_7661  # "lgva"
#: ``format`` of the files :func:`export_payload` makes
EXPORT_FORMAT = "lightning_gen.generator/1"
#: checkpoint entry where text families keep their tokenizer (``Tokenizer.to_dict()``).
#: Today the text datamodule's state holds it (``commands/sample.py`` searches every entry).
TOKENIZER_KEY = "tokenizer"

MonitorMode = Literal["min", "max"]
_SAMPLING = SamplingOptions()


@dataclass(frozen=True)
class ExportSpec:
    """How to rebuild a family's sampling module from a checkpoint, without Lightning."""

    builder: str  # dotted path (under ``lightning_gen.``) of the nn.Module class, called with **kwargs
    kwargs: dict[str, Any] = field(default_factory=dict)  # plain values only (weights_only loads)
    module: str = "net"  # attribute path of that module in the LightningModule (its state_dict prefix)
    ema_module: str | None = None  # attribute path of its EMA copy, e.g. "ema.module"; None: no EMA


class GenerativeModel(L.LightningModule, ABC):
    """What every generative family offers: ``monitor``, EMA weights, eval mode, training noise, export.

    EMA: call :meth:`configure_ema` in ``__init__`` after building the module to average. The
    averaged copy is the submodule ``ema`` (so it sits in every checkpoint's ``state_dict`` under
    ``ema.module.*``), is updated after every optimizer step (automatic optimization; families with
    manual optimization call :meth:`update_ema` after their step), and is what
    :meth:`sampling_module` returns by default.

    Training noise: :meth:`noise_generator` gives a ``torch.Generator`` seeded from
    ``(noise seed, rank, *key)``, e.g. ``key = (stream, global_step, batch_idx)``. It has no state
    to save beyond the seed (kept in the checkpoint), so a resumed run draws exactly the noise the
    unbroken run drew, each DDP rank draws its own noise, and callbacks that sample cannot shift it.

    Validation and test noise: :meth:`eval_generator` (see the module docstring), keyed by a fixed
    seed instead of the noise seed, so it is the same measurement in every run and every process.
    """

    #: ``(metric, "min" | "max")`` that checkpointing follows; ``(None, "min")``: keep the latest only
    monitor: ClassVar[tuple[str | None, MonitorMode]] = (None, "min")
    #: DDP's ``find_unused_parameters``: True only when some backward pass skips trained parameters
    ddp_find_unused_parameters: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.ema: AveragedModel | None = None
        self.ema_start = 0
        self._ema_source: str | None = None
        self._noise_seed: int | None = None

    # --- EMA -------------------------------------------------------------------------------------
    def configure_ema(self, source: str, decay: float | None, start: int = 0) -> None:
        """Keep an exponential moving average of submodule ``source`` (``decay`` None: no EMA).

        ``start``: for the first ``start`` optimizer steps the average copies the weights, then it
        averages with ``decay`` (``torch.optim.swa_utils.AveragedModel``; buffers are copied).
        """
        if decay is not None and not 0.0 <= decay < 1.0:
            raise ConfigError(f"`model.init_args.ema_decay` must be in [0, 1) or null, got {decay}.")
        if start < 0:
            raise ConfigError(f"`model.init_args.ema_start` must be >= 0, got {start}.")
        self._ema_source, self.ema_start = source, start
        if decay is None:
            self.ema = None
            return
        self.ema = AveragedModel(
            self.get_submodule(source), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False
        )
        self.ema.requires_grad_(False)  # never trained: DDP must not wait for gradients of these

    @torch.no_grad()
    def update_ema(self) -> None:
        """Average the source into the EMA (a plain copy while ``global_step <= ema_start``)."""
        if self.ema is None or self._ema_source is None:
            return
        if self.global_step <= self.ema_start:
            self.ema.n_averaged.zero_()  # AveragedModel copies when nothing was averaged yet
        self.ema.update_parameters(self.get_submodule(self._ema_source))

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    # --- gradient clipping -----------------------------------------------------------------------
    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """``trainer.gradient_clip_val`` under every precision, fused optimizers (``fused: true``) included.

        Lightning's mixed-precision plugin refuses to clip for any optimizer that unscales its own
        gradients, because under fp16 the gradients it would clip are still multiplied by the
        GradScaler's scale. bf16 has no scaler: its gradients are the true ones, so they are clipped as
        in fp32 (nanoGPT's GPU recipe: bf16, fused AdamW, clip 1.0). fp16 + fused gets one paragraph.
        """
        plugin = self.trainer.precision_plugin
        if isinstance(plugin, MixedPrecision) and gradient_clip_val and _optimizer_handles_unscaling(optimizer):
            if plugin.scaler is not None:
                raise ConfigError(
                    f"`trainer.gradient_clip_val` ({gradient_clip_val}) cannot clip a fused optimizer under "
                    f"`trainer.precision={plugin.precision}`: it unscales its gradients inside its step, after "
                    "clipping. Set the optimizer's `fused: false`, or use `trainer.precision=bf16-mixed`."
                )
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, gradient_clip_algorithm or "norm")
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def sampling_module(self, use_ema: bool = True) -> nn.Module:
        """The module that samples: the EMA copy when there is one and ``use_ema``, else the source."""
        if use_ema and self.ema is not None:
            return self.ema.module
        if self._ema_source is None:
            raise NotImplementedError(f"{type(self).__name__} did not call configure_ema(source, ...).")
        return self.get_submodule(self._ema_source)

    # --- modes -----------------------------------------------------------------------------------
    def eval_mode(self) -> Any:
        """Context manager: this model in eval mode; every submodule's mode restored after, even on error."""
        return eval_mode(self)

    # --- training noise --------------------------------------------------------------------------
    def set_noise_seed(self, seed: int | None) -> None:
        """Seed of :meth:`noise_generator`; ``None`` draws one from the global RNG (``seed_everything`` fixes it)."""
        self._noise_seed = int(torch.randint(2**62, (1,)).item()) if seed is None else int(seed)

    def noise_generator(self, *key: int) -> torch.Generator:
        """A fresh generator on this module's device, seeded from ``(noise seed, rank, *key)``."""
        if self._noise_seed is None:
            self.set_noise_seed(None)
        return keyed_generator(self.device, self._noise_seed, self.global_rank, *key)

    # --- validation and test noise ---------------------------------------------------------------
    def eval_generator(self, batch_idx: int, *key: int) -> torch.Generator:
        """The generator of all randomness of a ``validation_step`` / ``test_step`` (module docstring).

        Fresh on this module's device, seeded from ``(EVAL_NOISE_SEED, global rank, batch_idx, *key)``:
        a pure function of the batch and the rank, so the global RNG is neither read nor advanced.
        """
        return keyed_generator(self.device, EVAL_NOISE_SEED, self.global_rank, batch_idx, *key)

    # --- export ----------------------------------------------------------------------------------
    def export_spec(self) -> ExportSpec | None:
        """How ``export`` rebuilds this family's sampling module; ``None``: not exportable."""
        return None

    # --- checkpoint ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Subclasses that override this call ``super().on_save_checkpoint(checkpoint)``."""
        checkpoint[NOISE_SEED_KEY] = self._noise_seed
        spec = self.export_spec()
        if spec is not None:
            checkpoint[EXPORT_KEY] = asdict(spec)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Subclasses that override this call ``super().on_load_checkpoint(checkpoint)``."""
        if checkpoint.get(NOISE_SEED_KEY) is not None:
            self._noise_seed = int(checkpoint[NOISE_SEED_KEY])
        if "state_dict" in checkpoint:
            checkpoint["state_dict"] = self.upgrade_state_dict(checkpoint["state_dict"])

    def upgrade_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """``state_dict`` of a checkpoint written by an older version of the family, with today's keys.

        Used on resume, ``load_from_checkpoint`` and ``--init_from``; families that renamed modules
        override it (see :func:`rename_state_dict_prefix`).
        """
        return state_dict


class ImageGenerator(GenerativeModel):
    """An image family: ``sample(n, generator, **conditioning)`` in ``[0, 1]`` and the linked shape.

    Subclasses call ``super().__init__(image_shape, num_classes)`` (``num_classes``: the classes the
    model is *conditioned* on, ``None`` for an unconditional model even if the data is labelled),
    build their nets, call :meth:`configure_ema`, and implement :meth:`sample` and
    :meth:`export_spec`. Datamodule batches are ``(images in [0, 1] (B, C, H, W), labels (B,))``;
    the family maps images to whatever range its nets use.
    """

    #: ``reconstruct(x) -> (B, C, H, W)`` in ``[0, 1]`` for families that encode (VAE); ``None`` otherwise.
    #: A class attribute rather than a method, so a family without one leaves it ``None``.
    reconstruct: ClassVar[Callable[..., Tensor] | None] = None

    def __init__(self, image_shape: Sequence[int] | None, num_classes: int | None = None) -> None:
        super().__init__()
        if image_shape is None or len(image_shape) != 3 or min(int(s) for s in image_shape) < 1:
            raise ConfigError(
                f"{type(self).__name__} needs `image_shape` (C, H, W); the CLI links it from the datamodule, got {image_shape}."
            )
        self.image_shape: tuple[int, int, int] = tuple(int(s) for s in image_shape)  # type: ignore[assignment]
        self.num_classes: int | None = None if num_classes is None else int(num_classes)

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None, **conditioning: Any) -> Tensor:
        """``n`` images ``(n, C, H, W)`` in ``[0, 1]``, float, on this module's device.

        Contract: all randomness comes from ``generator`` (any device; ``None``: the global RNG),
        so one seed gives the same images; runs under ``no_grad`` in eval mode (restoring modes);
        uses the EMA weights when the family has them. ``conditioning`` is family-specific
        (``labels=...`` for conditional families, sampler settings); callers that know nothing of
        the family pass none and get the family's defaults.
        """

    @abstractmethod
    def export_spec(self) -> ExportSpec:
        """How ``export`` rebuilds the sampling module (see :class:`ExportSpec`)."""


class TextGenerator(GenerativeModel):
    """A text family: next-token logits and ``generate``; the tokenizer travels in the checkpoint.

    ``vocab_size`` is linked from ``data.vocab_size``. The checkpoint holds the tokenizer the run
    trained with (:data:`TOKENIZER_KEY`; today inside the text datamodule's state), so
    ``lightning-gen sample`` needs nothing but the checkpoint.
    """

    monitor: ClassVar[tuple[str | None, MonitorMode]] = ("val/loss", "min")

    def __init__(self, vocab_size: int | None) -> None:
        super().__init__()
        if vocab_size is None or vocab_size < 1:
            raise ConfigError(
                f"{type(self).__name__} needs `vocab_size`; the CLI links it from the datamodule (`data.vocab_size`)."
            )
        self.vocab_size = int(vocab_size)

    @abstractmethod
    def forward(self, idx: Tensor) -> Tensor:
        """Next-token logits ``(B, T, vocab_size)`` for token ids ``(B, T)``."""

    @property
    def max_context(self) -> int | None:
        """Longest context ``forward`` reads in one pass (a transformer's ``block_size``); ``None``: unbounded."""
        return None

    @abstractmethod
    def generate(
        self,
        prompt_ids: Tensor,
        max_new_tokens: int = _SAMPLING.max_new_tokens,
        temperature: float = _SAMPLING.temperature,
        top_k: int | None = _SAMPLING.top_k,
        top_p: float | None = _SAMPLING.top_p,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue ``prompt_ids`` ``(B, T)`` by ``max_new_tokens`` -> ``(B, T + new)``; randomness from ``generator`` only.

        Defaults come from :class:`~lightning_gen.utils.sampling.SamplingOptions` (also ``lightning-gen sample``'s);
        runs in :meth:`eval_mode` with the EMA weights when the model has them.
        """


def rename_state_dict_prefix(state_dict: dict[str, Tensor], old: str, new: str) -> dict[str, Tensor]:
    """``state_dict`` with keys starting ``old`` renamed to start ``new`` (order kept).

    For ``on_load_checkpoint`` of a family whose submodule moved, so older checkpoints still load.
    """
    return {(new + k[len(old) :] if k.startswith(old) else k): v for k, v in state_dict.items()}


# --- export files ------------------------------------------------------------------------------------
def export_payload(checkpoint: dict[str, Any], use_ema: bool = True, source: str = "") -> dict[str, Any]:
    """The export file's content for a loaded checkpoint dict (``torch.load(..., weights_only=True)``).

    Keys: ``format``, ``builder``, ``kwargs``, ``ema`` (which weights), ``global_step``,
    ``source_checkpoint``, ``state_dict`` (the sampling module's weights, prefix removed).
    """
    spec = checkpoint.get(EXPORT_KEY)
    if not isinstance(spec, dict):
        raise LightningGenError(
            f"{source or 'The checkpoint'} has no '{EXPORT_KEY}' entry: it was not written by an exportable lightning_gen family."
        )
    spec = ExportSpec(**spec)
    if use_ema and spec.ema_module is None:
        raise LightningGenError(
            f"{source or 'The checkpoint'} has no EMA weights (trained with ema_decay: null). Fix: add `--no-ema`."
        )
    prefix = (spec.ema_module if use_ema else spec.module) + "."
    weights = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    if not weights:
        raise LightningGenError(f"{source or 'The checkpoint'} holds no weights under '{prefix}*'.")
    return {
        "format": EXPORT_FORMAT,
        "builder": spec.builder,
        "kwargs": spec.kwargs,
        "ema": use_ema,
        "global_step": checkpoint.get("global_step"),
        "source_checkpoint": source,
        "state_dict": weights,
    }


def load_exported(payload: dict[str, Any] | str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the sampling module (eval mode) from :func:`export_payload`'s dict or a file holding it."""
    where = str(payload) if isinstance(payload, (str, Path)) else "the payload"
    if isinstance(payload, (str, Path)):
        payload = torch.load(payload, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise LightningGenError(f"{where} is not a generator exported by lightning_gen (format {EXPORT_FORMAT}).")
    if not str(payload["builder"]).startswith("lightning_gen."):
        raise LightningGenError(
            f"{where} names builder {payload['builder']!r}; only lightning_gen classes are rebuilt."
        )
    module = import_object(payload["builder"], "export builder")(**payload["kwargs"])
    module.load_state_dict(payload["state_dict"])
    return module.to(map_location).eval()
