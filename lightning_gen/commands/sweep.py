"""``lightning-gen sweep FILE``: one W&B-format sweep file, run by W&B agents, Optuna or Ray Tune.

    lightning-gen sweep experiments/sweeps/vae_mnist_lr.yaml --backend optuna --trials 6
    lightning-gen sweep experiments/sweeps/vae_mnist_lr.yaml --backend wandb --trials 6   # online
    lightning-gen sweep experiments/sweeps/vae_mnist_lr.yaml --backend ray --trials 6 --gpus-per-trial 1

The file is a W&B sweep config whose parameters are CLI keys
(``model.init_args.optimizer.init_args.lr``) and whose ``command`` runs ``lightning-gen fit``
with ``${args}``; every trial is that command in a subprocess, so all DDP ranks get the same
config from the command line, whichever backend runs it.

Optuna (``--backend optuna``, and ``auto`` when W&B is offline): the study lives in an RDB
storage (SQLite ``<root>/sweeps/<name>.db`` by default, any SQLAlchemy URL for many machines);
restarting the command continues the study until ``--trials`` trials are complete or pruned.
Trials of a killed sweep are found by Optuna's heartbeat, re-queued with the same parameters and
*resumed* from their ``last.ckpt`` (same run id). ``early_terminate: hyperband`` becomes Optuna's
``HyperbandPruner`` on the sweep metric; ``--workers N`` runs N trials at once. ``method: grid`` queues
each point not yet done (complete or pruned) once, so the sweep stops when the grid is exhausted and a
rerun of a done grid starts no trial; a point whose trials all failed is queued again by the next run.

Ray (``--backend ray``): Tune trials of ``--cpus-per-trial``/``--gpus-per-trial``, on a local cluster or the one at
``--address`` (``lightning_gen/sweeps/ray_backend.py``); ASHA for hyperband, trials of a dead node resumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gen_common.errors import ConfigError
from lightning_gen.sweeps.devices import TrialDevices
from lightning_gen.sweeps.optuna_backend import print_summary, run_optuna
from lightning_gen.sweeps.spec import first_values, grid_points, load_sweep
from lightning_gen.sweeps.storage import default_storage
from lightning_gen.sweeps.trial import check_command
from lightning_gen.sweeps.wandb_backend import run_wandb
from lightning_gen.utils.options import parse_options


@dataclass
class SweepOptions:
    """Run a W&B-format sweep file with W&B agents, Optuna or Ray Tune; every trial is `lightning-gen fit` in a subprocess.

    Args:
        file: W&B-format sweep YAML (experiments/sweeps/*.yaml).
        backend: ``auto``: W&B when online, else Optuna. ``ray``: Ray Tune (``pip install -e '.[ray]'``).
        trials: Trials to finish (default: the file's ``run_cap``, else 10; a grid: its points). A grid stops when
            every point is done, and a rerun of a done grid starts no trial.
        storage: Optuna storage URL (default ``sqlite:///<root>/sweeps/<name>.db``).
        root: Folder of the default SQLite storage.
        workers: Trials run at once by this process (Optuna).
        devices_per_trial: Optuna: give each running trial its own this many of the sweep's visible CUDA devices
            (``CUDA_VISIBLE_DEVICES``); ``--workers`` times this may not exceed them. 0: every trial sees them all.
        heartbeat: Seconds between Optuna heartbeats; a trial silent for twice that is re-queued.
        seed: Sampler seed (Optuna, Ray).
        cpus_per_trial: Ray: CPUs each trial holds (fractions allowed).
        gpus_per_trial: Ray: GPUs each trial holds; Ray sets the trial's ``CUDA_VISIBLE_DEVICES``. Without
            ``--address`` the local cluster's GPUs are this process's visible CUDA devices.
        address: Ray: join the cluster at this address (``HOST:PORT`` of ``ray start --head``); without it a
            local cluster is started and shut down at the end.
        sweep_id: Attach to this W&B sweep instead of creating one.
        project: W&B project.
        entity: W&B entity.
        check: Dry-run the trial command with ``--print_config`` first (``--no_check`` skips it).
    """

    file: str
    backend: Literal["auto", "wandb", "optuna", "ray"] = "auto"
    trials: int | None = None
    storage: str | None = None
    root: str = "runs"
    workers: int = 1
    devices_per_trial: int = 0
    heartbeat: int = 10
    seed: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    sweep_id: str | None = None
    project: str = "lightning_gen"
    entity: str | None = None
    check: bool = True


def main(argv: list[str]) -> None:
    """Entry point of ``lightning-gen sweep``."""
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    epilog = "Arguments after `--` are appended to every trial's command (e.g. `-- --config experiments/debug.yaml`)."
    args = parse_options(
        SweepOptions,
        argv,
        "lightning-gen sweep",
        positional="file",
        epilog=epilog,
        aliases={
            "--sweep-id": "--sweep_id",
            "--no-check": "--no_check",
            "--devices-per-trial": "--devices_per_trial",
            "--cpus-per-trial": "--cpus_per_trial",
            "--gpus-per-trial": "--gpus_per_trial",
        },
    )
    spec = load_sweep(args.file)
    trials = args.trials or int(spec.raw.get("run_cap") or (len(grid_points(spec)) if spec.method == "grid" else 10))
    if trials < 1 or args.workers < 1 or args.heartbeat < 1:
        raise ConfigError("`--trials`, `--workers` and `--heartbeat` must be >= 1.")
    backend = args.backend
    if backend == "auto":
        from lightning_gen.loggers.wandb import resolve_wandb_mode

        backend = "wandb" if resolve_wandb_mode("auto")[0] == "online" else "optuna"
    if args.devices_per_trial and backend != "optuna":
        raise ConfigError(
            f"`--devices-per-trial` places trials of `--backend optuna`, not {backend}: a W&B agent's trials see "
            "the agent's devices, so give each agent its own `CUDA_VISIBLE_DEVICES`."
        )
    ray_only = [
        flag for flag, given in (("--gpus-per-trial", args.gpus_per_trial), ("--address", args.address)) if given
    ]
    if ray_only and backend != "ray":
        raise ConfigError(
            f"{' and '.join(f'`{f}`' for f in ray_only)} place trials on a Ray cluster, not with `--backend {backend}`: "
            "add `--backend ray`, or for Optuna give each running trial its devices with `--devices-per-trial`."
        )
    if backend == "ray":  # its dry run (the same check as below) overlaps the cluster's start
        from lightning_gen.sweeps.ray_backend import print_ray_summary, run_ray

        if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
            raise ConfigError("`--cpus-per-trial` must be > 0 and `--gpus-per-trial` >= 0.")
        results = run_ray(
            spec, trials, extra, args.cpus_per_trial, args.gpus_per_trial, args.address, args.seed, args.check
        )
        print_ray_summary(results, spec)
        return
    devices = TrialDevices(args.workers, args.devices_per_trial)  # too few devices: refused before any trial
    if args.check:
        check_command(spec, first_values(spec), extra)
    if backend == "wandb":
        sweep_id = run_wandb(spec, trials, args.sweep_id, args.project, args.entity)
        print(f"W&B sweep {sweep_id}: compare with `lightning-gen compare --sweep {spec.name}` or in the W&B UI.")
        return
    storage = args.storage or default_storage(args.root, spec.name)
    study = run_optuna(spec, trials, storage, args.workers, args.heartbeat, args.seed, extra, devices)
    print_summary(study, spec, storage)
