"""The run plan: what the Trainer of one command gets, computed from the parsed config alone.

:func:`plan_run` is pure (it reads no file, environment or network, and writes nothing): from
the subcommand, the ``run:`` options, the ``trainer:`` section, the model and the checked
checkpoint it decides the run dir, the loggers, checkpointing, the run's callbacks, plugins and
the strategy. The CLI applies the plan: it sets :attr:`RunPlan.env` for the DDP ranks, takes the
lock, and passes :meth:`RunPlan.trainer_kwargs` to the Trainer, which builds the loggers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ModelSummary, ProgressBar, RichProgressBar
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment

from lightning_gen.callbacks.final_validation import FinalValidation
from lightning_gen.callbacks.model_summary import ParameterSummary
from lightning_gen.loggers.resumable_csv import ResumableCSVLogger
from lightning_gen.loggers.wandb import WandbLogger, wandb_resume_kwargs
from lightning_gen.runs import env
from lightning_gen.runs.buffer_sync import BroadcastBuffers
from lightning_gen.runs.checkpoints import AtomicCheckpointIO
from lightning_gen.runs.finite_guard import FiniteGuard
from lightning_gen.runs.layout import CHECKPOINT_DIR, RunIdentity
from lightning_gen.runs.options import RunOptions
from lightning_gen.runs.preemption import PreemptionCheckpoint
from lightning_gen.runs.resume import Resume
from lightning_gen.runs.run_state import RunState
from lightning_gen.runs.step_checkpoint import StepCheckpoint
from lightning_gen.runs.strategy import ddp_strategy


@dataclass(frozen=True)
class RunPlan:
    """Everything the CLI applies for one command (see :func:`plan_run`)."""

    identity: RunIdentity
    options: RunOptions
    env: dict[str, str]  # for the DDP ranks, which re-run the CLI and must pick the same dir
    lock: bool  # fit on the launching rank: take ``<run dir>/.lock``
    require_empty_dir: bool  # a new run: refuse a run dir that holds another run's records
    resume: Resume | None
    trainer_kwargs_fixed: dict[str, Any] = field(default_factory=dict)
    build_loggers: bool = True

    def loggers(self) -> list[Logger]:
        """W&B (unless disabled) first, so ``trainer.log_dir`` is the run dir; CSV always; TensorBoard on request.

        A resumed run continues its loggers: the CSV history is cut at the checkpoint's logger
        step and the W&B run with the same id is reopened. An evaluation logs to its sub-run
        folder, as a W&B run of its own (id ``<run id>-<folder name>``, job type = the stage).
        """
        ident, options = self.identity, self.options
        run_id = ident.run_id or ident.name
        continuing = self.resume is not None and self.resume.run_id == run_id and not ident.evaluation
        loggers: list[Logger] = []
        if options.wandb != "disabled":
            if ident.evaluation:
                wandb_id, job_type, resume_kwargs = (
                    f"{run_id}-{ident.run_dir.name}",
                    ident.run_dir.name.split("-")[0],
                    {},
                )
            else:
                wandb_id, job_type = run_id, "train"
                resume_kwargs = (
                    wandb_resume_kwargs(
                        options.wandb,
                        options.project,
                        run_id,
                        self.resume.log_step,
                        options.wandb_rewind,
                        run_dir=ident.run_dir.resolve(),
                    )
                    if continuing
                    else {}
                )
            loggers.append(
                WandbLogger(
                    mode=options.wandb,
                    project=options.project,
                    name=f"{ident.name}/{wandb_id}",
                    id=wandb_id,
                    save_dir=str(ident.run_dir.resolve()),  # W&B resolves relative dirs from its own service's cwd
                    group=options.group or ident.name,
                    tags=list(options.tags) or None,
                    job_type=job_type,
                    **resume_kwargs,
                )
            )
        keep = self.resume.log_step if continuing else None
        loggers.append(ResumableCSVLogger(save_dir=str(ident.run_dir), keep_until_step=keep))
        if options.tensorboard:
            loggers.append(TensorBoardLogger(save_dir=str(ident.run_dir), name="tensorboard", version=""))
        return loggers

    def trainer_kwargs(self) -> dict[str, Any]:
        """The Trainer arguments this plan sets (the loggers are built here, as the last step)."""
        kwargs = dict(self.trainer_kwargs_fixed)
        if self.build_loggers:
            kwargs["logger"] = self.loggers()
        return kwargs


def plan_run(
    subcommand: str | None,
    identity: RunIdentity,
    options: RunOptions,
    trainer_config: Mapping[str, Any],
    model: Any,
    resume: Resume | None = None,
    *,
    ckpt_arg: str | None = None,
    launching_rank_zero: bool = True,
    slurm: bool = False,
    progress_bar: bool = False,
    extra_callbacks: tuple[Callback, ...] = (),
) -> RunPlan:
    """The plan for one command, from the parsed config (pure: no file, environment or network access).

    Args:
        subcommand: ``fit``, ``validate``, ``test``, ``predict`` (``None``: only instantiate).
        identity: The run dir and ids (:func:`lightning_gen.runs.layout.run_identity`).
        options: The ``run:`` section.
        trainer_config: The ``trainer:`` section as parsed; a value set there wins over the plan's.
        model: The instantiated LightningModule (its contract's ``monitor`` and DDP needs).
        resume: ``fit`` continuing a checkpoint (``--ckpt_path``), checked.
        ckpt_arg: ``--ckpt_path`` as given (``last`` may start a new run in an existing dir).
        launching_rank_zero: This process is the launcher (it takes the lock).
        slurm: Running under SLURM (Lightning's environment, with our own requeue).
        progress_bar: Show a rich bar (an interactive terminal, or ``run.progress=rich``).
        extra_callbacks: Callbacks the environment asks for (a sweep trial's reporter).
    """
    run_dir = identity.run_dir
    fixed = _fixed_trainer_kwargs(
        subcommand, identity, options, trainer_config, model, slurm, progress_bar, extra_callbacks
    )
    child_env = {env.EVAL_DIR: str(run_dir)} if identity.evaluation else {env.RUN_ID: str(identity.run_id)}
    is_fit_writer = subcommand == "fit" and launching_rank_zero and not identity.evaluation
    continuing = resume is not None and resume.run_id == identity.run_id
    return RunPlan(
        identity=identity,
        options=options,
        env=child_env,
        lock=is_fit_writer,
        require_empty_dir=is_fit_writer and not continuing and ckpt_arg != "last",
        resume=resume,
        trainer_kwargs_fixed=fixed,
        build_loggers=trainer_config.get("logger") is None,
    )


def _fixed_trainer_kwargs(
    subcommand: str | None,
    identity: RunIdentity,
    options: RunOptions,
    trainer_config: Mapping[str, Any],
    model: Any,
    slurm: bool,
    progress_bar: bool,
    extra_callbacks: tuple[Callback, ...],
) -> dict[str, Any]:
    """The Trainer arguments the plan sets where the ``trainer:`` section leaves them unset: root dir, plugins,
    callbacks, progress bar and the DDP strategy."""
    fixed: dict[str, Any] = {}
    if trainer_config.get("default_root_dir") is None:
        fixed["default_root_dir"] = str(identity.run_dir)
    if trainer_config.get("plugins") is None:
        fixed["plugins"] = [AtomicCheckpointIO()] + ([SLURMEnvironment(auto_requeue=False)] if slurm else [])
    callbacks = _callbacks(subcommand, identity, options, trainer_config, model, extra_callbacks)
    if trainer_config.get("enable_progress_bar") is not False and not any(
        isinstance(c, ProgressBar) for c in callbacks
    ):
        if progress_bar:
            callbacks.append(RichProgressBar(refresh_rate=options.progress_refresh_steps, leave=True))
        else:
            fixed["enable_progress_bar"] = False
    if subcommand == "fit" and trainer_config.get("enable_model_summary") is not False:
        if not any(isinstance(c, ModelSummary) for c in callbacks):
            callbacks.append(ParameterSummary())  # one line, not Lightning's table (its FLOPs column reads 0)
        fixed["enable_model_summary"] = False  # Lightning adds no table of its own, nor a line saying it skipped it
    fixed["callbacks"] = callbacks
    fixed["strategy"] = ddp_strategy(  # DDP with a collective timeout in minutes
        trainer_config.get("strategy", "auto"),
        options.collective_timeout_min,
        model,
        trainer_config.get("devices", "auto"),
        trainer_config.get("num_nodes", 1),
        trainer_config.get("accelerator", "auto"),
    )
    return fixed


def _callbacks(
    subcommand: str | None,
    identity: RunIdentity,
    options: RunOptions,
    trainer_config: Mapping[str, Any],
    model: Any,
    extra_callbacks: tuple[Callback, ...],
) -> list[Callback]:
    """The config's callbacks, then the run's own (a training run with checkpointing), then the extra ones (fit)."""
    callbacks = list(trainer_config.get("callbacks") or [])
    if trainer_config.get("enable_checkpointing") is not False and not identity.evaluation:
        has_checkpoint = any(isinstance(c, ModelCheckpoint) for c in callbacks)
        callbacks += _run_callbacks(identity, options, model, has_checkpoint)
    if subcommand == "fit":
        callbacks += [FinalValidation(), *extra_callbacks]  # every fit ends validating its final weights
    return callbacks


def _run_callbacks(identity: RunIdentity, options: RunOptions, model: Any, has_checkpoint: bool) -> list[Callback]:
    """Best + last checkpoints (unless the config brings its own), run state, preemption save, finite guard."""
    checkpoint_dir = str(identity.run_dir / CHECKPOINT_DIR)
    callbacks: list[Callback] = []
    if not has_checkpoint:
        monitor, mode = model.monitor  # the generator contract: a class attribute of every family
        callbacks.append(  # best (by the model's monitor) and last (every epoch)
            ModelCheckpoint(
                dirpath=checkpoint_dir,
                filename="{epoch}-{step}",
                monitor=monitor,
                mode=mode,
                save_top_k=1,
                save_last=True,
                enable_version_counter=False,
            )
        )
        if options.checkpoint_every_n_steps:  # last also every N steps: a killed run loses at most N steps
            callbacks.append(
                StepCheckpoint(
                    dirpath=checkpoint_dir,
                    save_top_k=0,
                    save_last=True,
                    enable_version_counter=False,
                    every_n_train_steps=options.checkpoint_every_n_steps,
                )
            )
        if options.checkpoint_every_min:  # and by training time: a kill without warning loses at most that
            callbacks.append(
                StepCheckpoint(
                    dirpath=checkpoint_dir,
                    save_top_k=0,
                    save_last=True,
                    enable_version_counter=False,
                    train_time_interval=timedelta(minutes=options.checkpoint_every_min),
                )
            )
    callbacks.append(RunState(run_id=str(identity.run_id), run_dir=str(identity.run_dir), experiment=identity.name))
    callbacks.append(PreemptionCheckpoint(dirpath=checkpoint_dir, exit_grace_s=options.stop_grace_s))
    callbacks.append(FiniteGuard(dirpath=checkpoint_dir))  # NaN/inf loss stops the run; never saved
    callbacks.append(BroadcastBuffers())  # DDP: every rank validates with the checkpoint's buffers
    return callbacks
