"""Run management: where a run writes (``runs/<name>/<id>/``), which loggers it gets, and resume.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.csv`` + ``hparams.yaml``
(CSV logger), ``wandb/`` (the W&B run, online or offline), ``checkpoints/`` and ``samples/``.
Only ``fit`` writes them, holding ``.lock`` (:mod:`lightning_gen.run_lock`); ``test``/``validate``/
``predict`` write a sub-run ``eval/<stage>-<timestamp>-<xxxx>/`` of the run they evaluate.

Resume (``fit --ckpt_path last`` or a path): :func:`resolve_resume` finds the checkpoint, checks
it (readable, same model class) before anything is written, and returns the run it belongs to
(stored in the checkpoint by :class:`~lightning_gen.callbacks.run_state.RunState`), so the
resumed run writes into the same directory, CSV history and W&B run.
"""
from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.loggers import Logger, TensorBoardLogger

from lightning_gen.errors import ConfigError, LightningGenError
from lightning_gen.loggers.resumable_csv import ResumableCSVLogger
from lightning_gen.loggers.wandb import WandbLogger
from lightning_gen.run_lock import launching_rank_zero

RUN_ID_ENV = "LIGHTNING_GEN_RUN_ID"  # shared with DDP child processes, so every rank uses one run dir


@dataclass
class RunOptions:
    """The ``run:`` section of a config: run directory and default loggers.

    Args:
        root: Folder that holds all runs.
        name: Experiment name; default: the stem of the first ``--config`` file.
        id: Run id (directory name and W&B run id); default: a new ``YYYYmmdd-HHMMSS-xxxx``.
        wandb: ``auto`` (online with an API key and network, else offline), ``online``,
            ``offline`` or ``disabled``.
        project: W&B project.
        group: W&B group (default: the experiment name).
        tags: W&B tags.
        tensorboard: Also log to TensorBoard in ``<run dir>/tensorboard``.
        checkpoint_every_n_steps: Also refresh ``checkpoints/last.ckpt`` every this many
            optimizer steps (0: only at epoch ends), so a killed run loses at most that many steps.
        lock_wait_s: When another live process holds the run dir (``<run dir>/.lock``), wait this
            many seconds for it to finish before giving up (a retried sweep trial waits for its
            killed predecessor to save); 0: fail at once.
        wandb_rewind: On an online resume, rewind the W&B run (``resume_from``) to its first row
            logged after the checkpoint, so those rows are replaced; off: ``resume="must"``.
        progress: ``auto`` (a rich bar in an interactive terminal, none in CI/pipes), ``rich`` or ``none``.
        progress_refresh_steps: Redraw the bar every this many batches (the bar costs CPU time).
        collective_timeout_min: Under DDP, a rank waiting this many minutes in a collective (a peer
            stuck or gone) fails instead of hanging; longer than any work one rank does alone.
        stop_grace_s: After SIGTERM/SIGUSR1/Ctrl-C the run saves ``last.ckpt`` at the next batch end
            and exits; a process still alive this many seconds after the signal (stuck in C code,
            e.g. a collective) is ended with status 128 + signal. 0: never. Longer than a batch + a save.
    """

    root: str = "runs"
    name: str | None = None
    id: str | None = None
    wandb: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = "lightning_gen"
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    tensorboard: bool = False
    checkpoint_every_n_steps: int = 0
    lock_wait_s: float = 0.0
    wandb_rewind: bool = True
    progress: Literal["auto", "rich", "none"] = "auto"
    progress_refresh_steps: int = 10
    collective_timeout_min: float = 10.0
    stop_grace_s: float = 60.0

    def __post_init__(self) -> None:
        if self.checkpoint_every_n_steps < 0:
            raise ConfigError(f"`--run.checkpoint_every_n_steps` must be >= 0, got {self.checkpoint_every_n_steps}.")
        if self.lock_wait_s < 0:
            raise ConfigError(f"`--run.lock_wait_s` must be >= 0, got {self.lock_wait_s}.")
        if self.progress_refresh_steps < 1:
            raise ConfigError(f"`--run.progress_refresh_steps` must be >= 1, got {self.progress_refresh_steps}.")


#: key of the run metadata a checkpoint carries (written by ``RunState``)
CHECKPOINT_KEY = "lightning_gen"


@dataclass
class Resume:
    """A checkpoint to continue from and the run it belongs to.

    Attributes:
        ckpt_path: The checkpoint file.
        run_id: Its run id (directory name and W&B id), or ``None`` for a foreign checkpoint.
        log_step: Logger step stored at save time; rows logged after it are dropped on resume.
    """

    ckpt_path: Path
    run_id: str | None
    log_step: int | None = None
    checkpoint: dict[str, Any] | None = field(default=None, repr=False)  # the loaded file, for the checks below


def new_run_id() -> str:
    """A sortable, unique run id, or the one the launching process chose (DDP children)."""
    if os.environ.get(RUN_ID_ENV):
        return os.environ[RUN_ID_ENV]
    if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):  # a W&B agent's trial: its run id
        return os.environ["WANDB_RUN_ID"]
    if os.environ.get("SLURM_JOB_ID") and os.environ.get("SLURM_STEP_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return f"slurm-{os.environ['SLURM_JOB_ID']}"  # every srun task, every node, every requeue
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # ranks started by torchrun & co. cannot agree on a new id
        raise ConfigError(
            f"{os.environ['WORLD_SIZE']} processes were launched outside Lightning: give them one run with "
            f"`--run.id NAME` or env {RUN_ID_ENV}=NAME (scripts/torchrun.sh does this)."
        )
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_directory(options: RunOptions, name: str, run_id: str) -> Path:
    return Path(options.root) / name / run_id


def find_last_checkpoint(options: RunOptions, name: str) -> Path | None:
    """``<root>/<name>/<id>/checkpoints/last.ckpt`` of ``options.id``, or of the newest run that has one."""
    if options.id:
        path = run_directory(options, name, options.id) / "checkpoints" / "last.ckpt"
        return path if path.exists() else None
    candidates = sorted(Path(options.root, name).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def load_checkpoint_checked(path: str | os.PathLike, model_class_path: str | None = None, flag: str = "--ckpt_path") -> dict[str, Any]:
    """Load a checkpoint (memory-mapped) or raise one clear error: missing, corrupt, other model class.

    ``flag``: the option that named the file, for the advice in the messages.
    """
    import torch

    path = Path(path)
    if path.is_dir() and (path / "meta.pt").is_file():  # a sharded (FSDP) checkpoint: check its metadata
        sharded, path = path, path / "meta.pt"
    else:
        sharded = None
    if not path.is_file():
        raise ConfigError(f"Checkpoint {path} does not exist; pass an existing file or `--ckpt_path last`.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=sharded is None)
    except Exception as err:  # truncated zip, garbage bytes, pickle errors
        others = sorted(p.name for p in path.parent.glob("*.ckpt") if p != path)
        raise LightningGenError(
            f"Checkpoint {path} is truncated or corrupt and cannot be loaded ({type(err).__name__}: {str(err)[:160]}). "
            f"Nothing was written. Pass another checkpoint of that run to {flag} ({', '.join(others) or 'none found'}) "
            f"or start a new run without {flag}."
        ) from None
    if not isinstance(checkpoint, dict) or ("state_dict" not in checkpoint and sharded is None):
        raise LightningGenError(f"{path} is not a Lightning checkpoint (no `state_dict`). Nothing was written.")
    saved_class = (checkpoint.get(CHECKPOINT_KEY) or {}).get("model_class")
    if model_class_path and saved_class and not _same_class(saved_class, model_class_path):
        raise ConfigError(
            f"Checkpoint {path} holds a {saved_class} but the config's model is {model_class_path}. "
            f"Use the config the checkpoint was trained with (its run dir has config.yaml) or set "
            f"`--model.class_path {saved_class}`. Nothing was written."
        )
    return checkpoint


def _same_class(a: str, b: str) -> bool:
    """Whether two import paths name one class (``pkg.VAE`` re-exports ``pkg.vae.VAE``); unimportable paths compare as text."""
    from lightning_gen.utils.imports import import_object

    def load(path: str) -> Any:
        try:
            return import_object(path, "model class")
        except ConfigError:
            return path

    return a == b or load(a) is load(b)


def resolve_resume(ckpt_path: str, options: RunOptions, name: str, model_class_path: str | None) -> Resume | None:
    """Turn ``--ckpt_path`` (``last`` or a file) into a checked :class:`Resume`.

    ``last`` with no checkpoint yet returns ``None`` (a fresh run; convenient for requeued jobs
    that always pass ``--ckpt_path last``).
    """
    if ckpt_path == "last":
        path = find_last_checkpoint(options, name)
        if path is None:
            where = run_directory(options, name, options.id) if options.id else Path(options.root, name)
            print(f"lightning-gen: no last.ckpt under {where}; starting a new run.")
            return None
    else:
        path = Path(ckpt_path)
    checkpoint = load_checkpoint_checked(path, model_class_path)
    meta = checkpoint.get(CHECKPOINT_KEY) or {}  # (a sharded checkpoint's folder resumes as the folder)
    return Resume(ckpt_path=path, run_id=meta.get("run_id"), log_step=meta.get("log_step"), checkpoint=checkpoint)


def default_loggers(options: RunOptions, name: str, run_id: str, resume: Resume | None = None, evaluation: Path | None = None) -> list[Logger]:
    """W&B (unless disabled) first, so ``trainer.log_dir`` is the run dir; CSV always; TensorBoard on request.

    With ``resume`` the loggers continue the run: the CSV history is cut at the checkpoint and
    the W&B run with the same id is reopened (see :func:`wandb_resume_kwargs`). With
    ``evaluation`` (a sub-run folder from :func:`evaluation_dir`) they write there instead, as a
    W&B run of their own (id ``<run id>-<folder name>``, job type = the stage).
    """
    run_dir = evaluation if evaluation is not None else run_directory(options, name, run_id)
    loggers: list[Logger] = []
    if options.wandb != "disabled":
        wandb_id, job_type = (f"{run_id}-{evaluation.name}", evaluation.name.split("-")[0]) if evaluation is not None else (run_id, "train")
        loggers.append(
            WandbLogger(
                mode=options.wandb,
                project=options.project,
                name=f"{name}/{wandb_id}",
                id=wandb_id,
                save_dir=str(run_dir.resolve()),  # W&B resolves relative dirs from its own service's cwd
                group=options.group or name,
                tags=list(options.tags) or None,
                job_type=job_type,
                **(wandb_resume_kwargs(options, run_id, resume) if evaluation is None else {}),
            )
        )
    keep = resume.log_step if resume is not None and resume.run_id == run_id and evaluation is None else None
    loggers.append(ResumableCSVLogger(save_dir=str(run_dir), keep_until_step=keep))
    if options.tensorboard:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    return loggers


def wandb_resume_kwargs(options: RunOptions, run_id: str, resume: Resume | None) -> dict[str, Any]:
    """``wandb.init`` arguments that continue run ``run_id``.

    Online: ``resume_from="<id>?_step=<k>"`` (W&B rewind) where ``k`` is the run's first row with
    ``trainer/global_step`` after the checkpoint's logger step (read with the W&B API, time-boxed),
    so the rows logged between the checkpoint and the crash are replaced; ``resume="must"`` when
    nothing needs dropping, the API cannot tell, or ``run.wandb_rewind`` is off.
    Offline, W&B cannot reopen a run (``resume`` is not checked offline): it writes a new
    ``offline-run-*-<id>`` folder (a *segment*) with the same id and ``_step`` from 0.
    ``trainer/global_step`` (Lightning's x-axis in W&B) continues from the checkpoint;
    ``wandb sync --id <id> seg1 seg2 ...`` uploads the segments in start order into one run.
    The earlier segment still holds the rows logged between the checkpoint and the crash
    (W&B's offline ``.wandb`` log cannot be rewritten with its public API); the local
    ``metrics.csv`` is the exact, truncated history.
    """
    if resume is None or resume.run_id != run_id:
        return {}
    from lightning_gen.loggers.wandb import resolve_wandb_mode

    mode, _ = resolve_wandb_mode(options.wandb if options.wandb != "disabled" else "offline")
    if mode != "online":
        if mode == "offline":
            print(
                f"W&B offline cannot reopen run {run_id}: this resume is written as a new offline segment with the same id. "
                f"Upload all segments in order into one run with `wandb sync --id {run_id} -p {options.project} <run dir>/wandb/offline-run-*`."
            )
        return {}
    if options.wandb_rewind and resume.log_step is not None:
        k = first_wandb_row_after(options.project, run_id, resume.log_step)
        if k is not None:
            return {"resume": None, "resume_from": f"{run_id}?_step={k}"}
    return {"resume": "must"}


def first_wandb_row_after(project: str, run_id: str, log_step: int, timeout_s: float = 20.0) -> int | None:
    """``_step`` of the online run's first history row with ``trainer/global_step > log_step``.

    ``None`` if there is none (nothing to rewind) or the W&B API fails (no network, no run).
    """
    try:
        import wandb

        api = wandb.Api(timeout=int(timeout_s))
        run = api.run(f"{api.default_entity}/{project}/{run_id}")
        for row in run.scan_history(keys=["_step", "trainer/global_step"]):
            if row["trainer/global_step"] > log_step:
                return int(row["_step"])
    except Exception as err:  # noqa: BLE001 - any API failure means "resume without rewind"
        print(f"lightning-gen: W&B rewind point unknown ({type(err).__name__}); resuming run {run_id} with resume='must'.")
    return None


#: set by the launching process so the DDP ranks it starts write one evaluation sub-run
EVAL_DIR_ENV = "LIGHTNING_GEN_EVAL_DIR"


def owning_run_dir(options: RunOptions, name: str, resume: Resume | None) -> tuple[Path, str | None]:
    """The training run an evaluation belongs to, ``(run dir, run id)``: the checkpoint's run, else ``--run.id``'s.

    A checkpoint inside ``<run dir>/checkpoints/`` names its run by location (also after the run
    folder was moved); a foreign checkpoint or none at all with no ``--run.id`` gives
    ``(<root>/<name>, None)`` (the experiment's folder).
    """
    if resume is not None:
        folder = resume.ckpt_path.parent
        if folder.name == "checkpoints" and (resume.run_id is None or folder.parent.name == resume.run_id):
            return folder.parent, folder.parent.name
        if resume.run_id:
            return run_directory(options, name, resume.run_id), resume.run_id
    return (run_directory(options, name, options.id), options.id) if options.id else (Path(options.root, name), None)


def evaluation_dir(owner: Path, stage: str) -> Path:
    """``<owner>/eval/<stage>-<YYYYmmdd-HHMMSS>-<xxxx>``: a new folder for one test/validate/predict run."""
    if os.environ.get(EVAL_DIR_ENV) and not launching_rank_zero():  # a DDP rank started by the launching process
        return Path(os.environ[EVAL_DIR_ENV])
    return owner / "eval" / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _run_config_hint(resume: Resume) -> str:
    meta = (resume.checkpoint or {}).get(CHECKPOINT_KEY) or {}
    candidates = [resume.ckpt_path.parent.parent / "config.yaml"]
    if meta.get("run_dir"):
        candidates.append(Path(meta["run_dir"]) / "config.yaml")
    found = next((p for p in candidates if p.is_file()), None)
    return f"`--config {found}`" if found else "the run's config.yaml"


def check_checkpoint_fits(model: Any, resume: Resume) -> None:
    """Raise one paragraph when the checkpoint's weights cannot load into ``model`` (before anything is written).

    Compares parameter names and shapes of ``model.state_dict()`` (as the config built it) with
    the checkpoint's ``state_dict``, as Lightning's strict load would, but up front.
    """
    import torch

    from lightning_gen.init_from import state_dict_misfits  # (init_from imports this module)

    saved = (resume.checkpoint or {}).get("state_dict")
    if not isinstance(saved, dict) or not isinstance(model, torch.nn.Module):
        return  # a sharded checkpoint (metadata only) is checked by the strategy that loads it
    problems = state_dict_misfits(saved, model.state_dict(), getattr(model, "strict_loading", True))
    if not problems:
        return
    shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
    raise LightningGenError(
        f"Checkpoint {resume.ckpt_path} does not fit the model this config builds ({len(problems)} parameter(s) differ: {shown}). "
        f"Nothing was written. Use the configuration it was trained with ({_run_config_hint(resume)}, without "
        "overriding model sizes), or start a new run with this model: drop `--ckpt_path` (and give it its own `--run.id`)."
    )


def check_resume_trains(resume: Resume, max_epochs: int | None, max_steps: int, max_time: Any = None) -> None:
    """Raise one paragraph when resuming ``resume`` would train 0 steps (a limit is already reached).

    Mirrors Lightning's ``FitLoop.done`` on the restored loop state: ``max_steps`` against the
    checkpoint's ``global_step``, ``max_epochs`` (Lightning's default: 1000 when neither limit
    is set) against its processed epochs.
    """
    checkpoint = resume.checkpoint or {}
    try:
        epochs_done = int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
        step = int(checkpoint["global_step"])
    except (KeyError, TypeError, ValueError):
        return  # not a Lightning fit checkpoint: nothing to tell in advance
    if max_epochs is None:
        max_epochs = 1000 if max_steps == -1 and max_time is None else -1
    reached = []
    if max_steps != -1 and step >= max_steps:
        reached.append(f"`max_steps={max_steps}` (the checkpoint is at step {step}): raise `--trainer.max_steps`")
    if max_epochs != -1 and epochs_done >= max_epochs:
        fix = "raise `--trainer.max_epochs`"
        if max_steps != -1 and step < max_steps:
            fix += " (or set `--trainer.max_epochs=-1` so that `max_steps` alone decides)"
        reached.append(f"`max_epochs={max_epochs}` ({epochs_done} epoch(s) done): {fix}")
    if reached:
        raise LightningGenError(
            f"Resuming from {resume.ckpt_path} would train 0 steps: the run has already reached "
            f"{' and '.join(reached)}. Nothing was written. Run the same command with the higher limit to "
            "continue training, or `lightning-gen test`/`validate` to evaluate the checkpoint."
        )


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse to start a new run in a folder that already holds a run's records (it would replace them)."""
    records = [n for n in ("metrics.csv", "config.yaml", "checkpoints", "wandb") if (run_dir / n).exists()]
    if records:
        raise LightningGenError(
            f"Run dir {run_dir} already holds a run ({', '.join(records)}); a new `fit` there would replace its records. "
            "Nothing was written. Continue that run with `--ckpt_path last`, or start a new one with another "
            "`--run.id` (or none: a new id is made)."
        )
