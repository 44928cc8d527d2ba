"""Autoregressive language model (GPT decoder or LSTM baseline), trained on next-token cross-entropy.

The recipe is nanoGPT's: AdamW with decoupled weight decay on matrices only (norms, biases and
embeddings are not decayed), linear warm-up then cosine decay to ``min_lr`` (per optimizer step),
gradient clipping through the Trainer (``trainer.gradient_clip_val``), optional ``torch.compile``.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanMetric

from gen_common.errors import ConfigError
from lightning_gen.models.base import MonitorMode, TextGenerator
from lightning_gen.models.cadence import is_logging_step
from lightning_gen.nets.gpt import GPT as GPTNet
from lightning_gen.nets.gpt import GPTConfig
from lightning_gen.nets.lstm import LSTMConfig, LSTMDecoder
from lightning_gen.utils.sampling import SamplingOptions

_SAMPLING = SamplingOptions()  # the one source of text sampling defaults (also `lightning-gen sample`)


def warmup_cosine_lr(step: int, max_lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """nanoGPT's ``get_lr``: linear warm-up to ``max_lr``, cosine to ``min_lr`` at ``decay_steps``, then flat."""
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step > decay_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr)


def sample_next_token(
    logits: Tensor,
    temperature: float = _SAMPLING.temperature,
    top_k: int | None = _SAMPLING.top_k,
    top_p: float | None = _SAMPLING.top_p,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one token per row of ``logits`` ``(B, V)`` -> ``(B, 1)``.

    ``temperature`` 0 is greedy; ``top_k`` keeps the k most likely tokens; ``top_p`` keeps the
    smallest set whose probability reaches p (nucleus sampling; the most likely token always stays).
    """
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)  # (B, V)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p  # mass before this token already reaches p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)


def _check_optimizer_options(warmup_steps: int, decay_steps: int | None, min_lr: float, weight_decay: float) -> None:
    """The learning-rate schedule and weight decay: ranges and order, which jsonargparse cannot check."""
    if warmup_steps < 0 or (decay_steps is not None and decay_steps < warmup_steps):
        raise ConfigError(
            f"`--model.init_args.warmup_steps` ({warmup_steps}) must be >= 0 and <= `--model.init_args.decay_steps` ({decay_steps})."
        )
    if min_lr < 0 or weight_decay < 0:
        raise ConfigError("`--model.init_args.min_lr` and `--model.init_args.weight_decay` must be >= 0.")


def _build_net(
    architecture: str,
    vocab_size: int,
    block_size: int,
    n_layer: int,
    n_head: int,
    n_embd: int,
    dropout: float,
    bias: bool,
) -> nn.Module:
    """The decoder: a pre-LN GPT (``gpt``) or the LSTM baseline (``lstm``, which has no use for ``block_size``,
    ``n_head`` or ``bias``)."""
    if architecture == "gpt":
        return GPTNet(GPTConfig(vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias))
    return LSTMDecoder(LSTMConfig(vocab_size, n_layer, n_embd, dropout))


class GPT(TextGenerator):
    """Next-token language model: ``architecture: gpt`` (pre-LN transformer) or ``lstm`` (baseline).

    Logs ``train/loss`` (nats/token), ``train/tokens_per_s`` (at the logging cadence),
    ``train/lr``, ``val/loss`` (mean over every validation token) and ``val/ppl`` = exp(val/loss).
    With ``ema_decay`` set, ``generate`` and the validation loss use the averaged weights.

    Args:
        vocab_size: Number of token ids; linked from the datamodule by the CLI.
        architecture: ``gpt`` (transformer decoder) or ``lstm`` (recurrent baseline).
        block_size: Context length of the GPT (must be >= the datamodule's ``block_size``).
        n_layer: Transformer blocks / LSTM layers.
        n_head: Attention heads (GPT only).
        n_embd: Width (GPT ``n_embd``; LSTM embedding and hidden size).
        dropout: Dropout probability during training.
        bias: Biases in the GPT's Linear/LayerNorm layers.
        weight_decay: AdamW decoupled weight decay of weight matrices (not norms, biases, embeddings).
        warmup_steps: Linear learning-rate warm-up (optimizer steps).
        decay_steps: Step at which the cosine reaches ``min_lr``; default ``trainer.max_steps``.
        min_lr: Final learning rate of the cosine schedule.
        compile: ``torch.compile`` the net (faster on GPU; cold compile costs 15-30 s).
        ema_decay: Decay of an exponential moving average of the net's weights, which
            ``generate`` and validation then use; ``None`` (default): no EMA.
        ema_start: For the first ``ema_start`` optimizer steps the EMA copies the weights.
        optimizer: Optimizer factory, e.g. ``torch.optim.AdamW`` with ``lr`` and ``betas``.
    """

    #: metric that checkpointing and early stopping follow, and its direction
    monitor: ClassVar[tuple[str | None, MonitorMode]] = ("val/loss", "min")

    def __init__(
        self,
        vocab_size: int | None = None,
        architecture: Literal["gpt", "lstm"] = "gpt",
        block_size: int = 64,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
        bias: bool = False,
        weight_decay: float = 0.1,
        warmup_steps: int = 100,
        decay_steps: int | None = None,
        min_lr: float = 1e-4,
        compile: bool = False,
        ema_decay: float | None = None,
        ema_start: int = 0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
    ) -> None:
        super().__init__(vocab_size)
        # jsonargparse checks this Literal in a config; the re-check stays while a test calls GPT(architecture=...)
        if architecture not in ("gpt", "lstm"):
            raise ConfigError(f"`--model.init_args.architecture` must be 'gpt' or 'lstm', got {architecture!r}.")
        _check_optimizer_options(warmup_steps, decay_steps, min_lr, weight_decay)
        self.save_hyperparameters(ignore=["optimizer"])
        self.block_size = block_size
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps
        self.min_lr = min_lr
        self.compile_net = compile
        self._compiled = False
        self.optimizer_factory = optimizer
        self.net = _build_net(architecture, vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias)
        self.configure_ema("net", ema_decay, ema_start)
        self.val_loss = MeanMetric()
        self._rate_t0: float | None = None
        self._rate_tokens = 0

    # --- math ------------------------------------------------------------------------------------
    def forward(self, idx: Tensor) -> Tensor:
        """Next-token logits ``(B, T, V)`` for ``idx`` ``(B, T)``."""
        return self.net(idx)

    @property
    def max_context(self) -> int | None:
        """The GPT's ``block_size``; ``None`` for the LSTM."""
        return self.net.max_context

    def loss(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean next-token cross-entropy in nats per token."""
        return self.loss_of(self.net, idx, targets)

    @staticmethod
    def loss_of(net: nn.Module, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean next-token cross-entropy of ``net`` (the trained net or its EMA copy)."""
        logits = net(idx)  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Tensor,
        max_new_tokens: int = _SAMPLING.max_new_tokens,
        temperature: float = _SAMPLING.temperature,
        top_k: int | None = _SAMPLING.top_k,
        top_p: float | None = _SAMPLING.top_p,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        use_ema: bool = True,
    ) -> Tensor:
        """Continue ``prompt_ids`` ``(B, T)`` (or ``(T,)``) by ``max_new_tokens`` sampled tokens -> ``(B, T + new)``.

        With ``use_cache`` the net keeps keys/values (GPT) or its state (LSTM) and reads one new
        token per step; the result equals ``use_cache=False``, which re-reads the whole context
        (cropped to the GPT's ``block_size``) every step. Once a GPT's context exceeds
        ``block_size`` the window slides, the cache no longer applies, and it re-reads too.
        Defaults: :class:`~lightning_gen.utils.sampling.SamplingOptions`. Runs in eval mode (modes
        restored, also on error) with the EMA weights when there are some and ``use_ema``.
        """
        idx = prompt_ids.to(self.device).long()
        idx = idx.unsqueeze(0) if idx.dim() == 1 else idx
        if idx.size(1) == 0:
            raise ConfigError("generate() needs a prompt of at least one token.")
        with self.eval_mode():
            return self._generate(
                self.sampling_module(use_ema), idx, max_new_tokens, temperature, top_k, top_p, generator, use_cache
            )

    @staticmethod
    def _generate(
        net: nn.Module,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        generator: torch.Generator | None,
        use_cache: bool,
    ) -> Tensor:
        max_context = net.max_context
        cache = net.new_cache(idx.size(0), idx.device, next(net.parameters()).dtype) if use_cache else None
        pending = idx if max_context is None else idx[:, -max_context:]  # tokens the cache has not seen yet
        for _ in range(max_new_tokens):
            if cache is not None and (max_context is None or cache.length + pending.size(1) <= max_context):
                logits = net(pending, cache)[:, -1]  # (B, V)
            else:
                cache = None
                logits = net(idx if max_context is None else idx[:, -max_context:])[:, -1]
            pending = sample_next_token(logits, temperature, top_k, top_p, generator)  # (B, 1)
            idx = torch.cat([idx, pending], dim=1)
        return idx

    # --- Lightning hooks -------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.compile_net and not self._compiled:
            self.net.compile()  # compiles forward in place: parameter names (checkpoints) are unchanged
            self._compiled = True

    def setup(self, stage: str) -> None:
        data_block = getattr(getattr(self.trainer, "datamodule", None), "block_size", None)
        max_context = self.net.max_context
        if data_block is not None and max_context is not None and data_block > max_context:
            raise ConfigError(
                f"`data.init_args.block_size` ({data_block}) is longer than the model's context "
                f"`model.init_args.block_size` ({max_context}); set them equal."
            )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self.loss(x, y)
        self._rate_tokens += x.numel()
        if is_logging_step(self.trainer, steps_done=self.global_step + 1):
            self.log("train/loss", loss)
            self._log_throughput()
        return loss

    def _log_throughput(self) -> None:
        """Training tokens per second since the last log (validation excluded) and the learning rate."""
        now = time.perf_counter()
        if self._rate_t0 is not None:
            self.log("train/tokens_per_s", self._rate_tokens / max(now - self._rate_t0, 1e-9))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        self._rate_t0, self._rate_tokens = now, 0

    def on_train_start(self) -> None:
        self._rate_t0, self._rate_tokens = time.perf_counter(), 0

    def on_validation_end(self) -> None:
        self._rate_t0, self._rate_tokens = time.perf_counter(), 0  # the next throughput window starts now

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_loss.update(self.loss_of(self.sampling_module(), x, y), weight=y.numel())

    def on_validation_epoch_end(self) -> None:
        self._log_loss_and_perplexity("val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self._log_loss_and_perplexity("test")

    def _log_loss_and_perplexity(self, split: str) -> None:
        mean = self.val_loss.compute()  # token-weighted mean over all batches (and ranks)
        self.val_loss.reset()
        self.log_dict({f"{split}/loss": mean, f"{split}/ppl": mean.exp()}, prog_bar=True)

    def configure_optimizers(self):
        embeddings = {id(p) for m in self.net.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
        decay = [p for p in self.net.parameters() if p.dim() >= 2 and id(p) not in embeddings]
        no_decay = [p for p in self.net.parameters() if p.dim() < 2 or id(p) in embeddings]
        optimizer = self.optimizer_factory(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        )
        max_lr = optimizer.param_groups[0]["lr"]
        decay_steps = self.decay_steps if self.decay_steps is not None else self.trainer.max_steps
        if decay_steps is None or decay_steps < 0:
            raise ConfigError(
                "Set `--model.init_args.decay_steps` or `--trainer.max_steps` (the cosine schedule needs an end)."
            )
        if self.min_lr > max_lr:
            raise ConfigError(f"`--model.init_args.min_lr` ({self.min_lr}) is above the optimizer's lr ({max_lr}).")

        def factor(step: int) -> float:
            return warmup_cosine_lr(step, max_lr, self.min_lr, self.warmup_steps, decay_steps) / max_lr

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
