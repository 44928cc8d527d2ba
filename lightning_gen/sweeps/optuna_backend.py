"""The Optuna backend: a study in an RDB storage, ``--workers`` trials at once, killed trials resumed."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gen_common.errors import LightningGenError
from gen_common.progress import interactive
from lightning_gen.runs import env as run_env
from lightning_gen.sweeps.devices import VISIBLE_DEVICES, TrialDevices
from lightning_gen.sweeps.spec import SweepSpec, grid_points, suggest
from lightning_gen.sweeps.storage import open_storage
from lightning_gen.sweeps.trial import die_with_parent, trial_command
from lightning_gen.sweeps.trial_gate import DONE_STATE_NAMES, TrialGate


def run_optuna(
    spec: SweepSpec,
    trials: int,
    storage: str,
    workers: int,
    heartbeat_s: int,
    seed: int,
    extra: list[str],
    devices: TrialDevices,
) -> Any:
    """Run (or continue) the study until ``trials`` trials are complete or pruned (a grid: or every point done).

    ``workers`` trials run at once, each in the devices and rendezvous port ``devices`` leases it.
    """
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    with _quiet_experimental():  # heartbeats and retries are Optuna's experimental API: 4 warnings a sweep
        rdb = open_storage(storage, heartbeat_s)
        try:  # a restarted sweep must not replay the seeded sampler's first suggestions
            seed += len(optuna.load_study(study_name=spec.name, storage=rdb).get_trials(deepcopy=False))
        except KeyError:
            pass
        study = optuna.create_study(
            study_name=spec.name,
            storage=rdb,
            sampler=_optuna_sampler(spec, seed),
            pruner=_optuna_pruner(spec),
            direction=spec.direction,
            load_if_exists=True,
        )
        optuna.storages.fail_stale_trials(study)  # a killed sweep's trials: failed, then re-queued by the callback
        done = len(_done_trials(study))
        grid = _plan_grid(study, spec, trials) if spec.method == "grid" else None
        if done < trials and (grid is None or grid.to_run > 0):
            gate = TrialGate(study, trials, heartbeat_s)
            with _SweepProgress(trials if grid is None else done + grid.to_run, done) as progress:
                study.optimize(
                    lambda trial: _run_trial(trial, study, spec, storage, extra, devices, gate),
                    n_trials=None if grid is None else grid.to_run,
                    n_jobs=min(workers, trials - done),
                    catch=(LightningGenError,),
                    callbacks=[
                        MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                        progress.on_trial_end,
                        gate.after_trial,
                    ],
                    gc_after_trial=False,
                )
        if grid is not None and not grid.complete:
            _report_grid(study, spec, trials, grid)
    return study


@contextmanager
def _quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ``ExperimentalWarning`` (and only that) in the block, trial threads included."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        yield


def _done_trials(study: Any) -> list[Any]:
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in DONE_STATE_NAMES]


def _point_key(params: dict[str, Any], keys: list[str]) -> str:
    """A grid point as a comparable key: its values of the grid's parameters (``true`` and ``1`` differ)."""
    return json.dumps([params.get(k, "<unset>") for k in keys])


def _trial_point(trial: Any, keys: list[str]) -> str:
    """The key of a trial's grid point (a queued trial has only ``fixed_params`` yet)."""
    return _point_key({**trial.system_attrs.get("fixed_params", {}), **trial.params}, keys)


@dataclass
class _GridPlan:
    points: int  # in the grid
    done_before: int  # points with a complete or pruned trial when the sweep started
    to_run: int  # trials this run starts (queued points, a killed trial's retry included)
    complete: bool  # every point was done already: nothing runs


def _plan_grid(study: Any, spec: SweepSpec, trials: int) -> _GridPlan:
    """Queue the grid points this run evaluates, each once; say up front if the grid is complete or smaller than ``--trials``.

    A point is done when a trial of it completed or was pruned. A point already queued (a killed trial's retry, or
    queued by an earlier run) or running is not queued again, so a rerun never repeats a point; a point whose
    trials all failed is queued again. Grid trials are queued with their values, so the sampler is never asked.
    """
    points = grid_points(spec)
    keys = list(points[0])
    by_state: dict[str, set[str]] = {"DONE": set(), "WAITING": set(), "RUNNING": set()}
    for t in study.get_trials(deepcopy=False):
        state = "DONE" if t.state.name in DONE_STATE_NAMES else t.state.name
        by_state.setdefault(state, set()).add(_trial_point(t, keys))
    todo = [p for p in points if _point_key(p, keys) not in by_state["DONE"]]
    plan = _GridPlan(len(points), len(points) - len(todo), 0, not todo)
    if plan.complete:
        print(
            f"sweep {spec.name}: the grid is complete: all {plan.points} points are done, so no trial was started. "
            "For more trials add values to the sweep file, or give it a new `name`."
        )
        return plan
    if trials > plan.points:
        print(
            f"sweep {spec.name}: --trials {trials} is more than the {plan.points} points of the grid "
            f"({plan.done_before} done); the sweep stops when every point is done."
        )
    budget = trials - len(_done_trials(study))
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"]
    fresh = [p for p in todo if _point_key(p, keys) not in by_state["WAITING"] | by_state["RUNNING"]]
    for p in fresh[: max(0, budget - len(waiting))]:
        study.enqueue_trial(p)
    plan.to_run = max(0, min(budget, len(waiting) + len(fresh)))
    return plan


def _report_grid(study: Any, spec: SweepSpec, trials: int, plan: _GridPlan) -> None:
    """One line when this run exhausted the grid, or left points undone while ``--trials`` allowed more."""
    points = grid_points(spec)
    done_points = {_trial_point(t, list(points[0])) for t in _done_trials(study)}
    done = sum(_point_key(p, list(points[0])) in done_points for p in points)
    if done == len(points):
        print(
            f"sweep {spec.name}: the grid is exhausted: all {plan.points} points are done "
            f"({plan.done_before} of them before this run); stopping."
        )
    elif len(_done_trials(study)) < trials:
        print(
            f"sweep {spec.name}: {done} of the {plan.points} grid points are done; the others failed or are running "
            "elsewhere: run the command again to run them."
        )


def _optuna_sampler(spec: SweepSpec, seed: int) -> Any:
    """The sweep ``method`` as an Optuna sampler: random, bayes (TPE); a grid queues its points instead."""
    import optuna

    samplers = {
        "random": optuna.samplers.RandomSampler,
        "bayes": optuna.samplers.TPESampler,
        "grid": optuna.samplers.RandomSampler,  # never asked: every grid trial is queued with its point (_plan_grid)
    }
    return samplers[spec.method](seed=seed)


def _optuna_pruner(spec: SweepSpec) -> Any:
    """``early_terminate: hyperband`` as Optuna's ``HyperbandPruner``; no pruning otherwise."""
    import optuna

    if spec.hyperband_min_iter is not None:
        return optuna.pruners.HyperbandPruner(min_resource=spec.hyperband_min_iter)
    return optuna.pruners.NopPruner()


def _run_trial(
    trial: Any,
    study: Any,
    spec: SweepSpec,
    storage: str,
    extra: list[str],
    devices: TrialDevices,
    gate: TrialGate,
) -> float:
    """One trial: ``lightning-gen fit`` in a subprocess, which reports the sweep metric to the study; its last value.

    A re-queued trial (its process was killed) keeps the original's number and run id and resumes its ``last.ckpt``.
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    if not gate.admit(trial):
        trial.set_user_attr("not_run", f"the study had its {gate.trials} trials when this one started")
        raise LightningGenError(f"trial {trial.number} not run: the study has its {gate.trials} trials")
    frozen = study._storage.get_trial(trial._trial_id)
    original = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    number = trial.number if original is None else original
    run_id = f"trial-{number:04d}"
    cmd = trial_command(spec, suggest(trial, spec), _trial_run_args(spec, run_id, original is not None) + extra)
    env = dict(os.environ)
    env[run_env.OPTUNA_TRIAL] = json.dumps(
        {"storage": storage, "study": spec.name, "trial_id": trial._trial_id, "metric": spec.metric}
    )
    env.pop(run_env.RUN_ID, None)
    trial.set_user_attr("run_id", run_id)
    trial.set_user_attr("command", shlex.join(cmd))
    with devices.lease() as leased:
        env.update(leased)
        if VISIBLE_DEVICES in leased:
            trial.set_user_attr("devices", leased[VISIBLE_DEVICES])
        proc = subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent if sys.platform == "linux" else None)
        returncode = gate.wait(trial, proc)
    if returncode != 0:
        raise LightningGenError(f"trial {number} ({run_id}) exited with status {returncode}")
    attrs = study._storage.get_trial(trial._trial_id).user_attrs
    if attrs.get("pruned"):
        raise optuna.TrialPruned()
    if "last_value" not in attrs or not math.isfinite(attrs["last_value"]):
        raise LightningGenError(
            f"trial {number} ({run_id}) logged no {spec.metric}; is it a validation metric of this model?"
        )
    return float(attrs["last_value"])


def _trial_run_args(spec: SweepSpec, run_id: str, resumed: bool) -> list[str]:
    """The ``--run.*`` flags of a trial: its name, id, group and tag; a resumed one continues its run's ``last.ckpt``."""
    run_args = [
        f"--run.name={spec.name}",
        f"--run.id={run_id}",
        f"--run.group=sweep-{spec.name}",
        f"--run.tags=[sweep:{spec.name}]",
    ]
    if resumed:  # continue the interrupted trial's run, once its process has saved and exited
        run_args += ["--ckpt_path=last", "--run.lock_wait_s=120"]
    return run_args


class _SweepProgress:
    """A rich bar of finished trials in an interactive terminal (none in CI or pipes)."""

    def __init__(self, trials: int, done: int) -> None:
        self.trials, self.done, self._progress, self._task = trials, done, None, None

    def __enter__(self) -> _SweepProgress:
        if interactive():
            from rich.progress import Progress

            self._progress = Progress(transient=False)
            self._progress.start()
            self._task = self._progress.add_task("sweep trials", total=self.trials, completed=self.done)
        return self

    def on_trial_end(self, study: Any, trial: Any) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def print_summary(study: Any, spec: SweepSpec, storage: str) -> None:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    print(f"sweep {spec.name}: {len(complete)} complete, {len(done) - len(complete)} pruned (storage {storage})")
    if complete:
        best = study.best_trial
        print(
            f"best: trial {best.number} {spec.metric}={best.value:.6g} {best.params} run {best.user_attrs.get('run_dir', '?')}"
        )
    print(f"compare: lightning-gen compare --sweep {spec.name} --storage {storage}")
