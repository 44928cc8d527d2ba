"""Benchmark: the baby-GPT recipe through lightning_gen (Trainer) vs a hand-written nanoGPT-style loop.

    .venv/bin/python scripts/bench_gpt.py                 # 2000 iterations each (~2 x 2-3 min on 2 cores)
    .venv/bin/python scripts/bench_gpt.py --iters 300     # quick check

Both runs use the same machine, process, data (Shakespeare-char ids from ``TextDataModule``), net
(``lightning_gen.nets.gpt.GPT``, same seed so the same initial weights), schedule (warm-up 100,
cosine 1e-3 -> 1e-4), AdamW(0.9, 0.99, wd 0.1), gradient clipping 1.0, and the same fixed validation
windows every 250 iterations. The reference is nanoGPT's ``train.py`` loop reduced to CPU: its
``get_batch`` (``torch.randint`` windows from the memmap), its optimizer groups (every 2-D tensor
decayed, embeddings included) and ``loss.item()`` every iteration (the CPU recipe's
``--log_interval=1``). lightning_gen runs ``experiments/gpt_shakespeare_char.yaml`` through the CLI
(loggers as configured by ``--loggers``; the TextMetrics callback left out: it is evaluation).

Reported: training tokens/s of each (validation time excluded from both), the ratio
lightning_gen / reference (goal >= 1.0), and validation loss at equal iterations.

``--mode concurrent`` (default) runs the two as simultaneous processes with one torch thread each,
so on a shared machine both see the same background load; ``sequential`` runs them one after the
other in this process (fair only on an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datamodules.text import TextDataModule  # noqa: E402
from lightning_gen.cli.trainer import build_cli  # noqa: E402
from lightning_gen.models.gpt import warmup_cosine_lr  # noqa: E402
from lightning_gen.nets.gpt import GPT, GPTConfig  # noqa: E402
from lightning_gen.utils.provenance import add_record_argument, recorded  # noqa: E402

EXPERIMENT = REPO / "experiments" / "gpt_shakespeare_char.yaml"
BLOCK, BATCH, LR, MIN_LR, WARMUP, EVAL_INTERVAL = 64, 12, 1e-3, 1e-4, 100, 250


@torch.no_grad()
def val_loss(net: torch.nn.Module, loader) -> float:
    net.eval()
    losses = [F.cross_entropy(net(x).flatten(0, 1), y.flatten()).item() for x, y in loader]
    net.train()
    return float(np.mean(losses))


def reference_loop(dm: TextDataModule, iters: int, seed: int) -> dict:
    """nanoGPT's train.py on CPU (no DDP, no grad accumulation, no compile), timing training only."""
    torch.manual_seed(seed)
    train_data = dm.train_tokens
    config = GPTConfig(
        vocab_size=dm.vocab_size, block_size=BLOCK, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False
    )
    model = GPT(config)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.99))

    def get_batch():
        ix = torch.randint(len(train_data) - BLOCK, (BATCH,))
        x = torch.stack([torch.from_numpy(train_data[i : i + BLOCK].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(train_data[i + 1 : i + 1 + BLOCK].astype(np.int64)) for i in ix])
        return x, y

    val = dm.val_dataloader()
    history, train_s = {}, 0.0
    x, y = get_batch()
    for it in range(iters):
        if it > 0 and it % EVAL_INTERVAL == 0:
            history[it] = val_loss(model, val)
        t0 = time.perf_counter()
        lr = warmup_cosine_lr(it, LR, MIN_LR, WARMUP, iters)
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        x, y = get_batch()  # nanoGPT prefetches the next batch while the forward is in flight
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # nanoGPT logs the loss (log_interval=1 in the CPU recipe)
        train_s += time.perf_counter() - t0
    history[iters] = val_loss(model, val)
    return {"train_s": train_s, "tokens_per_s": iters * BATCH * BLOCK / train_s, "val": history}


class _ValidationClock(L.Callback):
    """Time spent in validation, to take out of the Trainer's wall time (the reference does the same)."""

    def __init__(self) -> None:
        self.total, self._t0 = 0.0, 0.0

    def on_validation_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.total += time.perf_counter() - self._t0


def lightning_run(iters: int, seed: int, loggers: str, run_root: str) -> dict:
    args = [
        "--config",
        str(EXPERIMENT),
        f"--seed_everything={seed}",
        f"--trainer.max_steps={iters}",
        f"--model.init_args.decay_steps={iters}",
        f"--data.init_args.train_batches_per_epoch={EVAL_INTERVAL}",
        "--trainer.callbacks=[]",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--run.root={run_root}",
        "--run.name=bench_gpt",
    ]
    if loggers == "none":
        args += ["--trainer.logger=false", "--trainer.enable_checkpointing=false"]
    elif loggers == "csv":
        args += ["--run.wandb=disabled"]
    cli = build_cli(args, run=False)
    clock = _ValidationClock()
    cli.trainer.callbacks.append(clock)
    history: dict[int, float] = {}

    class _Record(L.Callback):
        def on_validation_end(self, trainer, pl_module) -> None:
            history[trainer.global_step] = float(trainer.callback_metrics["val/loss"])

    cli.trainer.callbacks.append(_Record())
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    wall = time.perf_counter() - t0
    train_s = wall - clock.total
    return {"train_s": train_s, "wall_s": wall, "tokens_per_s": iters * BATCH * BLOCK / train_s, "val": history}


def _data() -> TextDataModule:
    dm = TextDataModule(tokenizer="char", block_size=BLOCK, batch_size=BATCH, val_batches=50)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _run_one(name: str, args: argparse.Namespace) -> dict:
    if name == "reference":
        return reference_loop(_data(), args.iters, args.seed)
    return lightning_run(args.iters, args.seed, args.loggers, args.run_root)


def _concurrent(args: argparse.Namespace) -> dict[str, dict]:
    """Both runs at once, one process and one thread each: they share whatever else loads the machine."""
    _data()  # build the id cache once, before the two processes read it
    procs = {}
    for name in ("reference", "lightning_gen"):
        cmd = [
            sys.executable,
            __file__,
            "--only",
            name,
            "--iters",
            str(args.iters),
            "--seed",
            str(args.seed),
            "--threads",
            "1",
            "--loggers",
            args.loggers,
            "--run-root",
            args.run_root,
        ]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{name} run failed (exit {proc.returncode})")
        results[name] = json.loads(out.strip().splitlines()[-1])
        results[name]["val"] = {int(k): v for k, v in results[name]["val"].items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=2000, help="a multiple of 250 (validation points)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=["concurrent", "sequential"], default="concurrent")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in sequential mode (default: torch's)")
    parser.add_argument(
        "--loggers",
        choices=["default", "csv", "none"],
        default="default",
        help="lightning_gen loggers: default = offline W&B + CSV (as a user runs it)",
    )
    parser.add_argument("--run-root", default="runs/bench")
    parser.add_argument("--only", choices=["reference", "lightning_gen"], help=argparse.SUPPRESS)
    add_record_argument(parser, REPO)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only:  # child of --mode concurrent: one run, its result as one JSON line
        print(json.dumps(_run_one(args.only, args)))
        return
    with recorded(args.record, "bench_gpt", REPO):
        print(
            f"{args.iters} iterations of {BATCH}x{BLOCK} Shakespeare-char tokens, mode {args.mode}, "
            f"torch threads {1 if args.mode == 'concurrent' else torch.get_num_threads()}, lightning_gen loggers: {args.loggers}"
        )
        t = time.perf_counter()
        runs = (
            _concurrent(args)
            if args.mode == "concurrent"
            else {n: _run_one(n, args) for n in ("reference", "lightning_gen")}
        )
        for name, run in runs.items():
            print(f"{name}: {run['tokens_per_s']:,.0f} tokens/s (training {run['train_s']:.1f} s)")
        print(f"(wall {time.perf_counter() - t:.0f} s)")
        ref, lg = runs["reference"], runs["lightning_gen"]
        common = sorted(set(ref["val"]) & set(lg["val"]))
        print("\n| iteration | reference val loss | lightning_gen val loss |\n|---|---|---|")
        for it in common:
            print(f"| {it} | {ref['val'][it]:.4f} | {lg['val'][it]:.4f} |")
        print(
            f"\ntokens/s ratio lightning_gen / reference: {lg['tokens_per_s'] / ref['tokens_per_s']:.3f}x "
            f"({lg['tokens_per_s']:,.0f} vs {ref['tokens_per_s']:,.0f}; goal >= 1.0)"
        )
        if common:
            final = max(common)
            print(
                f"val loss at {final} iterations: lightning_gen {lg['val'][final]:.4f} vs reference {ref['val'][final]:.4f} "
                f"(difference {lg['val'][final] - ref['val'][final]:+.4f}; ppl {math.exp(lg['val'][final]):.2f} vs "
                f"{math.exp(ref['val'][final]):.2f})"
            )


if __name__ == "__main__":
    main()
