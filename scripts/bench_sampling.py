"""Sampling throughput of a diffusion checkpoint: images/s for each sampler and step count.

    python scripts/bench_sampling.py --ckpt runs/ddpm_mnist/<id>/checkpoints/last.ckpt
    python scripts/bench_sampling.py --ckpt CKPT --device cuda --n 1000 --runs ddim:50 ddpm:1000 dpm_solver++:20

Each run draws ``--n`` images in batches of ``--batch`` from the EMA weights (what evaluation
uses), after one untimed warm-up batch, and prints images/s and the ratio to the first run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lightning_gen.models import Diffusion
from lightning_gen.utils.provenance import add_record_argument, recorded

REPO = Path(__file__).resolve().parents[1]


def images_per_second(model: Diffusion, n: int, batch: int, sampler: str, steps: int, device: str) -> float:
    """Wall-clock images/s of ``model.sample`` drawing ``n`` images with ``sampler`` and ``steps``."""
    generator = torch.Generator(device=device).manual_seed(0)
    model.sample(min(batch, n), generator=generator, sampler=sampler, steps=steps)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for begin in range(0, n, batch):
        model.sample(min(batch, n - begin), generator=generator, sampler=sampler, steps=steps)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint of lightning_gen.models.Diffusion")
    parser.add_argument(
        "--runs", nargs="+", default=["ddim:50", "ddpm:1000"], help="SAMPLER:STEPS, the first is the reference"
    )
    parser.add_argument("--n", type=int, default=64, help="images per run")
    parser.add_argument("--batch", type=int, default=64, help="images per sample() call")
    parser.add_argument("--device", default="cpu")
    add_record_argument(parser, REPO)
    args = parser.parse_args(argv)
    with recorded(args.record, "bench_sampling", REPO):
        model = Diffusion.load_from_checkpoint(args.ckpt, map_location=args.device).eval()
        name = (
            torch.cuda.get_device_name(0)
            if args.device.startswith("cuda")
            else f"CPU, {torch.get_num_threads()} threads"
        )
        print(
            f"{args.ckpt}: {sum(p.numel() for p in model.diffusion.parameters()):,} parameters, {args.n} images, batch {args.batch}, {name}"
        )
        reference = None
        for run in args.runs:
            sampler, steps = run.rsplit(":", 1)
            rate = images_per_second(model, args.n, args.batch, sampler, int(steps), args.device)
            reference = reference or rate
            print(
                f"{sampler:>13} {int(steps):5d} steps: {rate:9.2f} images/s  ({rate / reference:.3f}x the first)",
                flush=True,
            )


if __name__ == "__main__":
    main()
