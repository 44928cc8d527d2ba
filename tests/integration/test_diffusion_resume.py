"""A diffusion run behaves like every other family: kill -9 / resume is bitwise equal on CPU, and DDP runs.

The resume runs are a tiny class-conditional diffusion model (dropout and label dropout on, so
both the global RNG and the model's keyed training noise matter) on synthetic blobs, 2 epochs x 8
steps, ``last.ckpt`` every 2 steps, with a SampleGrid sampling at every validation. The killed run
has a process of its own (``tests.helpers.forked``); the unbroken reference and the resume run in this
process (``tests.helpers.cli.run_main``). The DDP run is a subprocess.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest
import torch

from tests.helpers.cli import run_main
from tests.helpers.forked import fork_and_signal
from tests.helpers.ops import assert_bitwise_equal, logged_steps, run_cli, state_dict, train_rows
from tests.helpers.paths import EXPERIMENTS

TINY_DIFFUSION_YAML = """\
model:
  class_path: lightning_gen.models.Diffusion
  init_args:
    conditional: true
    cond_drop_prob: 0.2
    unet: {widths: [16, 32], layers_per_block: 1, attention: [false, true], dropout: 0.1, norm_num_groups: 8}
    schedule: {num_train_timesteps: 100}
    sampling: {sampler: ddpm, steps: 3}
    ema_decay: 0.9
    ema_start: 2
    optimizer:
      class_path: torch.optim.Adam
      init_args: {lr: 2.0e-3}
data:
  class_path: datamodules.SyntheticImageDataModule
  init_args: {image_shape: [1, 16, 16], num_train: 256, num_val: 64, batch_size: 32}
trainer:
  max_epochs: 2
  log_every_n_steps: 1
  num_sanity_val_steps: 0
  accelerator: cpu
  deterministic: true
  enable_model_summary: false
  callbacks:
    - class_path: lightning_gen.callbacks.SampleGrid
      init_args: {num_samples: 4, nrow: 2}
run:
  root: runs
  checkpoint_every_n_steps: 2
  wandb: disabled
"""


def _config(folder: Path) -> Path:
    path = folder / "tinydiff.yaml"
    path.write_text(TINY_DIFFUSION_YAML)
    return path


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("unbroken_diffusion")
    proc = run_main(["fit", "--config", str(_config(cwd)), "--run.id", "ref"], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "runs" / "tinydiff" / "ref"


def _kill_resume_and_compare(tmp_path: Path, unbroken: Path, kill_step: int, sig: int) -> None:
    config = _config(tmp_path)
    killed = fork_and_signal(["fit", "--config", str(config)], tmp_path, "runs/tinydiff/*/metrics.csv", kill_step, sig)
    assert killed.returncode in (-signal.SIGKILL, 0), killed.stdout[-3000:]
    resumed = run_main(["fit", "--config", str(config), "--ckpt_path", "last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "tinydiff").iterdir()
    rows, ref_rows = train_rows(run_dir / "metrics.csv"), train_rows(unbroken / "metrics.csv")
    assert logged_steps(rows) == list(range(16))
    assert rows == ref_rows  # every train/val loss, bit for bit as the CSV prints them
    last, ref_last = run_dir / "checkpoints" / "last.ckpt", unbroken / "checkpoints" / "last.ckpt"
    weights = state_dict(last)
    assert any(k.startswith("ema.module.") for k in weights)
    assert_bitwise_equal(weights, state_dict(ref_last))  # net and EMA
    ckpt, ref = torch.load(last, weights_only=False), torch.load(ref_last, weights_only=False)
    for a, b in zip(ckpt["optimizer_states"][0]["state"].values(), ref["optimizer_states"][0]["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


@pytest.mark.slow  # minutes on 2 cores (the default suite keeps one DDP run: test_experiments_matrix)
@pytest.mark.usefixtures("fork_server")
def test_diffusion_kill9_then_resume_equals_unbroken(tmp_path: Path, unbroken: Path) -> None:
    _kill_resume_and_compare(tmp_path, unbroken, random.Random(1).randint(3, 13), signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4])
@pytest.mark.usefixtures("fork_server")
def test_diffusion_kill9_many_points(tmp_path: Path, unbroken: Path, seed: int) -> None:
    _kill_resume_and_compare(tmp_path, unbroken, random.Random(seed).randint(1, 15), signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.usefixtures("fork_server")
def test_diffusion_sigterm_then_resume_equals_unbroken(tmp_path: Path, unbroken: Path) -> None:
    _kill_resume_and_compare(tmp_path, unbroken, 5, signal.SIGTERM)


@pytest.mark.slow
def test_ddpm_mnist_under_two_process_ddp(tmp_path: Path) -> None:
    args = [
        "fit",
        "--config", str(EXPERIMENTS / "ddpm_mnist.yaml"),
        "--config", str(EXPERIMENTS / "debug.yaml"),
        "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
        "--trainer.limit_train_batches=6", "--trainer.val_check_interval=3", "--trainer.limit_val_batches=2",
        "--trainer.log_every_n_steps=1", "--model.init_args.sampling.steps=2",
        "--run.wandb=disabled", "--run.id=ddp",
    ]  # fmt: skip
    proc = run_cli(args, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "debug" / "ddpm_mnist" / "ddp"
    assert logged_steps(train_rows(run_dir / "metrics.csv")) == list(range(6))
    assert sorted(p.name for p in (run_dir / "samples").glob("*.png")) == [
        "samples_step0000003.png",
        "samples_step0000006.png",
    ]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
