"""Generator iterations/s of ``experiments/dcgan_mnist.yaml``: the GAN module under the Trainer vs a hand-written loop.

Both run the same nets (same init), optimizers, MNIST batches and per-iteration work (map to
[-1, 1], n_critic D steps, one G step, EMA update) in one process, alternating ``--repeats``
times; the ratios of the median and of the best times are printed (goal: <= 1.05). The Trainer logs to CSV every
``log_every_n_steps`` of the experiment, without progress bar, checkpoints or validation.

    .venv/bin/python scripts/bench_gan.py [--steps 50] [--warmup 5] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from datamodules import MNISTDataModule
from lightning_gen.losses.gan import discriminator_loss, generator_loss
from lightning_gen.models.gan import GAN
from lightning_gen.utils.provenance import add_record_argument, recorded

REPO = Path(__file__).resolve().parents[1]

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "dcgan_mnist.yaml"


class Timer(Callback):
    """Wall time from the start of iteration ``warmup`` to the end of the last one."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


def model_kwargs(config: dict) -> dict:
    args = dict(config["model"]["init_args"])
    for key in ("generator_optimizer", "discriminator_optimizer"):
        opt = args.pop(key)["init_args"]
        lr, betas = opt["lr"], tuple(opt["betas"])
        args[key] = lambda params, lr=lr, betas=betas: torch.optim.Adam(params, lr=lr, betas=betas)
    return args


def run_trainer(model: GAN, dm: MNISTDataModule, steps: int, warmup: int, log_every: int, root: str) -> float:
    timer = Timer(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=warmup + steps,
        logger=CSVLogger(root, name="bench"),
        log_every_n_steps=log_every,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(model, dm)
    return timer.end - timer.start


def run_hand_loop(model: GAN, dm: MNISTDataModule, steps: int, warmup: int) -> float:
    """The same iteration as ``GAN.training_step`` for n_critic=1, written out with plain torch."""
    G, D, ema = model.generator, model.discriminator, model.ema
    g_opt, d_opt = model.generator_optimizer(G.parameters()), model.discriminator_optimizer(D.parameters())
    noise = torch.Generator().manual_seed(0)
    loss = model.loss_name
    G.train(), D.train()
    start = 0.0
    for it, (x, _) in enumerate(dm.train_dataloader()):
        if it == warmup:
            start = time.perf_counter()
        if it == warmup + steps:
            break
        x = x * 2.0 - 1.0
        with torch.no_grad():
            fake = G(torch.randn(x.shape[0], model.latent_dim, generator=noise))
        d_real, d_fake = D(x), D(fake)
        d_loss = discriminator_loss(loss, d_real, d_fake)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        for p in D.parameters():
            p.requires_grad_(False)
        g_loss = generator_loss(loss, D(G(torch.randn(x.shape[0], model.latent_dim, generator=noise))))
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        for p in D.parameters():
            p.requires_grad_(True)
        if ema is not None:
            if it + 1 <= model.ema_start:
                ema.n_averaged.zero_()
            ema.update_parameters(G)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="timed generator iterations per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is steadier on a shared CPU)")
    add_record_argument(parser, REPO)
    args = parser.parse_args()
    with recorded(args.record, "bench_gan", REPO):
        torch.set_num_threads(args.threads)
        config = yaml.safe_load(EXPERIMENT.read_text())
        data_args = config["data"]["init_args"]
        log_every = int(config["trainer"]["log_every_n_steps"])
        dm = MNISTDataModule(**data_args)
        dm.setup("fit")
        L.seed_everything(0, verbose=False)
        template = GAN(image_shape=dm.image_shape, num_classes=dm.num_classes, **model_kwargs(config))
        lightning_times, hand_times = [], []
        with tempfile.TemporaryDirectory() as root:
            for _ in range(args.repeats):
                lightning_times.append(
                    run_trainer(copy.deepcopy(template), dm, args.steps, args.warmup, log_every, root)
                )
                hand_times.append(run_hand_loop(copy.deepcopy(template), dm, args.steps, args.warmup))
        t_l, t_h = statistics.median(lightning_times), statistics.median(hand_times)
        print(
            f"dcgan_mnist (batch {data_args['batch_size']}, {args.steps} timed iterations x {args.repeats}, {args.threads} thread(s))"
        )
        print(
            f"  GAN module + Trainer : {args.steps / t_l:7.2f} generator it/s  (runs: {', '.join(f'{t:.1f}s' for t in lightning_times)})"
        )
        print(
            f"  hand-written loop    : {args.steps / t_h:7.2f} generator it/s  (runs: {', '.join(f'{t:.1f}s' for t in hand_times)})"
        )
        print(
            f"  time ratio Trainer / hand loop: {t_l / t_h:.3f}x median, "
            f"{min(lightning_times) / min(hand_times):.3f}x best-of (goal <= 1.05x)"
        )


if __name__ == "__main__":
    main()
