"""Trainer overhead: the vae_mnist VAE on real MNIST, hand-written loop vs lightning_gen's CLI/Trainer.

Both paths train the same model (same config) on the same batches; the Trainer path runs with
the experiment's default callbacks and loggers (offline W&B + CSV, checkpointing, progress bar).
Steps/s are timed over the same step window after a warm-up; runs alternate to share CPU noise.

    python scripts/bench_overhead.py --steps 120 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from lightning_gen.cli.trainer import build_cli
from lightning_gen.utils.provenance import add_record_argument, recorded

REPO = Path(__file__).resolve().parents[1]

EXPERIMENT = os.path.join(os.path.dirname(__file__), "..", "experiments", "vae_mnist.yaml")


class StepTimer(L.Callback):
    """Wall time from the start of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end, self.steps = time.perf_counter(), batch_idx + 1 - self.warmup


def build(steps: int, root: str):
    args = [
        "--config",
        EXPERIMENT,
        f"--trainer.max_steps={steps}",
        "--trainer.limit_val_batches=0",
        f"--run.root={root}",
    ]
    return build_cli(args, run=False)


def plain_loop(steps: int, warmup: int, root: str) -> float:
    cli = build(steps, root)  # same model and data objects as the Trainer path
    model, data = cli.model, cli.datamodule
    data.prepare_data()
    data.setup("fit")
    optimizer = model.configure_optimizers()
    model.train()
    batches = iter(data.train_dataloader())
    for step in range(steps):
        if step == warmup:
            start = time.perf_counter()
        x, _ = next(batches)
        log_px, kl = model.elbo_terms(x)
        loss = (-log_px).mean() + model.kl_weight() * kl.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (steps - warmup) / (time.perf_counter() - start)


def trainer_loop(steps: int, warmup: int, root: str) -> float:
    cli = build(steps, root)
    timer = StepTimer(warmup)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, cli.datamodule)
    return timer.steps / (timer.end - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    add_record_argument(parser, REPO)
    args = parser.parse_args()
    with recorded(args.record, "bench_overhead", REPO):
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        plain, lightning = [], []
        with tempfile.TemporaryDirectory() as root:
            for _ in range(args.repeats):
                torch.manual_seed(0)
                plain.append(plain_loop(args.steps, args.warmup, root))
                torch.manual_seed(0)
                lightning.append(trainer_loop(args.steps, args.warmup, root))
                print(f"plain {plain[-1]:.2f} steps/s   lightning_gen {lightning[-1]:.2f} steps/s", flush=True)
        p, t = statistics.median(plain), statistics.median(lightning)
        print(f"\nthreads={torch.get_num_threads()} steps={args.steps} warmup={args.warmup} repeats={args.repeats}")
        print(f"plain PyTorch loop : {p:.2f} steps/s")
        print(f"lightning_gen fit  : {t:.2f} steps/s")
        print(f"time ratio lightning_gen / plain = {p / t:.3f}  (overhead {100 * (p / t - 1):+.1f} %)")


if __name__ == "__main__":
    main()
