"""``lightning-gen``: LightningCLI wiring of models, datamodules, loggers and run directories.

    lightning-gen fit --config experiments/vae_mnist.yaml [--trainer.max_epochs=1 ...]

Models and datamodules are chosen in subclass mode (``class_path``/``init_args``); values the
datamodule knows (``image_shape``) are linked into the model. The ``run:`` section
(:class:`~lightning_gen.run.RunOptions`) decides the run directory and default loggers.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.environments import SLURMEnvironment

from lightning_gen.checkpoint_io import AtomicCheckpointIO
from lightning_gen.__main__ import exit_on_user_error, run_tool
from lightning_gen.commands import TOOL_COMMANDS
from lightning_gen.callbacks.run_state import RunState
from lightning_gen.callbacks.step_checkpoint import StepCheckpoint
from lightning_gen.callbacks.sweep_trial import OptunaTrialReporter
from lightning_gen.errors import LightningGenError, UserError
from lightning_gen.loggers.wandb import check_forced_online
from lightning_gen.model_data import check_model_fits_data
from lightning_gen.init_from import InitSource, add_init_from_arguments, prepare_init_from
from lightning_gen.callbacks.finite_guard import FiniteGuard
from lightning_gen.preemption import PreemptionCheckpoint
from lightning_gen.precision import emulated_precision_notice
from lightning_gen.strategy import ddp_strategy
from lightning_gen.run import (
    EVAL_DIR_ENV, RUN_ID_ENV, Resume, RunOptions, check_checkpoint_fits, check_new_run_dir, check_resume_trains,
    default_loggers, evaluation_dir, new_run_id, owning_run_dir, resolve_resume, run_directory,
)
from lightning_gen.run_lock import RunLock, acquire_run_lock, launching_rank_zero

#: subcommands that evaluate a run: they write their own sub-run, never into the training run
EVAL_STAGES = ("test", "validate", "predict")


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Save ``config.yaml`` in the run dir and send the same resolved config to every logger."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = json.loads(self.parser.dump(self.config, skip_none=False, format="json"))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


class LightningGenCLI(LightningCLI):
    """LightningCLI with run directories, offline-first loggers, atomic checkpoints and links."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunOptions, "run")
        add_init_from_arguments(parser)  # --init_from CKPT: a new run from another run's weights
        parser.link_arguments("data.image_shape", "model.init_args.image_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """Resolve ``--ckpt_path`` (``last`` or a file) and check it before anything is written.

        ``fit`` continues the checkpoint's run: same run id, so same run dir, CSV and W&B run.
        """
        self.resume: Resume | None = None  # fit: the run to continue
        self.checkpoint: Resume | None = None  # any subcommand: the checkpoint to load, checked against the model
        self.ckpt_arg: str | None = None
        # --init_from: weights for a new run, checked here (build_cli(run=False) has no subcommand: its config is flat)
        self.init_source: InitSource | None = prepare_init_from(self.config[self.subcommand] if self.subcommand else self.config)
        if self.subcommand is None:
            return
        cfg = self.config[self.subcommand]
        model, data = cfg.get("model"), cfg.get("data")
        check_model_fits_data(model.get("class_path") if model else None, data.get("class_path") if data else None)
        if cfg.get("run") is not None:
            check_forced_online(cfg.run.wandb)  # no key or no server: one paragraph before anything is written
        ckpt_path = cfg.get("ckpt_path")
        if not ckpt_path:
            return
        self.ckpt_arg = str(ckpt_path)
        run = cfg.run
        options = RunOptions(root=run.root, id=run.id or os.environ.get(RUN_ID_ENV))  # DDP children: rank 0's run
        name = run.name or self._name_from_configs(cfg)
        model_class = cfg.model.class_path if cfg.get("model") is not None and "class_path" in cfg.model else None
        resume = resolve_resume(str(ckpt_path), options, name, model_class)
        cfg.ckpt_path = str(resume.ckpt_path) if resume is not None else None
        self.checkpoint = resume
        if resume is not None and self.subcommand == "fit":
            self.resume = resume
            if resume.run_id and not run.id:
                run.id = resume.run_id

    def _parse_ckpt_path(self) -> None:
        """Keep the config as given: Lightning would merge the checkpoint's saved hyperparameters
        into ``model`` here, which re-injects linked values the model does not take
        (``num_classes``) and crashes with a traceback on a corrupt file. The checkpoint is
        checked in :meth:`before_instantiate_classes` instead; the run's ``config.yaml`` is the
        record of its configuration."""

    @staticmethod
    def _name_from_configs(cfg: Any) -> str:
        configs = cfg.get("config") or []
        return Path(str(configs[0])).stem if configs else "default"

    def _experiment_name(self) -> str:
        options: RunOptions = self._get(self.config_init, "run")
        if options.name:
            return options.name
        configs = self._get(self.config, "config") or []
        return Path(str(configs[0])).stem if configs else "default"

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        options: RunOptions = self._get(self.config_init, "run")
        name = self._experiment_name()
        resume = getattr(self, "resume", None)
        self.run_lock: RunLock | None = None
        self.eval_dir: Path | None = None
        # Everything that can refuse this command runs before the first file is written.
        if getattr(self, "checkpoint", None) is not None:
            check_checkpoint_fits(self.model, self.checkpoint)
        if self.init_source is not None:  # a resumed run already holds its weights
            self.init_source.apply(self.model, resuming_from=self._get(self.config, "ckpt_path"))
        if resume is not None:
            check_resume_trains(resume, trainer_config.get("max_epochs"), trainer_config.get("max_steps", -1), trainer_config.get("max_time"))
        if self.subcommand is not None and launching_rank_zero() and self.datamodule is not None:
            # Missing or unreadable data is refused here: before any file is written and before DDP
            # starts the other ranks (which would otherwise wait for rank 0 at Lightning's barrier).
            self.datamodule.prepare_data()
        resolved = self._get(self.config, "run")  # the saved config.yaml names the run it belongs to
        if self.subcommand in EVAL_STAGES:  # a sub-run of the evaluated run: its records stay untouched
            owner, owner_id = owning_run_dir(options, name, getattr(self, "checkpoint", None))
            run_id = owner_id or name
            self.eval_dir = run_dir = evaluation_dir(owner, self.subcommand)
            os.environ[EVAL_DIR_ENV] = str(run_dir)  # DDP children re-run this CLI and must pick the same dir
            resolved.name, resolved.id = name, owner_id
        else:
            run_id = options.id or new_run_id()
            os.environ[RUN_ID_ENV] = run_id  # DDP children re-run this CLI and must pick the same dir
            run_dir = run_directory(options, name, run_id)
            resolved.name, resolved.id = name, run_id
            if self.subcommand == "fit" and launching_rank_zero():  # DDP: the ranks it starts write under its lock
                self._lock_run_dir(run_dir, options.lock_wait_s, continuing=resume is not None and resume.run_id == run_id)
        self.run_dir = run_dir
        if trainer_config.get("default_root_dir") is None:
            kwargs["default_root_dir"] = str(run_dir)
        if trainer_config.get("logger") is None:
            kwargs["logger"] = default_loggers(options, name, run_id, resume, evaluation=self.eval_dir)
        if trainer_config.get("plugins") is None:
            kwargs["plugins"] = [AtomicCheckpointIO()]
            if SLURMEnvironment.detect():  # requeue is scripts/slurm.sbatch's job, saving is ours
                kwargs["plugins"].append(SLURMEnvironment(auto_requeue=False))
        callbacks = list(trainer_config.get("callbacks") or [])
        checkpoint_dir = str(run_dir / "checkpoints")
        if trainer_config.get("enable_checkpointing") is not False and self.eval_dir is None:
            if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
                monitor, mode = self.model.monitor  # the generator contract: a class attribute of every family
                every = {"every_n_train_steps": options.checkpoint_every_n_steps} if options.checkpoint_every_n_steps else {}
                callbacks.append(  # best (by the model's monitor) and last (every epoch)
                    ModelCheckpoint(dirpath=checkpoint_dir, filename="{epoch}-{step}", monitor=monitor, mode=mode, save_top_k=1, save_last=True, enable_version_counter=False)
                )
                if every:  # last also every N steps: a killed run loses at most N steps
                    callbacks.append(StepCheckpoint(dirpath=checkpoint_dir, save_top_k=0, save_last=True, enable_version_counter=False, **every))
            callbacks.append(RunState(run_id=run_id, run_dir=str(run_dir), experiment=name))
            callbacks.append(PreemptionCheckpoint(dirpath=checkpoint_dir, exit_grace_s=options.stop_grace_s))
            callbacks.append(FiniteGuard(dirpath=checkpoint_dir))  # NaN/inf loss stops the run; never saved
        reporter = OptunaTrialReporter.from_env()  # set by `lightning-gen sweep --backend optuna`
        if reporter is not None and self.subcommand == "fit":
            callbacks.append(reporter)
        if trainer_config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            if _want_progress_bar(options.progress):
                callbacks.append(RichProgressBar(refresh_rate=options.progress_refresh_steps, leave=True))
            else:
                kwargs["enable_progress_bar"] = False
        kwargs["callbacks"] = callbacks
        kwargs["strategy"] = ddp_strategy(  # DDP with a collective timeout in minutes (lightning_gen/strategy.py)
            trainer_config.get("strategy", "auto"), options.collective_timeout_min, self.model,
            trainer_config.get("devices", "auto"), trainer_config.get("num_nodes", 1), trainer_config.get("accelerator", "auto"),
        )
        trainer = super().instantiate_trainer(**kwargs)
        notice = emulated_precision_notice(trainer.precision, isinstance(trainer.accelerator, CPUAccelerator))
        if notice and launching_rank_zero():  # DDP children re-run this CLI: say it once
            print(notice, file=sys.stderr)
        return trainer

    def _lock_run_dir(self, run_dir: Path, wait_s: float, continuing: bool) -> None:
        """A new run (not a resume, not ``--ckpt_path last``) must find the run dir empty; then take its lock."""
        if not continuing and self.ckpt_arg != "last":
            check_new_run_dir(run_dir)
        self.run_lock = acquire_run_lock(run_dir, command=f"lightning-gen {self.subcommand}", wait_s=wait_s)
        previous = self.run_lock.previous
        if previous:
            print(
                f"lightning-gen: took over {self.run_lock.path}: its holder, PID {previous.get('pid')} on "
                f"{previous.get('host')} (started {previous.get('started')}), no longer runs."
            )

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; release the run dir's lock however it ends; say where an evaluation wrote."""
        try:
            super()._run_subcommand(subcommand)
        finally:
            if getattr(self, "run_lock", None) is not None:
                self.run_lock.release()
        if getattr(self, "eval_dir", None) is not None and self.trainer.is_global_zero:
            run_id = self._get(self.config, "run").id
            records = [label for name, label in (("metrics.csv", "metrics.csv"), ("config.yaml", "config.yaml"), ("wandb", "W&B run")) if (self.eval_dir / name).exists()]
            print(
                f"lightning-gen: {subcommand} of {f'run {run_id}' if run_id else 'no training run'} written to {self.eval_dir} "
                f"({', '.join(records)}); the run's own files are unchanged."
            )


def _want_progress_bar(progress: str) -> bool:
    """``auto``: a bar only in an interactive terminal, never in CI or when output is piped."""
    if progress != "auto":
        return progress == "rich"
    return sys.stdout.isatty() and not os.environ.get("CI")


def build_cli(args: list[str] | None = None, run: bool = True) -> LightningGenCLI:
    """The CLI object (also for tests: ``build_cli([...], run=False)`` only instantiates)."""
    return LightningGenCLI(
        model_class=L.LightningModule,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LoggerSaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        auto_configure_optimizers=False,
        parser_kwargs={"env_prefix": "LIGHTNING_GEN", "default_env": False},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Console entry point: user errors print as one paragraph and exit with status 1."""
    # The CSV logger shares the run dir with W&B by design; its "dir not empty" warning is noise.
    warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] in TOOL_COMMANDS:
        run_tool(argv[0], argv[1:])
        return
    try:
        build_cli(args)  # None: LightningCLI reads sys.argv itself
    except (UserError, ValueError) as err:  # bad input (ours or the datamodules'), not a bug
        exit_on_user_error(err)  # a model's ConfigError arrives wrapped by jsonargparse


if __name__ == "__main__":
    main()
