"""Cost of the progress bar per training step: none vs Lightning's default vs lightning_gen's choice.

Trains the same tiny VAE on synthetic images (batch 64, logging every 50 steps, no checkpoints)
with: no bar; Lightning's default ``TQDMProgressBar`` (redraw every batch); ``RichProgressBar``
redrawn every batch; and ``RichProgressBar(refresh_rate=10)`` (``run.progress_refresh_steps``'s
default). Bars draw to a forced terminal on /dev/null, so they do their full work. Variants
alternate over ``--repeats`` rounds to share CPU noise; prints ms/step and the ratio to no bar.

    python scripts/bench_progress.py --steps 200 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

from datamodules import SyntheticImageDataModule
from lightning_gen.models import VAE
from lightning_gen.utils.provenance import add_record_argument, recorded

REPO = Path(__file__).resolve().parents[1]


class StepTimer(L.Callback):
    """Wall time of training steps after a warm-up."""

    def __init__(self, warmup: int = 10) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end, self.steps = time.perf_counter(), trainer.global_step - self.warmup


def run(bar: str, steps: int) -> float:
    """ms per step with progress bar variant ``bar``."""
    torch.manual_seed(0)
    data = SyntheticImageDataModule(
        image_shape=(1, 28, 28), num_train=64 * 50, num_val=64, batch_size=64, binarize=True
    )
    model = VAE(image_shape=(1, 28, 28), latent_dim=16, widths=(32, 64))
    timer = StepTimer()
    callbacks: list[L.Callback] = [timer]
    if bar == "tqdm (Lightning default)":
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    elif bar.startswith("rich"):
        rate = int(bar.split("=")[1].rstrip(")"))
        callbacks.append(
            RichProgressBar(refresh_rate=rate, console_kwargs={"force_terminal": True, "file": open(os.devnull, "w")})
        )
    trainer = L.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=bar != "none",
        callbacks=callbacks,
        accelerator="cpu",
        log_every_n_steps=50,
    )
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
        trainer.fit(model, data)
    return 1000 * (timer.end - timer.start) / timer.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    add_record_argument(parser, REPO)
    args = parser.parse_args()
    with recorded(args.record, "bench_progress", REPO):
        variants = ["none", "tqdm (Lightning default)", "rich (refresh_rate=1)", "rich (refresh_rate=10)"]
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for v in variants:
                times[v].append(run(v, args.steps))
        base = statistics.median(times["none"])
        print(
            f"torch threads {torch.get_num_threads()}, {args.steps} steps x {args.repeats} rounds (median ms/step)",
            file=sys.stderr,
        )
        for v in variants:
            ms = statistics.median(times[v])
            print(f"{v:28s} {ms:7.2f} ms/step  x{ms / base:.3f} vs none  (+{ms - base:.2f} ms)")


if __name__ == "__main__":
    main()
