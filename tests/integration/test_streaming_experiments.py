"""``ddpm_mnist`` and ``gpt_shakespeare_char`` trained from shards, as docs/data.md says: ``lightning-gen prepare``
from the experiment, then the experiment + ``experiments/data/*_shards.yaml`` + ``debug.yaml``, in one process and
in 2-process DDP; ``evaluate`` of the diffusion run, ``sample`` of the GPT run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.helpers.cli import run_main
from tests.helpers.ops import run_cli
from tests.helpers.paths import EXPERIMENTS

pytestmark = pytest.mark.slow

DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
DDPM = [
    "--config", str(EXPERIMENTS / "ddpm_mnist.yaml"),
    "--config", str(EXPERIMENTS / "data" / "mnist_shards.yaml"),
    "--config", str(EXPERIMENTS / "debug.yaml"),
    "--trainer.limit_train_batches=4",
    "--model.init_args.sampling.steps=2",  # the grids' DDIM sampler: 2 steps instead of 50
    "--run.wandb=disabled",
]  # fmt: skip
GPT = [
    "--config", str(EXPERIMENTS / "gpt_shakespeare_char.yaml"),
    "--config", str(EXPERIMENTS / "data" / "shakespeare_char_shards.yaml"),
    "--config", str(EXPERIMENTS / "debug.yaml"),
    "--trainer.limit_train_batches=6",
    "--run.wandb=disabled",
]  # fmt: skip


@pytest.fixture(scope="module")
def cwd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``shards/mnist`` and ``shards/shakespeare_char``, written by ``lightning-gen prepare``."""
    folder = tmp_path_factory.mktemp("experiments_from_shards")
    for experiment, out in (("ddpm_mnist", "shards/mnist"), ("gpt_shakespeare_char", "shards/shakespeare_char")):
        proc = run_main(["prepare", "--config", str(EXPERIMENTS / f"{experiment}.yaml"), "--out", out], folder)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def _last(cwd: Path, experiment: str, run_id: str) -> dict:
    path = cwd / "runs" / "debug" / experiment / run_id / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("ddp", [False, True], ids=["one-process", "ddp"])
def test_ddpm_mnist_trains_from_shards_and_evaluate_reads_its_run(cwd: Path, ddp: bool) -> None:
    run_id = "ddp" if ddp else "one"
    args = ["fit", *DDPM, "--run.id", run_id]
    proc = run_cli(args + DDP, cwd) if ddp else run_main(args, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = _last(cwd, "ddpm_mnist", run_id)
    assert ckpt["global_step"] == 4 and ckpt["lightning_gen"]["world_size"] == (2 if ddp else 1)
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["num_samples_yielded"] == 4 * 64
    if ddp:
        return
    out = cwd / "eval.json"
    last = cwd / "runs" / "debug" / "ddpm_mnist" / run_id / "checkpoints" / "last.ckpt"
    proc = run_main(
        ["evaluate", "--ckpt", str(last), "--metrics", "fid", "kid", "--num_samples", "16", "--num_real", "16",
         "--kid_subset_size", "8", "--sample_chunk", "8", "--out", str(out)],
        cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["source"]["dataset_id"] == "shards-MNIST-binarize_none-val5000-seed0"
    assert math.isfinite(report["values"]["fid"]) and report["values"]["fid"] > 0


@pytest.mark.parametrize("ddp", [False, True], ids=["one-process", "ddp"])
def test_gpt_shakespeare_char_trains_from_token_shards_and_samples(cwd: Path, ddp: bool) -> None:
    run_id = "ddp" if ddp else "one"
    args = ["fit", *GPT, "--run.id", run_id]
    proc = run_cli(args + DDP, cwd) if ddp else run_main(args, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = _last(cwd, "gpt_shakespeare_char", run_id)
    assert ckpt["global_step"] == 6 and ckpt["ShardTokenDataModule"]["tokenizer"]["kind"] == "char"
    metrics = (cwd / "runs" / "debug" / "gpt_shakespeare_char" / run_id / "metrics.csv").read_text()
    assert "val/loss" in metrics and "text/bleu" in metrics  # the final validation and the text metrics ran
    last = cwd / "runs" / "debug" / "gpt_shakespeare_char" / run_id / "checkpoints" / "last.ckpt"
    proc = run_main(["sample", "--ckpt", str(last), "--prompt", "ROMEO:", "--max_new_tokens", "20"], cwd)
    assert proc.returncode == 0 and proc.stdout.startswith("ROMEO:") and len(proc.stdout) >= 26, proc.stderr[-2000:]
