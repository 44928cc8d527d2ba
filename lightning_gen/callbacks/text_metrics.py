"""Sample-based text evaluation: BLEU, ROUGE-L, self-BLEU and perplexity on fixed validation prompts.

At its :mod:`~lightning_gen.callbacks.cadence` (``every_n_epochs`` / ``every_n_steps``) the callback takes
``num_prompts`` fixed windows of the validation ids (evenly spaced, the same every time), splits
each into a prompt and its true continuation (the reference), lets the model continue every
prompt by as many tokens as the reference has, and logs

* ``text/bleu``: corpus BLEU of samples vs references (0-100, as sacrebleu: by default with its
  ``exp`` smoothing; ``bleu_smoothing: none`` gives torchmetrics' plain SacreBLEU),
* ``text/rougeL``: mean ROUGE-L F-measure (torchmetrics, as Google's ``rouge-score``),
* ``text/self_bleu``: corpus BLEU of each sample against the other samples (high = low diversity),
* ``text/ppl``: perplexity of the references given their prompts (teacher forcing),
* a table ``text/samples`` (prompt, sample, reference) through :func:`log_text_table`.

The model is a :class:`~lightning_gen.models.base.TextGenerator` (``generate``, ``forward(idx) ->
logits``, ``max_context``), sampled in its ``eval_mode()``; the datamodule has ``val_tokens`` and ``tokenizer``. Sampling uses a
private generator seeded by ``seed`` (training RNG untouched), so results are deterministic.
DDP: every rank evaluates the same prompts with the same seed (no collective at all, and the
numbers of a 1-process run), then logs with ``sync_dist`` so each rank holds exactly the same value
(a ``ModelCheckpoint``/``EarlyStopping`` monitoring ``text/bleu`` decides alike on every rank); only
rank 0 writes the sample table, to a plain path (never ``trainer.log_dir``, a collective).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics.functional.text import perplexity, rouge_score, sacre_bleu_score

from gen_common.errors import ConfigError
from lightning_gen.callbacks.cadence import Cadence
from lightning_gen.loggers.tables import log_text_table
from lightning_gen.models.base import TextGenerator

BleuSmoothing = Literal["none", "exp"]


def corpus_bleu(
    samples: Sequence[str], references: Sequence[str], tokenize: str = "13a", smoothing: BleuSmoothing = "none"
) -> float:
    """Corpus BLEU (0-100) of ``samples`` against one reference each, as ``sacrebleu.corpus_bleu``.

    ``smoothing="none"``: torchmetrics' SacreBLEU (= sacrebleu with ``smooth_method="none"``); it is
    0 whenever no 4-gram matches anywhere, the rule for short samples of small models.
    ``"exp"``: sacrebleu's default smoothing, computed by sacrebleu itself (torchmetrics 1.9's
    ``smooth=True`` still returns 0 when any n-gram count is 0, so it cannot stand in).
    """
    if smoothing == "none":
        return 100.0 * float(sacre_bleu_score(list(samples), [[r] for r in references], tokenize=tokenize))
    return _sacrebleu(list(samples), [list(references)], tokenize, smoothing)


def self_bleu(samples: Sequence[str], tokenize: str = "13a", smoothing: BleuSmoothing = "none") -> float:
    """Self-BLEU (0-100): corpus BLEU of each sample with all the other samples as its references."""
    if len(samples) < 2:
        raise ConfigError("self-BLEU needs at least 2 samples (`num_prompts` >= 2).")
    others = [[s for j, s in enumerate(samples) if j != i] for i in range(len(samples))]
    if smoothing == "none":
        return 100.0 * float(sacre_bleu_score(list(samples), others, tokenize=tokenize))
    return _sacrebleu(list(samples), [list(stream) for stream in zip(*others)], tokenize, smoothing)


def _sacrebleu(samples: list[str], reference_streams: list[list[str]], tokenize: str, smoothing: str) -> float:
    try:
        from sacrebleu.metrics import BLEU
    except ImportError:
        raise ConfigError(
            "Smoothed BLEU needs sacrebleu (`pip install lightning-gen[text]`), or set `bleu_smoothing: none`."
        ) from None
    return float(BLEU(tokenize=tokenize, smooth_method=smoothing).corpus_score(samples, reference_streams).score)


def rouge_l(samples: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (0-1) over sample/reference pairs, as ``rouge_score.RougeScorer(['rougeL'])``."""
    return float(rouge_score(list(samples), list(references), rouge_keys="rougeL")["rougeL_fmeasure"])


class TextMetrics(Callback):
    """Generate from fixed validation prompts and log BLEU, ROUGE-L, self-BLEU, perplexity and a sample table.

    Args:
        every_n_epochs: Evaluate after every n-th validation epoch (``None``: never then).
        every_n_steps: Evaluate after every n-th optimizer step (``None``: never then).
        num_prompts: Number of fixed prompts K.
        prompt_tokens: Tokens of each prompt.
        reference_tokens: Tokens of each true continuation (and of each generated one).
        temperature: Sampling temperature (0: greedy).
        top_k: Keep the k most likely tokens when sampling.
        top_p: Nucleus sampling threshold.
        seed: Seed of the sampling generator.
        table_rows: Rows of the (prompt, sample, reference) table.
        bleu_tokenize: SacreBLEU tokenizer (``13a`` default; ``char`` for languages without spaces).
        bleu_smoothing: ``exp`` (sacrebleu's default, so BLEU of short samples is not stuck at 0)
            or ``none`` (plain corpus BLEU, torchmetrics).
    """

    def __init__(
        self,
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        num_prompts: int = 16,
        prompt_tokens: int = 64,
        reference_tokens: int = 64,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        table_rows: int = 8,
        bleu_tokenize: str = "13a",
        bleu_smoothing: BleuSmoothing = "exp",
    ) -> None:
        super().__init__()
        self.cadence = Cadence(every_n_epochs, every_n_steps, "TextMetrics")
        if num_prompts < 2 or prompt_tokens < 1 or reference_tokens < 1:
            raise ConfigError("TextMetrics: `num_prompts` must be >= 2, `prompt_tokens` and `reference_tokens` >= 1.")
        self.every_n_epochs = every_n_epochs
        self.every_n_steps = every_n_steps
        self.num_prompts = num_prompts
        self.prompt_tokens = prompt_tokens
        self.reference_tokens = reference_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.seed = seed
        self.table_rows = table_rows
        self.bleu_tokenize = bleu_tokenize
        if bleu_smoothing not in ("none", "exp"):
            raise ConfigError(f"TextMetrics: `bleu_smoothing` must be 'none' or 'exp', got {bleu_smoothing!r}.")
        self.bleu_smoothing = bleu_smoothing
        self.last_metrics: dict[str, float] = {}
        self.last_table_path: str | None = None

    def setup(self, trainer: L.Trainer, pl_module: TextGenerator, stage: str) -> None:
        max_context = pl_module.max_context
        if max_context is not None and self.reference_tokens > max_context:
            raise ConfigError(
                f"TextMetrics: `reference_tokens` ({self.reference_tokens}) is longer than the model's context "
                f"`model.init_args.block_size` ({max_context}); its perplexity needs every reference token in one window."
            )

    # --- when -----------------------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: TextGenerator) -> None:
        if self.cadence.at_validation_end(trainer):
            self._log(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: TextGenerator, outputs, batch, batch_idx: int) -> None:
        if self.cadence.at_train_batch_end(trainer):
            self._log(trainer, pl_module)

    # --- what -----------------------------------------------------------------------------------
    def prompts_and_references(self, val_tokens: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K, prompt_tokens)`` prompts and ``(K, reference_tokens)`` true continuations, evenly spaced."""
        length = self.prompt_tokens + self.reference_tokens
        if len(val_tokens) < length:
            raise ConfigError(
                f"TextMetrics: the validation split has {len(val_tokens)} tokens, fewer than "
                f"prompt_tokens + reference_tokens = {length}."
            )
        starts = np.linspace(0, len(val_tokens) - length, self.num_prompts).astype(np.int64)
        windows = torch.from_numpy(np.stack([np.asarray(val_tokens[s : s + length], dtype=np.int64) for s in starts]))
        return windows[:, : self.prompt_tokens], windows[:, self.prompt_tokens :]

    @torch.no_grad()
    def evaluate(
        self, pl_module: TextGenerator, val_tokens: np.ndarray, tokenizer
    ) -> tuple[dict[str, float], list[list[str]]]:
        """Metrics and ``(prompt, sample, reference)`` rows for ``pl_module`` on these validation ids."""
        prompts, references = self.prompts_and_references(val_tokens)
        with pl_module.eval_mode():
            generator = torch.Generator(device="cpu").manual_seed(self.seed)
            out = pl_module.generate(
                prompts, self.reference_tokens, self.temperature, self.top_k, self.top_p, generator=generator
            )
            generated = out[:, self.prompt_tokens :].cpu()
            # perplexity of the references given the prompts; the context is cropped to the model's window
            full = torch.cat([prompts, references], dim=1).to(pl_module.device)  # (K, P + R)
            max_context = pl_module.max_context
            inputs = full[:, :-1] if max_context is None else full[:, :-1][:, -max_context:]
            if inputs.size(1) < self.reference_tokens:
                raise ConfigError(
                    f"TextMetrics: `reference_tokens` ({self.reference_tokens}) is longer than the model's context ({max_context})."
                )
            logits = pl_module(inputs)[:, -self.reference_tokens :]  # (K, R, V)
            ppl = float(perplexity(logits.float(), full[:, -self.reference_tokens :]))

        decode = tokenizer.decode
        samples = [decode(row.tolist()) for row in generated]
        refs = [decode(row.tolist()) for row in references]
        metrics = {
            "text/bleu": corpus_bleu(samples, refs, self.bleu_tokenize, self.bleu_smoothing),
            "text/rougeL": rouge_l(samples, refs),
            "text/self_bleu": self_bleu(samples, self.bleu_tokenize, self.bleu_smoothing),
            "text/ppl": ppl,
        }
        rows = [[decode(p.tolist()), s, r] for p, s, r in zip(prompts[: self.table_rows], samples, refs)]
        return metrics, rows

    def _log(self, trainer: L.Trainer, pl_module: TextGenerator) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "val_tokens") or not hasattr(datamodule, "tokenizer"):
            raise ConfigError(
                "TextMetrics needs a text datamodule (with `val_tokens` and `tokenizer`), e.g. datamodules.text.TextDataModule."
            )
        metrics, rows = self.evaluate(pl_module, datamodule.val_tokens, datamodule.tokenizer)
        for key, value in metrics.items():  # every rank, same order: the sync is a matched collective
            pl_module.log(key, value, sync_dist=True)
        self.last_metrics = metrics
        # rank 0 only, no collective inside
        self.last_table_path = log_text_table(trainer, "text/samples", ["prompt", "sample", "reference"], rows)
