"""What users run: every experiment file, layered with ``debug.yaml`` and a step or a few, through the CLI,
in one process and under 2-process DDP on CPU (gloo).

Experiment files are discovered by glob (``experiments/*.yaml`` with a ``model:`` section; layer
files such as ``debug.yaml`` or ``vae_mnist_eval.yaml`` have none, ``sweeps/`` is another folder).
The slow matrix runs each file for :data:`ONE_STEP` (one optimizer step, for GANs one generator step
after its critic steps, then a one-batch validation with the sample grid or text metrics), in one process
and under DDP, and the two runs must leave the same run dir. :func:`shrink` cuts what costs minutes
but takes no other code path: a batch of 2 per (critic) step, diffusion grids sampled with the file's
sampler, guidance and EMA in 2 steps, grids of 4 images and text metrics on 2 prompts of 8 tokens.
Files that cannot train on this machine are still tested as far as they go:

* CIFAR-10 experiments: no offline copy of CIFAR-10 exists, so the run must stop at once with the
  datamodule's one-paragraph error (exit 1, no traceback) and write no checkpoint; their models,
  optimizers and callbacks, as the file gives them, also train on :data:`CIFAR_STAND_IN`, in one
  process and under DDP, leaving the same run dir;
* GPU experiments (``trainer.accelerator: gpu``): trained on CPU with ``--trainer.accelerator=cpu``,
  ``compile=false`` (a cold ``torch.compile`` costs minutes on this CPU and is not what is tested here)
  and ``precision=32-true`` (bf16 is emulated on a CPU without bf16 units: ~4 min per step of the GPU
  GPT recipe; bf16 + its fused optimizer's clipping are tested in ``test_gpt_model.py``).

Each DDP run also carries :data:`PROBE`, a callback that gathers from every rank a digest of the
parameters (G, D and the EMA for GANs), the GAN noise state and the strategy settings: the ranks
must end with identical weights (gradients were averaged) and, for GANs, different noise.
The default suite keeps one DDP run (``dcgan_mnist``, bf16-mixed, two critic steps, :data:`FEW_STEPS`);
the full matrix and the kill -9 / resume runs are ``slow``.
"""

from __future__ import annotations

import importlib
import json
import signal
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers.ops import REPO_ROOT, logged_steps, run_cli, start_and_signal, train_rows, wandb_segments

EXPERIMENTS = REPO_ROOT / "experiments"
DEBUG = EXPERIMENTS / "debug.yaml"
DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
#: a few steps, and a validation (sample grid, text metrics) at the end of them, also for GANs
FEW_STEPS = [
    "--trainer.limit_train_batches=4",
    "--trainer.log_every_n_steps=2",
    "--trainer.limit_val_batches=2",
    "--trainer.val_check_interval=4",
]
#: the slow matrix's: one step, its logged row, and a one-batch validation right after it, also for GANs
ONE_STEP = [
    "--trainer.limit_train_batches=1",
    "--trainer.log_every_n_steps=1",
    "--trainer.limit_val_batches=1",
    "--trainer.val_check_interval=1",
]

PROBE = '''\
import hashlib, json
import torch, torch.distributed as dist
from lightning.pytorch.callbacks import Callback


class Probe(Callback):
    """At the end of training, rank 0 writes every rank's parameter digest, noise digest and strategy settings."""

    def on_train_end(self, trainer, pl_module):
        digest = hashlib.sha256()
        for name, p in sorted(pl_module.named_parameters()):
            digest.update(name.encode() + p.detach().float().cpu().numpy().tobytes())
        noise = getattr(pl_module, "_noise", None)
        strategy = trainer.strategy
        timeout = getattr(strategy, "_timeout", None)
        info = {
            "params": digest.hexdigest(),
            "noise": None if noise is None else hashlib.sha256(noise.get_state().numpy().tobytes()).hexdigest(),
            "strategy": type(strategy).__name__,
            "timeout_s": None if timeout is None else timeout.total_seconds(),
            "find_unused": getattr(strategy, "_ddp_kwargs", {}).get("find_unused_parameters"),
            "precision": str(trainer.precision),
            "global_step": trainer.global_step,
        }
        every = [None] * trainer.world_size
        if dist.is_available() and dist.is_initialized():
            dist.all_gather_object(every, info)
        else:
            every = [info]
        if trainer.is_global_zero:
            with open("probe.json", "w") as f:
                json.dump(every, f)
'''


def experiment_files() -> list[Path]:
    """Every experiment in ``experiments/`` (files with a ``model:``), found anew each run."""
    return sorted(p for p in EXPERIMENTS.glob("*.yaml") if "model" in (yaml.safe_load(p.read_text()) or {}))


def needs_cifar10(config: dict) -> bool:
    return "CIFAR10" in str((config.get("data") or {}).get("class_path", ""))


def needs_gpu(config: dict) -> bool:
    return str((config.get("trainer") or {}).get("accelerator", "")) in ("gpu", "cuda")


def has_callback(config: dict, name: str) -> bool:
    return any(
        str(c.get("class_path", "")).endswith(name) for c in (config.get("trainer") or {}).get("callbacks") or []
    )


def fit(
    experiment: Path,
    cwd: Path,
    *extra: str,
    ddp: bool = False,
    steps: list[str] = FEW_STEPS,
    timeout: float = 600,
) -> tuple[Path, list[dict]]:
    """``lightning-gen fit --config EXP --config debug.yaml`` + ``steps``; returns its run dir (the only one) and the probe."""
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / "ddp_probe.py").write_text(PROBE)  # `python -m` puts the cwd on sys.path: the probe is importable
    config = yaml.safe_load(experiment.read_text())
    device = (
        ["--trainer.accelerator=cpu", "--model.init_args.compile=false", "--trainer.precision=32-true"]
        if needs_gpu(config)
        else []
    )
    args = [
        "fit",
        "--config",
        str(experiment),
        "--config",
        str(DEBUG),
        *steps,
        *device,
        "--run.root",
        "runs",
        *extra,  # may set the file's last callback (`--trainer.callbacks.init_args.X`): before the probe joins
        "--trainer.callbacks+=ddp_probe.Probe",
    ]
    proc = run_cli([*args, *(DDP if ddp else [])], cwd, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (run_dir,) = list((cwd / "runs" / experiment.stem).iterdir())  # DDP: rank 1 wrote into rank 0's run
    return run_dir, json.loads((cwd / "probe.json").read_text())


def shrink(config: dict) -> list[str]:
    """Overrides that cut a run's cost but keep its code paths (the module docstring says which)."""
    init = config["model"].get("init_args") or {}
    split = init.get("n_critic", 1) if init.get("critic_batches", "split") == "split" else 1
    batch = ((config.get("data") or {}).get("init_args") or {}).get("batch_size")
    assert batch is None or batch % split == 0, f"{batch} images do not split into n_critic={split} critic batches"
    args = [f"--data.init_args.batch_size={2 * split}"]  # 2 images per (critic) step
    if "sampling" in init:
        args.append("--model.init_args.sampling.steps=2")  # DDIM-50: 50 UNet passes over the whole grid
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    last = str(callbacks[-1].get("class_path", "")) if callbacks else ""  # jsonargparse sets the last one's args
    if last.endswith("SampleGrid"):
        args.append("--trainer.callbacks.init_args.num_samples=4")
    elif last.endswith("TextMetrics"):
        args += [
            f"--trainer.callbacks.init_args.{k}" for k in ("num_prompts=2", "prompt_tokens=8", "reference_tokens=8")
        ]
    return args


def one_process_and_ddp(experiment: Path, tmp_path: Path, *extra: str) -> None:
    """:data:`ONE_STEP` of the file, shrunk, in one process and under DDP: the same run dir, and the ranks agree."""
    config = yaml.safe_load(experiment.read_text())
    extra = (*extra, *shrink(config))  # after `extra`: a stand-in's `--data=...` first, then its batch size
    single, _ = fit(experiment, tmp_path / "single", *extra, steps=ONE_STEP)
    ddp, probe = fit(experiment, tmp_path / "ddp", *extra, steps=ONE_STEP, ddp=True)
    expected = assert_run_dir(single, config, steps=1)
    assert assert_run_dir(ddp, config, steps=1) == expected
    assert_ranks_agree(probe, config)
    assert probe[0]["global_step"] == probe[1]["global_step"] == 1


def assert_run_dir(run_dir: Path, config: dict, steps: int) -> dict:
    """The files every run leaves; returns what a 1-process and a DDP run must share."""
    assert (run_dir / "config.yaml").is_file()
    rows = train_rows(run_dir / "metrics.csv")
    train = [r for r in rows if any(v for k, v in r.items() if k.startswith("train/"))]
    assert train, rows[:3]
    assert (
        torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
        == steps
    )
    assert len(wandb_segments(run_dir)) == 1  # one offline W&B run, whatever the number of ranks
    samples = sorted(p.name for p in (run_dir / "samples").glob("*")) if (run_dir / "samples").is_dir() else []
    if has_callback(config, "SampleGrid"):
        assert any(name.endswith(".png") for name in samples), samples
    if has_callback(config, "TextMetrics"):
        assert any(name.startswith("text_samples") for name in samples), samples
        assert any(r.get("text/bleu") for r in rows)
    return {"columns": sorted(rows[0]), "samples": samples, "files": sorted(p.name for p in run_dir.iterdir())}


def model_class(config: dict) -> type:
    module, _, name = config["model"]["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)


def assert_ranks_agree(probe: list[dict], config: dict) -> None:
    cls = model_class(config)
    assert len(probe) == 2 and probe[0]["strategy"] == "DDPStrategy"
    assert probe[0]["params"] == probe[1]["params"]  # gradients were averaged: every net, every step
    assert probe[0]["timeout_s"] == 10 * 60  # run.collective_timeout_min's default, not Lightning's 30 min
    assert probe[0]["find_unused"] is bool(getattr(cls, "ddp_find_unused_parameters", False))  # the model's choice
    if cls.__name__ == "GAN":
        assert probe[0]["noise"] != probe[1]["noise"]  # each rank draws its own z


TRAINABLE = [p for p in experiment_files() if not needs_cifar10(yaml.safe_load(p.read_text()))]
CIFAR = [p for p in experiment_files() if needs_cifar10(yaml.safe_load(p.read_text()))]


def test_discovery_finds_every_experiment() -> None:
    names = {p.stem for p in experiment_files()}
    assert {"vae_mnist", "dcgan_mnist", "wgan_gp_mnist", "gpt_shakespeare_char"} <= names
    assert not names & {"debug", "vae_mnist_eval"}  # layers, not experiments


@pytest.mark.slow  # ~18 s; the default suite's DDP run is test_multinode's 2-node gloo run
def test_dcgan_mnist_under_ddp_bf16_two_critic_steps(tmp_path: Path) -> None:
    """A DDP run of the GAN: both nets, n_critic, EMA, bf16-mixed autocast, a sample grid from rank 0."""
    experiment = EXPERIMENTS / "dcgan_mnist.yaml"
    extra = ["--trainer.precision=bf16-mixed", "--model.init_args.n_critic=2", "--model.init_args.ema_start=1"]
    run_dir, probe = fit(experiment, tmp_path, *extra, ddp=True)
    assert_run_dir(run_dir, yaml.safe_load(experiment.read_text()), steps=4)
    assert_ranks_agree(probe, yaml.safe_load(experiment.read_text()))
    assert probe[0]["precision"] == "bf16-mixed" and probe[0]["global_step"] == 4
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    states = ckpt["gan_noise_rng_states"]  # every rank's noise stream, for the resume
    assert (
        len(states) == 2
        and not torch.equal(states[0], states[1])
        and torch.equal(states[0], ckpt["gan_noise_rng_state"])
    )


@pytest.mark.slow
@pytest.mark.parametrize("experiment", TRAINABLE, ids=lambda p: p.stem)
def test_experiment_one_process_and_ddp_leave_the_same_run_dir(experiment: Path, tmp_path: Path) -> None:
    one_process_and_ddp(experiment, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", CIFAR, ids=lambda p: p.stem)
@pytest.mark.parametrize("ddp", [False, True], ids=["1proc", "ddp"])
def test_cifar10_experiment_says_where_to_get_the_data(experiment: Path, ddp: bool, tmp_path: Path) -> None:
    """No offline CIFAR-10 exists: one paragraph naming the fix, exit 1, no checkpoint (also under DDP)."""
    args = [
        "fit",
        "--config",
        str(experiment),
        "--config",
        str(DEBUG),
        *FEW_STEPS,
        "--run.root",
        "runs",
        "--data.init_args.data_dir",
        str(tmp_path / "data"),
    ]
    proc = run_cli([*args, *(DDP if ddp else [])], tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "lightning-gen: error:" in proc.stderr and "CIFAR" in proc.stderr and "data_dir" in proc.stderr
    # the launching process checks the data before it starts the other ranks or writes a file
    assert "Traceback" not in proc.stderr and proc.stderr.count("lightning-gen: error:") == 1
    assert not (tmp_path / "runs").exists()


#: CIFAR-10's shape and classes in synthetic images; the experiment's workers are kept (:func:`shrink` sets the batch)
CIFAR_STAND_IN = [
    "--data=datamodules.SyntheticImageDataModule",
    "--data.init_args.image_shape=[3,32,32]",
    "--data.init_args.num_classes=10",
    "--data.init_args.num_train=2560",
    "--data.init_args.num_val=128",
]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", CIFAR, ids=lambda p: p.stem)
def test_cifar10_experiment_model_trains_on_a_stand_in(experiment: Path, tmp_path: Path) -> None:
    """Everything of a CIFAR-10 file but its data (SN-GAN's spectral norm, n_dis 5, the 35.7M UNet), also under DDP."""
    one_process_and_ddp(experiment, tmp_path, *CIFAR_STAND_IN)


@pytest.mark.slow
@pytest.mark.parametrize("experiment,metric", [("vae_mnist", "train/loss"), ("gpt_shakespeare_char", "train/loss")])
def test_ddp_kill9_then_resume_logs_each_step_once(experiment: str, metric: str, tmp_path: Path) -> None:
    """A shipped experiment under DDP, SIGKILLed (whole process group) mid-run, resumes into the same run."""
    args = [
        "fit",
        "--config",
        str(EXPERIMENTS / f"{experiment}.yaml"),
        "--config",
        str(DEBUG),
        *DDP,
        "--run.root",
        "runs",
        "--run.checkpoint_every_n_steps=2",
        "--trainer.log_every_n_steps=1",
        "--trainer.limit_train_batches=12",
        "--trainer.limit_val_batches=2",
    ]
    killed = start_and_signal(
        args, tmp_path, f"runs/{experiment}/*/metrics.csv", 7, signal.SIGKILL, timeout=600, group=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:]
    resumed = run_cli([*args, "--ckpt_path", "last"], tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run_dir,) = list((tmp_path / "runs" / experiment).iterdir())
    assert logged_steps(train_rows(run_dir / "metrics.csv"), metric) == list(range(12))  # each step once
    segments = wandb_segments(run_dir)
    assert len(segments) == 2 and all(s.name.endswith(f"-{run_dir.name}") for s in segments)  # one W&B run id
    assert (
        torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 12
    )
