"""Benchmark: two-folder FID end to end, ``lightning-gen evaluate`` against torch-fidelity's ``fidelity`` command.

Writes ``--n`` real MNIST test images and ``--n`` MNIST training images (the "generated" set) as
28x28 PNGs, then runs, alternately ``--repeats`` times each, the two commands a user types:

    lightning-gen evaluate --real REAL --fake FAKE --metrics fid --weights offline --cache_dir <fresh> --out <json>
    fidelity --gpu '' --fid --input1 FAKE --input2 REAL --feature-extractor-weights-path <same weights> --json

Each is a new process, timed from start to exit: interpreter start-up, imports, PNG decoding,
Inception and the FID itself are all inside. Both use the same Inception weights (the converted
offline file: torch-fidelity's own download needs the network). Ours gets a fresh, empty feature
cache every run (the converted weights linked in), so no run reuses the real folder's features
(``--warm`` adds one run with the cache of the previous one, for reference). Prints each wall
time, the median of each, the median per-pair ratio (torch-fidelity / ours: > 1 means ours is
faster) and both FIDs with their relative difference. The CPU may be shared: run it on an idle
machine for numbers you quote; the pairs alternate so that a load change hits both alike.

    .venv/bin/python scripts/bench_evaluate_folders.py                 # 400 + 400 images, 3 repeats
    .venv/bin/python scripts/bench_evaluate_folders.py --n 50 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BIN = Path(sys.executable).parent  # the venv's console scripts: lightning-gen, fidelity


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="images per folder (real and generated), >= 2")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command, alternating")
    parser.add_argument("--workdir", default=None, help="where the PNGs go (default: a temporary folder)")
    parser.add_argument("--warm", action="store_true", help="also time ours once with the real features cached")
    from lightning_gen.utils.provenance import add_record_argument

    add_record_argument(parser, REPO)
    args = parser.parse_args(argv)
    if args.n < 2 or args.repeats < 1:
        parser.error("--n must be >= 2 and --repeats >= 1")
    return args


def write_mnist_pngs(root: Path, n: int) -> tuple[Path, Path]:
    """``root/real``: the first ``n`` MNIST test images; ``root/fake``: the first ``n`` training images (PNG)."""
    from PIL import Image

    from datamodules import MNISTDataModule

    dm = MNISTDataModule()
    train_x, _, test_x, _ = dm.load_arrays()
    folders = []
    for name, images in (("real", test_x), ("fake", train_x)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
        folders.append(folder)
    return folders[0], folders[1]


def fresh_cache(root: Path, weights: Path) -> Path:
    """An empty ``--cache_dir`` holding only the converted Inception weights (linked, not converted again)."""
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=root))
    (cache / "inception").mkdir()
    for suffix in (".pth", ".json"):
        (cache / "inception" / weights.with_suffix(suffix).name).symlink_to(weights.with_suffix(suffix))
    return cache


def timed(cmd: list[str]) -> tuple[float, str]:
    """Run ``cmd`` to the end; its wall time and stdout (a failure stops the benchmark with its output)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def ours(real: Path, fake: Path, cache: Path, out: Path) -> tuple[float, float]:
    """``lightning-gen evaluate --real --fake --metrics fid``: wall seconds and FID."""
    cmd = [str(BIN / "lightning-gen"), "evaluate", "--real", str(real), "--fake", str(fake), "--metrics", "fid"]
    seconds, _ = timed([*cmd, "--weights", "offline", "--cache_dir", str(cache), "--out", str(out)])
    return seconds, json.loads(out.read_text())["values"]["fid"]


def torch_fidelity(real: Path, fake: Path, weights: Path) -> tuple[float, float]:
    """``fidelity --gpu '' --fid --input1 FAKE --input2 REAL`` with the same weights: wall seconds and FID."""
    cmd = [str(BIN / "fidelity"), "--gpu", "", "--fid", "--input1", str(fake), "--input2", str(real)]
    seconds, stdout = timed([*cmd, "--feature-extractor-weights-path", str(weights), "--json"])
    return seconds, float(json.loads(stdout)["frechet_inception_distance"])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from lightning_gen.metrics.inception import ensure_converted_weights
    from lightning_gen.utils.provenance import recorded

    weights = Path(ensure_converted_weights().path)
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        root = Path(args.workdir or tmp)
        real, fake = write_mnist_pngs(root, args.n)
        print(f"{args.n} + {args.n} MNIST PNGs (28x28) in {root}; CPU cores: {os.cpu_count()}", flush=True)
        times: dict[str, list[float]] = {"lightning-gen evaluate": [], "torch-fidelity": []}
        fids: dict[str, float] = {}
        cache = root
        for rep in range(args.repeats):
            cache = fresh_cache(root, weights)
            for name in times:
                if name == "torch-fidelity":
                    seconds, fids[name] = torch_fidelity(real, fake, weights)
                else:
                    seconds, fids[name] = ours(real, fake, cache, cache / f"eval-{rep}.json")
                times[name].append(seconds)
                print(f"repeat {rep + 1}: {name:24s} {seconds:7.1f} s  FID {fids[name]:.6f}", flush=True)
        if args.warm:
            seconds, _ = ours(real, fake, cache, cache / "eval-warm.json")
            print(f"warm cache:  lightning-gen evaluate  {seconds:7.1f} s (real features reused)", flush=True)
        with recorded(args.record, "bench_evaluate_folders", REPO):
            print(f"{args.n} + {args.n} MNIST PNGs, {args.repeats} alternating runs of each command, end to end")
            print_summary(times, fids)


def print_summary(times: dict[str, list[float]], fids: dict[str, float]) -> None:
    """Median wall time of each command, the median per-pair ratio, and the FIDs."""
    ours_t, ref_t = times["lightning-gen evaluate"], times["torch-fidelity"]
    ratios = [r / o for o, r in zip(ours_t, ref_t)]
    ours_fid, ref_fid = fids["lightning-gen evaluate"], fids["torch-fidelity"]
    print(
        f"\nmedian wall time: lightning-gen evaluate {statistics.median(ours_t):.1f} s, torch-fidelity {statistics.median(ref_t):.1f} s"
    )
    print(
        f"speed-up (torch-fidelity / ours) per pair: {', '.join(f'{r:.2f}x' for r in ratios)}; median {statistics.median(ratios):.2f}x"
    )
    print(
        f"FID: ours {ours_fid:.6f}, torch-fidelity {ref_fid:.6f}, relative difference {abs(ours_fid - ref_fid) / abs(ref_fid):.1e}"
    )


if __name__ == "__main__":
    main()
