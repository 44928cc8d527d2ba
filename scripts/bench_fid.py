"""Benchmark: our FID path (the callbacks' ImageEvaluator) vs ``torch_fidelity.calculate_metrics``.

Same N generated images (a fixed random conv generator, no training needed), same N real MNIST
validation images, same converted Inception weights, CPU. Measured in one process:

1. ``torch_fidelity.calculate_metrics(fid=True, cache=False)`` on the pre-generated images;
2. our path, cache cold: sample N images in chunks, one Inception pass, real features extracted
   and written to a fresh cache, FID (float64 statistics);
3. our path again, cache warm: real features come from disk.

Goals: (2) <= 1.05x (1); (3) <= 0.55x (2). Also prints the FID of each (they must agree). The
three are interleaved ``--repeats`` times and the best time of each is used (shared, noisy CPU).

    .venv/bin/python scripts/bench_fid.py --n 200
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import torch
from torch import nn


class RandomConvGenerator(nn.Module):
    """A fixed, untrained conv generator: noise (B, 16) -> images (B, 1, 28, 28) in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(16, 32 * 7 * 7)
        self.net = nn.Sequential(nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(16, 1, 4, 2, 1), nn.Sigmoid())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, 16, generator=generator)
        return self.net(self.fc(z).view(n, 32, 7, 7))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="generated images = real images")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the best time of each is reported")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import torch_fidelity

    from datamodules import MNISTDataModule
    from lightning_gen.commands.evaluate import _UInt8Dataset, generated_images, real_images_uint8
    from lightning_gen.metrics.cache import FeatureCache
    from lightning_gen.metrics.evaluator import EvalSettings, ImageEvaluator
    from lightning_gen.metrics.extractors import build_inception_extractor
    from lightning_gen.metrics.fidelity import FIDFamily
    from lightning_gen.metrics.inception import resolve_inception_weights

    n = args.n
    dm = MNISTDataModule()
    dm.setup("validate")
    weights = resolve_inception_weights("offline")
    model = RandomConvGenerator().eval()
    settings = EvalSettings(num_samples=n, num_real=n, split="val", batch_size=args.batch_size)
    print(f"N = {n} generated + {n} real MNIST val images, Inception ({weights.source}), CPU threads = {torch.get_num_threads()}")

    fake_u8 = generated_images(model, n, settings.sample_chunk, settings.seed, "cpu")  # the very images our path samples
    real_u8 = real_images_uint8(dm.val_set, n)
    extractor = build_inception_extractor(["2048"], weights="offline")
    t_ref, t_cold, t_warm = [], [], []
    for rep in range(args.repeats):  # interleaved, so load changes on a shared machine hit all three
        t0 = time.perf_counter()
        ref = torch_fidelity.calculate_metrics(
            input1=_UInt8Dataset(fake_u8), input2=_UInt8Dataset(real_u8), fid=True, feature_extractor="inception-v3-compat",
            feature_extractor_weights_path=weights.path, batch_size=args.batch_size, cuda=False, cache=False, verbose=False,
        )
        t_ref.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as cache_dir:
            fids = []
            for times in (t_cold, t_warm):
                t0 = time.perf_counter()
                result = ImageEvaluator([FIDFamily()], extractor, settings, FeatureCache(cache_dir)).evaluate(
                    lambda k, g: model.sample(k, generator=g), dm.val_set, dm.dataset_id
                )
                times.append(time.perf_counter() - t0)
                fids.append(result.values["fid"])
        print(f"repeat {rep + 1}: torch-fidelity {t_ref[-1]:.1f} s, ours cold {t_cold[-1]:.1f} s, warm {t_warm[-1]:.1f} s", flush=True)
    fid_ref = ref["frechet_inception_distance"]
    best_ref, best_cold, best_warm = min(t_ref), min(t_cold), min(t_warm)
    print(f"torch-fidelity calculate_metrics : {best_ref:7.1f} s   FID {fid_ref:.6f}")
    print(f"ours, cache cold                 : {best_cold:7.1f} s   FID {fids[0]:.6f}   ratio vs torch-fidelity {best_cold / best_ref:.3f} (goal <= 1.05)")
    print(f"ours, cache warm                 : {best_warm:7.1f} s   FID {fids[1]:.6f}   ratio vs cold {best_warm / best_cold:.3f} (goal <= 0.55)")
    print(f"(best of {args.repeats}; per-repeat ratios cold/ref {[round(c / r, 3) for c, r in zip(t_cold, t_ref)]}, warm/cold {[round(w / c, 3) for w, c in zip(t_warm, t_cold)]})")
    print(f"FID relative difference vs torch-fidelity: {abs(fids[0] - fid_ref) / fid_ref:.2e}")


if __name__ == "__main__":
    main()
