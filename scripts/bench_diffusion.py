"""Benchmark: DDPM on MNIST through ``lightning-gen fit`` beside diffusers' own ``train_unconditional.py``.

    python scripts/bench_diffusion.py --steps 20 --seeds 0 --fid_n 50     # smoke check, a few minutes
    python scripts/bench_diffusion.py --record                             # 3000 steps, seeds 0 1, FID@1000 (~1 h)

Needs the ``bench`` extra (``pip install -e '.[bench]'``: accelerate, datasets, tensorboard, matplotlib).

The reference is diffusers' ``examples/unconditional_image_generation/train_unconditional.py``, vendored
unchanged in ``scripts/third_party/diffusers/`` (see its NOTICE), run as ``__main__`` with its own flags,
offline through ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``. It has no ``--seed``: the child process seeds
it with accelerate's ``set_seed`` first. Ours is ``experiments/ddpm_mnist.yaml`` through
``lightning-gen fit`` (in process: ``lightning_gen.__main__.main``) with :data:`OVERRIDES`.

Equal terms, asserted before training (:func:`parity_rows`, printed as a table):

- net: ddpm_mnist's ``UNet2DModel`` (widths 16/32/32, attention at 7x7), with 3 channels because the
  script reads every image as RGB; the script gets our ``config.json`` (``--model_config_name_or_path``);
- data: the same PNG files (the MNIST training images in order; the script's folder holds hard links
  to our training split, which keeps one image out for our validation), 28x28, ``[-1, 1]``, no flip:
  :func:`check_inputs` decodes a sample of them through both pipelines and the uint8 arrays, bit-equal;
- training: linear betas, T = 1000, epsilon MSE; AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight
  decay 0) at a constant rate without warm-up; gradient norm clipped to 1.0 (fixed in the script);
  EMA 0.995 that copies the weights at step 1 (the script's warm-up set off with ``--ema_power inf``,
  ours ``ema_start: 0``); batch 64; fp32; the same number of steps (the script counts epochs, so the
  folder holds ``steps x 64 / epochs`` images);
- sampling for FID: DDIM, 50 steps, eta 0, clipped x_0, the same noise per chunk (``chunk_seed``) from
  the EMA weights: ``lightning-gen sample`` for ours, diffusers' ``DDIMPipeline`` for theirs (the same
  scheduler config, asserted); FID by ``lightning-gen evaluate --real <MNIST test PNGs> --fake <samples>``.

Both trainings of a seed run at once (``--mode concurrent``, one torch thread each, so background load
hits both alike). Each child notes wall and process CPU time after every ``optimizer.step()`` (one global
torch hook, the same on both sides); a step's time is the interval from the previous step, which holds
the data loading, forward, backward, clipping, optimizer, EMA and logging of that side. Left out, on
both sides alike: the interval into the first step of every epoch (the script samples and saves at
epoch ends) and the one after each of our validations (every 500 steps, with a sample grid). Losses
come from each side's own log (our ``metrics.csv``, the script's TensorBoard events). Outputs in
``--out``: ``loss_curves.csv`` (side, seed, step, loss, wall and CPU time), ``loss_curves.png``,
``table.md``, ``results.json``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import runpy
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightning_gen.utils.provenance import add_record_argument, recorded  # noqa: E402

SCRIPT = REPO / "scripts" / "third_party" / "diffusers" / "train_unconditional.py"
EXPERIMENT = REPO / "experiments" / "ddpm_mnist.yaml"
BATCH = 64
MNIST_TRAIN = 60000
SAMPLER, SAMPLER_STEPS, SAMPLE_CHUNK = "ddim", 50, 100
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

#: what the parity run changes in ddpm_mnist.yaml, each to what the script can express
OVERRIDES = [
    # the script reads an image folder as RGB: the same PNGs here, 3 channels at 28x28, one held out for validation
    "--data=datamodules.ImageFolderDataModule",
    "--data.init_args.image_size=28",
    "--data.init_args.channels=3",
    "--data.init_args.val_fraction=1e-6",
    f"--data.init_args.batch_size={BATCH}",
    "--data.init_args.num_workers=0",  # the script's --dataloader_num_workers default
    # the script's optimizer is AdamW; weight decay 0 makes it ddpm_mnist's Adam update
    '--model.init_args.optimizer={"class_path": "torch.optim.AdamW", "init_args": '
    '{"lr": 1.0e-3, "betas": [0.9, 0.999], "eps": 1.0e-8, "weight_decay": 0.0}}',
    "--model.init_args.ema_start=0",  # the script's EMA copies at step 1 and averages from step 2
    "--trainer.log_every_n_steps=1",  # the script logs the loss every step
    "--run.wandb=disabled",  # the script logs to TensorBoard only; ours keeps its CSV logger
]


class Plan(NamedTuple):
    """How ``steps`` optimizer steps of ``BATCH`` images fit the script, which only counts epochs."""

    steps: int
    epochs: int
    images: int  # images in the script's folder (= our training split): steps / epochs full batches

    @property
    def steps_per_epoch(self) -> int:
        return self.steps // self.epochs


def plan_for(steps: int, batch: int = BATCH, available: int = MNIST_TRAIN - 1) -> Plan:
    """The fewest epochs that divide ``steps`` with at most ``available`` images (one more is our validation)."""
    for epochs in range(max(1, math.ceil(steps * batch / available)), steps + 1):
        if steps % epochs == 0 and steps // epochs * batch <= available:
            return Plan(steps, epochs, steps // epochs * batch)
    raise SystemExit(f"--steps {steps} cannot be cut into epochs of at most {available} images; try a round number.")


# --- the two command lines -----------------------------------------------------------------------
def ours_fit_args(root: Path, steps: int, seed: int, run_root: Path) -> list[str]:
    """``lightning-gen fit`` arguments of our side (after ``fit``)."""
    return [
        "--config",
        str(EXPERIMENT),
        *OVERRIDES,
        f"--data.init_args.root={root}",
        f"--data.init_args.seed={seed}",
        f"--seed_everything={seed}",
        f"--trainer.max_steps={steps}",
        f"--run.root={run_root}",
        f"--run.name=seed{seed}",
        "--run.id=run",
    ]


def script_args(data_dir: Path, out_dir: Path, unet_dir: Path, plan: Plan, cache_dir: Path) -> list[str]:
    """``train_unconditional.py`` flags that put it on ddpm_mnist's terms (its defaults differ where named)."""
    return [
        f"--train_data_dir={data_dir}",
        f"--output_dir={out_dir}",
        f"--cache_dir={cache_dir}",
        f"--model_config_name_or_path={unet_dir}",  # default: a 6-level 3-channel UNet
        "--resolution=28",
        "--center_crop",  # a 28x28 crop of a 28x28 image either way; no random crop draws
        f"--train_batch_size={BATCH}",
        f"--num_epochs={plan.epochs}",
        "--learning_rate=1e-3",
        "--lr_scheduler=constant",  # default cosine with 500 warm-up steps
        "--lr_warmup_steps=0",
        "--adam_beta1=0.9",  # default 0.95
        "--adam_beta2=0.999",
        "--adam_weight_decay=0",  # default 1e-6
        "--adam_epsilon=1e-8",
        "--use_ema",
        "--ema_max_decay=0.995",  # default 0.9999
        "--ema_power=inf",  # warm-up off: 1 - (1 + step)^-inf = 1, capped at the max decay, from step 2
        "--ddpm_num_steps=1000",
        "--ddpm_beta_schedule=linear",
        "--prediction_type=epsilon",
        "--mixed_precision=no",
        "--dataloader_num_workers=0",
        "--checkpointing_steps=100000000",  # no accelerate state saves inside the timed loop
        f"--save_images_epochs={plan.epochs + 1}",  # its DDPM preview (16 images) at the last epoch only
        "--ddpm_num_inference_steps=50",
        f"--save_model_epochs={plan.epochs + 1}",  # the pipeline (EMA weights) at the last epoch only
        "--logger=tensorboard",
    ]


def instantiate_ours(fit_args: list[str]) -> Any:
    """Our ``fit`` as LightningCLI builds it (model, datamodule, trainer), without running it: nothing is written."""
    from lightning_gen.cli.trainer import build_cli

    with warnings.catch_warnings():  # LightningCLI warns that this process has argv of its own
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return build_cli(fit_args, run=False)


def load_reference_module() -> Any:
    """The vendored script as a module (its ``parse_args``); importing it runs no training."""
    spec = importlib.util.spec_from_file_location("train_unconditional", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_script_args(argv: list[str]) -> argparse.Namespace:
    """``argv`` as the script parses it (its own ``parse_args`` reads ``sys.argv``)."""
    module = load_reference_module()
    saved = sys.argv
    sys.argv = [str(SCRIPT), *argv]
    try:
        return module.parse_args()
    finally:
        sys.argv = saved


# --- equal terms ---------------------------------------------------------------------------------
def our_ema_decays(decay: float, start: int, steps: int) -> list[float]:
    """The decay ``GenerativeModel.update_ema`` uses at step k = 1..steps: a copy (0) while ``global_step``
    (k - 1 while the step runs) <= ``ema_start``."""
    return [0.0 if k - 1 <= start else decay for k in range(1, steps + 1)]


def lr_trace(optimizer: torch.optim.Optimizer, scheduler: Any | None, steps: int) -> list[float]:
    """The learning rate of each of ``steps`` optimizer steps (the scheduler is stepped after each)."""
    lrs = []
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": nothing is trained here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            if scheduler is not None:
                scheduler.step()
    return lrs


def plain(config: Any) -> dict[str, Any]:
    """A diffusers config as JSON values (tuples as lists), without its ``_`` bookkeeping keys."""
    return {k: v for k, v in json.loads(json.dumps(dict(config))).items() if not k.startswith("_")}


def unet_summary(unet: torch.nn.Module) -> dict[str, Any]:
    """A UNet's config, parameter count and tensor shapes."""
    return {
        "config": plain(unet.config),
        "parameters": sum(p.numel() for p in unet.parameters()),
        "shapes": {k: tuple(v.shape) for k, v in unet.state_dict().items()},
    }


def script_objects(args: argparse.Namespace, steps: int) -> dict[str, Any]:
    """What the script builds from ``args``, by its own lines (model, scheduler, optimizer, LR, EMA)."""
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    model = UNet2DModel.from_config(UNet2DModel.load_config(args.model_config_name_or_path))
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=args.ddpm_num_steps,
        beta_schedule=args.ddpm_beta_schedule,
        prediction_type=args.prediction_type,
    )
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * args.gradient_accumulation_steps,
        num_training_steps=steps,
    )
    ema = EMAModel(
        model.parameters(),
        decay=args.ema_max_decay,
        use_ema_warmup=True,
        inv_gamma=args.ema_inv_gamma,
        power=args.ema_power,
    )
    return {
        "unet": model,
        "noise_scheduler": noise_scheduler,
        "optimizer": optimizer,
        "lrs": lr_trace(optimizer, lr_scheduler, steps),
        "ema": [ema.get_decay(k) for k in range(1, steps + 1)],
    }


def parity_rows(cli: Any, args: argparse.Namespace, plan: Plan) -> list[tuple[str, Any, Any]]:
    """``(what, ours, script's)`` for everything that must be equal; ``cli`` is our instantiated ``fit``."""
    from diffusers import DDIMScheduler

    theirs = script_objects(args, plan.steps)
    model, dm, trainer = cli.model, cli.datamodule, cli.trainer
    optimizer = model.configure_optimizers()
    scheduler = optimizer["lr_scheduler"]["scheduler"] if isinstance(optimizer, dict) else None
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    ours_unet, theirs_unet = unet_summary(model.diffusion.net), unet_summary(theirs["unet"])
    ddim_ours = model.diffusion.make_scheduler(SAMPLER, SAMPLER_STEPS, model.diffusion.sampling.clip_sample)
    ddim_theirs = DDIMScheduler.from_config(theirs["noise_scheduler"].config)  # what DDIMPipeline makes of it
    ddim_theirs.set_timesteps(SAMPLER_STEPS)
    steps_theirs = args.num_epochs * math.ceil(plan.images / args.train_batch_size) // args.gradient_accumulation_steps
    return [
        ("UNet parameters", ours_unet["parameters"], theirs_unet["parameters"]),
        ("UNet config", ours_unet["config"], theirs_unet["config"]),
        ("UNet tensor shapes", ours_unet["shapes"], theirs_unet["shapes"]),
        (
            "noise scheduler config",
            plain(model.diffusion.noise_scheduler.config),
            plain(theirs["noise_scheduler"].config),
        ),
        ("optimizer", type(optimizer).__name__, type(theirs["optimizer"]).__name__),
        ("optimizer hyper-parameters", optimizer.defaults, theirs["optimizer"].defaults),
        ("learning rate at each step", lr_trace(optimizer, scheduler, plan.steps), theirs["lrs"]),
        ("EMA decay at each step", our_ema_decays(model.hparams.ema_decay, model.ema_start, plan.steps), theirs["ema"]),
        (
            "gradient clipping (norm)",
            (trainer.gradient_clip_val, trainer.gradient_clip_algorithm or "norm"),
            (1.0, "norm"),
        ),
        ("precision", trainer.precision, {"no": "32-true"}.get(args.mixed_precision, args.mixed_precision)),
        ("batch size", dm.batch_size, args.train_batch_size),
        ("optimizer steps", trainer.max_steps, steps_theirs),
        ("full batches only", True, plan.images % args.train_batch_size == 0),
        ("image size, channels", (dm.image_size, dm.channels), (args.resolution, 3)),
        ("random flip", False, args.random_flip),
        ("prediction target", model.diffusion.schedule.prediction_type, args.prediction_type),
        ("FID sampler config", plain(ddim_ours.config), plain(ddim_theirs.config)),
        ("FID sampler timesteps", ddim_ours.timesteps.tolist(), ddim_theirs.timesteps.tolist()),
    ]


def assert_parity(rows: list[tuple[str, Any, Any]]) -> None:
    """Print the parity table (long values as their size, then the UNet configs in full); stop if any row differs."""
    print("| equal on both sides | lightning_gen | train_unconditional.py |\n|---|---|---|")
    for what, ours, theirs in rows:
        shown = [str(v) if len(str(v)) <= 60 else f"{len(v)} entries" for v in (ours, theirs)]
        print(f"| {what} | {shown[0]} | {shown[1]} |")
    for what, ours, theirs in rows:
        if what == "UNet config":
            print(
                f"UNet config, lightning_gen:          {json.dumps(ours)}\nUNet config, train_unconditional.py: {json.dumps(theirs)}"
            )
    differ = [what for what, ours, theirs in rows if ours != theirs]
    if differ:
        raise SystemExit(f"The two sides differ in: {', '.join(differ)}. Nothing was trained.")


# --- data ----------------------------------------------------------------------------------------
def write_pngs(images: np.ndarray, folder: Path) -> None:
    """uint8 ``(N, 28, 28)`` as grey PNGs ``00000.png ...`` (lossless: the arrays decode back bit-equal)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def write_data(out: Path, plan: Plan, fid_n: int) -> tuple[Path, Path, np.ndarray]:
    """MNIST training PNGs for our side (``images + 1``), test PNGs for FID; returns both folders and the arrays."""
    from datamodules import MNISTDataModule

    x_train, _, x_test, _ = MNISTDataModule().load_arrays()
    train, test = out / "data" / "mnist_png", out / "data" / "test_png"
    write_pngs(x_train[: plan.images + 1], train)
    write_pngs(x_test[:fid_n], test)
    return train, test, x_train


def link_split(files: list[Path], folder: Path) -> None:
    """Hard links to ``files`` in ``folder`` (the very same bytes, no copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        os.link(path, folder / path.name)


def script_transform(args: argparse.Namespace) -> Any:
    """The script's preprocessing for ``args`` (its ``augmentations``, built inside its ``main``)."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(args.resolution, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(args.resolution) if args.center_crop else transforms.RandomCrop(args.resolution),
            transforms.RandomHorizontalFlip() if args.random_flip else transforms.Lambda(lambda x: x),
            transforms.ToTensor(),
            transforms.Normalize([0.5], [0.5]),
        ]
    )


def check_inputs(dm: Any, args: argparse.Namespace, arrays: np.ndarray, n_check: int, seed: int) -> int:
    """Both sides read the same files into the same tensors: file sets equal, ``n_check`` images bit-equal
    through the script's pipeline (HF ``imagefolder`` + its transform), ours (``x * 2 - 1`` of the
    datamodule's item, as ``Diffusion.training_step``) and the MNIST uint8 arrays. Returns images checked."""
    import datasets

    dataset = datasets.load_dataset(
        "imagefolder", data_dir=args.train_data_dir, cache_dir=args.cache_dir, split="train"
    )
    paths = dataset.cast_column("image", datasets.Image(decode=False))["image"]
    ours = {path.name: i for i, path in enumerate(dm.train_set.files)}
    names = [Path(p["path"]).name for p in paths]
    if sorted(names) != sorted(ours):
        raise SystemExit(
            f"the script's folder holds {len(names)} files, our training split {len(ours)}: not the same set"
        )
    transform = script_transform(args)
    picks = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed))[:n_check].tolist()
    for i in picks:
        theirs = transform(dataset[i]["image"].convert("RGB"))
        x, _ = dm.train_set[ours[names[i]]]
        truth = (
            torch.from_numpy(arrays[int(Path(names[i]).stem)]).float().div(255.0).mul(2.0).sub(1.0).expand(3, -1, -1)
        )
        if not (torch.equal(theirs, x * 2.0 - 1.0) and torch.equal(theirs, truth)):
            raise SystemExit(f"{names[i]} decodes differently on the two sides")
    return len(picks)


# --- the two trainings ---------------------------------------------------------------------------
class Step(NamedTuple):
    """One optimizer step of one run: its number (from 1), when it ended (wall and process CPU seconds), its loss."""

    step: int
    wall: float
    cpu: float
    loss: float


def record_step_times(path: Path) -> Any:
    """Note wall and CPU time after every ``optimizer.step()`` of this process (a global torch hook, the same in
    both children); returns the function that writes them to ``path``."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    times: list[tuple[float, float]] = []
    register_optimizer_step_post_hook(lambda *_: times.append((time.time(), time.process_time())))

    def write() -> None:
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([("wall", "cpu"), *times])

    return write


class SeedDirs(NamedTuple):
    """Where one seed's two runs read and write."""

    out: Path
    seed: int

    @property
    def root(self) -> Path:
        return self.out / f"seed{self.seed}"

    @property
    def script_data(self) -> Path:
        return self.out / "data" / f"script_seed{self.seed}"

    @property
    def ours_runs(self) -> Path:
        return self.root / "ours"

    @property
    def ours_run(self) -> Path:
        return self.ours_runs / f"seed{self.seed}" / "run"

    @property
    def script_out(self) -> Path:
        return self.root / "diffusers"

    def step_times(self, side: str) -> Path:
        return self.root / f"{side}_step_times.csv"


def child_ours(fit_args: list[str], times_csv: Path) -> None:
    """Our side in this process: ``lightning-gen fit`` as a user runs it, its step times noted."""
    from lightning_gen.__main__ import main as lightning_gen

    write = record_step_times(times_csv)
    lightning_gen(["fit", *fit_args])
    write()


def child_script(argv: list[str], seed: int, times_csv: Path) -> None:
    """The script in this process, as its own ``__main__``, after seeding every RNG (it has no ``--seed``)."""
    from accelerate.utils import set_seed

    write = record_step_times(times_csv)
    set_seed(seed)
    sys.argv = [str(SCRIPT), *argv]
    runpy.run_path(str(SCRIPT), run_name="__main__")
    write()


def launch(side: str, payload: dict[str, Any], log: Path, threads: int | None) -> subprocess.Popen:
    """This file as a child process running one side (``payload``: its arguments), output to ``log``."""
    env = {**os.environ, **OFFLINE_ENV, **(ONE_THREAD_ENV if threads == 1 else {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [sys.executable, __file__, "--child", side, "--payload", json.dumps(payload)]
    if threads:
        cmd += ["--threads", str(threads)]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=log.parent)


def train_pair(dirs: SeedDirs, fit_args: list[str], argv: list[str], mode: str) -> dict[str, float]:
    """Both trainings of one seed (at once, or one after the other); returns each side's wall seconds."""
    payloads = {
        "ours": {"fit_args": fit_args, "times_csv": str(dirs.step_times("ours"))},
        "diffusers": {"argv": argv, "seed": dirs.seed, "times_csv": str(dirs.step_times("diffusers"))},
    }
    threads = 1 if mode == "concurrent" else None
    dirs.root.mkdir(parents=True, exist_ok=True)
    walls, procs = {}, {}
    for side in ("ours", "diffusers"):
        procs[side] = (time.perf_counter(), launch(side, payloads[side], dirs.root / f"{side}.log", threads))
        if mode == "sequential":
            walls[side] = wait(side, *procs[side], dirs)
    for side, (start, proc) in procs.items():
        if side not in walls:
            walls[side] = wait(side, start, proc, dirs)
    return walls


def wait(side: str, start: float, proc: subprocess.Popen, dirs: SeedDirs) -> float:
    """Wait for one child; its wall seconds, or stop naming its log."""
    if proc.wait() != 0:
        raise SystemExit(
            f"{side} training (seed {dirs.seed}) failed, exit {proc.returncode}: see {dirs.root / side}.log"
        )
    return time.perf_counter() - start


# --- reading the runs back -----------------------------------------------------------------------
def script_losses(out_dir: Path) -> dict[int, float]:
    """Loss by step (from 1) from the script's TensorBoard events (it logs after every step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(out_dir.glob("logs/**/events.out.tfevents.*"))
    if not events:
        raise SystemExit(f"no TensorBoard events under {out_dir / 'logs'}: the script logged nothing")
    acc = EventAccumulator(str(events[-1].parent), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars("loss")}


def ours_losses(run_dir: Path) -> dict[int, float]:
    """Loss by step (from 1) from our run's ``metrics.csv`` (``train/loss`` rows; its ``step`` counts from 0)."""
    with open(run_dir / "metrics.csv") as f:
        return {int(r["step"]) + 1: float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def read_steps(times_csv: Path, losses: dict[int, float], steps: int) -> list[Step]:
    """Every step of a run, checked to be steps 1..``steps`` on both the clock and the loss log."""
    with open(times_csv) as f:
        times = [(float(r["wall"]), float(r["cpu"])) for r in csv.DictReader(f)]
    if len(times) != steps or sorted(losses) != list(range(1, steps + 1)):
        raise SystemExit(f"{times_csv.parent}: {len(times)} timed steps and {len(losses)} logged losses, not {steps}")
    return [Step(k, wall, cpu, losses[k]) for k, (wall, cpu) in enumerate(times, start=1)]


def clean_intervals(rows: list[Step], steps_per_epoch: int, val_every: int) -> list[tuple[float, float]]:
    """``(wall, cpu)`` seconds from each step to the next, leaving out the intervals that also held other work on
    either side: into the first step of an epoch (the script samples and saves at epoch ends) and after our
    validation (every ``val_every`` steps)."""
    return [
        (b.wall - a.wall, b.cpu - a.cpu)
        for a, b in zip(rows, rows[1:])
        if a.step % steps_per_epoch != 0 and a.step % val_every != 0
    ]


# --- sampling and FID ----------------------------------------------------------------------------
def script_samples(pipeline_dir: Path, n: int, seed: int, steps: int = SAMPLER_STEPS) -> torch.Tensor:
    """uint8 samples of the script's saved pipeline (EMA weights) with ``DDIMPipeline``, chunk noise as ours."""
    from diffusers import DDPMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(pipeline_dir, subfolder="unet")
    return pipeline_samples(unet, DDPMScheduler.from_pretrained(pipeline_dir, subfolder="scheduler"), n, seed, steps)


def pipeline_samples(unet: torch.nn.Module, scheduler: Any, n: int, seed: int, steps: int) -> torch.Tensor:
    """``n`` uint8 images from diffusers' ``DDIMPipeline`` (eta 0); chunk ``c`` draws its noise from
    ``chunk_seed(seed, c)``, as ``lightning-gen sample`` does."""
    from diffusers import DDIMPipeline

    from lightning_gen.metrics.distributed import chunk_seed
    from lightning_gen.metrics.extractors import to_uint8

    pipe = DDIMPipeline(unet=unet.eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    out = []
    with torch.no_grad():
        for start in range(0, n, SAMPLE_CHUNK):
            size = min(SAMPLE_CHUNK, n - start)
            generator = torch.Generator().manual_seed(chunk_seed(seed, start))
            images = pipe(batch_size=size, generator=generator, eta=0.0, num_inference_steps=steps, output_type="pt")
            out.append(to_uint8(images.images))
    return torch.cat(out)


def sample_and_score(dirs: SeedDirs, test_dir: Path, fid_n: int) -> dict[str, float]:
    """``fid_n`` samples of each side (same sampler, steps and noise) and their FID against ``test_dir``."""
    from lightning_gen.__main__ import main as lightning_gen
    from lightning_gen.commands.sample_images import write_folder

    fids = {}
    for side in ("ours", "diffusers"):
        folder = dirs.root / f"samples_{side}"
        if side == "ours":
            lightning_gen(
                [
                    "sample",
                    "--ckpt",
                    str(dirs.ours_run / "checkpoints" / "last.ckpt"),
                    "--num",
                    str(fid_n),
                    "--out",
                    str(folder),
                    "--seed",
                    "0",
                ]
                + ["--sampler", SAMPLER, "--steps", str(SAMPLER_STEPS), "--batch_size", str(SAMPLE_CHUNK)]
            )
        else:
            write_folder(script_samples(dirs.script_out, fid_n, seed=0), folder, None)
        record = dirs.root / f"fid_{side}.json"
        lightning_gen(
            ["evaluate", "--real", str(test_dir), "--fake", str(folder), "--metrics", "fid", "--out", str(record)]
        )
        fids[side] = json.loads(record.read_text())["values"]["fid"]
    return fids


# --- report --------------------------------------------------------------------------------------
SIDES = {"ours": "lightning_gen (`lightning-gen fit`)", "diffusers": "diffusers `train_unconditional.py`"}


def mean_half_range(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ± {(max(values) - min(values)) / 2:.2f}"


def side_means(results: dict[str, Any], key: str) -> dict[str, float]:
    """``key`` of each side, averaged over the seeds."""
    return {s: float(np.mean([results["per_seed"][str(k)][s][key] for k in results["seeds"]])) for s in SIDES}


def table(results: dict[str, Any], last_k: int, fid_n: int) -> str:
    """The side-by-side markdown table of ``results`` (per side: speed, final loss, FID per seed)."""
    seeds, per = results["seeds"], results["per_seed"]
    lines = ["| | " + " | ".join(SIDES.values()) + " |", "|---|---|---|"]

    def row(label: str, cell: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(side) for side in SIDES) + " |")

    wall, cpu = side_means(results, "wall_s_per_step"), side_means(results, "cpu_s_per_step")
    row("steps/s, wall (mean of seeds)", lambda s: f"{1 / wall[s]:.3f}")
    row("CPU s/step (mean of seeds)", lambda s: f"{cpu[s]:.3f}")
    row(
        f"final loss, mean of last {last_k} steps",
        lambda s: ", ".join(f"{per[str(k)][s]['final_loss']:.4f}" for k in seeds),
    )
    if all("fid" in per[str(k)]["ours"] for k in seeds):
        for k in seeds:
            row(f"FID@{fid_n}, seed {k}", lambda s, k=k: f"{per[str(k)][s]['fid']:.2f}")
        row(f"FID@{fid_n}, mean ± half-range", lambda s: mean_half_range([per[str(k)][s]["fid"] for k in seeds]))
    lines.append(
        f"\ntime per step, lightning_gen / diffusers: wall {wall['ours'] / wall['diffusers']:.3f}x (goal <= 1.0), "
        f"CPU {cpu['ours'] / cpu['diffusers']:.3f}x; seeds {' '.join(map(str, seeds))}, {results['steps']} steps, "
        f"{results['mode']}"
    )
    return "\n".join(lines)


def write_curves(out: Path, curves: dict[tuple[str, int], list[Step]]) -> None:
    """``loss_curves.csv`` (every step of every run) and ``loss_curves.png`` (raw and smoothed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(out / "loss_curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("side", "seed", "step", "loss", "wall_s", "cpu_s"))
        for (side, seed), rows in curves.items():
            t0 = rows[0]
            writer.writerows(
                (side, seed, r.step, r.loss, f"{r.wall - t0.wall:.4f}", f"{r.cpu - t0.cpu:.4f}") for r in rows
            )
    fig, ax = plt.subplots(figsize=(8, 5))
    first_seed = min(seed for _, seed in curves)
    for (side, seed), rows in curves.items():
        steps, losses = np.array([r.step for r in rows]), np.array([r.loss for r in rows])
        window = max(1, min(50, len(losses) // 5))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        color = "tab:blue" if side == "ours" else "tab:orange"
        ax.plot(steps, losses, color=color, alpha=0.15, linewidth=0.5)
        style = "-" if seed == first_seed else "--"
        ax.plot(steps[window - 1 :], smooth, color=color, linestyle=style, label=f"{SIDES[side]}, seed {seed}")
    ax.set(xlabel="optimizer step", ylabel="training loss (epsilon MSE)", yscale="log", title="DDPM on MNIST, batch 64")
    ax.legend()
    fig.savefig(out / "loss_curves.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


# --- driver --------------------------------------------------------------------------------------
@contextmanager
def offline() -> Iterator[None]:
    """HF libraries offline in this process too (the input check loads the image folder)."""
    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def prepare_seed(
    dirs: SeedDirs, plan: Plan, train_dir: Path, arrays: np.ndarray, n_check: int
) -> tuple[list[str], list[str], int]:
    """One seed: our split, the script's folder of links to it, the parity table and the input check.
    Returns our ``fit`` arguments, the script's and our validation interval."""
    fit_args = ours_fit_args(train_dir, plan.steps, dirs.seed, dirs.ours_runs)
    cli = instantiate_ours(fit_args)
    cli.datamodule.setup("fit")
    link_split(cli.datamodule.train_set.files, dirs.script_data)
    unet_dir = dirs.out / "unet_config"
    if not (unet_dir / "config.json").exists():
        cli.model.diffusion.net.save_config(unet_dir)  # our config.json is the script's model config
    argv = script_args(dirs.script_data, dirs.script_out, unet_dir, plan, dirs.out / "hf_cache")
    args = parse_script_args(argv)
    assert_parity(parity_rows(cli, args, plan))
    with offline():
        checked = check_inputs(cli.datamodule, args, arrays, n_check, dirs.seed)
    print(f"seed {dirs.seed}: {plan.images} training images, the same files on both sides; {checked} decoded bit-equal")
    return fit_args, argv, int(cli.trainer.val_check_interval)


def measure_seed(
    dirs: SeedDirs, plan: Plan, opts: argparse.Namespace, data: tuple[Path, np.ndarray], curves: dict
) -> dict[str, dict[str, float]]:
    """Train both sides of one seed; per side: wall and CPU seconds per step (clean intervals), final loss."""
    fit_args, argv, val_every = prepare_seed(dirs, plan, *data, opts.check_images)
    walls = train_pair(dirs, fit_args, argv, opts.mode)
    losses = {"ours": ours_losses(dirs.ours_run), "diffusers": script_losses(dirs.script_out)}
    per = {}
    for side in SIDES:
        rows = curves[(side, dirs.seed)] = read_steps(dirs.step_times(side), losses[side], plan.steps)
        intervals = np.array(clean_intervals(rows, plan.steps_per_epoch, val_every)).reshape(-1, 2)
        per[side] = {
            "wall_s_per_step": float(intervals[:, 0].mean()),
            "cpu_s_per_step": float(intervals[:, 1].mean()),
            "timed_intervals": len(intervals),
            "final_loss": float(np.mean([r.loss for r in rows[-min(opts.last_k, plan.steps) :]])),
            "process_wall_s": walls[side],
        }
        print(
            f"seed {dirs.seed} {side}: {1 / per[side]['wall_s_per_step']:.3f} steps/s, "
            f"{per[side]['cpu_s_per_step']:.3f} CPU s/step, final loss {per[side]['final_loss']:.4f}"
        )
    return per


def run_bench(opts: argparse.Namespace) -> dict[str, Any]:
    """Everything, for every seed: data, parity, trainings, curves, samples, FID; returns the results."""
    out = Path(opts.out).resolve()
    plan = plan_for(opts.steps)
    print(f"{plan.steps} steps of batch {BATCH} = {plan.epochs} epoch(s) of {plan.images} images; mode {opts.mode}")
    train_dir, test_dir, arrays = write_data(out, plan, opts.fid_n)
    results: dict[str, Any] = {"steps": plan.steps, "seeds": opts.seeds, "mode": opts.mode, "per_seed": {}}
    results["fid_n"] = opts.fid_n
    curves: dict[tuple[str, int], list[Step]] = {}
    for seed in opts.seeds:
        results["per_seed"][str(seed)] = measure_seed(SeedDirs(out, seed), plan, opts, (train_dir, arrays), curves)
    write_curves(out, curves)
    if opts.fid_n:
        for seed in opts.seeds:
            for side, fid in sample_and_score(SeedDirs(out, seed), test_dir, opts.fid_n).items():
                results["per_seed"][str(seed)][side]["fid"] = fid
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps of batch 64 on each side")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--fid_n", type=int, default=1000, help="samples per model and MNIST test images; 0: no FID")
    parser.add_argument("--last_k", type=int, default=100, help="final loss: the mean of the last K steps")
    parser.add_argument("--check_images", type=int, default=256, help="images decoded through both pipelines")
    parser.add_argument("--mode", choices=["concurrent", "sequential"], default="concurrent")
    parser.add_argument("--out", default=f"runs/bench_diffusion/{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--child", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    parser.add_argument("--payload", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    add_record_argument(parser, REPO)
    opts = parser.parse_args(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.child:  # one side of a seed, launched by train_pair
        payload = json.loads(opts.payload)
        if opts.child == "ours":
            child_ours(payload["fit_args"], Path(payload["times_csv"]))
        else:
            child_script(payload["argv"], payload["seed"], Path(payload["times_csv"]))
        return
    if Path(opts.out).exists():
        raise SystemExit(f"--out {opts.out} exists; give a new folder (nothing is written over).")
    start = time.perf_counter()
    results = run_bench(opts)
    text = table(results, min(opts.last_k, opts.steps), opts.fid_n)
    out = Path(opts.out)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "table.md").write_text(text + "\n")
    with recorded(opts.record, "bench_diffusion", REPO):  # the table alone, not the commands' own output
        print(f"\n{text}\n\n(total wall {time.perf_counter() - start:.0f} s; curves, table and results in {out})")


if __name__ == "__main__":
    main()
