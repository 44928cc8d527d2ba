"""Where a run lives: its id, ``<root>/<name>/<id>/``, and the evaluation sub-runs under ``eval/``.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.csv`` + ``hparams.yaml``
(CSV logger), ``wandb/`` (the W&B run, online or offline), ``checkpoints/``, ``samples/`` and ``devices.jsonl``.
Only ``fit`` writes them, holding ``.lock`` (:mod:`lightning_gen.runs.lock`); ``test``/``validate``/
``predict`` write a sub-run ``eval/<stage>-<timestamp>-<xxxx>/`` of the run they evaluate.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from gen_common.errors import ConfigError, LightningGenError
from gen_common.ranks import launching_rank_zero
from lightning_gen.runs import env
from lightning_gen.runs.options import RunOptions

#: subcommands that evaluate a run: they write their own sub-run, never into the training run
EVAL_STAGES = ("test", "validate", "predict")

CHECKPOINT_DIR = "checkpoints"  # <run dir>/checkpoints: last.ckpt and the best one


@dataclass(frozen=True)
class RunIdentity:
    """Which run a command writes: ``run_dir`` (a sub-run folder for evaluations) and the training run's id.

    ``evaluation`` is true for ``test``/``validate``/``predict``; ``run_id`` is then the evaluated
    run's id, or ``None`` for a checkpoint of no known run.
    """

    run_dir: Path
    run_id: str | None
    name: str
    evaluation: bool = False


def new_run_id() -> str:
    """A sortable, unique run id, or the one the launching process chose (DDP children)."""
    if os.environ.get(env.RUN_ID):
        return os.environ[env.RUN_ID]
    if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):  # a W&B agent's trial: its run id
        return os.environ["WANDB_RUN_ID"]
    if (
        os.environ.get("SLURM_JOB_ID")
        and os.environ.get("SLURM_STEP_ID")
        and int(os.environ.get("SLURM_NTASKS", "1")) > 1
    ):
        return f"slurm-{os.environ['SLURM_JOB_ID']}"  # every srun task, every node, every requeue
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # ranks started by torchrun & co. cannot agree on a new id
        raise ConfigError(
            f"{os.environ['WORLD_SIZE']} processes were launched outside Lightning: give them one run with "
            f"`--run.id NAME` or env {env.RUN_ID}=NAME (scripts/torchrun.sh does this)."
        )
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_directory(options: RunOptions, name: str, run_id: str) -> Path:
    return Path(options.root) / name / run_id


def find_last_checkpoint(options: RunOptions, name: str) -> Path | None:
    """``<root>/<name>/<id>/checkpoints/last.ckpt`` of ``options.id``, or of the newest run that has one."""
    if options.id:
        path = run_directory(options, name, options.id) / CHECKPOINT_DIR / "last.ckpt"
        return path if path.exists() else None
    candidates = sorted(Path(options.root, name).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def owning_run_dir(
    options: RunOptions, name: str, ckpt_path: Path | None = None, ckpt_run_id: str | None = None
) -> tuple[Path, str | None]:
    """The training run an evaluation belongs to, ``(run dir, run id)``: the checkpoint's run (``ckpt_path``, and
    the run id it carries), else ``--run.id``'s.

    A checkpoint inside ``<run dir>/checkpoints/`` names its run by location (also after the run
    folder was moved); a foreign checkpoint or none at all with no ``--run.id`` gives
    ``(<root>/<name>, None)`` (the experiment's folder).
    """
    if ckpt_path is not None:
        folder = ckpt_path.parent
        if folder.name == "checkpoints" and (ckpt_run_id is None or folder.parent.name == ckpt_run_id):
            return folder.parent, folder.parent.name
        if ckpt_run_id:
            return run_directory(options, name, ckpt_run_id), ckpt_run_id
    return (run_directory(options, name, options.id), options.id) if options.id else (Path(options.root, name), None)


def evaluation_dir(owner: Path, stage: str) -> Path:
    """``<owner>/eval/<stage>-<YYYYmmdd-HHMMSS>-<xxxx>``: a new folder for one test/validate/predict run."""
    if os.environ.get(env.EVAL_DIR) and not launching_rank_zero():  # a DDP rank started by the launching process
        return Path(os.environ[env.EVAL_DIR])
    return owner / "eval" / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse to start a new run in a folder that already holds a run's records (it would replace them)."""
    records = [n for n in ("metrics.csv", "config.yaml", "checkpoints", "wandb") if (run_dir / n).exists()]
    if records:
        raise LightningGenError(
            f"Run dir {run_dir} already holds a run ({', '.join(records)}); a new `fit` there would replace its records. "
            "Nothing was written. Continue that run with `--ckpt_path last`, or start a new one with another "
            "`--run.id` (or none: a new id is made)."
        )


def run_identity(
    subcommand: str | None,
    options: RunOptions,
    name: str,
    ckpt_path: Path | None = None,
    ckpt_run_id: str | None = None,
) -> RunIdentity:
    """The run this command writes: a new or continued run for ``fit``, a new sub-run for an evaluation.

    ``ckpt_path``/``ckpt_run_id``: the checked ``--ckpt_path`` and the run id it carries, if any.
    """
    if subcommand in EVAL_STAGES:  # a sub-run of the evaluated run: its records stay untouched
        owner, owner_id = owning_run_dir(options, name, ckpt_path, ckpt_run_id)
        return RunIdentity(evaluation_dir(owner, subcommand), owner_id, name, evaluation=True)
    run_id = options.id or new_run_id()
    return RunIdentity(run_directory(options, name, run_id), run_id, name)
