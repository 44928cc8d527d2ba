"""The trial side of an Optuna sweep: report the sweep metric to the study and stop when pruned.

``lightning-gen sweep --backend optuna`` runs every trial as its own ``lightning-gen fit``
process (the same command a W&B agent would run, so DDP ranks all get the config from the
command line). It passes the trial through :data:`lightning_gen.runs.env.OPTUNA_TRIAL`; the CLI then adds
:class:`OptunaTrialReporter`, which reports after each validation, records the run dir and
the last value, and asks the study's pruner whether to stop.
"""

from __future__ import annotations

import json
import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lightning_gen.runs import env


class OptunaTrialReporter(Callback):
    """Report ``metric`` to Optuna trial ``trial_id`` after every validation; stop if pruned.

    Args:
        storage: Optuna storage URL (SQLite file or any RDB URL).
        study: Study name.
        trial_id: Storage id of the running trial.
        metric: Logged metric the sweep optimises (e.g. ``val/elbo``).
    """

    def __init__(self, storage: str, study: str, trial_id: int, metric: str) -> None:
        super().__init__()
        self.storage, self.study_name, self.trial_id, self.metric = storage, study, trial_id, metric
        self._trial: Any = None
        self._reports = 0

    @classmethod
    def from_env(cls) -> OptunaTrialReporter | None:
        """The reporter for the trial named in :data:`lightning_gen.runs.env.OPTUNA_TRIAL`, if any."""
        raw = os.environ.get(env.OPTUNA_TRIAL)
        return cls(**json.loads(raw)) if raw else None

    def _get_trial(self) -> Any:
        if self._trial is None:
            import optuna

            from lightning_gen.sweeps.storage import open_storage

            study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage))
            self._trial = optuna.trial.Trial(study, self.trial_id)
        return self._trial

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._get_trial().set_user_attr("run_dir", os.path.abspath(trainer.default_root_dir))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero and self.metric in trainer.callback_metrics:
            value = float(trainer.callback_metrics[self.metric])
            trial = self._get_trial()
            self._reports += 1
            trial.report(value, step=self._reports)  # W&B's hyperband counts reports too
            trial.set_user_attr("last_value", value)
            trial.set_user_attr("last_step", trainer.global_step)
            prune = trial.should_prune()
            if prune:
                trial.set_user_attr("pruned", True)
        if trainer.world_size > 1:
            prune = bool(trainer.strategy.broadcast(torch.tensor(prune), src=0))
        if prune:
            trainer.should_stop = True
