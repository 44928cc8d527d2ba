"""``lightning-gen fit|validate|test|predict``: LightningCLI wiring of models, datamodules and runs.

    lightning-gen fit --config experiments/vae_mnist.yaml [--trainer.max_epochs=1 ...]

Models and datamodules are chosen in subclass mode (``class_path``/``init_args``); values the
datamodule knows (``image_shape``) are linked into the model. The ``run:`` section
(:class:`~lightning_gen.runs.options.RunOptions`) decides the run directory and default loggers.
Two hooks do the work: :meth:`LightningGenCLI.before_instantiate_classes` checks the request
(``--ckpt_path``, ``--init_from``, model against data) before anything is built, and
:meth:`LightningGenCLI.instantiate_trainer` applies the run plan (:func:`~lightning_gen.runs.plan.plan_run`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.environments import SLURMEnvironment

from gen_common.errors import user_error_in
from gen_common.ranks import launching_rank_zero
from lightning_gen.callbacks.sweep_trial import OptunaTrialReporter
from lightning_gen.cli.model_data import check_model_fits_data
from lightning_gen.cli.parse_errors import parse_error_paragraph
from lightning_gen.loggers.wandb import check_forced_online
from lightning_gen.runs import env
from lightning_gen.runs.devices import record_devices
from lightning_gen.runs.init_from import InitSource, add_init_from_arguments, prepare_init_from
from lightning_gen.runs.layout import check_new_run_dir, run_identity
from lightning_gen.runs.lock import RunLock, acquire_run_lock
from lightning_gen.runs.lost_peer import Ranks, die_with_launcher, report_lost_peer
from lightning_gen.runs.options import RunOptions
from lightning_gen.runs.plan import RunPlan, plan_run
from lightning_gen.runs.precision import emulated_precision_notice
from lightning_gen.runs.resume import (
    Resume,
    check_checkpoint_fits,
    check_resume_config,
    check_resume_trains,
    keep_config_history,
    resolve_resume,
)


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Save ``config.yaml`` in the run dir and send the same resolved config to every logger."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = json.loads(self.parser.dump(self.config, skip_none=False, format="json"))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


class RunLockRelease(Callback):
    """Release the run dir's lock when the Trainer ends, normally or by an exception."""

    def __init__(self, lock: RunLock) -> None:
        self.lock = lock

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.lock.release()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.lock.release()


@dataclass(frozen=True)
class Request:
    """What the command asks for, checked before anything is built (see ``before_instantiate_classes``).

    Attributes:
        checkpoint: ``--ckpt_path``, checked (any subcommand loads it).
        resume: ``fit`` continuing ``checkpoint``'s run.
        ckpt_arg: ``--ckpt_path`` as given (``last`` may start a new run).
        init_source: ``--init_from``, checked.
    """

    checkpoint: Resume | None = None
    resume: Resume | None = None
    ckpt_arg: str | None = None
    init_source: InitSource | None = None


class LightningGenCLI(LightningCLI):
    """LightningCLI with run directories, offline-first loggers, atomic checkpoints and links."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.request = Request()  # set by before_instantiate_classes
        self.plan: RunPlan | None = None  # set by instantiate_trainer
        try:
            super().__init__(*args, **kwargs)
        except Exception as err:  # a dead node: one paragraph (PeerLostError), anything else re-raises
            run_dir = self.plan.identity.run_dir if self.plan is not None else None
            report_lost_peer(err, run_dir, Ranks.of(getattr(self, "trainer", None)))
            raise

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunOptions, "run")
        add_init_from_arguments(parser)  # --init_from CKPT: a new run from another run's weights
        parser.link_arguments("data.image_shape", "model.init_args.image_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")

    def _section(self, config: Any, key: str, default: Any = None) -> Any:
        """``config[<subcommand>][key]`` (the flat config when built with ``run=False``)."""
        return (config[self.subcommand] if self.subcommand else config).get(key, default)

    def before_instantiate_classes(self) -> None:
        """Check ``--ckpt_path`` (``last`` or a file), ``--init_from`` and model/data before anything is written.

        ``fit`` continues the checkpoint's run: same run id, so same run dir, CSV and W&B run.
        """
        # --init_from: weights for a new run (build_cli(run=False) has no subcommand: its config is flat)
        init_source = prepare_init_from(self.config[self.subcommand] if self.subcommand else self.config)
        self.request = Request(init_source=init_source)
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
        run = cfg.run
        options = RunOptions(root=run.root, id=run.id or os.environ.get(env.RUN_ID))  # DDP children: rank 0's run
        model_class = model.class_path if model is not None and "class_path" in model else None
        checkpoint = resolve_resume(str(ckpt_path), options, run.name or _name_from_configs(cfg), model_class)
        cfg.ckpt_path = str(checkpoint.ckpt_path) if checkpoint is not None else None
        resume = checkpoint if self.subcommand == "fit" else None
        if resume is not None and resume.run_id and not run.id:
            run.id = resume.run_id
        self.request = Request(checkpoint, resume, str(ckpt_path), init_source)

    # No public hook exists for this: LightningCLI.__init__ calls `_parse_ckpt_path` between parsing
    # and instantiation (pinned by tests/unit/cli/test_lightning_private.py).
    def _parse_ckpt_path(self) -> None:
        """Keep the config as given: Lightning would merge the checkpoint's saved hyperparameters
        into ``model`` here, which re-injects linked values the model does not take
        (``num_classes``) and crashes with a traceback on a corrupt file. The checkpoint is
        checked in :meth:`before_instantiate_classes` instead; the run's ``config.yaml`` is the
        record of its configuration."""

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Refuse what cannot run (before the first file is written), then apply the run plan."""
        trainer_config = self._section(self.config_init, "trainer", {})
        options: RunOptions = self._section(self.config_init, "run")
        request = self.request
        name = options.name or _name_from_configs(self.config[self.subcommand] if self.subcommand else self.config)
        self._refuse_what_cannot_run(trainer_config)
        checkpoint = request.checkpoint
        identity = run_identity(
            self.subcommand,
            options,
            name,
            checkpoint.ckpt_path if checkpoint else None,
            checkpoint.run_id if checkpoint else None,
        )
        reporter = OptunaTrialReporter.from_env()  # set by `lightning-gen sweep --backend optuna`
        self.plan = plan = plan_run(
            self.subcommand,
            identity,
            options,
            trainer_config,
            self.model,
            request.resume,
            ckpt_arg=request.ckpt_arg,
            launching_rank_zero=launching_rank_zero(),
            slurm=SLURMEnvironment.detect(),  # requeue is scripts/slurm.sbatch's job, saving is ours
            progress_bar=_want_progress_bar(options.progress),
            extra_callbacks=(reporter,) if reporter is not None else (),
        )
        resolved = self._section(self.config, "run")  # the saved config.yaml names the run it belongs to
        resolved.name, resolved.id = name, identity.run_id
        os.environ.update(plan.env)
        if plan.require_empty_dir:
            check_new_run_dir(identity.run_dir)
        lock = self._lock_run_dir(identity.run_dir, options.lock_wait_s) if plan.lock else None  # ranks: under it
        if lock is not None and request.resume is not None and request.resume.run_id == identity.run_id:
            keep_config_history(identity.run_dir, request.resume)  # the resume rewrites config.yaml
        kwargs.update(plan.trainer_kwargs())
        if lock is not None:
            kwargs["callbacks"] = [*kwargs["callbacks"], RunLockRelease(lock)]
        trainer = super().instantiate_trainer(**kwargs)
        self._record_what_runs(trainer, identity.run_dir if lock is not None else None)
        return trainer

    def _record_what_runs(self, trainer: L.Trainer, locked_run_dir: Path | None) -> None:
        """The precision that runs, in the config (and a notice if emulated); the devices, in the run dir."""
        self._record_precision(trainer)
        if locked_run_dir is not None and launching_rank_zero():
            record_devices(locked_run_dir, trainer)
        notice = emulated_precision_notice(trainer.precision, isinstance(trainer.accelerator, CPUAccelerator))
        if notice and launching_rank_zero():  # DDP children re-run this CLI: say it once
            print(notice, file=sys.stderr)

    def _refuse_what_cannot_run(self, trainer_config: Any) -> None:
        """Every check that can refuse this command, before the first file is written."""
        request = self.request
        if request.checkpoint is not None:
            check_checkpoint_fits(self.model, request.checkpoint)
        if request.init_source is not None:  # a resumed run already holds its weights
            request.init_source.apply(self.model, resuming_from=self._section(self.config, "ckpt_path"))
        if request.resume is not None:
            check_resume_config(request.resume, self.config[self.subcommand].as_dict())
            check_resume_trains(
                request.resume,
                trainer_config.get("max_epochs"),
                trainer_config.get("max_steps", -1),
                trainer_config.get("max_time"),
            )
        if self.subcommand is not None and launching_rank_zero() and self.datamodule is not None:
            # Missing or unreadable data is refused here: before any file is written and before DDP
            # starts the other ranks (which would otherwise wait for rank 0 at Lightning's barrier).
            self.datamodule.prepare_data()

    def _record_precision(self, trainer: L.Trainer) -> None:
        """Make the saved config say the precision that runs (Lightning runs ``16-mixed`` as ``bf16-mixed`` on a CPU)."""
        trainer_section = self._section(self.config, "trainer")
        asked, ran = str(trainer_section.get("precision")), str(trainer.precision)
        if trainer_section.get("precision") is None or asked in (ran, ran.split("-")[0]):
            return
        trainer_section.precision = ran
        if launching_rank_zero():
            print(
                f"lightning-gen: `trainer.precision={asked}` runs as {ran} here; the run's config.yaml records {ran}."
            )

    def _lock_run_dir(self, run_dir: Path, wait_s: float) -> RunLock:
        lock = acquire_run_lock(run_dir, command=f"lightning-gen {self.subcommand}", wait_s=wait_s)
        previous = lock.previous
        if previous:
            print(
                f"lightning-gen: took over {lock.path}: its holder, PID {previous.get('pid')} on "
                f"{previous.get('host')} (started {previous.get('started')}), no longer runs."
            )
        return lock

    def after_validate(self) -> None:
        self._report_evaluation("validate")

    def after_test(self) -> None:
        self._report_evaluation("test")

    def after_predict(self) -> None:
        self._report_evaluation("predict")

    def _report_evaluation(self, subcommand: str) -> None:
        """Say where an evaluation wrote (its sub-run) and that the run's own files are unchanged."""
        if self.plan is None or not self.trainer.is_global_zero:
            return
        run_dir, run_id = self.plan.identity.run_dir, self.plan.identity.run_id
        records = [
            label
            for name, label in (("metrics.csv", "metrics.csv"), ("config.yaml", "config.yaml"), ("wandb", "W&B run"))
            if (run_dir / name).exists()
        ]
        print(
            f"lightning-gen: {subcommand} of {f'run {run_id}' if run_id else 'no training run'} written to {run_dir} "
            f"({', '.join(records)}); the run's own files are unchanged."
        )


def _name_from_configs(cfg: Any) -> str:
    """The experiment name: the stem of the first ``--config`` file, else ``default``."""
    configs = cfg.get("config") or []
    return Path(str(configs[0])).stem if configs else "default"


def _want_progress_bar(progress: str) -> bool:
    """``auto``: a bar only in an interactive terminal, never in CI or when output is piped."""
    if progress != "auto":
        return progress == "rich"
    return sys.stdout.isatty() and not os.environ.get("CI")


def build_cli(args: list[str] | None = None, run: bool = True, exit_on_error: bool = True) -> LightningGenCLI:
    """The CLI object (also for tests: ``build_cli([...], run=False)`` only instantiates).

    ``exit_on_error=False``: a parse error raises jsonargparse's ``ArgumentError`` instead of printing usage.
    """
    return LightningGenCLI(
        model_class=L.LightningModule,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LoggerSaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        auto_configure_optimizers=False,
        parser_kwargs={"env_prefix": env.PREFIX, "default_env": False, "exit_on_error": exit_on_error},
        args=args,
        run=run,
    )


#: Lightning's info lines that tell our users nothing: an advert, the absence of hardware they did not ask
#: for, and the seed (``config.yaml`` records it). There is no Trainer option for them (Lightning 2.6).
QUIET_LIGHTNING_LINES = (
    "💡 Tip:",
    "GPU available: False",
    "TPU available: False",
    "HPU available: False",
    "Seed set to ",
)


class _DropLines(logging.Filter):
    """Drop log records whose message starts with one of ``QUIET_LIGHTNING_LINES``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = re.sub(r"^\[rank: \d+\] ", "", str(record.msg))  # DDP ranks prefix theirs ("[rank: 1] Seed set to 0")
        return not message.startswith(QUIET_LIGHTNING_LINES)


_DROP_LINES = _DropLines()


def quiet_console() -> None:
    """Keep the console of a command to what our users need (see ``QUIET_LIGHTNING_LINES``); idempotent."""
    # The CSV logger shares the run dir with W&B by design; its "dir not empty" warning is noise.
    warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
    # Lightning 2.6's own pytree helper builds torch's deprecated LeafSpec on every batch; nothing for users to fix.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    # Filters act on the logger that emits the record: Lightning's rank-zero helper and fabric's seed module.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed"):
        logger = logging.getLogger(name)
        if _DROP_LINES not in logger.filters:
            logger.addFilter(_DROP_LINES)


def main(argv: list[str]) -> None:
    """``lightning-gen SUBCOMMAND ...`` (``argv`` starts with the subcommand); run by :mod:`lightning_gen.__main__`."""
    quiet_console()
    die_with_launcher()  # a torchrun worker ends with its node's agent
    from jsonargparse import ArgumentError

    try:  # None: LightningCLI reads sys.argv (it warns when given both)
        build_cli(None if argv == sys.argv[1:] else argv, exit_on_error=False)
    except ArgumentError as err:
        if user_error_in(err) is not None:  # a constructor's own paragraph (e.g. `run:` values)
            raise
        print(
            f"lightning-gen: error: {parse_error_paragraph(str(err), argv, argv[0] if argv else 'fit')}",
            file=sys.stderr,
        )
        sys.exit(2)
